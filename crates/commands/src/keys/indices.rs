//! [`KeyIndices`]: a small vector of argument indices that stays on the stack for the
//! common case (up to 8 keys) and spills to the heap beyond.

const INLINE: usize = 8;

/// Argument indices of keys. Holds up to 8 inline; more spill to a `Vec` whose capacity
/// is kept across [`KeyIndices::clear`], so a reused value stops allocating.
#[derive(Clone, Default)]
pub struct KeyIndices {
    inline: [u32; INLINE],
    inline_len: usize,
    /// Non-empty exactly when spilled; then it holds every index.
    heap: Vec<u32>,
}

// === impl KeyIndices ===

impl KeyIndices {
    /// An empty list; does not allocate.
    pub const fn new() -> Self {
        KeyIndices {
            inline: [0; INLINE],
            inline_len: 0,
            heap: Vec::new(),
        }
    }

    /// Removes every index, keeping any heap capacity.
    #[inline]
    pub fn clear(&mut self) {
        self.inline_len = 0;
        self.heap.clear();
    }

    /// Appends an index.
    #[inline]
    pub fn push(&mut self, index: u32) {
        if !self.heap.is_empty() {
            self.heap.push(index);
        } else if self.inline_len < INLINE {
            self.inline[self.inline_len] = index;
            self.inline_len += 1;
        } else {
            self.heap.reserve(INLINE * 2);
            self.heap.extend_from_slice(&self.inline);
            self.heap.push(index);
        }
    }

    /// Number of indices.
    #[inline]
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are no indices.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The indices, in the order pushed.
    #[inline]
    pub fn as_slice(&self) -> &[u32] {
        if self.heap.is_empty() {
            &self.inline[..self.inline_len]
        } else {
            &self.heap
        }
    }

    /// Iterates over the indices in the order pushed.
    #[inline]
    pub fn iter(&self) -> std::iter::Copied<std::slice::Iter<'_, u32>> {
        self.as_slice().iter().copied()
    }
}

impl std::fmt::Debug for KeyIndices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl PartialEq for KeyIndices {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for KeyIndices {}

impl<'a> IntoIterator for &'a KeyIndices {
    type Item = u32;
    type IntoIter = std::iter::Copied<std::slice::Iter<'a, u32>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
