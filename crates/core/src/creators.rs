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
            self.ids[h as usize] = CompactString::default();
            self.free.push(h);
        }
    }

    /// The id behind a handle ("" for a stale handle, which cannot happen by construction).
    pub(crate) fn get(&self, h: u32) -> &str {
        self.ids.get(h as usize).map_or("", |s| s.as_str())
    }

    /// Rebuilds the look-up index after deserializing.
    pub(crate) fn rebuild_index(&mut self) {
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
        let heap: usize = self
            .ids
            .iter()
            .map(|s| {
                if s.is_heap_allocated() {
                    s.capacity()
                } else {
                    0
                }
            })
            .sum();
        self.ids.capacity() * std::mem::size_of::<CompactString>()
            + (self.refs.capacity() + self.free.capacity()) * 4
            + self.index.capacity() * 5
            + heap
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
}
