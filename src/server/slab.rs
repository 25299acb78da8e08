//! A generational slab: the table every loop keeps its connections in.
//!
//! A loop that serves thousands of connections names each one by a small
//! number it can hand the kernel — an epoll event's data, an io_uring
//! entry's user data — and gets back with the news. Two things make that
//! number safe to use:
//!
//! - **Dense and reused**: a freed slot is taken again by the next
//!   insert, so the table stays as big as the most connections ever open
//!   at once, and the number fits in a few bits.
//! - **Generations**: the kernel may still hold a number after its
//!   connection closed (an event already queued, a completion in flight).
//!   Each slot counts how many times it was freed; a [`Key`] carries the
//!   count from when it was made, and a lookup with an old count finds
//!   nothing instead of the connection that reused the slot.
//!
//! (The `slab` crate does the first; tokio's and mio's users add the
//! second by hand. It is twenty lines, and every loop here needs both.)

/// Names an entry: its slot and the slot's generation when it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// The slot number: small, dense, reused after a removal (for tables
    /// a model keeps beside the slab, indexed the same way).
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// Both halves in one integer, for the kernel to carry (an epoll
    /// event's data): the generation in the high 32 bits.
    pub fn to_u64(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.index)
    }

    /// The key [`to_u64`](Self::to_u64) packed.
    pub fn from_u64(packed: u64) -> Key {
        Key {
            index: packed as u32,
            generation: (packed >> 32) as u32,
        }
    }
}

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Values of type `T`, each named by a [`Key`].
#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab::new()
    }
}

impl<T> Slab<T> {
    /// An empty slab.
    pub const fn new() -> Slab<T> {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Stores `value` in a free slot (or a new one) and names it.
    pub fn insert(&mut self, value: T) -> Key {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation: 0,
                value: None,
            });
            u32::try_from(self.slots.len() - 1).expect("more than 4 billion slots")
        });
        let slot = &mut self.slots[index as usize];
        slot.value = Some(value);
        self.len += 1;
        Key {
            index,
            generation: slot.generation,
        }
    }

    /// The value `key` names, unless it was removed since (a stale key).
    pub fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index())?;
        (slot.generation == key.generation)
            .then_some(slot.value.as_ref())
            .flatten()
    }

    /// The value `key` names, mutably, unless it was removed since.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index())?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_mut()
    }

    /// Takes the value out; the slot's generation moves on, so every key
    /// made for it is stale from now on.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index())?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every stored value with its key, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let key = Key {
                index: index as u32,
                generation: slot.generation,
            };
            Some((key, slot.value.as_ref()?))
        })
    }

    /// Every stored value with its key, mutably, in slot order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> + '_ {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let key = Key {
                    index: index as u32,
                    generation: slot.generation,
                };
                Some((key, slot.value.as_mut()?))
            })
    }

    /// The keys of every stored value (collected: the caller may then
    /// change the slab while it walks them).
    pub fn keys(&self) -> Vec<Key> {
        self.iter().map(|(key, _)| key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_finds_nothing_in_a_reused_slot() {
        let mut slab = Slab::new();
        let first = slab.insert("first");
        assert_eq!(slab.remove(first), Some("first"));
        let second = slab.insert("second");
        assert_eq!(first.index(), second.index(), "the slot is reused");
        assert_eq!(slab.get(first), None);
        assert_eq!(slab.get_mut(first), None);
        assert_eq!(slab.remove(first), None);
        assert_eq!(slab.get(second), Some(&"second"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn keys_survive_a_trip_through_an_integer() {
        let mut slab = Slab::new();
        let a = slab.insert(1);
        slab.remove(a);
        let b = slab.insert(2);
        assert_eq!(Key::from_u64(b.to_u64()), b);
        assert_ne!(Key::from_u64(a.to_u64()), b);
    }

    #[test]
    fn iteration_sees_only_live_values() {
        let mut slab = Slab::new();
        let keys: Vec<Key> = (0..5).map(|i| slab.insert(i)).collect();
        slab.remove(keys[1]);
        slab.remove(keys[3]);
        let live: Vec<i32> = slab.iter().map(|(_, v)| *v).collect();
        assert_eq!(live, [0, 2, 4]);
        for (key, value) in slab.iter_mut() {
            *value += key.index() as i32;
        }
        let live: Vec<i32> = slab.iter().map(|(_, v)| *v).collect();
        assert_eq!(live, [0, 4, 8]);
        assert_eq!(slab.keys().len(), 3);
    }
}
