//! The static Redis 7.0 command table and slotgate's routing families.
//!
//! In the path of a command (docs/architecture.md) this crate sits between the request decoder
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
pub use keys::{
    keyword_eq, visit_finder_keys, xread_options, KeyIndices, KeySpan, KeySpans, XreadOptions,
    MAX_SPECS,
};
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

    /// Treat `data` as command lines separated by `\n`, each with its arguments separated by
    /// NUL bytes, and run every classification step on each line; must never panic, and key
    /// indices must be in range. The dispatch shortcuts must agree with what they shortcut:
    /// one [`crate::LookupCache`] over all the lines finds what [`crate::lookup`] finds, and
    /// [`Command::sole_routing_key`](crate::Command::sole_routing_key) gives a key only when
    /// `routing_indices` gives exactly that one, at index 1.
    pub fn classify(data: &[u8]) {
        let mut cache = crate::LookupCache::default();
        for line in data.split(|&b| b == b'\n') {
            classify_line(line, &mut cache);
        }
    }

    fn classify_line(line: &[u8], cache: &mut crate::LookupCache) {
        let args: Vec<&[u8]> = line.split(|&b| b == 0).collect();
        let found = crate::lookup(&args[..]);
        let cached = cache.lookup(&args[..]);
        assert!(
            match (found, cached) {
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                (None, None) => true,
                _ => false,
            },
            "the lookup cache found {:?}, lookup {:?}, for {args:?}",
            cached.map(|c| c.name),
            found.map(|c| c.name),
        );
        let Some(cmd) = found else {
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
        check_sole_routing_key(cmd, &args);
    }

    /// When [`Command::sole_routing_key`](crate::Command::sole_routing_key) gives a key for
    /// `args`, assert that it is argument 1 and that `routing_indices` gives exactly `[1]`.
    /// Whether the shortcut gave one.
    pub fn check_sole_routing_key(cmd: &crate::Command, args: &[&[u8]]) -> bool {
        let Some(key) = cmd.sole_routing_key(args) else {
            return false;
        };
        assert!(std::ptr::eq(key, args[1]), "{}: not argument 1", cmd.name);
        let mut keys = crate::KeyIndices::new();
        assert_eq!(
            cmd.routing_indices(args, &mut keys),
            Ok(()),
            "{}: the shortcut routes a line routing_indices rejects",
            cmd.name
        );
        assert_eq!(keys.as_slice(), [1], "{}: {args:?}", cmd.name);
        true
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
                b"get\0k\nGET\0k\nGETEX\0k\nget\nconfig\0get\0x\nget\0k",
                b"set\0k\0v\nse\0k\nsetx\0k\nSET\0k\0v\0GET",
            ] {
                super::classify(line);
            }
        }
    }
}
