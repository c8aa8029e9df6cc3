//! A fixed-size set of offsets with a rotating cursor: the in-use map of one range.

/// The offsets `0..size` in use, one bit each.
///
/// Dynamic picks ([`take_next`](Bitmap::take_next)) search from just after the last
/// pick, wrapping around, so an offset that was just released is the last to be
/// handed out again (stale DNS answers and conntrack entries for a deleted Service
/// then rarely reach a new one). A pick costs a scan of at most `size / 64` words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
    size: u32,
    used: u32,
    cursor: u32,
}

impl Bitmap {
    /// An empty set of `size` offsets.
    pub(crate) fn new(size: u32) -> Self {
        Bitmap {
            words: vec![0; size.div_ceil(64) as usize],
            size,
            used: 0,
            cursor: 0,
        }
    }

    /// How many offsets are in use.
    pub(crate) fn used(&self) -> u32 {
        self.used
    }

    /// Whether `offset` is in use.
    pub(crate) fn contains(&self, offset: u32) -> bool {
        offset < self.size && self.words[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    /// Marks `offset` used; `false` when it already was (or is out of range).
    pub(crate) fn insert(&mut self, offset: u32) -> bool {
        if offset >= self.size || self.contains(offset) {
            return false;
        }
        self.words[(offset / 64) as usize] |= 1 << (offset % 64);
        self.used += 1;
        true
    }

    /// Marks `offset` free; `false` when it already was.
    pub(crate) fn remove(&mut self, offset: u32) -> bool {
        if !self.contains(offset) {
            return false;
        }
        self.words[(offset / 64) as usize] &= !(1 << (offset % 64));
        self.used -= 1;
        true
    }

    /// Takes the first free offset in `floor..size` at or after the cursor, wrapping
    /// around to `floor`; `None` when all of them are used.
    pub(crate) fn take_next(&mut self, floor: u32) -> Option<u32> {
        if floor >= self.size {
            return None;
        }
        let start = self.cursor.clamp(floor, self.size - 1);
        let found = self
            .first_free(start, self.size)
            .or_else(|| self.first_free(floor, start))?;
        self.insert(found);
        self.cursor = found + 1;
        if self.cursor >= self.size {
            self.cursor = floor;
        }
        Some(found)
    }

    /// The first free offset in `from..to`, a word at a time.
    fn first_free(&self, from: u32, to: u32) -> Option<u32> {
        let mut offset = from;
        while offset < to {
            let word = self.words[(offset / 64) as usize];
            // Bits below `offset` in this word count as used.
            let taken = word | ((1u64 << (offset % 64)) - 1);
            if taken != u64::MAX {
                let free = (offset / 64) * 64 + (!taken).trailing_zeros();
                return (free < to).then_some(free);
            }
            offset = (offset / 64 + 1) * 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_remove_count_once() {
        let mut map = Bitmap::new(100);
        assert!(map.insert(5));
        assert!(!map.insert(5));
        assert!(!map.insert(100));
        assert!(map.contains(5));
        assert_eq!(map.used(), 1);
        assert!(map.remove(5));
        assert!(!map.remove(5));
        assert_eq!(map.used(), 0);
    }

    #[test]
    fn picks_rotate_past_the_last_pick_and_skip_the_floor() {
        let mut map = Bitmap::new(20);
        assert_eq!(map.take_next(4), Some(4));
        assert_eq!(map.take_next(4), Some(5));
        map.remove(4);
        // A released offset is not reused while later ones are free.
        assert_eq!(map.take_next(4), Some(6));
        map.insert(7);
        assert_eq!(map.take_next(4), Some(8));
    }

    #[test]
    fn picks_wrap_around_and_end_when_full() {
        let mut map = Bitmap::new(130);
        let picked: Vec<u32> = std::iter::from_fn(|| map.take_next(16)).collect();
        assert_eq!(picked.len(), 114);
        assert_eq!(picked.first(), Some(&16));
        assert_eq!(picked.last(), Some(&129));
        assert!((0..16).all(|o| !map.contains(o)));
        map.remove(70);
        assert_eq!(map.take_next(16), Some(70));
        assert_eq!(map.take_next(16), None);
        assert_eq!(Bitmap::new(10).take_next(10), None);
    }

    #[test]
    fn a_full_word_is_skipped_whole() {
        let mut map = Bitmap::new(256);
        for offset in 0..200 {
            map.insert(offset);
        }
        assert_eq!(map.take_next(0), Some(200));
        assert_eq!(map.first_free(0, 200), None);
        assert_eq!(map.first_free(63, 256), Some(201));
    }
}
