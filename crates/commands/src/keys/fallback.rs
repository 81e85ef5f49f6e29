//! Redis's hand-written key finders (`db.c` in redis 7.0), for the lines its key specs cannot
//! describe, with the key-spec flags each reports: SET (GET makes the key read too),
//! BITFIELD (read-only when every operation is GET), SORT and SORT_RO (`unknown` spec),
//! MIGRATE ... KEYS (`incomplete`), XREAD/XREADGROUP (the `STREAMS` search goes wrong),
//! GEORADIUS/GEORADIUSBYMEMBER (STORE), and the numkeys commands (`genericGetKeys`, which
//! reads the count with C's `atoi`).
//!
//! Routing uses them only where Redis would for `COMMAND GETKEYS` and the node would run
//! the line: SORT, SORT_RO, MIGRATE and XREAD/XREADGROUP ([`finder`]). For the numkeys
//! commands the routing walk reports [`super::KeyError::InvalidNumKeys`] on purpose (the
//! command itself then rejects `01` or `2x`); the ACL check uses every finder, as Redis's
//! ACL does.

use super::{keyword_eq, KeyIndices};
use crate::{key_flag, ArgSource, Command};

/// A key finder for routing that cannot fail (it finds no keys instead, as Redis does).
pub(super) type Finder<A> = fn(&Command, &A, &mut KeyIndices);

/// The fallback finder routing uses for `name`, if Redis has one that the specs do not
/// cover.
pub(super) fn finder<A: ArgSource + ?Sized>(name: &str) -> Option<Finder<A>> {
    match name {
        "sort" | "sort_ro" | "migrate" | "xread" | "xreadgroup" => Some(finder_indices::<A>),
        _ => None,
    }
}

fn finder_indices<A: ArgSource + ?Sized>(cmd: &Command, args: &A, out: &mut KeyIndices) {
    visit_finder_keys(cmd, args, |i, _| {
        out.push(i as u32);
        true
    });
}

/// Calls `visit(index, key flags)` for each key Redis's own key finder for `cmd` finds, in
/// Redis's order, until `visit` returns false. Finds nothing for a command without one.
pub fn visit_finder_keys<A: ArgSource + ?Sized>(
    cmd: &Command,
    args: &A,
    mut visit: impl FnMut(usize, u32) -> bool,
) {
    use key_flag::{ACCESS, DELETE, OW, RO, RW, UPDATE};
    let argc = args.argc();
    match cmd.name {
        "set" if argc > 1 => {
            let get = (3..argc).any(|i| keyword_eq(args.arg(i), b"get"));
            visit(
                1,
                if get {
                    RW | ACCESS | UPDATE
                } else {
                    OW | UPDATE
                },
            );
        }
        "bitfield" if argc > 1 => {
            let flags = if bitfield_is_read_only(args) {
                RO | ACCESS
            } else {
                RW | ACCESS | UPDATE
            };
            visit(1, flags);
        }
        "sort" if argc > 1 => {
            if visit(1, RO | ACCESS) {
                if let Some(store) = sort_store_key(args) {
                    visit(store, OW | UPDATE);
                }
            }
        }
        "sort_ro" if argc > 1 => {
            visit(1, RO | ACCESS);
        }
        "migrate" => {
            let (first, end) = migrate_keys(args);
            let _ = (first..end).all(|i| visit(i, RW | ACCESS | DELETE));
        }
        "xread" | "xreadgroup" => {
            let (first, end) = xread_options(args).keys;
            let _ = (first..end).all(|i| visit(i, 0));
        }
        "georadius" | "georadiusbymember" if argc > 1 => {
            if visit(1, 0) {
                if let Some(store) = georadius_store_key(args) {
                    visit(store, 0);
                }
            }
        }
        name => {
            if let Some((store, count, first)) = numkeys_layout(name) {
                numkeys_keys(args, store, count, first, visit);
            }
        }
    }
}

/// Redis's `bitfieldGetKeys`: read-only when every operation is GET (or OVERFLOW).
fn bitfield_is_read_only<A: ArgSource + ?Sized>(args: &A) -> bool {
    let argc = args.argc();
    let mut i = 2;
    while i < argc {
        let remaining = argc - i - 1;
        let arg = args.arg(i);
        if keyword_eq(arg, b"get") && remaining >= 2 {
            i += 2;
        } else if keyword_eq(arg, b"overflow") && remaining >= 1 {
            i += 1;
        } else {
            return false; // SET, INCRBY, or a syntax error: assume a write, like Redis
        }
        i += 1;
    }
    true
}

/// Redis's `sortGetKeys`: the argument after the last `STORE`.
fn sort_store_key<A: ArgSource + ?Sized>(args: &A) -> Option<usize> {
    let argc = args.argc();
    let mut store = None;
    let mut i = 2;
    while i < argc {
        let arg = args.arg(i);
        if keyword_eq(arg, b"limit") {
            i += 2;
        } else if keyword_eq(arg, b"get") || keyword_eq(arg, b"by") {
            i += 1;
        } else if keyword_eq(arg, b"store") && i + 1 < argc {
            store = Some(i + 1); // not skipped: Redis examines it as an option next
        }
        i += 1;
    }
    store
}

/// Redis's `migrateGetKeys`: `first..end`, argument 3 or everything after `KEYS` (then
/// argument 3 must be empty, else no keys at all).
fn migrate_keys<A: ArgSource + ?Sized>(args: &A) -> (usize, usize) {
    let argc = args.argc();
    if argc < 4 {
        return (0, 0);
    }
    let mut keys = (3, 4);
    let mut i = 6;
    while i < argc {
        let arg = args.arg(i);
        if keyword_eq(arg, b"keys") {
            keys = if args.arg(3).is_empty() {
                (i + 1, argc)
            } else {
                (0, 0) // a syntax error MIGRATE reports itself
            };
            break;
        }
        if keyword_eq(arg, b"auth") {
            i += 1;
        } else if keyword_eq(arg, b"auth2") {
            i += 2;
        }
        i += 1;
    }
    (keys.0, keys.1.min(argc))
}

/// What the options of an XREAD/XREADGROUP line say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XreadOptions {
    /// A `BLOCK ms` option came before `STREAMS`: the command may block.
    pub block: bool,
    /// `first..end`: the stream keys (the first half of what follows `STREAMS`); empty when
    /// the rest is empty or odd, or an unknown option comes first.
    pub keys: (usize, usize),
}

/// The one parser of `XREAD|XREADGROUP [GROUP g c] [COUNT n] [BLOCK ms] [NOACK] STREAMS k...
/// id...` options (Redis's `xreadGetKeys` and the options `xreadCommand` reads), for routing,
/// the ACL and the blocking check alike.
pub fn xread_options<A: ArgSource + ?Sized>(args: &A) -> XreadOptions {
    let argc = args.argc();
    let mut block = false;
    let mut i = 1;
    while i < argc {
        let arg = args.arg(i);
        if keyword_eq(arg, b"block") {
            block |= i + 1 < argc;
            i += 2;
        } else if keyword_eq(arg, b"count") {
            i += 2;
        } else if keyword_eq(arg, b"group") {
            i += 3;
        } else if keyword_eq(arg, b"noack") {
            i += 1;
        } else if keyword_eq(arg, b"streams") {
            let rest = argc - i - 1;
            let keys = if rest > 0 && rest % 2 == 0 {
                (i + 1, i + 1 + rest / 2)
            } else {
                (0, 0)
            };
            return XreadOptions { block, keys };
        } else {
            break;
        }
    }
    XreadOptions {
        block,
        keys: (0, 0),
    }
}

/// Redis's `georadiusGetKeys`: the argument after the last `STORE` or `STOREDIST`.
fn georadius_store_key<A: ArgSource + ?Sized>(args: &A) -> Option<usize> {
    let argc = args.argc();
    let mut store = None;
    let mut i = 5;
    while i < argc {
        let arg = args.arg(i);
        if (keyword_eq(arg, b"store") || keyword_eq(arg, b"storedist")) && i + 1 < argc {
            store = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    store
}

/// `(destination index or 0, numkeys index, first key index)` of Redis's `genericGetKeys`
/// users.
fn numkeys_layout(name: &str) -> Option<(usize, usize, usize)> {
    match name {
        "zunionstore" | "zinterstore" | "zdiffstore" => Some((1, 2, 3)),
        "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "lmpop" | "zmpop" => {
            Some((0, 1, 2))
        }
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" | "blmpop"
        | "bzmpop" => Some((0, 2, 3)),
        _ => None,
    }
}

/// Redis's `genericGetKeys`: numkeys read with C `atoi`; nothing when it is out of range.
/// It reports no flags, so any matching pattern will do.
fn numkeys_keys<A: ArgSource + ?Sized>(
    args: &A,
    store: usize,
    count: usize,
    first: usize,
    mut visit: impl FnMut(usize, u32) -> bool,
) {
    let argc = args.argc();
    if count >= argc || first > argc {
        return;
    }
    let num = c_atoi(args.arg(count));
    if num < 1 || num as usize > argc - first {
        return;
    }
    if (first..first + num as usize).all(|i| visit(i, 0)) && store != 0 {
        visit(store, 0);
    }
}

/// C's `atoi` as glibc computes it: `(int) strtol(s, NULL, 10)`, reading up to the first
/// byte that does not fit (a NUL included), saturating at the `long` range, then truncated.
pub(crate) fn c_atoi(s: &[u8]) -> i32 {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let negative = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while let Some(&d) = s.get(i).filter(|b| b.is_ascii_digit()) {
        match magnitude
            .checked_mul(10)
            .and_then(|m| m.checked_add((d - b'0') as u64))
        {
            Some(m) => magnitude = m,
            None => overflow = true,
        }
        i += 1;
    }
    let long = if negative {
        if overflow || magnitude > i64::MAX as u64 + 1 {
            i64::MIN
        } else {
            (magnitude as i64).wrapping_neg()
        }
    } else if overflow || magnitude > i64::MAX as u64 {
        i64::MAX
    } else {
        magnitude as i64
    };
    long as i32
}
