//! The static Redis 7.0 command table and slotgate's routing families.
//!
//! In the path of a command (DESIGN.md §1) this crate sits between the request decoder
//! and the session: the session calls [`lookup`] on the decoded arguments, checks
//! [`Command::arity_ok`] and ACL categories, asks [`Command::key_indices`] where the keys
//! are, and dispatches on [`Command::family`].
//!
//! The table (`src/table_data.rs`) is generated from a real redis-server 7.0.15 by
//! `gen/gen_table.py`; families come from `gen/families.tsv`. See the crate README.
//!
//! ```
//! use slotgate_commands::{lookup, Family, KeyIndices, SplitKind};
//!
//! let args: &[&[u8]] = &[b"MSET", b"a", b"1", b"b", b"2"];
//! let cmd = lookup(args).unwrap();
//! assert_eq!(cmd.family, Family::Split(SplitKind::Mset));
//! let mut keys = KeyIndices::new();
//! cmd.key_indices(args, &mut keys).unwrap();
//! assert_eq!(keys.as_slice(), &[1, 3]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod error;
mod family;
mod keys;
mod lookup;
#[rustfmt::skip]
mod table_data;

pub use command::{flag, key_flag, BeginSearch, Category, Command, FindKeys, KeySpec};
pub use error::KeyError;
pub use family::{Family, MergeKind, SplitKind};
pub use keys::KeyIndices;
pub use lookup::{all, by_index, is_blocking_call, lookup, lookup_name, LookupCache};
pub use table_data::COMMAND_COUNT;

/// Read access to a command line's arguments without copying them.
///
/// Implemented for every slice of byte-like values (`[&[u8]]`, `[Vec<u8>]`, `[Bytes]`,
/// `[&str]`, ...), arrays of them and `Vec`s of them. Index 0 is the command name.
pub trait ArgSource {
    /// Number of arguments, the command name included.
    fn argc(&self) -> usize;
    /// Argument `i`.
    ///
    /// # Panics
    /// When `i >= self.argc()`.
    fn arg(&self, i: usize) -> &[u8];
}

impl<T: AsRef<[u8]>> ArgSource for [T] {
    #[inline]
    fn argc(&self) -> usize {
        self.len()
    }

    #[inline]
    fn arg(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

impl<T: AsRef<[u8]>, const N: usize> ArgSource for [T; N] {
    #[inline]
    fn argc(&self) -> usize {
        N
    }

    #[inline]
    fn arg(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

impl<T: AsRef<[u8]>> ArgSource for Vec<T> {
    #[inline]
    fn argc(&self) -> usize {
        self.len()
    }

    #[inline]
    fn arg(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

#[doc(hidden)]
pub mod fuzzing {
    //! Entry point for the `classify` fuzz target in `fuzz/`.

    /// Treat `data` as a command line whose arguments are separated by NUL bytes and run every
    /// classification step on it; must never panic, and key indices must be in range.
    pub fn classify(data: &[u8]) {
        let args: Vec<&[u8]> = data.split(|&b| b == 0).collect();
        let Some(cmd) = crate::lookup(&args[..]) else {
            return;
        };
        let _ = cmd.arity_ok(args.len());
        let _ = crate::is_blocking_call(cmd, &args[..]);
        let mut keys = crate::KeyIndices::new();
        for routing in [false, true] {
            keys.clear();
            let result = if routing {
                cmd.routing_indices(&args[..], &mut keys)
            } else {
                cmd.key_indices(&args[..], &mut keys)
            };
            if result.is_ok() {
                for i in keys.iter() {
                    assert!(
                        (i as usize) < args.len(),
                        "key index {i} out of range for {}",
                        cmd.name
                    );
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn classify_survives_odd_lines() {
            for line in [
                &b""[..],
                b"\0",
                b"GET",
                b"get\0k",
                b"EVAL\0s\0-5\0a",
                b"EVAL\0s\x0099999999999999999999\0a",
                b"XREAD\0STREAMS",
                b"XREAD\0BLOCK\x000\0STREAMS\0a\0b\0c",
                b"MIGRATE\0h\0p\0\0\x000\x001\0KEYS\0a\0b",
                b"ZUNIONSTORE\0d\x003\0a",
                b"client\0setname",
                b"OBJECT\0encoding",
            ] {
                super::classify(line);
            }
        }
    }
}
