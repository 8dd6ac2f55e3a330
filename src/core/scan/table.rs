//! One table of sources (pure): an open-addressing index from an
//! address's key to a place in a list of keys and a list of sources.
//!
//! A whole-file scan of an access log takes one lookup a line, at a random
//! place of a table as big as the clients are many; perf showed the line's
//! two cache misses (the map's bucket, then the source) as a third to a half
//! of the scan, and the kernel zeroing the pages of a map of whole sources,
//! rehashed as it grew, as another sixth. So the index holds only (key,
//! place), 24 bytes a source, and is the only part rehashed; the lists grow
//! by blocks that never move (a scan's source is 96 bytes); and the tally asks for
//! both lines some lines ahead of using them (`Tally::feed_buffer_warm`):
//! [`Table::slot_addr`] and [`Table::source_addr`] say where they are.
//!
//! The keys are addresses the attacker chooses (an IPv6 /64 is anyone's):
//! the hash is foldhash's, seeded at random per process, so no one can aim
//! many addresses at one run of slots.

use std::hash::BuildHasher;

/// Marks an empty slot (a place no list reaches: more sources than u32
/// counts could not be held in memory anyway).
const EMPTY: u32 = u32::MAX;

/// The sources (and their keys) in blocks that never move once full:
/// growing adds a block instead of copying the whole list into a twice
/// bigger one (each doubling copied, and had the kernel zero, the table's
/// biggest part again). The first block grows as a vector does, so a small
/// tally stays small.
#[derive(Clone, Debug)]
pub(super) struct List<T> {
    blocks: Vec<Vec<T>>,
    pub(super) len: usize,
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
pub(super) const BLOCK: usize = 1 << 16;

impl<T> List<T> {
    pub(super) fn push(&mut self, s: T) {
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
    pub(super) fn get(&self, i: u32) -> &T {
        let i = i as usize;
        &self.blocks[i / BLOCK][i % BLOCK]
    }

    #[inline]
    pub(super) fn get_mut(&mut self, i: u32) -> &mut T {
        let i = i as usize;
        &mut self.blocks[i / BLOCK][i % BLOCK]
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.blocks.iter().flatten()
    }

    pub(super) fn into_all(self) -> impl Iterator<Item = T> {
        self.blocks.into_iter().flatten()
    }
}

/// One slot of the index: a key, split so that the slot is 24 bytes and
/// not the 32 a `u128`'s alignment makes it (the index of a million
/// sources is what the kernel zeroes most), and its place.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
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

/// One table of sources: an index, and the keys and sources in the order
/// they came.
#[derive(Clone, Debug)]
pub(super) struct Table<V> {
    /// (key, place in `keys` and `list`); a power of two long, at most
    /// five eighths full; empty before the first source.
    pub(super) slots: Vec<Slot>,
    pub(super) keys: List<u128>,
    pub(super) list: List<V>,
    hasher: foldhash::fast::RandomState,
}

// Not derived: a derive would ask V for Default.
impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            keys: List::default(),
            list: List::default(),
            hasher: Default::default(),
        }
    }
}

impl<V> Table<V> {
    pub(super) fn iter(&self) -> impl Iterator<Item = (&u128, &V)> {
        self.keys.iter().zip(self.list.iter())
    }

    pub(super) fn hash(&self, k: u128) -> u64 {
        self.hasher.hash_one(k)
    }

    /// The place of key `k`, of hash `h` (this table's).
    #[inline]
    pub(super) fn find(&self, k: u128, h: u64) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = h as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot.place == EMPTY {
                return None;
            }
            if slot.holds(k) {
                return Some(slot.place);
            }
            at = (at + 1) & mask;
        }
    }

    pub(super) fn get(&self, k: &u128) -> Option<&V> {
        self.find(*k, self.hash(*k)).map(|i| self.list.get(i))
    }

    /// Where the slot a key of hash `h` is looked for first lies (to warm).
    pub(super) fn slot_addr(&self, h: u64) -> Option<*const u8> {
        let mask = self.slots.len().checked_sub(1)?;
        Some((&raw const self.slots[h as usize & mask]).cast())
    }

    /// Where source `i`'s fields lie: its first and last byte (to warm).
    pub(super) fn source_addr(&self, i: u32) -> [*const u8; 2] {
        let p: *const u8 = (&raw const *self.list.get(i)).cast();
        [p, p.wrapping_add(std::mem::size_of::<V>() - 1)]
    }

    pub(super) fn at_mut(&mut self, i: u32) -> &mut V {
        self.list.get_mut(i)
    }

    /// The place of key `k` (of hash `h`), a new source from `new` if there
    /// is none yet.
    #[inline]
    pub(super) fn place(&mut self, k: u128, h: u64, new: impl FnOnce() -> V) -> u32 {
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

    /// The place of key `k` if its first slot holds it (to warm its source;
    /// a key further on is found when it is looked up).
    #[inline]
    pub(super) fn first_place(&self, k: u128, h: u64) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let slot = self.slots[h as usize & mask];
        (slot.place != EMPTY && slot.holds(k)).then_some(slot.place)
    }

    /// Room in the index for `n` sources without growing again: the least
    /// power of two at least 16 that `n` fills at most five eighths (as
    /// doubling would reach, without the sizes between).
    pub(super) fn reserve(&mut self, n: usize) {
        self.reserve_warm(n, |_| {});
    }

    /// [`Self::reserve`], warming each key's new slot `AHEAD` keys before
    /// it is written (a rehash of a million keys is a cache miss each).
    pub(super) fn reserve_warm(&mut self, n: usize, warm: impl Fn(*const u8)) {
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
