//! Redis's hand-written key finders, for the lines its key specs cannot describe: SORT
//! (spec `unknown`), MIGRATE ... KEYS (spec `incomplete`) and XREAD/XREADGROUP whose
//! `STREAMS` keyword search goes wrong (behaviour of `sortGetKeys`, `sortROGetKeys`,
//! `migrateGetKeys`, `xreadGetKeys` in redis 7.0 `db.c`). Redis uses them when the specs
//! fail; so do we. The numkeys commands also have one, but it finds keys only where ours
//! reports [`super::KeyError::InvalidNumKeys`] on purpose (non-canonical numbers such as
//! `01` or `2x`, which the command itself then rejects).

use super::KeyIndices;
use crate::ArgSource;

/// A key finder that cannot fail (it returns no keys instead, as Redis does).
pub(super) type Finder<A> = fn(&A, &mut KeyIndices);

/// The fallback finder for `name`, if Redis has one that the specs do not cover.
pub(super) fn finder<A: ArgSource + ?Sized>(name: &str) -> Option<Finder<A>> {
    match name {
        "sort" => Some(sort_keys::<A>),
        "sort_ro" => Some(sort_ro_keys::<A>),
        "migrate" => Some(migrate_keys::<A>),
        "xread" | "xreadgroup" => Some(xread_keys::<A>),
        _ => None,
    }
}

/// `SORT key [BY p] [LIMIT o c] [GET p ...] [ASC|DESC] [ALPHA] [STORE dst]`: the key,
/// then the argument after the last `STORE`.
fn sort_keys<A: ArgSource + ?Sized>(args: &A, out: &mut KeyIndices) {
    let argc = args.argc();
    if argc < 2 {
        return;
    }
    out.push(1);
    let mut store = None;
    let mut i = 2;
    while i < argc {
        let arg = args.arg(i);
        if arg.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"get") || arg.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"store") && i + 1 < argc {
            // Redis does not skip the store key; it is examined as an option next.
            store = Some(i + 1);
        }
        i += 1;
    }
    if let Some(s) = store {
        out.push(s as u32);
    }
}

/// `SORT_RO key ...`: only the key.
fn sort_ro_keys<A: ArgSource + ?Sized>(args: &A, out: &mut KeyIndices) {
    if args.argc() >= 2 {
        out.push(1);
    }
}

/// `MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 user pw]
/// [KEYS k ...]`: argument 3, or every argument after `KEYS` (then argument 3 must be
/// empty, else no keys at all).
fn migrate_keys<A: ArgSource + ?Sized>(args: &A, out: &mut KeyIndices) {
    let argc = args.argc();
    let (mut first, mut num) = (3, 1);
    if argc > 6 {
        let mut i = 6;
        while i < argc {
            let arg = args.arg(i);
            if arg.eq_ignore_ascii_case(b"keys") {
                if !args.arg(3).is_empty() {
                    return;
                }
                first = i + 1;
                num = argc - first;
                break;
            }
            if arg.eq_ignore_ascii_case(b"auth") {
                i += 1;
            } else if arg.eq_ignore_ascii_case(b"auth2") {
                i += 2;
            }
            i += 1;
        }
    }
    for k in first..(first + num).min(argc) {
        out.push(k as u32);
    }
}

/// `XREAD|XREADGROUP [GROUP g c] [COUNT n] [BLOCK ms] [NOACK] STREAMS k... id...`: the
/// first half of the arguments after the first `STREAMS` found while skipping options;
/// nothing when the rest is empty or odd, or an unknown option comes first.
fn xread_keys<A: ArgSource + ?Sized>(args: &A, out: &mut KeyIndices) {
    let argc = args.argc();
    let mut i = 1;
    while i < argc {
        let arg = args.arg(i);
        if arg.eq_ignore_ascii_case(b"block") || arg.eq_ignore_ascii_case(b"count") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"group") {
            i += 3;
        } else if arg.eq_ignore_ascii_case(b"noack") {
            i += 1;
        } else if arg.eq_ignore_ascii_case(b"streams") {
            let rest = argc - i - 1;
            if rest > 0 && rest % 2 == 0 {
                for k in i + 1..i + 1 + rest / 2 {
                    out.push(k as u32);
                }
            }
            return;
        } else {
            return;
        }
    }
}
