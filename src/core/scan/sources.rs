//! The sources a scan has seen (pure): each one's tally ([`Source`], its
//! [`TopPorts`]), in the table a tally counts into and the tables merged
//! into it ([`Sources`]; one table: [`super::table`]).

use super::table::Table;

/// The most hit destination ports of one source, in bounded space (the
/// space-saving algorithm). Exact while a source has hit at most `SLOTS`
/// distinct ports; beyond that each slot keeps how much of its count may
/// belong to ports it replaced, and ports are ranked and reported by the
/// count they certainly have (flagged as a lower bound).
///
/// Ports and counts are kept apart, inline, so that a source costs no
/// allocation of its own and finding a port is one compare of all eight
/// (a web log's statuses come in no order a branch predictor could learn).
/// What a slot may owe to replaced ports is boxed: only a source that hit
/// more than `SLOTS` ports has it, and every source's size is the table's
/// (a whole-file scan of a million clients was a third page zeroing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopPorts {
    /// The first `used` are live.
    ports: [u16; SLOTS],
    counts: [u32; SLOTS],
    /// Of each slot's count, how much may be other ports' (once full).
    errs: Option<Box<[u32; SLOTS]>>,
    used: u8,
    pub estimated: bool,
}

const SLOTS: usize = 8;

impl TopPorts {
    /// The live slot holding `port`, if any.
    #[inline]
    fn find(&self, port: u16) -> Option<usize> {
        let mut hit = 0u32;
        for (j, &p) in self.ports.iter().enumerate() {
            hit |= u32::from(p == port) << j;
        }
        hit &= (1u32 << self.used) - 1;
        (hit != 0).then(|| hit.trailing_zeros() as usize)
    }

    #[inline]
    pub fn add(&mut self, port: u16, n: u32) {
        if let Some(at) = self.find(port) {
            self.counts[at] = self.counts[at].saturating_add(n);
            return;
        }
        self.add_new(port, n);
    }

    /// A port not in the slots: into a free one, or over the least counted.
    fn add_new(&mut self, port: u16, n: u32) {
        let used = usize::from(self.used);
        if used < SLOTS {
            self.ports[used] = port;
            self.counts[used] = n;
            if let Some(e) = &mut self.errs {
                e[used] = 0;
            }
            self.used += 1;
            return;
        }
        // Take over the least counted slot; its count becomes our error.
        let min = (0..SLOTS)
            .min_by_key(|&j| self.counts[j])
            .expect("slots are full");
        let was = self.counts[min];
        self.errs.get_or_insert_with(Default::default)[min] = was;
        self.ports[min] = port;
        self.counts[min] = was.saturating_add(n);
        self.estimated = true;
    }

    fn err(&self, j: usize) -> u32 {
        self.errs.as_ref().map_or(0, |e| e[j])
    }

    /// Up to `n` ports with the hits they certainly have, most first (ties:
    /// lower port first).
    pub fn top(&self, n: usize) -> Vec<(u16, u64)> {
        let mut v: Vec<(u16, u64)> = (0..usize::from(self.used))
            .map(|j| (self.ports[j], u64::from(self.counts[j] - self.err(j))))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    pub(super) fn merge(&mut self, other: &TopPorts) {
        self.estimated |= other.estimated;
        for j in 0..usize::from(other.used) {
            let (p, n, err) = (other.ports[j], other.counts[j], other.err(j));
            self.add(p, n);
            if err > 0 {
                if let Some(at) = self.find(p) {
                    let count = self.counts[at];
                    let e = &mut self.errs.get_or_insert_with(Default::default)[at];
                    *e = e.saturating_add(err).min(count);
                }
            }
        }
    }
}

/// One source's hits inside the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub hits: u64,
    /// Earliest and latest hit (lines may be slightly out of order).
    pub first: i64,
    pub last: i64,
    pub ports: TopPorts,
    /// The web `[[pattern]]`s its requests matched (bit i: pattern i).
    pub marks: u64,
}

impl Source {
    pub(super) fn merge(&mut self, o: &Source) {
        self.marks |= o.marks;
        self.hits += o.hits;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.ports.merge(&o.ports);
    }
}

/// The sources a tally holds: the table it counts into, and the tables
/// merged into it ([`Sources::absorb`]) kept whole for the keys that table
/// did not hold. Merging two threads' million sources into one table grew
/// its index and list by half a million sources: the rehash, the copies
/// and the kernel zeroing their fresh pages were a fifth of a whole-file
/// scan. Now a key of the other table is only looked up: found, its tally
/// merges into the one found and its own is dead; not found, it stays
/// where it is.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    main: Table<Source>,
    /// Whole tables absorbed; a live key is in exactly one table of all.
    parts: Vec<Part>,
}

/// Tables kept whole beside the one counted into, at most (see
/// [`Sources::tidy`]).
const MAX_PARTS: usize = 3;

/// A table absorbed whole, with the sources merged elsewhere marked dead.
#[derive(Clone, Debug)]
struct Part {
    table: Table<Source>,
    /// Bit i: source i was merged into another table.
    dead: Vec<u64>,
    live: usize,
}

/// Whether bit `i` of a part's dead bits is clear.
#[inline]
fn alive(dead: &[u64], i: usize) -> bool {
    dead[i / 64] & (1 << (i % 64)) == 0
}

impl Part {
    fn whole(table: Table<Source>) -> Part {
        let n = table.list.len;
        Part {
            dead: vec![0; n.div_ceil(64)],
            live: n,
            table,
        }
    }

    #[inline]
    fn is_live(&self, i: u32) -> bool {
        alive(&self.dead, i as usize)
    }

    fn kill(&mut self, i: u32) {
        self.dead[i as usize / 64] |= 1 << (i % 64);
        self.live -= 1;
    }

    /// The place of live key `k`.
    fn find(&self, k: u128) -> Option<u32> {
        let i = self.table.find(k, self.table.hash(k))?;
        self.is_live(i).then_some(i)
    }

    fn iter(&self) -> impl Iterator<Item = (&u128, &Source)> {
        self.table
            .iter()
            .enumerate()
            .filter(|(i, _)| self.is_live(*i as u32))
            .map(|(_, kv)| kv)
    }

    fn into_pairs(self) -> impl Iterator<Item = (u128, Source)> {
        let Part { table, dead, .. } = self;
        table
            .keys
            .into_all()
            .zip(table.list.into_all())
            .enumerate()
            .filter(move |(i, _)| alive(&dead, *i))
            .map(|(_, kv)| kv)
    }
}

impl Sources {
    pub fn len(&self) -> usize {
        self.main.list.len + self.parts.iter().map(|p| p.live).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sources' keys (`count::addr` gives the address).
    pub fn keys(&self) -> impl Iterator<Item = &u128> {
        self.iter().map(|(k, _)| k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u128, &Source)> {
        self.main
            .iter()
            .chain(self.parts.iter().flat_map(Part::iter))
    }

    pub fn into_pairs(self) -> impl Iterator<Item = (u128, Source)> {
        let Sources { main, parts } = self;
        main.keys
            .into_all()
            .zip(main.list.into_all())
            .chain(parts.into_iter().flat_map(Part::into_pairs))
    }

    /// A key's hash, for [`Self::slot_addr`] and [`Self::place`].
    pub fn hash(&self, k: u128) -> u64 {
        self.main.hash(k)
    }

    pub fn get(&self, k: &u128) -> Option<&Source> {
        self.main.get(k).or_else(|| {
            self.parts
                .iter()
                .find_map(|p| p.find(*k).map(|i| p.table.list.get(i)))
        })
    }

    /// Where the slot a key of hash `h` is looked for first lies (to warm).
    pub fn slot_addr(&self, h: u64) -> Option<*const u8> {
        self.main.slot_addr(h)
    }

    /// Where source `i` (a place [`Self::place`] gave) lies: its first and
    /// last byte (to warm).
    pub fn source_addr(&self, i: u32) -> [*const u8; 2] {
        self.main.source_addr(i)
    }

    /// The source at a place [`Self::place`] gave.
    pub fn at_mut(&mut self, i: u32) -> &mut Source {
        self.main.at_mut(i)
    }

    /// The place of key `k` (of hash `h`), a new source from `new` if there
    /// is none yet. Counting into sources that absorbed others first puts
    /// the absorbed ones' live sources into the table counted into (no
    /// scan does: it counts, then merges).
    #[inline]
    pub fn place(&mut self, k: u128, h: u64, new: impl FnOnce() -> Source) -> u32 {
        if !self.parts.is_empty() {
            self.flatten();
        }
        self.main.place(k, h, new)
    }

    /// The source of key `k`, made by `new` if there is none yet.
    pub fn get_or_insert_with(&mut self, k: u128, new: impl FnOnce() -> Source) -> &mut Source {
        let i = self.place(k, self.hash(k), new);
        self.at_mut(i)
    }

    /// Every source in the table counted into.
    fn flatten(&mut self) {
        for p in std::mem::take(&mut self.parts) {
            self.move_in(p);
        }
    }

    /// A part's live sources into the table counted into.
    fn move_in(&mut self, p: Part) {
        for (k, s) in p.into_pairs() {
            // A live key of a part is in no other table: always new here.
            let mut s = Some(s);
            let i = self
                .main
                .place(k, self.main.hash(k), || s.take().expect("once"));
            if let Some(s) = s {
                self.main.at_mut(i).merge(&s);
            }
        }
    }

    /// Adds every source of `other` to these (a key in both: its tallies
    /// merged). Each of other's keys is looked up here: found, its tally
    /// merges into the one found; the rest stay in other's tables, kept as
    /// they are. Each key's slot in the table counted into is warmed
    /// `AHEAD` keys before it is looked up, and `NEAR` keys before, with
    /// its slot in cache by then, the source it holds (`warm`, as in
    /// [`Sources::slot_addr`]).
    pub fn absorb(&mut self, other: Sources, warm: impl Fn(*const u8)) {
        let Sources { main, parts } = other;
        // Other's tables share no live key: each is looked up in these
        // only, not in the ones it brought before it.
        let own = self.parts.len();
        let mut came = Vec::new();
        for mut p in std::iter::once(Part::whole(main)).chain(parts) {
            self.merge_found(&mut p, own, &warm);
            came.push(p);
        }
        self.parts.extend(came);
        self.tidy();
    }

    /// At most MAX_PARTS parts, each at least half live: a lookup goes
    /// through at most 1 + MAX_PARTS tables (8 reading threads and a
    /// rotated file's 8 would be 15), and a table whose sources were
    /// mostly merged elsewhere does not stay in memory for the few left.
    /// The live sources of a part that goes move into the table counted
    /// into, as a merge did before parts.
    fn tidy(&mut self) {
        self.parts.retain(|p| p.live > 0);
        loop {
            let sparse = self
                .parts
                .iter()
                .position(|p| p.live * 2 < p.table.list.len);
            let over = (self.parts.len() > MAX_PARTS).then(|| {
                (0..self.parts.len())
                    .min_by_key(|&i| self.parts[i].live)
                    .expect("parts")
            });
            let Some(i) = sparse.or(over) else {
                return;
            };
            let p = self.parts.swap_remove(i);
            self.main.reserve(self.main.list.len + p.live);
            self.move_in(p);
        }
    }

    /// The live sources of `p` that a table here holds (the table counted
    /// into, the first `own` parts), merged into it and dead in `p`.
    fn merge_found(&mut self, p: &mut Part, own: usize, warm: &impl Fn(*const u8)) {
        const AHEAD: usize = 16;
        const NEAR: usize = 8;
        let n = p.table.keys.len;
        let key = |p: &Part, j: usize| *p.table.keys.get(j as u32);
        // The hashes of the keys from this one to AHEAD on.
        let mut hashes = [0u64; AHEAD];
        for (j, h) in hashes.iter_mut().enumerate().take(n) {
            *h = self.main.hash(key(p, j));
        }
        for j in 0..n {
            let k = key(p, j);
            let h = hashes[j % AHEAD];
            if j + AHEAD < n {
                let h = self.main.hash(key(p, j + AHEAD));
                hashes[j % AHEAD] = h;
                if p.is_live((j + AHEAD) as u32) {
                    if let Some(a) = self.main.slot_addr(h) {
                        warm(a);
                    }
                }
            }
            if j + NEAR < n && p.is_live((j + NEAR) as u32) {
                let near = hashes[(j + NEAR) % AHEAD];
                if let Some(i) = self.main.first_place(key(p, j + NEAR), near) {
                    self.main.source_addr(i).into_iter().for_each(warm);
                }
            }
            let j = j as u32;
            if !p.is_live(j) {
                continue;
            }
            let src = p.table.list.get(j);
            if let Some(i) = self.main.find(k, h) {
                self.main.at_mut(i).merge(src);
            } else if let Some((q, i)) = self.parts[..own]
                .iter()
                .enumerate()
                .find_map(|(q, o)| o.find(k).map(|i| (q, i)))
            {
                self.parts[q].table.at_mut(i).merge(src);
            } else {
                continue;
            }
            p.kill(j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scan::table::{Slot, BLOCK};

    fn src(hits: u64) -> Source {
        Source {
            hits,
            first: 0,
            last: 0,
            ports: TopPorts::default(),
            marks: 0,
        }
    }

    #[test]
    fn every_key_keeps_its_own_place_through_growth() {
        let mut s = Sources::default();
        assert!(s.get(&5).is_none());
        // Keys that differ only high up, only low down, and zero itself.
        let keys: Vec<u128> = (0..5000u128)
            .map(|i| match i % 3 {
                0 => i,
                1 => i << 100,
                _ => u128::MAX - i,
            })
            .collect();
        for (n, &k) in keys.iter().enumerate() {
            s.get_or_insert_with(k, || src(n as u64)).marks += 1;
        }
        for &k in &keys {
            s.get_or_insert_with(k, || unreachable!("present")).marks += 1;
        }
        assert_eq!(s.len(), keys.len());
        for (n, &k) in keys.iter().enumerate() {
            let got = s.get(&k).unwrap();
            assert_eq!((got.hits, got.marks), (n as u64, 2));
        }
        assert!(s.get(&(1u128 << 99)).is_none());
        let seen: std::collections::HashSet<u128> = s.keys().copied().collect();
        assert_eq!(seen.len(), keys.len());
        assert!(s.main.slots.len().is_power_of_two() && s.len() * 8 <= s.main.slots.len() * 5);
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn absorbing_keeps_every_key_of_both_and_adds_those_in_both() {
        for (na, nb) in [(0, 0), (0, 5), (5, 0), (3, 3), (2000, 3000), (70_000, 100)] {
            let (mut a, mut b) = (Sources::default(), Sources::default());
            // a holds 0..na, b holds na/2..na/2+nb: the middle is in both.
            for k in 0..na as u128 {
                a.get_or_insert_with(k << 64 | k, || src(1));
            }
            for k in (na / 2) as u128..(na / 2 + nb) as u128 {
                b.get_or_insert_with(k << 64 | k, || src(10));
            }
            // Warmed: a slot for each of b's keys but the last AHEAD, and the
            // sources of those found at their first slot.
            let warmed = std::cell::Cell::new(0usize);
            a.absorb(b, |_| warmed.set(warmed.get() + 1));
            let all = na.max(na / 2 + nb);
            assert_eq!(a.len(), all, "{na} {nb}");
            for k in 0..all as u128 {
                let in_a = k < na as u128;
                let in_b = k >= (na / 2) as u128 && k < (na / 2 + nb) as u128;
                let want = u64::from(in_a) + 10 * u64::from(in_b);
                assert_eq!(
                    a.get(&(k << 64 | k)).map(|s| s.hits),
                    Some(want),
                    "{na} {nb} {k}"
                );
            }
            // Looked up, not copied: the table counted into is as it was,
            // unless most of b was merged into it (then b's few others move
            // in and b goes).
            let only_b = all - na;
            if only_b == 0 {
                assert_eq!((a.main.list.len, a.parts.len()), (na, 0), "{na} {nb}");
            } else if only_b * 2 < nb {
                assert_eq!((a.main.list.len, a.parts.len()), (all, 0), "{na} {nb}");
            } else {
                assert_eq!((a.main.list.len, a.parts.len()), (na, 1), "{na} {nb}");
            }
            let seen: std::collections::HashSet<u128> = a.keys().copied().collect();
            assert_eq!((seen.len(), a.iter().count()), (all, all), "each key once");
            if nb > 16 {
                assert!(warmed.get() >= nb - 16);
            }
            // Counting on after a merge: the absorbed sources move into the
            // table counted into, none twice.
            let k = u128::MAX;
            a.get_or_insert_with(k, || src(7)).hits += 1;
            if all > 0 {
                a.get_or_insert_with(0, || unreachable!("present")).hits += 1;
            }
            assert_eq!(
                (a.len(), a.main.list.len, a.parts.len()),
                (all + 1, all + 1, 0)
            );
            assert_eq!(a.get(&k).map(|s| s.hits), Some(8));
            assert!(a.main.slots.len().is_power_of_two() && a.len() * 8 <= a.main.slots.len() * 5);
        }
    }

    /// Eight threads' tables of different clients: at most MAX_PARTS kept
    /// whole beside the first, every key once.
    #[test]
    fn many_tables_absorbed_leave_few_parts() {
        let mut all = Sources::default();
        for t in 0..8u128 {
            let mut s = Sources::default();
            for k in 0..1000u128 {
                // A tenth of each table's clients also in the next one's.
                let k = t * 900 + k;
                s.get_or_insert_with(k << 64 | k, || src(0)).hits += 1;
            }
            all.absorb(s, |_| {});
            assert!(all.parts.len() <= MAX_PARTS, "{}", all.parts.len());
            assert!(all.parts.iter().all(|p| p.live * 2 >= p.table.list.len));
        }
        assert_eq!(all.len(), 7 * 900 + 1000);
        assert_eq!(all.iter().count(), all.len());
        assert_eq!(all.get(&(900u128 << 64 | 900)).map(|s| s.hits), Some(2));
        assert_eq!(all.get(&0).map(|s| s.hits), Some(1));
    }

    proptest::proptest! {
        /// Any tree of merges of tables of overlapping keys, then counting
        /// on: every key once, with the sum of its hits, as a map says.
        #[test]
        fn merges_in_any_order_give_what_a_map_gives(
            tables in proptest::collection::vec(
                proptest::collection::vec((0u8..40, 1u64..5), 0..30), 1..6),
            order in proptest::collection::vec(proptest::num::usize::ANY, 0..8),
            after in proptest::collection::vec(0u8..50, 0..10),
        ) {
            let key = |b: u8| u128::from(b) << 70 | u128::from(b);
            let mut want = std::collections::BTreeMap::<u128, u64>::new();
            let mut pool: Vec<Sources> = tables
                .iter()
                .map(|t| {
                    let mut s = Sources::default();
                    for &(b, n) in t {
                        s.get_or_insert_with(key(b), || src(0)).hits += n;
                        *want.entry(key(b)).or_default() += n;
                    }
                    s
                })
                .collect();
            // Merge by the order given, then the rest into the first.
            for o in order {
                if pool.len() < 2 {
                    break;
                }
                let from = pool.remove(o % pool.len());
                let into = o / 7 % pool.len();
                pool[into].absorb(from, |_| {});
            }
            let mut all = pool.remove(0);
            for p in pool {
                all.absorb(p, |_| {});
            }
            let got: std::collections::BTreeMap<u128, u64> =
                all.iter().map(|(k, s)| (*k, s.hits)).collect();
            proptest::prop_assert_eq!(all.iter().count(), want.len());
            proptest::prop_assert_eq!(all.len(), want.len());
            proptest::prop_assert_eq!(&got, &want);
            for (k, n) in &want {
                proptest::prop_assert_eq!(all.get(k).map(|s| s.hits), Some(*n));
            }
            let pairs: std::collections::BTreeMap<u128, u64> =
                all.clone().into_pairs().map(|(k, s)| (k, s.hits)).collect();
            proptest::prop_assert_eq!(&pairs, &want);
            for b in after {
                all.get_or_insert_with(key(b), || src(0)).hits += 1;
                *want.entry(key(b)).or_default() += 1;
            }
            let got: std::collections::BTreeMap<u128, u64> =
                all.iter().map(|(k, s)| (*k, s.hits)).collect();
            proptest::prop_assert_eq!(all.len(), want.len());
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// A source's size is the table's: a million clients are a million of
    /// them (kept small by boxing what only overflowing ports need).
    #[test]
    fn a_source_stays_small() {
        assert!(std::mem::size_of::<Source>() <= 96);
    }

    #[test]
    fn the_list_keeps_every_source_across_its_blocks() {
        let mut s = Sources::default();
        let n = BLOCK as u128 * 2 + 7;
        for k in 0..n {
            s.get_or_insert_with(k * 7919, || src(k as u64)).marks = 1;
        }
        assert_eq!(s.len() as u128, n);
        for k in [0, 1, BLOCK as u128 - 1, BLOCK as u128, n - 1] {
            assert_eq!(s.get(&(k * 7919)).map(|x| x.hits), Some(k as u64));
        }
        // In the order they came, keys beside their sources.
        assert!(s
            .iter()
            .enumerate()
            .all(|(i, (&k, x))| k == i as u128 * 7919 && x.hits == i as u64));
        assert_eq!(s.clone().into_pairs().count() as u128, n);
    }

    /// Past `SLOTS` ports the counts reported are lower bounds, merged or
    /// not, and a heavy port keeps its exact count.
    #[test]
    fn merged_estimates_stay_lower_bounds() {
        let mut truth = std::collections::HashMap::<u16, u64>::new();
        let (mut a, mut b) = (TopPorts::default(), TopPorts::default());
        for i in 0..300u16 {
            let port = if i % 3 == 0 { 443 } else { 1000 + i % 37 };
            let t = if i % 2 == 0 { &mut a } else { &mut b };
            t.add(port, 1);
            *truth.entry(port).or_default() += 1;
        }
        assert!(a.estimated && b.estimated);
        a.merge(&b);
        assert!(a.estimated);
        let top = a.top(8);
        assert_eq!(top[0], (443, truth[&443]));
        assert!(top.iter().all(|(p, n)| *n <= truth[p]), "{top:?}");
        // Few ports: exact, and merging exact counts stays exact.
        let (mut c, mut d) = (TopPorts::default(), TopPorts::default());
        c.add(22, 3);
        c.add(80, 1);
        d.add(80, 4);
        c.merge(&d);
        assert!(!c.estimated);
        assert_eq!(c.top(3), vec![(80, 5), (22, 3)]);
    }
}
