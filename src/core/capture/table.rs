//! A bounded table of tracked sources with segmented-LRU eviction (pure).
//!
//! Why two segments: a flood of spoofed sources sends one packet from each
//! address. With a single LRU list that flood pushes out everyone, including
//! a real scanner that probes a port every few seconds. Here a new source
//! starts in the *probation* segment; once it has shown a second distinct
//! port it is promoted to the *protected* segment. When the table is full the
//! least recently seen probation entry goes first, so a one-packet flood only
//! churns probation and never evicts a source that is actually scanning. The
//! protected segment holds at most half the capacity; past that its least
//! recently seen entry falls back to probation.
//!
//! Entries live in one slab (`Vec`) linked by indices, so touching, promoting
//! and evicting are O(1) with no allocation after the slab is full.

use std::collections::HashMap;

const NIL: u32 = u32::MAX;
const PROBATION: usize = 0;
const PROTECTED: usize = 1;

#[derive(Clone, Copy, Default)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

struct Slot<V> {
    key: u128,
    prev: u32,
    next: u32,
    seg: u8,
    val: V,
}

pub struct Table<V> {
    /// Keyed by attacker-chosen addresses: the hasher is seeded at random
    /// per table, so nobody can aim a flood at one bucket (HashDoS). The seed
    /// is held in the hasher itself (foldhash's FixedState with a random
    /// seed hashes in fewer instructions than its RandomState).
    map: HashMap<u128, u32, foldhash::fast::FixedState>,
    slots: Vec<Slot<V>>,
    lists: [List; 2],
    cap: usize,
    evicted: u64,
}

/// A random number, from the standard library's own per-process random keys
/// (no clock, no system call of our own).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

impl<V> Table<V> {
    /// A table holding at most `cap` entries (at least 2).
    pub fn new(cap: usize) -> Table<V> {
        let cap = cap.max(2);
        let empty = List {
            head: NIL,
            tail: NIL,
            len: 0,
        };
        Table {
            map: HashMap::with_capacity_and_hasher(
                cap.min(1 << 20),
                foldhash::fast::FixedState::with_seed(random_seed()),
            ),
            slots: Vec::new(),
            lists: [empty, empty],
            cap,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many entries were evicted to make room, since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// How many entries are in the protected segment.
    pub fn protected(&self) -> usize {
        self.lists[PROTECTED].len
    }

    pub fn get(&self, key: u128) -> Option<&V> {
        self.map.get(&key).map(|&i| &self.slots[i as usize].val)
    }

    /// The entry for `key`, if tracked, without making it more recent.
    pub fn get_mut(&mut self, key: u128) -> Option<&mut V> {
        let i = *self.map.get(&key)?;
        Some(&mut self.slots[i as usize].val)
    }

    /// Where `key`'s entry is, if tracked (for `touch_at`).
    pub fn find(&self, key: u128) -> Option<u32> {
        self.map.get(&key).copied()
    }

    /// The entry at `i` (from `find`), most recently seen now.
    pub fn touch_at(&mut self, i: u32) -> &mut V {
        let seg = usize::from(self.slots[i as usize].seg);
        self.unlink(i);
        self.push_front(seg, i);
        &mut self.slots[i as usize].val
    }

    /// The entry for `key`, most recently seen now; a new one made by `make`
    /// (evicting the least recently seen if full). The bool says "new".
    pub fn touch(&mut self, key: u128, make: impl FnOnce() -> V) -> (&mut V, bool) {
        if let Some(&i) = self.map.get(&key) {
            let seg = usize::from(self.slots[i as usize].seg);
            self.unlink(i);
            self.push_front(seg, i);
            return (&mut self.slots[i as usize].val, false);
        }
        let slot = Slot {
            key,
            prev: NIL,
            next: NIL,
            seg: PROBATION as u8,
            val: make(),
        };
        let i = if self.map.len() >= self.cap {
            // Full: the new entry takes the slot of the least recently seen
            // probation entry (protected only when probation is empty).
            let seg = if self.lists[PROBATION].len > 0 {
                PROBATION
            } else {
                PROTECTED
            };
            let victim = self.lists[seg].tail;
            self.unlink(victim);
            self.map.remove(&self.slots[victim as usize].key);
            self.evicted += 1;
            self.slots[victim as usize] = slot;
            victim
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        self.map.insert(key, i);
        self.push_front(PROBATION, i);
        (&mut self.slots[i as usize].val, true)
    }

    /// Move `key` to the protected segment (it has shown scanner-like
    /// behaviour worth keeping through a flood).
    pub fn promote(&mut self, key: u128) {
        let Some(&i) = self.map.get(&key) else { return };
        if usize::from(self.slots[i as usize].seg) == PROTECTED {
            return;
        }
        if self.lists[PROTECTED].len >= self.cap / 2 {
            let old = self.lists[PROTECTED].tail;
            self.unlink(old);
            self.push_front(PROBATION, old);
        }
        self.unlink(i);
        self.push_front(PROTECTED, i);
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, seg) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next, usize::from(s.seg))
        };
        if prev == NIL {
            self.lists[seg].head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[seg].tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        self.lists[seg].len -= 1;
    }

    fn push_front(&mut self, seg: usize, i: u32) {
        let head = self.lists[seg].head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = head;
            s.seg = seg as u8;
        }
        if head == NIL {
            self.lists[seg].tail = i;
        } else {
            self.slots[head as usize].prev = i;
        }
        self.lists[seg].head = i;
        self.lists[seg].len += 1;
    }
}

/// First sightings, held outside a table: a spoofed flood sends one packet
/// from each forged address, and making (and evicting) a table entry for
/// each cost several cache misses a packet. A key enters its table on its
/// second packet, carrying what its first left here. Slots come in buckets
/// of WAYS (one or two cache lines) chosen by a seeded hash; a new key takes
/// the oldest slot of its bucket, so a sighting lasts about as long as the
/// last `capacity` new keys, as in an LRU (one slot per hash forgot a slow
/// scanner's first probe at random under a flood: one of 20 in the bench).
pub struct Sightings<T> {
    /// (tag: high half of the hash, never 0; when written; the value)
    slots: Vec<(u32, u32, T)>,
    hasher: foldhash::fast::FixedState,
    clock: u32,
}

const WAYS: usize = 4;

impl<T: Copy + Default> Sightings<T> {
    /// About `capacity` slots (rounded up to a power of two), at most 2^20:
    /// a bigger array only keeps one-packet sources longer.
    pub fn new(capacity: usize) -> Sightings<T> {
        Self::seeded(capacity, random_seed())
    }

    fn seeded(capacity: usize, seed: u64) -> Sightings<T> {
        let n = capacity.clamp(WAYS, 1 << 20).next_power_of_two();
        Sightings {
            slots: vec![(0, 0, T::default()); n],
            hasher: foldhash::fast::FixedState::with_seed(seed),
            clock: 0,
        }
    }

    /// `key`'s first sighting, taken out (the key now goes to its table);
    /// or, when there is none, `first()` recorded as one and None.
    pub fn take_or_record(
        &mut self,
        key: impl std::hash::Hash,
        first: impl FnOnce() -> T,
    ) -> Option<T> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(key);
        let tag = ((h >> 32) as u32) | 1;
        let buckets = self.slots.len() / WAYS;
        let start = (h as usize & (buckets - 1)) * WAYS;
        let bucket = &mut self.slots[start..start + WAYS];
        if let Some(s) = bucket.iter_mut().find(|s| s.0 == tag) {
            s.0 = 0;
            return Some(s.2);
        }
        let now = self.clock;
        self.clock = self.clock.wrapping_add(1);
        // An empty slot, else the one written longest ago.
        let victim = bucket
            .iter_mut()
            .max_by_key(|s| {
                if s.0 == 0 {
                    u32::MAX
                } else {
                    now.wrapping_sub(s.1)
                }
            })
            .expect("WAYS slots");
        *victim = (tag, now, first());
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sighting_outlives_fewer_newer_keys_than_its_capacity() {
        // A fixed seed: which bucket each key lands in is then fixed too.
        let mut s: Sightings<u64> = Sightings::seeded(1024, 1);
        assert_eq!(s.take_or_record(7u128, || 70), None);
        // 300 other keys later (under a third of the capacity) it is there,
        // and taking it leaves nothing behind.
        for k in 1000..1300u128 {
            assert_eq!(s.take_or_record(k, || 0), None);
        }
        assert_eq!(s.take_or_record(7u128, || 71), Some(70));
        assert_eq!(s.take_or_record(7u128, || 72), None);
        // Far more keys than slots push it out.
        for k in 2000..12_000u128 {
            s.take_or_record(k, || 0);
        }
        assert_eq!(s.take_or_record(7u128, || 73), None);
    }

    /// A fixed seed let anyone who knows it aim spoofed sources at one
    /// bucket. Two tables hash the same key differently.
    #[test]
    fn the_hasher_is_seeded_at_random() {
        use std::hash::BuildHasher;
        let (a, b): (Table<u8>, Table<u8>) = (Table::new(4), Table::new(4));
        let differ = (0..8u128)
            .filter(|k| a.map.hasher().hash_one(k) != b.map.hasher().hash_one(k))
            .count();
        assert!(differ >= 7, "{differ} of 8 keys hash apart");
    }

    #[test]
    fn evicts_the_least_recently_seen() {
        let mut t: Table<u32> = Table::new(3);
        for k in 1..=3 {
            t.touch(k, || 0);
        }
        t.touch(1, || 0); // 2 is now the oldest
        let (_, new) = t.touch(4, || 0);
        assert!(new);
        assert!(t.get(2).is_none());
        assert!(t.get(1).is_some() && t.get(3).is_some() && t.get(4).is_some());
        assert_eq!((t.len(), t.evicted()), (3, 1));
    }

    #[test]
    fn a_one_packet_flood_never_evicts_a_promoted_entry() {
        let mut t: Table<u32> = Table::new(100);
        t.touch(7, || 0);
        t.promote(7);
        for k in 1000..200_000u128 {
            t.touch(k, || 0);
        }
        assert!(t.get(7).is_some());
        assert_eq!(t.len(), 100);
        assert_eq!(t.protected(), 1);
    }

    #[test]
    fn protected_is_capped_at_half_and_demotes_its_oldest() {
        let mut t: Table<u32> = Table::new(4);
        for k in 1..=3 {
            t.touch(k, || 0);
            t.promote(k);
        }
        assert_eq!(t.protected(), 2);
        // 1 was demoted to probation and goes first when room is needed.
        t.touch(10, || 0);
        t.touch(11, || 0);
        assert!(t.get(1).is_none());
        assert!(t.get(2).is_some() && t.get(3).is_some());
    }

    #[test]
    fn slot_reuse_by_eviction_keeps_the_lists_consistent() {
        let mut t: Table<u32> = Table::new(8);
        for k in 0..8 {
            *t.touch(k, || 0).0 = k as u32;
        }
        for k in [0, 2, 4, 6] {
            t.promote(k);
        }
        for k in 100..120 {
            t.touch(k, || 1);
        }
        assert_eq!(t.len(), 8);
        assert_eq!(t.lists[0].len + t.lists[1].len, 8);
        assert_eq!(t.slots.len(), 8);
        assert!([0, 2, 4, 6].iter().all(|&k| t.get(k) == Some(&(k as u32))));
    }
}
