//! Creator ids, interned: many videos share a creator, so a video keeps a 4-byte handle
//! instead of its own copy of the id. Reference-counted, so a creator whose last video is
//! forgotten is forgotten too.

use compact_str::CompactString;
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::hash::key_hash;

/// Interned creator ids with reference counts.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct CreatorTable {
    ids: Vec<CompactString>,
    refs: Vec<u32>,
    free: Vec<u32>,
    #[serde(skip)]
    index: HashTable<u32>,
    /// Heap bytes of the ids too long to be inline, kept as ids come and go so the memory
    /// gauge does not walk every id at each tick.
    #[serde(skip)]
    heap: usize,
}

/// Heap bytes of one id (0 for the inline ones).
fn id_heap_bytes(id: &CompactString) -> usize {
    if id.is_heap_allocated() {
        id.capacity()
    } else {
        0
    }
}

impl CreatorTable {
    /// The handle of `creator_id`, adding a reference (and the id, if new).
    pub(crate) fn acquire(&mut self, creator_id: &str) -> u32 {
        let hash = key_hash(creator_id);
        let ids = &self.ids;
        let refs = &self.refs;
        if let Some(&h) = self.index.find(hash, |&h| {
            refs[h as usize] > 0 && ids[h as usize] == creator_id
        }) {
            self.refs[h as usize] += 1;
            return h;
        }
        let id = CompactString::new(creator_id);
        self.heap += id_heap_bytes(&id);
        let h = match self.free.pop() {
            Some(h) => {
                self.ids[h as usize] = id;
                self.refs[h as usize] = 1;
                h
            }
            None => {
                self.ids.push(id);
                self.refs.push(1);
                (self.ids.len() - 1) as u32
            }
        };
        let ids = &self.ids;
        self.index
            .insert_unique(hash, h, |&x| key_hash(&ids[x as usize]));
        h
    }

    /// Drops one reference; the id is forgotten with its last reference.
    pub(crate) fn release(&mut self, h: u32) {
        let Some(r) = self.refs.get_mut(h as usize) else {
            return;
        };
        *r = r.saturating_sub(1);
        if *r == 0 {
            let hash = key_hash(&self.ids[h as usize]);
            if let Ok(e) = self.index.find_entry(hash, |&x| x == h) {
                e.remove();
            }
            let gone = std::mem::take(&mut self.ids[h as usize]);
            self.heap = self.heap.saturating_sub(id_heap_bytes(&gone));
            self.free.push(h);
        }
    }

    /// The id behind a handle ("" for a stale handle, which cannot happen by construction).
    pub(crate) fn get(&self, h: u32) -> &str {
        self.ids.get(h as usize).map_or("", |s| s.as_str())
    }

    /// Rebuilds the look-up index after deserializing.
    pub(crate) fn rebuild_index(&mut self) {
        self.heap = self.ids.iter().map(id_heap_bytes).sum();
        self.index.clear();
        for (h, id) in self.ids.iter().enumerate() {
            if self.refs[h] > 0 {
                let ids = &self.ids;
                self.index
                    .insert_unique(key_hash(id), h as u32, |&x| key_hash(&ids[x as usize]));
            }
        }
    }

    /// Whether the tables agree in length (a check on restored snapshots).
    pub(crate) fn is_consistent(&self) -> bool {
        self.ids.len() == self.refs.len()
            && self.free.iter().all(|&h| (h as usize) < self.ids.len())
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        debug_assert_eq!(
            self.heap,
            self.ids.iter().map(id_heap_bytes).sum::<usize>(),
            "the creator ids' running heap tally"
        );
        self.ids.capacity() * std::mem::size_of::<CompactString>()
            + (self.refs.capacity() + self.free.capacity()) * 4
            + self.index.capacity() * 5
            + self.heap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_ids_are_stored_once_and_released_with_the_last_reference() {
        let mut t = CreatorTable::default();
        let a = t.acquire("alice");
        let b = t.acquire("bob");
        assert_eq!(t.acquire("alice"), a);
        assert_eq!(t.get(a), "alice");
        t.release(a);
        assert_eq!(t.get(a), "alice");
        t.release(a);
        let c = t.acquire("carol");
        assert_eq!(c, a, "the freed handle is reused");
        assert_eq!((t.get(b), t.get(c)), ("bob", "carol"));
    }

    #[test]
    fn the_heap_of_long_ids_is_tallied_as_they_come_and_go() {
        let mut t = CreatorTable::default();
        let long = "a-creator-id-longer-than-the-inline-bytes";
        let h = t.acquire(long);
        t.acquire(long);
        t.acquire("short");
        assert!(t.heap >= long.len(), "{}", t.heap);
        let held = t.memory_bytes();
        t.release(h);
        assert_eq!(t.memory_bytes(), held, "one reference is left");
        t.release(h);
        assert_eq!(t.heap, 0);
        t.acquire(long);
        t.rebuild_index();
        assert!(t.heap >= long.len());
    }
}
