//! Inline commands (`PING\r\n`, what telnet users and `redis-benchmark`'s `PING_INLINE`
//! send): split like Redis's `sdssplitargs`, then re-encoded as multibulk for upstream.

use bytes::{Bytes, BytesMut};

use super::args::ArgRanges;
use crate::line::is_c_space;
use crate::ProtocolError;

/// Split an inline line (without its line end) and encode it as a multibulk command.
///
/// `Ok(None)` when the line holds no argument (Redis ignores such lines). Like Redis, which
/// handles the line as a C string, everything from the first NUL byte on is ignored.
///
/// # Errors
/// [`ProtocolError::UnbalancedQuotes`] for an unterminated quote or a closing quote followed
/// by something other than a space.
pub(crate) fn encode_inline(line: &[u8]) -> Result<Option<(Bytes, ArgRanges)>, ProtocolError> {
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let mut scratch = Vec::with_capacity(line.len());
    let mut bounds: Vec<(usize, usize)> = Vec::new();
    split_args(line, &mut scratch, &mut bounds)?;
    if bounds.is_empty() {
        return Ok(None);
    }
    let args: Vec<&[u8]> = bounds.iter().map(|&(s, e)| &scratch[s..e]).collect();
    let mut buf = BytesMut::with_capacity(scratch.len() + 16 * args.len() + 16);
    let ranges = crate::encode::command_ranges(&mut buf, &args);
    Ok(Some((buf.freeze(), ranges)))
}

/// Port of `sdssplitargs`: arguments are appended to `out`, their `(start, end)` to `bounds`.
///
/// Outside quotes, space, `\t`, `\r` and `\n` end an argument; `"…"` understands `\n \r \t
/// \b \a \xHH` and `\<any>`; `'…'` only `\'`. A closing quote must be followed by a C
/// whitespace character or the end of the line.
fn split_args(
    line: &[u8],
    out: &mut Vec<u8>,
    bounds: &mut Vec<(usize, usize)>,
) -> Result<(), ProtocolError> {
    // Reads past the end see NUL, as in C.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut p = 0;
    loop {
        while p < line.len() && is_c_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(());
        }
        let start = out.len();
        let (mut in_double, mut in_single, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if in_double {
                if c == b'\\' && at(p + 1) == b'x' && hex(at(p + 2)).is_some() {
                    if let (Some(hi), Some(lo)) = (hex(at(p + 2)), hex(at(p + 3))) {
                        out.push(hi * 16 + lo);
                        p += 3;
                    } else {
                        // `\x` without two hex digits: an escaped `x`.
                        p += 1;
                        out.push(b'x');
                    }
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    out.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    out.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    out.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    out.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => out.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        bounds.push((start, out.len()));
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::split_args;
    use crate::ProtocolError;

    fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        let (mut out, mut bounds) = (Vec::new(), Vec::new());
        split_args(line, &mut out, &mut bounds)?;
        Ok(bounds.iter().map(|&(s, e)| out[s..e].to_vec()).collect())
    }

    fn ok(line: &[u8], want: &[&[u8]]) {
        let got = split(line).unwrap();
        let want: Vec<Vec<u8>> = want.iter().map(|a| a.to_vec()).collect();
        assert_eq!(got, want, "line {:?}", String::from_utf8_lossy(line));
    }

    #[test]
    fn splits_like_sdssplitargs() {
        ok(b"", &[]);
        ok(b"  \t ", &[]);
        ok(b"PING", &[b"PING"]);
        ok(b"  SET  k\tv  ", &[b"SET", b"k", b"v"]);
        ok(br#"SET "a b" c"#, &[b"SET", b"a b", b"c"]);
        ok(
            br#"ECHO "\x41\x4a\n\r\t\b\a\\\"\q""#,
            &[b"ECHO", b"AJ\n\r\t\x08\x07\\\"q"],
        );
        ok(br#"ECHO "\x4""#, &[b"ECHO", b"x4"]);
        ok(br#"ECHO 'it\'s' 'a\nb'"#, &[b"ECHO", b"it's", b"a\\nb"]);
        ok(br#"ECHO a"b c""#, &[b"ECHO", b"ab c"]);
        ok(br#"ECHO """#, &[b"ECHO", b""]);
        ok(b"ECHO a\x0bb", &[b"ECHO", b"a\x0bb"]);
        ok(b"ECHO \"a\"\x0bb", &[b"ECHO", b"a", b"b"]);
        ok(b"A\rB", &[b"A", b"B"]);
    }

    #[test]
    fn rejects_unbalanced_quotes() {
        for line in [
            &br#"SET "a"b c"#[..],
            br#"SET 'a"#,
            br#"SET "a"#,
            br#"SET "a\"#,
            br#"SET 'a'b"#,
        ] {
            assert_eq!(
                split(line),
                Err(ProtocolError::UnbalancedQuotes),
                "{line:?}"
            );
        }
    }
}
