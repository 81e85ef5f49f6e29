//! Redis's glob matcher (`stringmatchlen` in redis 7.0 `util.c`): `*`, `?`, `[abc]`, `[^a]`,
//! `[a-z]`, `\x`. The one glob of the engine: ACL key and channel patterns use it
//! case-sensitively ([`glob_match`]), CONFIG GET's parameter patterns case-insensitively
//! ([`glob_match_nocase`]), as Redis does.
//!
//! Byte for byte the same answers as Redis, including its corner cases: a non-empty pattern
//! never matches the empty string (not even `*`); an unterminated `[` class runs to the end of
//! the pattern; a range end may be `]` (`[a-]` is the range `]`..=`a`); range bounds compare
//! as signed `char`s, as on x86-64 Linux; a pattern whose 1001st `*` group must be expanded
//! never matches (Redis's nesting limit).
//!
//! Redis recurses once per `*`; this is a loop that only ever backtracks to the latest `*`
//! (Redis's `skipLongerMatches` rule makes that equivalent), so the work is bounded by
//! `pattern.len() * string.len()` and the stack does not grow. Nothing allocates.

/// Redis gives up on a pattern once this many `*` groups are nested.
const MAX_STAR_GROUPS: usize = 1000;

/// Whether `string` matches the glob `pattern`, exactly as Redis's `stringmatchlen` (with
/// `nocase` 0) decides.
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    matches::<false>(pattern, string)
}

/// Like [`glob_match`], with ASCII letters compared without case (Redis's `nocase` 1, as
/// CONFIG GET matches parameter names).
pub fn glob_match_nocase(pattern: &[u8], string: &[u8]) -> bool {
    matches::<true>(pattern, string)
}

fn matches<const NOCASE: bool>(pattern: &[u8], string: &[u8]) -> bool {
    if string.is_empty() {
        // Redis's loop never runs: only the empty pattern matches.
        return pattern.is_empty();
    }
    let plen = pattern.len();
    let (mut p, mut s) = (0, 0);
    // The latest `*`: where the rest of the pattern starts and where in the string the
    // current attempt to match that rest began.
    let mut star: Option<(usize, usize)> = None;
    let mut star_groups = 0;
    loop {
        // Invariant: s < string.len().
        if p < plen && pattern[p] == b'*' {
            while byte_at(pattern, p + 1) == b'*' {
                p += 1;
            }
            if p + 1 == plen {
                return true; // a trailing `*` takes the rest of the string
            }
            star_groups += 1;
            if star_groups > MAX_STAR_GROUPS {
                return false;
            }
            p += 1;
            star = Some((p, s));
            continue;
        }
        if p < plen {
            let (matched, next) = match_token::<NOCASE>(pattern, p, string[s]);
            if matched {
                p = next;
                s += 1;
                if s < string.len() {
                    continue;
                }
                while byte_at(pattern, p) == b'*' {
                    p += 1;
                }
                if p >= plen {
                    return true;
                }
            }
        }
        // This attempt failed: let the latest `*` take one more byte, if any is left.
        match star {
            Some((rest, from)) if from + 1 < string.len() => {
                star = Some((rest, from + 1));
                p = rest;
                s = from + 1;
            }
            _ => return false,
        }
    }
}

/// The pattern byte at `i`, or 0 past the end (where Redis reads the string's terminator).
#[inline]
fn byte_at(pattern: &[u8], i: usize) -> u8 {
    pattern.get(i).copied().unwrap_or(0)
}

/// Matches the one-byte token at `pattern[p]` (not `*`) against `c`: whether it matched,
/// and where the next token starts.
#[inline]
fn match_token<const NOCASE: bool>(pattern: &[u8], p: usize, c: u8) -> (bool, usize) {
    match pattern[p] {
        b'?' => (true, p + 1),
        b'[' => match_class::<NOCASE>(pattern, p + 1, c),
        b'\\' if pattern.len() - p >= 2 => (same::<NOCASE>(pattern[p + 1], c), p + 2),
        literal => (same::<NOCASE>(literal, c), p + 1),
    }
}

/// Byte equality, ignoring ASCII case when `NOCASE`.
#[inline]
fn same<const NOCASE: bool>(a: u8, b: u8) -> bool {
    if NOCASE {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// Matches the class whose body starts at `i` (just after `[`) against `c`.
fn match_class<const NOCASE: bool>(pattern: &[u8], mut i: usize, c: u8) -> (bool, usize) {
    let len = pattern.len();
    let negate = byte_at(pattern, i) == b'^';
    if negate {
        i += 1;
    }
    let mut matched = false;
    // Invariant: i <= len.
    loop {
        if byte_at(pattern, i) == b'\\' && len - i >= 2 {
            i += 1;
            matched |= same::<NOCASE>(pattern[i], c);
        } else if byte_at(pattern, i) == b']' {
            break;
        } else if i == len {
            i -= 1; // unterminated: the class ends with the pattern
            break;
        } else if len - i >= 3 && pattern[i + 1] == b'-' {
            // `char` is signed in Redis's build: bytes >= 0x80 sort below ASCII.
            let (mut lo, mut hi, mut c) = (pattern[i], pattern[i + 2], c);
            if NOCASE {
                (lo, hi, c) = (
                    lo.to_ascii_lowercase(),
                    hi.to_ascii_lowercase(),
                    c.to_ascii_lowercase(),
                );
            }
            let (mut lo, mut hi) = (lo as i8, hi as i8);
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            matched |= (lo..=hi).contains(&(c as i8));
            i += 2;
        } else {
            matched |= same::<NOCASE>(pattern[i], c);
        }
        i += 1;
    }
    (matched != negate, i + 1)
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use proptest::prelude::*;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn basics() {
        assert!(m("", ""));
        assert!(
            !m("*", ""),
            "Redis: a non-empty pattern never matches the empty string"
        );
        assert!(!m("a", ""));
        assert!(m("*", "x"));
        assert!(m("a*", "a"));
        assert!(m("a*", "abc"));
        assert!(!m("a*", "ba"));
        assert!(m("*c", "abc"));
        assert!(m("a*c", "abbbc"));
        assert!(!m("a*c", "abbbd"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("a*?", "a"));
        assert!(m("a**b", "ab"));
        assert!(m("h*llo", "hllo"));
        assert!(m("user:*:name", "user:42:name"));
        assert!(!m("user:*:name", "user:42:nam"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abcd", "abc"));
    }

    #[test]
    fn classes() {
        assert!(m("h[ae]llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"), "reversed ranges are swapped");
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m("[\\]]", "]"));
        // `[]` is an empty class: it matches nothing, and `[^]` matches any byte.
        assert!(!m("[]a]", "]"));
        assert!(!m("[]a]", "a]"));
        assert!(!m("[]", "a"));
        assert!(m("[^]", "a"));
        // Unterminated classes run to the end of the pattern.
        assert!(m("[ab", "a"));
        assert!(m("[ab", "b"));
        assert!(!m("[ab", "ab"));
        assert!(!m("[", "["));
        assert!(m("[^", "x"));
        // `[a-]`: the range ']'..='a'.
        assert!(m("[a-]", "_"));
        assert!(m("[a-]", "]"));
        assert!(!m("[a-]", "-"));
        // Signed chars: 0x80..=0xff sort below ASCII.
        assert!(glob_match(b"[\x80-a]", b"0"));
        assert!(!glob_match(b"[a-\xff]", b"b"));
        assert!(glob_match(b"[a-\xff]", b"0"));
    }

    #[test]
    fn escapes() {
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("a\\?", "a?"));
        assert!(!m("a\\?", "ab"));
        assert!(m("\\", "\\"), "a trailing backslash is literal");
        assert!(m("a\\", "a\\"));
    }

    #[test]
    fn pathological_patterns_are_fast() {
        let pattern = "a*".repeat(500) + "b";
        let string = "a".repeat(5000);
        let started = std::time::Instant::now();
        assert!(!glob_match(pattern.as_bytes(), string.as_bytes()));
        // Generous: O(pattern * string) is a few million steps.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let string = "a".repeat(5000) + "b";
        assert!(glob_match(pattern.as_bytes(), string.as_bytes()));
    }

    #[test]
    fn a_pathological_pattern_on_10_kb_finishes_in_milliseconds() {
        // `*a*a*a…b` makes a naive recursive matcher exponential.
        let pattern = "*a".repeat(40) + "b";
        let subject = "a".repeat(10 * 1024);
        for matcher in [glob_match, super::glob_match_nocase] {
            let started = std::time::Instant::now();
            assert!(!matcher(pattern.as_bytes(), subject.as_bytes()));
            let took = started.elapsed();
            assert!(took < std::time::Duration::from_millis(200), "{took:?}");
        }
    }

    #[test]
    fn nocase_folds_ascii_letters_only() {
        use super::glob_match_nocase as m;
        assert!(m(b"SAVE", b"save"));
        assert!(m(b"*", b"save"));
        assert!(m(b"sa?E", b"SAVE"));
        assert!(m(b"[A-Z]ave", b"save"));
        assert!(m(b"[s]AVE", b"Save"));
        assert!(m(b"max*-ZIPLIST-*", b"max-hash-ziplist-entries"));
        assert!(!m(b"max*-ZIPLIST-x", b"max-hash-ziplist-entries"));
        assert!(m(b"hash-max-*", b"HASH-MAX-LISTPACK-ENTRIES"));
        assert!(!m(b"save", b"saves"));
        assert!(
            !glob_match(b"SAVE", b"save"),
            "glob_match stays case-sensitive"
        );
    }

    #[test]
    fn star_group_limit() {
        let key = "a".repeat(1100);
        assert!(glob_match("*a".repeat(900).as_bytes(), key.as_bytes()));
        assert!(!glob_match("*a".repeat(1100).as_bytes(), key.as_bytes()));
        assert!(glob_match(
            ("*a".repeat(1000) + "*").as_bytes(),
            key.as_bytes()
        ));
    }

    /// Redis's recursive `stringmatchlen_impl`, transcribed with slices (a test oracle).
    fn reference(pattern: &[u8], string: &[u8]) -> bool {
        fn at(p: &[u8], i: usize) -> u8 {
            p.get(i).copied().unwrap_or(0)
        }
        fn imp(
            pat: &[u8],
            mut p: usize,
            s_all: &[u8],
            mut s: usize,
            skip: &mut bool,
            nest: u32,
        ) -> bool {
            if nest > 1000 {
                return false;
            }
            while p < pat.len() && s < s_all.len() {
                match pat[p] {
                    b'*' => {
                        while at(pat, p + 1) == b'*' {
                            p += 1;
                        }
                        if p + 1 == pat.len() {
                            return true;
                        }
                        while s < s_all.len() {
                            if imp(pat, p + 1, s_all, s, skip, nest + 1) {
                                return true;
                            }
                            if *skip {
                                return false;
                            }
                            s += 1;
                        }
                        *skip = true;
                        return false;
                    }
                    b'?' => s += 1,
                    b'[' => {
                        let c = s_all[s];
                        p += 1;
                        let not = at(pat, p) == b'^';
                        if not {
                            p += 1;
                        }
                        let mut matched = false;
                        loop {
                            if at(pat, p) == b'\\' && pat.len() - p >= 2 {
                                p += 1;
                                if pat[p] == c {
                                    matched = true;
                                }
                            } else if at(pat, p) == b']' {
                                break;
                            } else if p == pat.len() {
                                p -= 1;
                                break;
                            } else if pat.len() - p >= 3 && pat[p + 1] == b'-' {
                                let (mut start, mut end) =
                                    (pat[p] as i8 as i32, pat[p + 2] as i8 as i32);
                                if start > end {
                                    std::mem::swap(&mut start, &mut end);
                                }
                                p += 2;
                                if (c as i8 as i32) >= start && (c as i8 as i32) <= end {
                                    matched = true;
                                }
                            } else if pat[p] == c {
                                matched = true;
                            }
                            p += 1;
                        }
                        if not {
                            matched = !matched;
                        }
                        if !matched {
                            return false;
                        }
                        s += 1;
                    }
                    b => {
                        let lit = if b == b'\\' && pat.len() - p >= 2 {
                            p += 1;
                            pat[p]
                        } else {
                            b
                        };
                        if lit != s_all[s] {
                            return false;
                        }
                        s += 1;
                    }
                }
                p += 1;
                if s == s_all.len() {
                    while at(pat, p) == b'*' {
                        p += 1;
                    }
                    break;
                }
            }
            p >= pat.len() && s == s_all.len()
        }
        let mut skip = false;
        imp(pattern, 0, string, 0, &mut skip, 0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn same_as_redis_recursion(
            pattern in proptest::collection::vec(proptest::sample::select(b"ab*?[]^-\\\x80".to_vec()), 0..12),
            string in proptest::collection::vec(proptest::sample::select(b"ab]^-\\[*\x80".to_vec()), 0..10),
        ) {
            prop_assert_eq!(glob_match(&pattern, &string), reference(&pattern, &string));
        }

        #[test]
        fn never_panics(pattern in proptest::collection::vec(any::<u8>(), 0..64), string in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = glob_match(&pattern, &string);
        }
    }
}
