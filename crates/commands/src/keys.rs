//! Key extraction: which arguments of a command line are keys, following the Redis 7.0
//! key specs exactly as `COMMAND GETKEYS` does (including its fallbacks for SORT and
//! MIGRATE). The session uses the result to pick a slot and to check ACL key patterns.

use crate::{key_flag, ArgSource, BeginSearch, Command, FindKeys, KeyError, KeySpec};

mod fallback;
mod indices;
#[cfg(test)]
mod tests;

pub use fallback::{visit_finder_keys, xread_options, XreadOptions};
pub use indices::KeyIndices;

// === impl Command ===

impl Command {
    /// Clears `out` and fills it with the index (into `args`, name at 0) of every key,
    /// in key-spec order, per the Redis 7.0 key specs; specs flagged `NOT_KEY` (shard
    /// channels) are skipped. Matches `COMMAND GETKEYS` for well-formed lines.
    ///
    /// `args` must be the whole line, including the command name (and subcommand).
    ///
    /// # Errors
    /// [`KeyError::InvalidNumKeys`] when a numkeys argument or another key spec does not
    /// fit the arguments (see [`KeyError`] for what Redis answers). `out` is then empty.
    pub fn key_indices<A: ArgSource + ?Sized>(
        &self,
        args: &A,
        out: &mut KeyIndices,
    ) -> Result<(), KeyError> {
        self.extract(args, out, false)
    }

    /// Like [`Command::key_indices`], but also includes `NOT_KEY` specs: the arguments whose
    /// slot decides the target node. Differs only for SPUBLISH, SSUBSCRIBE and
    /// SUNSUBSCRIBE, whose shard channels route like keys but are not keys for ACLs.
    ///
    /// # Errors
    /// As [`Command::key_indices`].
    pub fn routing_indices<A: ArgSource + ?Sized>(
        &self,
        args: &A,
        out: &mut KeyIndices,
    ) -> Result<(), KeyError> {
        self.extract(args, out, true)
    }

    /// Whether the arguments after the keys' start come in whole groups where the command's
    /// key spec says keys repeat every `step` arguments to the end of the line (MSET and
    /// MSETNX: key-value pairs). `MSET a 1 b` is not: Redis answers it with the arity
    /// error, and a split would read past the last argument.
    #[inline]
    pub fn key_groups_complete(&self, argc: usize) -> bool {
        // The legacy key step mirrors the specs: only a command whose keys repeat every
        // other argument or more needs the walk (a test holds the two to each other).
        self.key_step <= 1 || self.key_groups_by_specs(argc)
    }

    fn key_groups_by_specs(&self, argc: usize) -> bool {
        self.key_specs
            .iter()
            .all(|spec| match (spec.begin, spec.find) {
                (
                    BeginSearch::Index(begin),
                    FindKeys::Range {
                        last_key: -1,
                        step,
                        limit: 0,
                    },
                ) if step > 1 && begin > 0 => {
                    let (begin, step) = (begin as usize, step as usize);
                    argc < begin || (argc - begin) % step == 0
                }
                _ => true,
            })
    }

    /// The one argument whose slot routes this command line, when the command's only key
    /// spec is "the key at index 1" (GET, SET, INCR, HGET …) and the line has it: the
    /// common case of [`Command::routing_indices`], without filling a [`KeyIndices`].
    #[inline]
    pub fn sole_routing_key<'a, A: ArgSource + ?Sized>(&self, args: &'a A) -> Option<&'a [u8]> {
        match self.key_at_1_flags() {
            Some(flags) if flags & key_flag::INCOMPLETE == 0 && args.argc() > 1 => {
                Some(args.arg(1))
            }
            _ => None,
        }
    }

    /// The flags of the command's key spec when it has just one, "the key at index 1" (most
    /// keyed commands: GET, SET, INCR, HGET …).
    #[inline]
    fn key_at_1_flags(&self) -> Option<u32> {
        match self.key_specs {
            [KeySpec {
                begin: BeginSearch::Index(1),
                find:
                    FindKeys::Range {
                        last_key: 0,
                        step: 1,
                        limit: 0,
                    },
                flags,
            }] => Some(*flags),
            _ => None,
        }
    }

    fn extract<A: ArgSource + ?Sized>(
        &self,
        args: &A,
        out: &mut KeyIndices,
        include_not_key: bool,
    ) -> Result<(), KeyError> {
        out.clear();
        if let Some(flags) = self.key_at_1_flags() {
            let counted = include_not_key || flags & key_flag::NOT_KEY == 0;
            if counted && flags & key_flag::INCOMPLETE == 0 && args.argc() > 1 {
                out.push(1);
                return Ok(());
            }
        }
        let result = self.extract_by_specs(args, out, include_not_key);
        if result.is_err() {
            out.clear();
            if let Some(find) = fallback::finder(self.name) {
                find(self, args, out);
                if !out.is_empty() {
                    return Ok(());
                }
            }
        }
        result
    }

    /// Redis's `getKeysUsingKeySpecs`: `Err` where Redis gives up on the specs.
    fn extract_by_specs<A: ArgSource + ?Sized>(
        &self,
        args: &A,
        out: &mut KeyIndices,
        include_not_key: bool,
    ) -> Result<(), KeyError> {
        for span in self.key_spans(args, include_not_key)?.iter() {
            let mut i = span.first;
            while i <= span.last {
                out.push(i as u32);
                i += span.step;
            }
        }
        Ok(())
    }

    /// Where the key specs put this line's keys: one [`KeySpan`] per spec that finds keys,
    /// in spec order, as Redis 7.0's `getKeysUsingKeySpecs` walks them (specs flagged
    /// `NOT_KEY` only with `include_not_key`). The one key-spec walker: routing uses it
    /// through [`Command::key_indices`], the ACL check for each key's flags.
    ///
    /// # Errors
    /// [`KeyError::InvalidNumKeys`] where Redis gives up on the specs and falls back to the
    /// command's own key finder ([`visit_finder_keys`]): an `unknown` spec, an `incomplete`
    /// one, a numkeys that is not a canonical count, a span outside the arguments.
    pub fn key_spans<A: ArgSource + ?Sized>(
        &self,
        args: &A,
        include_not_key: bool,
    ) -> Result<KeySpans, KeyError> {
        let argc = args.argc() as i64;
        let mut spans = KeySpans::default();
        for spec in self.key_specs {
            if spec.flags & key_flag::NOT_KEY != 0 && !include_not_key {
                continue;
            }
            let Some(first) = begin_index(spec, args, argc)? else {
                continue; // keyword not present: this spec contributes nothing
            };
            let (first, last, step) = match spec.find {
                FindKeys::Range {
                    last_key,
                    step,
                    limit,
                } => (first, range_last(first, argc, last_key, limit), step),
                FindKeys::KeyNum {
                    keynum_idx,
                    first_key,
                    step,
                } => {
                    let Some(numkeys) = keynum(args, argc, first, keynum_idx) else {
                        return Err(KeyError::InvalidNumKeys);
                    };
                    if numkeys == 0 && self.has_flag(crate::flag::NO_MANDATORY_KEYS) {
                        continue; // EVAL "..." 0: no keys, legitimately
                    }
                    let first = first + first_key as i64;
                    (first, first + numkeys - 1, step)
                }
                FindKeys::Unknown => return Err(KeyError::InvalidNumKeys),
            };
            if first < 1 || last >= argc || last < first || step <= 0 || spans.len == MAX_SPECS {
                return Err(KeyError::InvalidNumKeys);
            }
            if spec.flags & key_flag::INCOMPLETE != 0 {
                return Err(KeyError::InvalidNumKeys); // Redis uses the fallback finder
            }
            spans.spans[spans.len] = KeySpan {
                first: first as usize,
                last: last as usize,
                step: step as usize,
                flags: spec.flags,
            };
            spans.len += 1;
        }
        Ok(spans)
    }
}

/// No command has more key specs than this (a test checks the table).
pub const MAX_SPECS: usize = 4;

/// Keys `first..=last`, every `step`, all with one key spec's `flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeySpan {
    /// Index of the first key.
    pub first: usize,
    /// Index of the last key (at least `first`).
    pub last: usize,
    /// Distance between keys (at least 1).
    pub step: usize,
    /// The spec's [`key_flag`] bits.
    pub flags: u32,
}

/// The spans of one command line ([`Command::key_spans`]); never allocates.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeySpans {
    spans: [KeySpan; MAX_SPECS],
    len: usize,
}

impl KeySpans {
    /// The spans, in key-spec order.
    pub fn iter(&self) -> impl Iterator<Item = &KeySpan> {
        self.spans[..self.len].iter()
    }
}

/// Whether argument `arg` is option `keyword` the way Redis compares them (`strcasecmp`):
/// ASCII case-insensitive, and only up to the first NUL byte of `arg`, so `STORE\0x` is the
/// STORE option to Redis and therefore here.
pub fn keyword_eq(arg: &[u8], keyword: &[u8]) -> bool {
    let end = arg.iter().position(|&b| b == 0).unwrap_or(arg.len());
    arg[..end].eq_ignore_ascii_case(keyword)
}

/// Index of the first key of `spec`, `Ok(None)` when its keyword is absent.
fn begin_index<A: ArgSource + ?Sized>(
    spec: &KeySpec,
    args: &A,
    argc: i64,
) -> Result<Option<i64>, KeyError> {
    match spec.begin {
        BeginSearch::Index(i) => Ok(Some(i as i64)),
        BeginSearch::Keyword {
            keyword,
            start_from,
        } => Ok(find_keyword(args, argc, keyword, start_from as i64)),
        BeginSearch::Unknown => Err(KeyError::InvalidNumKeys),
    }
}

/// The argument after `keyword`, searched like Redis 7.0: forwards from `start_from` up to
/// (not including) the last argument, or backwards from `argc + start_from` down to (not
/// including) argument 1. (`MIGRATE keys ...` does not find the `KEYS` at index 1.)
fn find_keyword<A: ArgSource + ?Sized>(
    args: &A,
    argc: i64,
    keyword: &str,
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
        if keyword_eq(args.arg(i as usize), keyword.as_bytes()) {
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

/// The key count of a keynum spec: `None` unless a canonical integer in `0..=argc`.
fn keynum<A: ArgSource + ?Sized>(args: &A, argc: i64, first: i64, idx: i16) -> Option<i64> {
    let at = first + idx as i64;
    if idx as i64 >= argc - first || at < 0 {
        return None;
    }
    parse_count(args.arg(at as usize)).filter(|&n| n <= argc)
}

/// Parses a non-negative integer the way Redis's `string2ll` accepts it: ASCII digits,
/// no sign, no leading zero (except `0` itself), no spaces.
pub(crate) fn parse_count(s: &[u8]) -> Option<i64> {
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
    Some(n)
}
