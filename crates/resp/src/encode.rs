//! Writers for the replies the proxy makes itself (errors, emulated CLUSTER/INFO replies,
//! merged MGET arrays) and for the commands it sends upstream on its own (`ASKING`, split
//! sub-commands, `CLUSTER SLOTS`).
//!
//! Every writer appends to a `BytesMut`. Integers are formatted into a small stack buffer, not
//! with `format!`, because some of these run once per command.

use bytes::{BufMut, BytesMut};

use crate::request::args::ArgRanges;

/// Decimal digits of `n` in a stack buffer; returns the buffer and where the digits start.
#[inline]
fn format_u64(mut n: u64, out: &mut [u8; 20]) -> usize {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return i;
        }
    }
}

/// Append `<prefix><decimal n>\r\n`.
#[inline]
fn header(buf: &mut BytesMut, prefix: u8, n: usize) {
    let mut digits = [0u8; 20];
    let start = format_u64(n as u64, &mut digits);
    buf.reserve(23);
    buf.put_u8(prefix);
    buf.put_slice(&digits[start..]);
    buf.put_slice(b"\r\n");
}

/// `+<s>\r\n`. `s` must not contain `\r` or `\n`.
pub fn simple(buf: &mut BytesMut, s: &[u8]) {
    buf.reserve(s.len() + 3);
    buf.put_u8(b'+');
    buf.put_slice(s);
    buf.put_slice(b"\r\n");
}

/// `-<s>\r\n`; `s` is the error text without the leading `-`, e.g. `ERR unknown command`.
/// `s` must not contain `\r` or `\n`.
pub fn error(buf: &mut BytesMut, s: &[u8]) {
    buf.reserve(s.len() + 3);
    buf.put_u8(b'-');
    buf.put_slice(s);
    buf.put_slice(b"\r\n");
}

/// `:<n>\r\n`.
pub fn integer(buf: &mut BytesMut, n: i64) {
    let mut digits = [0u8; 20];
    let start = format_u64(n.unsigned_abs(), &mut digits);
    buf.reserve(24);
    buf.put_u8(b':');
    if n < 0 {
        buf.put_u8(b'-');
    }
    buf.put_slice(&digits[start..]);
    buf.put_slice(b"\r\n");
}

/// `$<len>\r\n<data>\r\n`.
pub fn bulk(buf: &mut BytesMut, data: &[u8]) {
    buf.reserve(data.len() + 25);
    header(buf, b'$', data.len());
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
}

/// RESP2 null bulk string, `$-1\r\n`.
pub fn null_bulk(buf: &mut BytesMut) {
    buf.put_slice(b"$-1\r\n");
}

/// RESP2 null array, `*-1\r\n`.
pub fn null_array(buf: &mut BytesMut) {
    buf.put_slice(b"*-1\r\n");
}

/// `*<n>\r\n`; the `n` elements follow.
pub fn array_header(buf: &mut BytesMut, n: usize) {
    header(buf, b'*', n);
}

/// RESP3 null, `_\r\n`.
pub fn resp3_null(buf: &mut BytesMut) {
    buf.put_slice(b"_\r\n");
}

/// RESP3 map header `%<n>\r\n`; `n` key/value pairs (2n frames) follow.
pub fn map_header(buf: &mut BytesMut, n: usize) {
    header(buf, b'%', n);
}

/// RESP3 set header `~<n>\r\n`.
pub fn set_header(buf: &mut BytesMut, n: usize) {
    header(buf, b'~', n);
}

/// RESP3 push header `><n>\r\n`.
pub fn push_header(buf: &mut BytesMut, n: usize) {
    header(buf, b'>', n);
}

/// RESP3 double `,<x>\r\n`, with `inf`, `-inf` and `nan` as Redis writes them.
pub fn double(buf: &mut BytesMut, x: f64) {
    use std::fmt::Write;
    buf.put_u8(b',');
    if x.is_nan() {
        buf.put_slice(b"nan");
    } else if x.is_infinite() {
        buf.put_slice(if x > 0.0 { &b"inf"[..] } else { &b"-inf"[..] });
    } else {
        // Shortest representation that round-trips; never fails on BytesMut.
        let _ = write!(buf, "{x}");
    }
    buf.put_slice(b"\r\n");
}

/// RESP3 boolean `#t\r\n` / `#f\r\n`.
pub fn boolean(buf: &mut BytesMut, b: bool) {
    buf.put_slice(if b { &b"#t\r\n"[..] } else { &b"#f\r\n"[..] });
}

/// A command as a multibulk array of bulk strings, e.g. `*1\r\n$6\r\nASKING\r\n`.
pub fn command<A: AsRef<[u8]>>(buf: &mut BytesMut, args: &[A]) {
    command_ranges(buf, args);
}

/// [`command`], returning where each argument landed, relative to the start of `buf`.
pub(crate) fn command_ranges<A: AsRef<[u8]>>(buf: &mut BytesMut, args: &[A]) -> ArgRanges {
    let size: usize = args.iter().map(|a| a.as_ref().len() + 25).sum::<usize>() + 23;
    buf.reserve(size);
    let mut ranges = ArgRanges::with_capacity(args.len());
    array_header(buf, args.len());
    for arg in args {
        let arg = arg.as_ref();
        header(buf, b'$', arg.len());
        ranges.push(buf.len(), arg.len());
        buf.put_slice(arg);
        buf.put_slice(b"\r\n");
    }
    ranges
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    fn written(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut buf = BytesMut::new();
        f(&mut buf);
        buf.to_vec()
    }

    #[test]
    fn writes_exact_bytes() {
        assert_eq!(written(|b| super::simple(b, b"OK")), b"+OK\r\n");
        assert_eq!(written(|b| super::error(b, b"ERR x")), b"-ERR x\r\n");
        assert_eq!(written(|b| super::integer(b, 0)), b":0\r\n");
        assert_eq!(written(|b| super::integer(b, -42)), b":-42\r\n");
        assert_eq!(
            written(|b| super::integer(b, i64::MIN)),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(
            written(|b| super::integer(b, i64::MAX)),
            b":9223372036854775807\r\n"
        );
        assert_eq!(written(|b| super::bulk(b, b"")), b"$0\r\n\r\n");
        assert_eq!(written(|b| super::bulk(b, b"a\r\nb")), b"$4\r\na\r\nb\r\n");
        assert_eq!(written(super::null_bulk), b"$-1\r\n");
        assert_eq!(written(super::null_array), b"*-1\r\n");
        assert_eq!(written(|b| super::array_header(b, 3)), b"*3\r\n");
        assert_eq!(written(super::resp3_null), b"_\r\n");
        assert_eq!(written(|b| super::map_header(b, 2)), b"%2\r\n");
        assert_eq!(written(|b| super::set_header(b, 10)), b"~10\r\n");
        assert_eq!(written(|b| super::push_header(b, 1)), b">1\r\n");
        assert_eq!(written(|b| super::double(b, 1.5)), b",1.5\r\n");
        assert_eq!(written(|b| super::double(b, -3.0)), b",-3\r\n");
        assert_eq!(written(|b| super::double(b, f64::INFINITY)), b",inf\r\n");
        assert_eq!(
            written(|b| super::double(b, f64::NEG_INFINITY)),
            b",-inf\r\n"
        );
        assert_eq!(written(|b| super::double(b, f64::NAN)), b",nan\r\n");
        assert_eq!(written(|b| super::boolean(b, true)), b"#t\r\n");
        assert_eq!(written(|b| super::boolean(b, false)), b"#f\r\n");
        assert_eq!(
            written(|b| super::command(b, &["SET", "k", ""])),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
        let none: [&[u8]; 0] = [];
        assert_eq!(written(|b| super::command(b, &none)), b"*0\r\n");
    }

    #[test]
    fn command_ranges_point_at_arguments() {
        let mut buf = BytesMut::from(&b"prefix"[..]);
        let ranges = super::command_ranges(&mut buf, &["GET", "key"]);
        let args: Vec<&[u8]> = ranges.iter().map(|(s, l)| &buf[s..s + l]).collect();
        assert_eq!(args, vec![&b"GET"[..], b"key"]);
    }
}
