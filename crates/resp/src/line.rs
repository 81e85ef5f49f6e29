//! Byte-level helpers shared by the request decoder, the reply scanner and the value parser:
//! finding a line end quickly and parsing a length header without allocating.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Position of the first `needle` in `hay`.
///
/// Checks eight bytes per step (SWAR) so scanning a long inline line or simple string costs
/// a fraction of a byte-by-byte loop; short haystacks take the plain loop.
#[inline]
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    if hay.len() < 16 {
        return hay.iter().position(|&b| b == needle);
    }
    let pattern = LO.wrapping_mul(u64::from(needle));
    let mut chunks = hay.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // A byte of `x` is zero exactly where the chunk holds `needle`.
        if x.wrapping_sub(LO) & !x & HI != 0 {
            return chunk.iter().position(|&b| b == needle).map(|i| offset + i);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| offset + i)
}

/// Offset of the `\n` of the first CRLF in `buf` whose `\n` is at or after `from` and whose
/// `\r` is after `floor`. Lone `\r` and `\n` bytes are part of the line, as in hiredis and
/// redis-protocol. `Err(resume)`: no CRLF yet; a later search (after more bytes arrive) may
/// resume at `resume`.
#[inline]
pub(crate) fn find_crlf(buf: &[u8], from: usize, floor: usize) -> Result<usize, usize> {
    let mut at = from;
    while let Some(i) = buf.get(at..).and_then(|rest| find_byte(rest, b'\n')) {
        let newline = at + i;
        if newline > floor + 1 && buf[newline - 1] == b'\r' {
            return Ok(newline);
        }
        at = newline + 1;
    }
    Err(buf.len().max(from))
}

/// Parse a decimal integer exactly like Redis's `string2ll`: optional `-`, no `+`, no leading
/// zeros (except `0` itself), no `-0`, at most 20 characters, no overflow. Also what Redis
/// accepts where a command wants an integer argument (`getLongLongFromObject`).
#[inline]
pub fn parse_ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulate as a negative number so i64::MIN parses without overflow.
    let mut v: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if negative {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// C `isspace` in the "C" locale: space, `\t`, `\n`, `\v`, `\f`, `\r`.
#[inline]
pub(crate) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

#[cfg(test)]
mod tests {
    use super::{find_byte, find_crlf, parse_ll};

    #[test]
    fn find_crlf_skips_lone_line_breaks() {
        assert_eq!(find_crlf(b"+a\nb\rc\r\n", 0, 0), Ok(7));
        assert_eq!(find_crlf(b"+a\r", 0, 0), Err(3));
        assert_eq!(find_crlf(b"+a\r\n", 3, 0), Ok(3));
        // The `\r` must come after `floor`.
        assert_eq!(find_crlf(b"\r\n\r\n", 0, 0), Ok(3));
        assert_eq!(find_crlf(b"", 5, 0), Err(5));
    }

    #[test]
    fn find_byte_matches_naive_search() {
        let mut hay = vec![b'a'; 100];
        for pos in 0..100 {
            hay[pos] = b'\n';
            for start in 0..=pos {
                assert_eq!(find_byte(&hay[start..], b'\n'), Some(pos - start));
            }
            hay[pos] = 0x8a; // high bit set, must not match
            assert_eq!(find_byte(&hay, b'\n'), None);
            hay[pos] = b'a';
        }
        assert_eq!(find_byte(b"", b'\n'), None);
    }

    #[test]
    fn parse_ll_follows_string2ll() {
        assert_eq!(parse_ll(b"0"), Some(0));
        assert_eq!(parse_ll(b"123"), Some(123));
        assert_eq!(parse_ll(b"-1"), Some(-1));
        assert_eq!(parse_ll(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_ll(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"123456789012345678901",
        ] {
            assert_eq!(parse_ll(bad), None, "{:?}", bad);
        }
    }
}
