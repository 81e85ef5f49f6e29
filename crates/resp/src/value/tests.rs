use super::{parse_value, Value, MAX_DEPTH};
use crate::ProtocolError;

fn parsed(input: &[u8]) -> Value {
    let (value, consumed) = parse_value(input).unwrap().unwrap();
    assert_eq!(consumed, input.len());
    // Every proper prefix is incomplete.
    for end in 0..input.len() {
        assert_eq!(parse_value(&input[..end]), Ok(None), "prefix {end}");
    }
    value
}

fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

#[test]
fn scalars() {
    assert_eq!(parsed(b"+OK\r\n"), Value::Simple(b"OK".to_vec()));
    assert_eq!(parsed(b"-ERR x\r\n"), Value::Error(b"ERR x".to_vec()));
    assert_eq!(parsed(b"!5\r\nERR x\r\n"), Value::Error(b"ERR x".to_vec()));
    assert_eq!(parsed(b":-7\r\n"), Value::Integer(-7));
    assert_eq!(parsed(b"$3\r\na\nb\r\n"), bulk("a\nb"));
    assert_eq!(parsed(b"$-1\r\n"), Value::Null);
    assert_eq!(parsed(b"*-1\r\n"), Value::Null);
    assert_eq!(parsed(b"_\r\n"), Value::Null);
    assert_eq!(parsed(b",1.5\r\n"), Value::Double(1.5));
    assert_eq!(parsed(b",inf\r\n"), Value::Double(f64::INFINITY));
    assert_eq!(parsed(b",-inf\r\n"), Value::Double(f64::NEG_INFINITY));
    assert!(matches!(parsed(b",nan\r\n"), Value::Double(x) if x.is_nan()));
    assert_eq!(parsed(b"#f\r\n"), Value::Boolean(false));
    assert_eq!(parsed(b"(123\r\n"), Value::BigNumber(b"123".to_vec()));
    assert_eq!(
        parsed(b"=7\r\ntxt:abc\r\n"),
        Value::Verbatim(b"txt:abc".to_vec())
    );
}

#[test]
fn aggregates() {
    assert_eq!(
        parsed(b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n"),
        Value::Array(vec![bulk("a"), Value::Array(vec![Value::Integer(1)])])
    );
    assert_eq!(
        parsed(b"%2\r\n+a\r\n:1\r\n+a\r\n:2\r\n"),
        Value::Map(vec![
            (Value::Simple(b"a".to_vec()), Value::Integer(1)),
            (Value::Simple(b"a".to_vec()), Value::Integer(2)),
        ])
    );
    assert_eq!(parsed(b"~1\r\n:1\r\n"), Value::Set(vec![Value::Integer(1)]));
    assert_eq!(
        parsed(b">1\r\n:1\r\n"),
        Value::Push(vec![Value::Integer(1)])
    );
    assert_eq!(
        parsed(b"|1\r\n+a\r\n+b\r\n*1\r\n|0\r\n:1\r\n"),
        Value::Array(vec![Value::Integer(1)])
    );
    let v = parsed(b"*2\r\n:1\r\n$1\r\nx\r\n");
    assert_eq!(v.as_array().unwrap()[0].as_integer(), Some(1));
    assert_eq!(v.as_array().unwrap()[1].as_bytes(), Some(&b"x"[..]));
    assert_eq!(v.as_bytes(), None);
}

#[test]
fn cluster_slots_reply() {
    let raw = b"*1\r\n*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:30001\r\n$40\r\n09dbe9720cda62f7865eabc5fd8857c5d2678366\r\n*3\r\n$9\r\n127.0.0.1\r\n:30004\r\n$40\r\n821d8ca00d7ccf931ed3ffc7e3db0599d2271abf\r\n";
    let v = parsed(raw);
    let range = &v.as_array().unwrap()[0];
    let fields = range.as_array().unwrap();
    assert_eq!(fields[1], Value::Integer(5460));
    assert_eq!(fields[2].as_array().unwrap()[1], Value::Integer(30001));
}

#[test]
fn errors() {
    assert_eq!(
        parse_value(b":x\r\n"),
        Err(ProtocolError::InvalidReplyValue)
    );
    assert_eq!(
        parse_value(b"#x\r\n"),
        Err(ProtocolError::InvalidReplyValue)
    );
    assert_eq!(
        parse_value(b",1.2.3\r\n"),
        Err(ProtocolError::InvalidReplyValue)
    );
    assert_eq!(
        parse_value(b",infinity\r\n"),
        Err(ProtocolError::InvalidReplyValue)
    );
    assert_eq!(
        parse_value(b"_x\r\n"),
        Err(ProtocolError::InvalidReplyValue)
    );
    assert_eq!(
        parse_value(b"x\r\n"),
        Err(ProtocolError::InvalidReplyType(b'x'))
    );
    assert_eq!(parse_value(b"+a\n"), Ok(None));
    assert_eq!(
        parse_value(b"+a\nb\r\n"),
        Ok(Some((Value::Simple(b"a\nb".to_vec()), 6)))
    );
    assert_eq!(
        parse_value(b"$1\r\nab\r\n"),
        Err(ProtocolError::MissingCrlf)
    );
    assert_eq!(
        parse_value(b"~-1\r\n"),
        Err(ProtocolError::InvalidReplyLength)
    );
    assert_eq!(parse_value(b"*?\r\n"), Err(ProtocolError::StreamedFrame));
    let deep = b"*1\r\n".repeat(MAX_DEPTH + 2);
    assert_eq!(parse_value(&deep), Err(ProtocolError::TooDeep));
    let attrs = b"|0\r\n".repeat(MAX_DEPTH + 2);
    assert_eq!(parse_value(&attrs), Err(ProtocolError::TooDeep));
    // A bogus count does not reserve memory for it.
    assert_eq!(parse_value(b"*9223372036854775807\r\n:1\r\n"), Ok(None));
}
