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
//! in place; and the tally asks for both lines some lines ahead of using them
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopPorts {
    /// (port, count, of which possibly other ports'); the first `used` are
    /// live. Inline, so a source costs no allocation of its own.
    slots: [(u16, u32, u32); SLOTS],
    used: u8,
    pub estimated: bool,
}

const SLOTS: usize = 8;

impl TopPorts {
    pub fn add(&mut self, port: u16, n: u32) {
        let used = usize::from(self.used);
        // Every slot compared, without a branch on which: a web log's
        // statuses come in no order a branch predictor could learn (perf:
        // the loop's exits were most of this function's time).
        let mut at = SLOTS;
        for j in (0..SLOTS).rev() {
            at = if (self.slots[j].0 == port) & (j < used) {
                j
            } else {
                at
            };
        }
        if let Some(s) = self.slots.get_mut(at) {
            s.1 = s.1.saturating_add(n);
        } else if used < SLOTS {
            self.slots[used] = (port, n, 0);
            self.used += 1;
        } else {
            // Take over the least counted slot; its count becomes our error.
            let min = self
                .slots
                .iter_mut()
                .min_by_key(|s| s.1)
                .expect("slots are full");
            *min = (port, min.1.saturating_add(n), min.1);
            self.estimated = true;
        }
    }

    /// Up to `n` ports with the hits they certainly have, most first (ties:
    /// lower port first).
    pub fn top(&self, n: usize) -> Vec<(u16, u64)> {
        let mut v: Vec<(u16, u64)> = self.slots[..usize::from(self.used)]
            .iter()
            .map(|s| (s.0, u64::from(s.1 - s.2)))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    pub(super) fn merge(&mut self, other: &TopPorts) {
        self.estimated |= other.estimated;
        for &(p, n, err) in &other.slots[..usize::from(other.used)] {
            self.add(p, n);
            if err > 0 {
                if let Some(s) = self.slots.iter_mut().find(|s| s.0 == p) {
                    s.2 = s.2.saturating_add(err).min(s.1);
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

#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// (key, place in `keys` and `list`); a power of two long, at most
    /// five eighths full; empty before the first source.
    slots: Vec<(u128, u32)>,
    keys: Vec<u128>,
    list: Vec<Source>,
    hasher: foldhash::fast::RandomState,
}

impl Sources {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The sources' keys (`count::addr` gives the address).
    pub fn keys(&self) -> impl Iterator<Item = &u128> {
        self.keys.iter()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u128, &Source)> {
        self.keys.iter().zip(&self.list)
    }

    pub fn into_pairs(self) -> impl Iterator<Item = (u128, Source)> {
        self.keys.into_iter().zip(self.list)
    }

    pub fn hash(&self, k: u128) -> u64 {
        self.hasher.hash_one(k)
    }

    pub fn get(&self, k: &u128) -> Option<&Source> {
        let h = self.hash(*k);
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = h as usize & mask;
        loop {
            let (key, i) = self.slots[at];
            if i == EMPTY {
                return None;
            }
            if key == *k {
                return Some(&self.list[i as usize]);
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
        let p: *const u8 = (&raw const self.list[i as usize]).cast();
        [p, p.wrapping_add(std::mem::size_of::<Source>() - 1)]
    }

    pub fn at_mut(&mut self, i: u32) -> &mut Source {
        &mut self.list[i as usize]
    }

    /// The place of key `k` (of hash `h`), a new source from `new` if there
    /// is none yet.
    #[inline]
    pub fn place(&mut self, k: u128, h: u64, new: impl FnOnce() -> Source) -> u32 {
        if (self.list.len() + 1) * 8 > self.slots.len() * 5 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        loop {
            let (key, i) = self.slots[at];
            if i == EMPTY {
                let i = self.list.len() as u32;
                self.slots[at] = (k, i);
                self.keys.push(k);
                self.list.push(new());
                return i;
            }
            if key == k {
                return i;
            }
            at = (at + 1) & mask;
        }
    }

    /// The source of key `k`, made by `new` if there is none yet.
    pub fn get_or_insert_with(&mut self, k: u128, new: impl FnOnce() -> Source) -> &mut Source {
        let i = self.place(k, self.hash(k), new);
        self.at_mut(i)
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(16);
        self.slots = vec![(0, EMPTY); n];
        let mask = n - 1;
        for (i, &k) in self.keys.iter().enumerate() {
            let mut at = self.hasher.hash_one(k) as usize & mask;
            while self.slots[at].1 != EMPTY {
                at = (at + 1) & mask;
            }
            self.slots[at] = (k, i as u32);
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
    }
}
