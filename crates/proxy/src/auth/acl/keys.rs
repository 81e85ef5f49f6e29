//! The keys of a command line and the key-spec flags of each, found the way Redis 7.0's ACL
//! check finds them (`getKeysFromCommandWithSpecs`): the key specs when they are reliable,
//! else the command's own key finder (SET, BITFIELD, SORT, SORT_RO, MIGRATE, XREAD,
//! XREADGROUP, GEORADIUS, GEORADIUSBYMEMBER and the numkeys commands), whose flags differ.
//!
//! Positions agree with [`Command::key_indices`] wherever the specs work (a test checks
//! every command), but this also knows each key's flags and never allocates. One
//! difference on purpose: option keywords compare like Redis's `strcasecmp`, which stops at a
//! NUL byte, so an argument `STORE\0x` is the STORE option here exactly as it is to Redis.

use slotgate_commands::{flag, key_flag, ArgSource, BeginSearch, Command, FindKeys};

use super::KeyPerm;

/// No command has more key specs than this (a test checks the table).
pub(super) const MAX_SPECS: usize = 4;

/// The index of the first key for which `allowed(key, access it needs)` says no, in the
/// order Redis checks keys.
pub(super) fn first_denied_key<A, F>(cmd: &Command, args: &A, mut allowed: F) -> Option<usize>
where
    A: ArgSource + ?Sized,
    F: FnMut(&[u8], KeyPerm) -> bool,
{
    let mut denied = None;
    visit_keys(cmd, args, |index, flags| {
        if allowed(args.arg(index), KeyPerm::for_key_flags(flags)) {
            true
        } else {
            denied = Some(index);
            false
        }
    });
    denied
}

/// Calls `visit(index, key_flags)` for each key in Redis's order until it returns `false`.
pub(super) fn visit_keys<A: ArgSource + ?Sized>(
    cmd: &Command,
    args: &A,
    mut visit: impl FnMut(usize, u32) -> bool,
) {
    let mut has_key_spec = false;
    let mut variable_flags = false;
    for spec in cmd.key_specs {
        has_key_spec |= spec.flags & key_flag::NOT_KEY == 0;
        variable_flags |= spec.flags & key_flag::VARIABLE_FLAGS != 0;
    }
    if has_key_spec && !variable_flags {
        let mut spans = [Span::EMPTY; MAX_SPECS];
        if let Some(n) = spec_spans(cmd, args, &mut spans) {
            for span in &spans[..n] {
                let mut i = span.first;
                while i <= span.last {
                    if !visit(i, span.flags) {
                        return;
                    }
                    i += span.step;
                }
            }
            return;
        }
    }
    finder_keys(cmd, args, visit);
}

/// Keys `first..=last` every `step`, all with `flags`.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: usize,
    last: usize,
    step: usize,
    flags: u32,
}

impl Span {
    const EMPTY: Span = Span {
        first: 1,
        last: 0,
        step: 1,
        flags: 0,
    };
}

/// Redis's `getKeysUsingKeySpecs` (as `slotgate_commands` implements it): one span per spec
/// that finds keys, or `None` where Redis gives up on the specs (then the command's finder
/// applies).
fn spec_spans<A: ArgSource + ?Sized>(
    cmd: &Command,
    args: &A,
    spans: &mut [Span; MAX_SPECS],
) -> Option<usize> {
    let argc = args.argc() as i64;
    let mut n = 0;
    for spec in cmd.key_specs {
        if spec.flags & key_flag::NOT_KEY != 0 {
            continue;
        }
        let first = match spec.begin {
            BeginSearch::Index(i) => i as i64,
            BeginSearch::Keyword {
                keyword,
                start_from,
            } => match find_keyword(args, argc, keyword.as_bytes(), start_from as i64) {
                Some(first) => first,
                None => continue, // keyword absent: no keys from this spec
            },
            BeginSearch::Unknown => return None,
        };
        let (first, last, step) = match spec.find {
            FindKeys::Range {
                last_key,
                step,
                limit,
            } => (first, range_last(first, argc, last_key, limit), step as i64),
            FindKeys::KeyNum {
                keynum_idx,
                first_key,
                step,
            } => {
                let numkeys = keynum(args, argc, first, keynum_idx)?;
                if numkeys == 0 && cmd.has_flag(flag::NO_MANDATORY_KEYS) {
                    continue; // EVAL "..." 0
                }
                let first = first + first_key as i64;
                (first, first + numkeys - 1, step as i64)
            }
            FindKeys::Unknown => return None,
        };
        if first < 1 || last >= argc || last < first || step <= 0 || n == MAX_SPECS {
            return None;
        }
        spans[n] = Span {
            first: first as usize,
            last: last as usize,
            step: step as usize,
            flags: spec.flags,
        };
        n += 1;
        if spec.flags & key_flag::INCOMPLETE != 0 {
            return None;
        }
    }
    Some(n)
}

/// The index after `keyword`, searched forwards from `start_from` up to (not including) the
/// last argument, or backwards from `argc + start_from` down to (not including) argument 1.
fn find_keyword<A: ArgSource + ?Sized>(
    args: &A,
    argc: i64,
    keyword: &[u8],
    start_from: i64,
) -> Option<i64> {
    let (start, end) = if start_from > 0 {
        (start_from, argc - 1)
    } else {
        (argc + start_from, 1)
    };
    let mut i = start;
    while i != end {
        if i >= argc || i < 1 {
            break;
        }
        if is_keyword(args.arg(i as usize), keyword) {
            return Some(i + 1);
        }
        i = if start <= end { i + 1 } else { i - 1 };
    }
    None
}

/// Last key index of a range spec.
fn range_last(first: i64, argc: i64, last_key: i16, limit: i16) -> i64 {
    let last_key = last_key as i64;
    if last_key >= 0 {
        first + last_key
    } else if limit == 0 {
        argc + last_key
    } else {
        first + ((argc - first) / limit as i64 + last_key)
    }
}

/// The key count of a keynum spec: a canonical non-negative integer no larger than `argc`.
fn keynum<A: ArgSource + ?Sized>(args: &A, argc: i64, first: i64, idx: i16) -> Option<i64> {
    let at = first + idx as i64;
    if idx as i64 >= argc - first || at < 0 {
        return None;
    }
    let s = args.arg(at as usize);
    if s.is_empty() || s.len() > 18 || (s[0] == b'0' && s.len() > 1) {
        return None;
    }
    let mut n: i64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as i64;
    }
    (n <= argc).then_some(n)
}

/// Redis's command-specific key finders (`db.c`), with the flags each reports.
fn finder_keys<A: ArgSource + ?Sized>(
    cmd: &Command,
    args: &A,
    mut visit: impl FnMut(usize, u32) -> bool,
) {
    use key_flag::{ACCESS, DELETE, OW, RO, RW, UPDATE};
    let argc = args.argc();
    match cmd.name {
        "set" if argc > 1 => {
            let get = (3..argc).any(|i| is_keyword(args.arg(i), b"get"));
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
            let (first, end) = xread_keys(args);
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
        if is_keyword(arg, b"get") && remaining >= 2 {
            i += 2;
        } else if is_keyword(arg, b"overflow") && remaining >= 1 {
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
        if is_keyword(arg, b"limit") {
            i += 2;
        } else if is_keyword(arg, b"get") || is_keyword(arg, b"by") {
            i += 1;
        } else if is_keyword(arg, b"store") && i + 1 < argc {
            store = Some(i + 1); // not skipped: Redis examines it as an option next
        }
        i += 1;
    }
    store
}

/// Redis's `migrateGetKeys`: `first..end`, argument 3 or everything after `KEYS`.
fn migrate_keys<A: ArgSource + ?Sized>(args: &A) -> (usize, usize) {
    let argc = args.argc();
    let mut keys = (3, 4);
    let mut i = 6;
    while i < argc {
        let arg = args.arg(i);
        if is_keyword(arg, b"keys") {
            keys = if args.arg(3).is_empty() {
                (i + 1, argc)
            } else {
                (0, 0) // a syntax error MIGRATE reports itself
            };
            break;
        }
        if is_keyword(arg, b"auth") {
            i += 1;
        } else if is_keyword(arg, b"auth2") {
            i += 2;
        }
        i += 1;
    }
    (keys.0, keys.1.min(argc))
}

/// Redis's `xreadGetKeys`: `first..end`, the first half of what follows `STREAMS`.
fn xread_keys<A: ArgSource + ?Sized>(args: &A) -> (usize, usize) {
    let argc = args.argc();
    let mut i = 1;
    while i < argc {
        let arg = args.arg(i);
        if is_keyword(arg, b"block") || is_keyword(arg, b"count") {
            i += 2;
        } else if is_keyword(arg, b"group") {
            i += 3;
        } else if is_keyword(arg, b"noack") {
            i += 1;
        } else if is_keyword(arg, b"streams") {
            let rest = argc - i - 1;
            if rest > 0 && rest % 2 == 0 {
                return (i + 1, i + 1 + rest / 2);
            }
            break;
        } else {
            break;
        }
    }
    (0, 0)
}

/// Redis's `georadiusGetKeys`: the argument after the last `STORE` or `STOREDIST`.
fn georadius_store_key<A: ArgSource + ?Sized>(args: &A) -> Option<usize> {
    let argc = args.argc();
    let mut store = None;
    let mut i = 5;
    while i < argc {
        let arg = args.arg(i);
        if (is_keyword(arg, b"store") || is_keyword(arg, b"storedist")) && i + 1 < argc {
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
fn c_atoi(s: &[u8]) -> i32 {
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

/// Whether `arg` is `keyword` to Redis's `strcasecmp`: ASCII case-insensitive, and only up
/// to the first NUL byte of `arg`.
fn is_keyword(arg: &[u8], keyword: &[u8]) -> bool {
    let end = arg.iter().position(|&b| b == 0).unwrap_or(arg.len());
    arg[..end].eq_ignore_ascii_case(keyword)
}

#[cfg(test)]
pub(super) fn collect_keys<A: ArgSource + ?Sized>(cmd: &Command, args: &A) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    visit_keys(cmd, args, |i, flags| {
        out.push((i, flags));
        true
    });
    out
}

#[cfg(test)]
pub(super) fn atoi_for_tests(s: &[u8]) -> i32 {
    c_atoi(s)
}
