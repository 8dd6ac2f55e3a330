//! The sources a scan has seen (pure): each one's tally ([`Source`], its
//! [`TopPorts`]), and an open-addressing index from an address's key to a
//! place in a list of them.
//!
//! A whole-file scan of an access log takes one lookup a line, at a random
//! place of a table as big as the clients are many; perf showed the line's
//! two cache misses (the map's bucket, then the source) as a third to a half
//! of the scan, and the kernel zeroing the pages of a map of whole sources,
//! rehashed as it grew, as another sixth. So the index holds only (key,
//! place), 32 bytes a source, and is the only part rehashed; the list grows
//! by blocks that never move (a source is 96 bytes, see [`TopPorts`]); and the tally asks for both lines some lines ahead of using them
//! (`Tally::feed_buffer_warm`): [`Sources::slot_addr`] and
//! [`Sources::source_addr`] say where they are.
//!
//! The keys are addresses the attacker chooses (an IPv6 /64 is anyone's):
//! the hash is foldhash's, seeded at random per process, so no one can aim
//! many addresses at one run of slots.

use std::hash::BuildHasher;

/// Marks an empty slot (a place no list reaches: more sources than u32
/// counts could not be held in memory anyway).
const EMPTY: u32 = u32::MAX;

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

/// The sources (and their keys) in blocks that never move once full:
/// growing adds a block instead of copying the whole list into a twice
/// bigger one (each doubling copied, and had the kernel zero, the table's
/// biggest part again). The first block grows as a vector does, so a small
/// tally stays small.
#[derive(Clone, Debug)]
struct List<T> {
    blocks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            blocks: Vec::new(),
            len: 0,
        }
    }
}

/// Items a block (sources: 6 MiB at 96 bytes a source, whole huge pages;
/// keys: 1 MiB).
const BLOCK: usize = 1 << 16;

impl<T> List<T> {
    fn push(&mut self, s: T) {
        match self.blocks.last_mut() {
            Some(b) if b.len() < BLOCK => b.push(s),
            last => {
                let mut b = match last {
                    Some(_) => Vec::with_capacity(BLOCK),
                    None => Vec::new(),
                };
                b.push(s);
                self.blocks.push(b);
            }
        }
        self.len += 1;
    }

    #[inline]
    fn get(&self, i: u32) -> &T {
        let i = i as usize;
        &self.blocks[i / BLOCK][i % BLOCK]
    }

    #[inline]
    fn get_mut(&mut self, i: u32) -> &mut T {
        let i = i as usize;
        &mut self.blocks[i / BLOCK][i % BLOCK]
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.blocks.iter().flatten()
    }

    fn into_all(self) -> impl Iterator<Item = T> {
        self.blocks.into_iter().flatten()
    }
}

/// One slot of the index: a key, split so that the slot is 24 bytes and
/// not the 32 a `u128`'s alignment makes it (the index of a million
/// sources is what the kernel zeroes most), and its place.
#[derive(Clone, Copy, Debug)]
struct Slot {
    hi: u64,
    lo: u64,
    place: u32,
}

impl Slot {
    const FREE: Slot = Slot {
        hi: 0,
        lo: 0,
        place: EMPTY,
    };

    fn new(k: u128, place: u32) -> Slot {
        Slot {
            hi: (k >> 64) as u64,
            lo: k as u64,
            place,
        }
    }

    #[inline]
    fn holds(&self, k: u128) -> bool {
        self.lo == k as u64 && self.hi == (k >> 64) as u64
    }
}

#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// (key, place in `keys` and `list`); a power of two long, at most
    /// five eighths full; empty before the first source.
    slots: Vec<Slot>,
    keys: List<u128>,
    list: List<Source>,
    hasher: foldhash::fast::RandomState,
}

impl Sources {
    pub fn len(&self) -> usize {
        self.list.len
    }

    pub fn is_empty(&self) -> bool {
        self.list.len == 0
    }

    /// The sources' keys (`count::addr` gives the address).
    pub fn keys(&self) -> impl Iterator<Item = &u128> {
        self.keys.iter()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u128, &Source)> {
        self.keys.iter().zip(self.list.iter())
    }

    pub fn into_pairs(self) -> impl Iterator<Item = (u128, Source)> {
        self.keys.into_all().zip(self.list.into_all())
    }

    pub fn hash(&self, k: u128) -> u64 {
        self.hasher.hash_one(k)
    }

    pub fn get(&self, k: &u128) -> Option<&Source> {
        let h = self.hash(*k);
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = h as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot.place == EMPTY {
                return None;
            }
            if slot.holds(*k) {
                return Some(self.list.get(slot.place));
            }
            at = (at + 1) & mask;
        }
    }

    /// Where the slot a key of hash `h` is looked for first lies (to warm).
    pub fn slot_addr(&self, h: u64) -> Option<*const u8> {
        let mask = self.slots.len().checked_sub(1)?;
        Some((&raw const self.slots[h as usize & mask]).cast())
    }

    /// Where source `i`'s fields lie: its first and last byte (to warm).
    pub fn source_addr(&self, i: u32) -> [*const u8; 2] {
        let p: *const u8 = (&raw const *self.list.get(i)).cast();
        [p, p.wrapping_add(std::mem::size_of::<Source>() - 1)]
    }

    pub fn at_mut(&mut self, i: u32) -> &mut Source {
        self.list.get_mut(i)
    }

    /// The place of key `k` (of hash `h`), a new source from `new` if there
    /// is none yet.
    #[inline]
    pub fn place(&mut self, k: u128, h: u64, new: impl FnOnce() -> Source) -> u32 {
        if (self.list.len + 1) * 8 > self.slots.len() * 5 {
            self.reserve(self.list.len + 1);
        }
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot.place == EMPTY {
                let i = self.list.len as u32;
                self.slots[at] = Slot::new(k, i);
                self.keys.push(k);
                self.list.push(new());
                return i;
            }
            if slot.holds(k) {
                return slot.place;
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds every source of `other` to these (a key in both: its tallies
    /// merged). The index is sized once for both; each key's slot is
    /// warmed `AHEAD` keys before it is looked up, and `NEAR` keys before,
    /// with its slot in cache by then, the source it holds (`warm`, as in
    /// [`Sources::slot_addr`]): merging two threads' million sources was
    /// a fifth of the scan, two cache misses a key in both.
    pub fn absorb(&mut self, other: Sources, warm: impl Fn(*const u8)) {
        const AHEAD: usize = 16;
        const NEAR: usize = 8;
        self.reserve_warm(self.list.len + other.list.len, &warm);
        let Sources { keys, list, .. } = other;
        let n = keys.len;
        // The hashes of the keys from this one to AHEAD on.
        let mut hashes = [0u64; AHEAD];
        for (j, h) in hashes.iter_mut().enumerate().take(n) {
            *h = self.hash(*keys.get(j as u32));
        }
        for (j, s) in list.into_all().enumerate() {
            let k = *keys.get(j as u32);
            let h = hashes[j % AHEAD];
            if j + AHEAD < n {
                let h = self.hash(*keys.get((j + AHEAD) as u32));
                hashes[j % AHEAD] = h;
                if let Some(p) = self.slot_addr(h) {
                    warm(p);
                }
            }
            if j + NEAR < n {
                let near = hashes[(j + NEAR) % AHEAD];
                if let Some(i) = self.first_place(*keys.get((j + NEAR) as u32), near) {
                    self.source_addr(i).into_iter().for_each(&warm);
                }
            }
            let mut s = Some(s);
            let i = self.place(k, h, || s.take().expect("taken once"));
            if let Some(s) = s {
                self.list.get_mut(i).merge(&s);
            }
        }
    }

    /// The place of key `k` if its first slot holds it (to warm its source;
    /// a key further on is found when it is looked up).
    #[inline]
    fn first_place(&self, k: u128, h: u64) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let slot = self.slots[h as usize & mask];
        (slot.place != EMPTY && slot.holds(k)).then_some(slot.place)
    }

    /// The source of key `k`, made by `new` if there is none yet.
    pub fn get_or_insert_with(&mut self, k: u128, new: impl FnOnce() -> Source) -> &mut Source {
        let i = self.place(k, self.hash(k), new);
        self.at_mut(i)
    }

    /// Room in the index for `n` sources without growing again: the least
    /// power of two at least 16 that `n` fills at most five eighths (as
    /// doubling would reach, without the sizes between).
    fn reserve(&mut self, n: usize) {
        self.reserve_warm(n, |_| {});
    }

    /// [`Self::reserve`], warming each key's new slot `AHEAD` keys before
    /// it is written (a rehash of a million keys is a cache miss each).
    fn reserve_warm(&mut self, n: usize, warm: impl Fn(*const u8)) {
        const AHEAD: usize = 16;
        let mut size = self.slots.len().max(16);
        while n * 8 > size * 5 {
            size *= 2;
        }
        if size == self.slots.len() {
            return;
        }
        self.slots = vec![Slot::FREE; size];
        let mask = size - 1;
        let len = self.keys.len;
        let mut hashes = [0u64; AHEAD];
        for (j, h) in hashes.iter_mut().enumerate().take(len) {
            *h = self.hasher.hash_one(*self.keys.get(j as u32));
        }
        for i in 0..len {
            let k = *self.keys.get(i as u32);
            let h = hashes[i % AHEAD];
            if i + AHEAD < len {
                let ahead = self.hasher.hash_one(*self.keys.get((i + AHEAD) as u32));
                hashes[i % AHEAD] = ahead;
                warm((&raw const self.slots[ahead as usize & mask]).cast());
            }
            let mut at = h as usize & mask;
            while self.slots[at].place != EMPTY {
                at = (at + 1) & mask;
            }
            self.slots[at] = Slot::new(k, i as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(s.slots.len().is_power_of_two() && s.len() * 8 <= s.slots.len() * 5);
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
            assert!(a.slots.len().is_power_of_two() && a.len() * 8 <= a.slots.len() * 5);
            if nb > 16 {
                assert!(warmed.get() >= nb - 16);
            }
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
