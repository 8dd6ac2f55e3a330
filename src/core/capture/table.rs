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
    /// It grows as sources come instead of being sized for `cap` at once:
    /// a spoofed flood leaves a few hundred tracked, and a map sized for
    /// 100 000 spread them over 4 MiB, each insert first-touching a huge
    /// page (perf: 6 % of capture's CPU zeroing pages in a 5 s flood;
    /// replay 10 % slower). Growing rehashes at each doubling, a few ms at
    /// most near the cap, only when that many real sources are tracked.
    map: HashMap<u128, u32, foldhash::fast::FixedState>,
    slots: Vec<Slot<V>>,
    lists: [List; 2],
    cap: usize,
    evicted: u64,
    /// One bit per hash of the keys in the map (and of some evicted ones):
    /// a clear bit says "not tracked" without touching the map.
    filter: Vec<u64>,
    /// How many of its bits are set.
    marked: usize,
    /// The slot the last lookup found: a flood from one source asks for
    /// the same key every frame, and one compare answers it (perf: the map
    /// and the LRU moves were a quarter of such a flood). Slots are only
    /// ever overwritten with their new key, so a slot whose key matches is
    /// that key's entry.
    last: std::cell::Cell<u32>,
}

/// 2 KB of filter, 32 cache lines: the few hundred sources a spoofed flood
/// leaves tracked set 1-4 % of it. A table holding thousands sets most bits
/// and then asks the map as before.
const FILTER_BITS: usize = 1 << 14;

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
            map: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(random_seed())),
            slots: Vec::new(),
            lists: [empty, empty],
            cap,
            evicted: 0,
            filter: vec![0; FILTER_BITS / 64],
            marked: 0,
            last: std::cell::Cell::new(NIL),
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
        self.lookup(key).map(|i| &self.slots[i as usize].val)
    }

    /// The entry for `key`, if tracked, without making it more recent.
    pub fn get_mut(&mut self, key: u128) -> Option<&mut V> {
        let i = self.lookup(key)?;
        Some(&mut self.slots[i as usize].val)
    }

    /// The map's answer, asked only when the filter lets it: a forged
    /// source is then one bit test in L1 instead of a probe of the map's
    /// control bytes (perf: 7 % of a spoofed-flood replay).
    fn lookup(&self, key: u128) -> Option<u32> {
        self.lookup_hashed(key, self.hash(key))
    }

    /// `lookup` with the key's hash (`hash`) already made.
    fn lookup_hashed(&self, key: u128, hash: u64) -> Option<u32> {
        let last = self.last.get();
        if self.slots.get(last as usize).is_some_and(|s| s.key == key) {
            return Some(last);
        }
        let (w, b) = Self::bit_of(hash);
        if self.filter[w] & b == 0 {
            return None;
        }
        let i = self.map.get(&key).copied()?;
        self.last.set(i);
        Some(i)
    }

    /// Where `key`'s filter word is, for the caller to prefetch (see
    /// `Sightings::bucket_addr_hashed`): between laps of the ring the core runs
    /// the flood's sender and the kernel, and even this filter goes cold.
    pub fn filter_addr(&self, hash: u64) -> *const u8 {
        std::ptr::from_ref(&self.filter[Self::bit_of(hash).0]).cast()
    }

    /// The key's hash, made with the table's seeded hasher: the filter takes
    /// its bit from it, and a `Sightings` made with `hasher()` its bucket
    /// and tag, so one hash serves both (four a forged frame were 4-5 %).
    pub fn hash(&self, key: u128) -> u64 {
        use std::hash::BuildHasher;
        self.map.hasher().hash_one(key)
    }

    /// The table's hasher, for a `Sightings` to share.
    pub fn hasher(&self) -> foldhash::fast::FixedState {
        self.map.hasher().clone()
    }

    fn bit(&self, key: u128) -> (usize, u64) {
        Self::bit_of(self.hash(key))
    }

    fn bit_of(hash: u64) -> (usize, u64) {
        // The map takes its bucket from the low bits and its tag from the
        // top 7; the filter uses bits in between.
        let h = (hash >> 24) as usize & (FILTER_BITS - 1);
        (h / 64, 1 << (h % 64))
    }

    /// Set `key`'s bit. Evicted keys leave theirs set (another key may share
    /// it); once stale bits outnumber the entries the filter is made again
    /// from the map, which is at least a thousand insertions apart.
    fn mark(&mut self, key: u128) {
        let (w, b) = self.bit(key);
        if self.filter[w] & b != 0 {
            return;
        }
        self.filter[w] |= b;
        self.marked += 1;
        if self.marked > 2 * self.map.len() + 1024 {
            self.filter.iter_mut().for_each(|w| *w = 0);
            self.marked = 0;
            let keys: Vec<u128> = self.map.keys().copied().collect();
            for k in keys {
                let (w, b) = self.bit(k);
                self.marked += usize::from(self.filter[w] & b == 0);
                self.filter[w] |= b;
            }
        }
    }

    /// Where `key`'s entry is, if tracked (for `touch_at`).
    pub fn find(&self, key: u128) -> Option<u32> {
        self.lookup(key)
    }

    /// `find` with the key's `hash` already made.
    pub fn find_hashed(&self, key: u128, hash: u64) -> Option<u32> {
        self.lookup_hashed(key, hash)
    }

    /// The entry at `i` (from `find`), most recently seen now.
    pub fn touch_at(&mut self, i: u32) -> &mut V {
        self.make_recent(i);
        &mut self.slots[i as usize].val
    }

    /// Make entry `i` the most recent of its segment (already so for a
    /// source that sends frame after frame).
    fn make_recent(&mut self, i: u32) {
        let seg = usize::from(self.slots[i as usize].seg);
        if self.lists[seg].head != i {
            self.unlink(i);
            self.push_front(seg, i);
        }
    }

    /// The entry for `key`, most recently seen now; a new one made by `make`
    /// (evicting the least recently seen if full). The bool says "new".
    pub fn touch(&mut self, key: u128, make: impl FnOnce() -> V) -> (&mut V, bool) {
        let (i, new, _) = self.touch_evicting(key, make);
        (&mut self.slots[i as usize].val, new)
    }

    /// `touch`, saying where the entry is and handing back the value of
    /// the entry evicted to make room, if one was.
    pub fn touch_evicting(
        &mut self,
        key: u128,
        make: impl FnOnce() -> V,
    ) -> (u32, bool, Option<V>) {
        if let Some(i) = self.lookup(key) {
            self.make_recent(i);
            return (i, false, None);
        }
        let slot = Slot {
            key,
            prev: NIL,
            next: NIL,
            seg: PROBATION as u8,
            val: make(),
        };
        let (i, old) = if self.map.len() >= self.cap {
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
            let old = std::mem::replace(&mut self.slots[victim as usize], slot);
            (victim, Some(old.val))
        } else {
            self.slots.push(slot);
            ((self.slots.len() - 1) as u32, None)
        };
        self.map.insert(key, i);
        self.mark(key);
        self.push_front(PROBATION, i);
        (i, true, old)
    }

    /// The entry at `i` (from `touch_evicting` or `find`), as it is.
    pub fn at_mut(&mut self, i: u32) -> &mut V {
        &mut self.slots[i as usize].val
    }

    /// Move `key` to the protected segment (it has shown scanner-like
    /// behaviour worth keeping through a flood).
    pub fn promote(&mut self, key: u128) {
        let Some(i) = self.lookup(key) else { return };
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
/// of WAYS, one cache line each, chosen by a seeded hash; a new key takes
/// the slot of its bucket stamped earliest, so a sighting lasts about as
/// long as the last `capacity` new keys, as in an LRU (one slot per hash
/// forgot a slow scanner's first probe at random under a flood: one of 20
/// in the bench). One line a bucket because every forged packet costs one
/// bucket read: 24-byte slots spread a bucket over two lines, and perf put
/// 40 % of a spoofed-flood replay on that read.
pub struct Sightings<T> {
    buckets: Vec<Bucket<T>>,
    hasher: foldhash::fast::FixedState,
}

const WAYS: usize = 4;

/// A tag is the high half of the key's hash with the low bit set; 0 marks
/// an empty slot.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket<T> {
    tags: [u32; WAYS],
    vals: [T; WAYS],
}

const _: () = assert!(std::mem::size_of::<Bucket<u64>>() == 64);

/// What a sighting holds: its stamp (when it was seen) decides which slot a
/// new key takes.
pub trait Stamped: Copy + Default {
    fn stamp(&self) -> u64;
}

impl Stamped for u64 {
    fn stamp(&self) -> u64 {
        *self
    }
}

impl<T: Stamped> Sightings<T> {
    /// About `capacity` slots (rounded up to a power of two), at most 2^20:
    /// a bigger array only keeps one-packet sources longer.
    pub fn new(capacity: usize) -> Sightings<T> {
        Self::seeded(capacity, random_seed())
    }

    fn seeded(capacity: usize, seed: u64) -> Sightings<T> {
        Self::with_hasher(capacity, foldhash::fast::FixedState::with_seed(seed))
    }

    /// Hashing with `hasher` (a table's: see `Table::hash`), so that the
    /// `_hashed` calls can take the hash the table made.
    pub fn with_hasher(capacity: usize, hasher: foldhash::fast::FixedState) -> Sightings<T> {
        let n = capacity.clamp(WAYS, 1 << 20).next_power_of_two() / WAYS;
        let empty = Bucket {
            tags: [0; WAYS],
            vals: [T::default(); WAYS],
        };
        Sightings {
            buckets: vec![empty; n],
            hasher,
        }
    }

    /// Where the bucket of a key of hash `h` (made with this hasher) is:
    /// the caller prefetches it a few frames before
    /// `take_or_record_hashed` asks for it, so that the cache miss overlaps
    /// the frames between. (A plain load instead stalled the frames after
    /// it: the replay took longer.)
    pub fn bucket_addr_hashed(&self, h: u64) -> *const u8 {
        std::ptr::from_ref(&self.buckets[h as usize & (self.buckets.len() - 1)]).cast()
    }

    /// `key`'s first sighting, taken out (the key now goes to its table);
    /// or, when there is none, `first()` recorded as one and None.
    pub fn take_or_record(
        &mut self,
        key: impl std::hash::Hash,
        first: impl FnOnce() -> T,
    ) -> Option<T> {
        use std::hash::BuildHasher;
        self.take_or_record_hashed(self.hasher.hash_one(key), first)
    }

    /// `take_or_record` for a key of this hash (made with this hasher).
    pub fn take_or_record_hashed(&mut self, h: u64, first: impl FnOnce() -> T) -> Option<T> {
        let tag = ((h >> 32) as u32) | 1;
        let n = self.buckets.len();
        let b = &mut self.buckets[h as usize & (n - 1)];
        if let Some(i) = b.tags.iter().position(|&t| t == tag) {
            b.tags[i] = 0;
            return Some(b.vals[i]);
        }
        // An empty slot (age 0), else the one stamped earliest. A plain
        // loop: min_by_key over (Option, index) pairs went through the stack
        // and stalled on the reload (perf: a fifth of this function).
        let age = |i: usize| {
            if b.tags[i] == 0 {
                0
            } else {
                b.vals[i].stamp().saturating_add(1)
            }
        };
        let mut victim = 0;
        let mut oldest = age(0);
        for i in 1..WAYS {
            let a = age(i);
            if a < oldest {
                victim = i;
                oldest = a;
            }
        }
        b.tags[victim] = tag;
        b.vals[victim] = first();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sighting_outlives_fewer_newer_keys_than_its_capacity() {
        // A fixed seed: which bucket each key lands in is then fixed too.
        // Values are stamps: each key is seen later than the one before.
        let mut s: Sightings<u64> = Sightings::seeded(1024, 1);
        assert_eq!(s.take_or_record(7u128, || 1), None);
        // 300 other keys later (under a third of the capacity) it is there,
        // and taking it leaves nothing behind.
        for k in 1000..1300u128 {
            assert_eq!(s.take_or_record(k, || k as u64), None);
        }
        assert_eq!(s.take_or_record(7u128, || 2000), Some(1));
        assert_eq!(s.take_or_record(7u128, || 2001), None);
        // Far more keys than slots push it out.
        for k in 3000..13_000u128 {
            s.take_or_record(k, || k as u64);
        }
        assert_eq!(s.take_or_record(7u128, || 20_000), None);
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
    fn the_filter_never_hides_a_tracked_key_through_rebuilds() {
        let mut t: Table<u32> = Table::new(50);
        let mut rebuilt = 0;
        for k in 0..100_000u128 {
            let before = t.marked;
            *t.touch(k, || 0).0 = k as u32;
            rebuilt += usize::from(t.marked < before);
            // The newest 50 are tracked, and found.
            let lo = k.saturating_sub(49);
            assert_eq!(t.get(lo), Some(&(lo as u32)), "key {lo} after {k}");
        }
        assert!(rebuilt > 10, "the filter was made again {rebuilt} times");
        assert!(t.marked <= 2 * 50 + 1024);
        let found = (0..100_000u128).filter(|&k| t.get(k).is_some()).count();
        assert_eq!(found, 50);
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

    #[test]
    fn the_last_lookup_never_answers_for_an_evicted_key() {
        let mut t: Table<u32> = Table::new(2);
        t.touch(1, || 1);
        assert_eq!(t.get(1), Some(&1)); // remembered
        t.touch(2, || 2);
        t.touch(3, || 3); // evicts 1; its slot now holds 3
        assert_eq!(t.get(1), None);
        assert_eq!(t.get(3), Some(&3));
    }

    /// The table against a plain model of a segmented LRU (two lists,
    /// most recent first), over random touches, promotions and lookups
    /// of a few keys: the shortcuts (the last lookup, the head left in
    /// place) change no answer and no eviction.
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::VecDeque;

        #[derive(Default)]
        struct Model {
            lists: [VecDeque<u128>; 2],
        }

        impl Model {
            fn seg(&self, k: u128) -> Option<usize> {
                (0..2).find(|&s| self.lists[s].contains(&k))
            }
            fn take(&mut self, s: usize, k: u128) {
                self.lists[s].retain(|&x| x != k);
            }
            fn touch(&mut self, cap: usize, k: u128) -> bool {
                if let Some(s) = self.seg(k) {
                    self.take(s, k);
                    self.lists[s].push_front(k);
                    return false;
                }
                if self.lists[0].len() + self.lists[1].len() >= cap {
                    let s = if self.lists[0].is_empty() { 1 } else { 0 };
                    self.lists[s].pop_back();
                }
                self.lists[0].push_front(k);
                true
            }
            fn promote(&mut self, cap: usize, k: u128) {
                if self.seg(k) != Some(0) {
                    return;
                }
                if self.lists[1].len() >= cap / 2 {
                    let old = self.lists[1].pop_back().expect("non-empty");
                    self.lists[0].push_front(old);
                }
                self.take(0, k);
                self.lists[1].push_front(k);
            }
        }

        proptest! {
            #[test]
            fn behaves_as_the_model(cap in 2usize..7, ops in proptest::collection::vec((0u8..3, 0u128..10), 0..300)) {
                let mut t: Table<u128> = Table::new(cap);
                let mut m = Model::default();
                for (op, k) in ops {
                    match op {
                        0 => {
                            let (v, new) = t.touch(k, || k);
                            prop_assert_eq!(*v, k);
                            prop_assert_eq!(new, m.touch(cap, k));
                        }
                        1 => {
                            t.promote(k);
                            m.promote(cap, k);
                        }
                        _ => {
                            if let Some(i) = t.find(k) {
                                prop_assert_eq!(*t.touch_at(i), k);
                                prop_assert!(!m.touch(cap, k));
                            } else {
                                prop_assert!(m.seg(k).is_none());
                            }
                        }
                    }
                    for q in 0..10u128 {
                        prop_assert_eq!(t.get(q).is_some(), m.seg(q).is_some(), "key {}", q);
                    }
                    prop_assert_eq!(t.protected(), m.lists[1].len());
                }
            }
        }
    }
}
