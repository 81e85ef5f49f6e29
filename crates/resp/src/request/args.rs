//! Compact storage for argument ranges: up to [`INLINE_ARGS`] `(u32, u32)` pairs inline (no
//! allocation for the common short command), spilling to a `Vec` for longer commands or for
//! offsets beyond 4 GiB.

/// Arguments kept without allocating.
pub(crate) const INLINE_ARGS: usize = 6;

/// Most capacity reserved up front for a declared argument count; the rest grows as arguments
/// actually arrive, so a `*1000000` header alone does not allocate megabytes.
const MAX_PREALLOC: usize = 1024;

/// `(start, len)` ranges of a request's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ArgRanges {
    /// Up to [`INLINE_ARGS`] ranges that fit in `u32`.
    Inline {
        len: u8,
        items: [(u32, u32); INLINE_ARGS],
    },
    /// Any number of ranges.
    Spilled(Vec<(usize, usize)>),
}

impl Default for ArgRanges {
    fn default() -> Self {
        ArgRanges::Inline {
            len: 0,
            items: [(0, 0); INLINE_ARGS],
        }
    }
}

impl ArgRanges {
    /// Empty ranges ready for `expected` arguments.
    pub(crate) fn with_capacity(expected: usize) -> Self {
        if expected <= INLINE_ARGS {
            ArgRanges::default()
        } else {
            ArgRanges::Spilled(Vec::with_capacity(expected.min(MAX_PREALLOC)))
        }
    }

    /// Number of ranges.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            ArgRanges::Inline { len, .. } => usize::from(*len),
            ArgRanges::Spilled(v) => v.len(),
        }
    }

    /// Append a range.
    #[inline]
    pub(crate) fn push(&mut self, start: usize, len: usize) {
        match self {
            ArgRanges::Inline { len: n, items } => {
                let i = usize::from(*n);
                match (u32::try_from(start), u32::try_from(len)) {
                    (Ok(s), Ok(l)) if i < INLINE_ARGS => {
                        items[i] = (s, l);
                        *n += 1;
                    }
                    _ => {
                        let mut v = Vec::with_capacity(i * 2 + 1);
                        v.extend(items[..i].iter().map(|&(s, l)| (s as usize, l as usize)));
                        v.push((start, len));
                        *self = ArgRanges::Spilled(v);
                    }
                }
            }
            ArgRanges::Spilled(v) => v.push((start, len)),
        }
    }

    /// Range `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> (usize, usize) {
        match self {
            ArgRanges::Inline { len, items } => {
                assert!(i < usize::from(*len), "argument index {i} out of range");
                let (s, l) = items[i];
                (s as usize, l as usize)
            }
            ArgRanges::Spilled(v) => v[i],
        }
    }

    /// All ranges in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let empty_inline: &[(u32, u32)] = &[];
        let empty_spilled: &[(usize, usize)] = &[];
        let (inline, spilled) = match self {
            ArgRanges::Inline { len, items } => (&items[..usize::from(*len)], empty_spilled),
            ArgRanges::Spilled(v) => (empty_inline, &v[..]),
        };
        inline
            .iter()
            .map(|&(s, l)| (s as usize, l as usize))
            .chain(spilled.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::ArgRanges;

    #[test]
    fn spills_past_inline_capacity_and_large_offsets() {
        let mut r = ArgRanges::with_capacity(3);
        for i in 0..10 {
            r.push(i * 10, i);
            assert_eq!(r.len(), i + 1);
        }
        assert!(matches!(r, ArgRanges::Spilled(_)));
        assert_eq!(r.iter().collect::<Vec<_>>()[9], (90, 9));
        assert_eq!(r.get(4), (40, 4));

        let mut r = ArgRanges::default();
        r.push(1, 2);
        r.push(5_000_000_000, 3);
        assert!(matches!(r, ArgRanges::Spilled(_)));
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![(1, 2), (5_000_000_000, 3)]
        );
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn get_out_of_range_panics() {
        ArgRanges::default().get(0);
    }
}
