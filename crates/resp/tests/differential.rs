//! Differential tests: our request decoder, reply scanner and value parser against the
//! `redis-protocol` crate on generated RESP2/RESP3 traffic, in random chunkings; and random or
//! mutated bytes through the fuzzing entry points (no panic, chunking never changes results).

use proptest::prelude::*;
use redis_protocol::resp2::decode::decode as resp2_decode;
use redis_protocol::resp2::types::OwnedFrame as R2;
use redis_protocol::resp3::decode::complete::decode as resp3_decode;
use redis_protocol::resp3::types::OwnedFrame as R3;
use slotgate_resp::fuzzing::{decode_in_chunks, scan_in_chunks};
use slotgate_resp::{encode, parse_value, Limits, Value};

// === generators ===

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max),
        // Bias towards protocol bytes so CRLF, `$` and `*` show up inside payloads.
        proptest::collection::vec(prop::sample::select(b"\r\n$*:+-ab".to_vec()), 0..max),
    ]
}

fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(bytes(24), 1..8)
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..40, 1..8)
}

/// Scalars that can be map keys and set members (hash and compare cleanly in redis-protocol).
fn key() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[ -~]{0,12}".prop_map(|s| Value::Simple(s.into_bytes())),
        bytes(16).prop_map(Value::Bulk),
        any::<i64>().prop_map(Value::Integer),
    ]
}

fn resp3_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        key(),
        "[A-Z]{1,8}( [ -~]{0,10})?".prop_map(|s| Value::Error(s.into_bytes())),
        Just(Value::Null),
        prop_oneof![
            (-1e12f64..1e12).boxed(),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .boxed(),
            Just(f64::INFINITY).boxed(),
            Just(f64::NEG_INFINITY).boxed(),
        ]
        .prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        "-?[1-9][0-9]{0,40}".prop_map(|s| Value::BigNumber(s.into_bytes())),
        (prop::sample::select(vec!["txt", "mkd"]), bytes(16)).prop_map(|(f, d)| {
            let mut v = format!("{f}:").into_bytes();
            v.extend(d);
            Value::Verbatim(v)
        }),
    ]
}

fn dedup<T>(items: Vec<T>, key: impl Fn(&T) -> Vec<u8>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|i| seen.insert(key(i))).collect()
}

fn resp3_value() -> impl Strategy<Value = Value> {
    resp3_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Push),
            proptest::collection::vec(key(), 0..6)
                .prop_map(|v| Value::Set(dedup(v, |k| encoded(k, 0)))),
            proptest::collection::vec((key(), inner), 0..5)
                .prop_map(|v| Value::Map(dedup(v, |(k, _)| encoded(k, 0)))),
        ]
    })
}

fn resp2_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[ -~]{0,12}".prop_map(|s| Value::Simple(s.into_bytes())),
        "[A-Z]{1,8}( [ -~]{0,10})?".prop_map(|s| Value::Error(s.into_bytes())),
        any::<i64>().prop_map(Value::Integer),
        bytes(24).prop_map(Value::Bulk),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
    })
}

// === encoding generated values (with the crate's encoder; attributes and blob errors by seed) ===

fn encoded(v: &Value, seed: u64) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    write_value(&mut buf, v, &mut { seed });
    buf.to_vec()
}

/// Next pseudo-random bit choice from the seed.
fn coin(seed: &mut u64) -> bool {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % 4 == 0
}

fn write_value(buf: &mut bytes::BytesMut, v: &Value, seed: &mut u64) {
    if *seed != 0 && !matches!(v, Value::Null) && coin(seed) {
        // An attribute annotating the value: transparent to both parsers' values.
        buf.extend_from_slice(b"|1\r\n+ttl\r\n:3600\r\n");
    }
    match v {
        Value::Simple(s) => encode::simple(buf, s),
        Value::Error(e) if *seed != 0 && coin(seed) => {
            buf.extend_from_slice(format!("!{}\r\n", e.len()).as_bytes());
            buf.extend_from_slice(e);
            buf.extend_from_slice(b"\r\n");
        }
        Value::Error(e) => encode::error(buf, e),
        Value::Integer(n) => encode::integer(buf, *n),
        Value::Bulk(b) => encode::bulk(buf, b),
        Value::Null if *seed == 0 => encode::null_bulk(buf),
        Value::Null => encode::resp3_null(buf),
        Value::Double(x) => encode::double(buf, *x),
        Value::Boolean(b) => encode::boolean(buf, *b),
        Value::BigNumber(n) => {
            buf.extend_from_slice(b"(");
            buf.extend_from_slice(n);
            buf.extend_from_slice(b"\r\n");
        }
        Value::Verbatim(d) => {
            buf.extend_from_slice(format!("={}\r\n", d.len()).as_bytes());
            buf.extend_from_slice(d);
            buf.extend_from_slice(b"\r\n");
        }
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            match v {
                Value::Array(_) => encode::array_header(buf, items.len()),
                Value::Set(_) => encode::set_header(buf, items.len()),
                _ => encode::push_header(buf, items.len()),
            }
            for item in items {
                write_value(buf, item, seed);
            }
        }
        Value::Map(pairs) => {
            encode::map_header(buf, pairs.len());
            for (k, val) in pairs {
                write_value(buf, k, seed);
                write_value(buf, val, seed);
            }
        }
    }
}

// === converting redis-protocol frames to our values ===

fn from_resp2(f: R2) -> Value {
    match f {
        R2::SimpleString(s) => Value::Simple(s),
        R2::Error(e) => Value::Error(e.into_bytes()),
        R2::Integer(n) => Value::Integer(n),
        R2::BulkString(b) => Value::Bulk(b),
        R2::Array(items) => Value::Array(items.into_iter().map(from_resp2).collect()),
        R2::Null => Value::Null,
    }
}

fn from_resp3(f: R3) -> Value {
    match f {
        R3::BlobString { data, .. } => Value::Bulk(data),
        R3::BlobError { data, .. } => Value::Error(data),
        R3::SimpleString { data, .. } => Value::Simple(data),
        R3::SimpleError { data, .. } => Value::Error(data.into_bytes()),
        R3::Boolean { data, .. } => Value::Boolean(data),
        R3::Null => Value::Null,
        R3::Number { data, .. } => Value::Integer(data),
        R3::Double { data, .. } => Value::Double(data),
        R3::BigNumber { data, .. } => Value::BigNumber(data),
        R3::VerbatimString { data, format, .. } => {
            let mut v = match format {
                redis_protocol::resp3::types::VerbatimStringFormat::Text => b"txt:".to_vec(),
                redis_protocol::resp3::types::VerbatimStringFormat::Markdown => b"mkd:".to_vec(),
            };
            v.extend(data);
            Value::Verbatim(v)
        }
        R3::Array { data, .. } => Value::Array(data.into_iter().map(from_resp3).collect()),
        R3::Push { data, .. } => Value::Push(data.into_iter().map(from_resp3).collect()),
        R3::Set { data, .. } => Value::Set(data.into_iter().map(from_resp3).collect()),
        R3::Map { data, .. } => Value::Map(
            data.into_iter()
                .map(|(k, v)| (from_resp3(k), from_resp3(v)))
                .collect(),
        ),
        other => panic!("unexpected frame {other:?}"),
    }
}

/// Sets and maps compare without order (redis-protocol stores them in hash containers).
fn normalize(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Push(items) => Value::Push(items.into_iter().map(normalize).collect()),
        Value::Set(items) => {
            let mut items: Vec<Value> = items.into_iter().map(normalize).collect();
            items.sort_by_key(|i| format!("{i:?}"));
            Value::Set(items)
        }
        Value::Map(pairs) => {
            let mut pairs: Vec<(Value, Value)> = pairs
                .into_iter()
                .map(|(k, v)| (normalize(k), normalize(v)))
                .collect();
            pairs.sort_by_key(|p| format!("{p:?}"));
            Value::Map(pairs)
        }
        other => other,
    }
}

/// Redis-protocol's frame boundaries and values for a buffer of complete frames.
fn reference_frames(
    mut input: &[u8],
    decode: impl Fn(&[u8]) -> Option<(Value, usize)>,
) -> Vec<(usize, Value)> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (value, len) = decode(input).expect("reference decoder");
        out.push((len, value));
        input = &input[len..];
    }
    out
}

fn check_replies(input: &[u8], sizes: &[usize], reference: Vec<(usize, Value)>) {
    let ours = scan_in_chunks(input, sizes);
    assert_eq!(ours.end, Ok(0));
    assert_eq!(ours.frames.len(), reference.len());
    for (reply, (len, value)) in ours.frames.iter().zip(reference) {
        assert_eq!(reply.raw.len(), len);
        let (parsed, consumed) = parse_value(&reply.raw).unwrap().unwrap();
        assert_eq!(consumed, len);
        assert_eq!(normalize(parsed), normalize(value));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn requests_agree_with_redis_protocol(
        commands in proptest::collection::vec(command(), 1..6),
        sizes in chunk_sizes(),
    ) {
        let mut input = Vec::new();
        for c in &commands {
            input.extend_from_slice(&encoded_command(c));
        }
        let ours = decode_in_chunks(Limits::default(), &input, &sizes);
        prop_assert_eq!(&ours.end, &Ok(0));
        let reference = reference_frames(&input, |b| {
            resp2_decode(b).unwrap().map(|(f, n)| (from_resp2(f), n))
        });
        prop_assert_eq!(ours.frames.len(), reference.len());
        for ((req, (len, value)), cmd) in ours.frames.iter().zip(reference).zip(&commands) {
            prop_assert_eq!(req.raw().len(), len);
            let args: Vec<Value> = req.args().map(|a| Value::Bulk(a.to_vec())).collect();
            prop_assert_eq!(Value::Array(args), value);
            prop_assert!(req.args().eq(cmd.iter().map(|a| &a[..])));
        }
    }

    #[test]
    fn inline_requests_round_trip(
        commands in proptest::collection::vec(proptest::collection::vec(bytes(12), 1..6), 1..4),
        sizes in chunk_sizes(),
    ) {
        // Every byte escaped as \xHH inside double quotes.
        let mut input = Vec::new();
        for c in &commands {
            for (i, arg) in c.iter().enumerate() {
                if i > 0 { input.push(b' '); }
                input.push(b'"');
                for b in arg { input.extend_from_slice(format!("\\x{b:02x}").as_bytes()); }
                input.push(b'"');
            }
            input.extend_from_slice(b"\r\n");
        }
        let ours = decode_in_chunks(Limits::default(), &input, &sizes);
        prop_assert_eq!(&ours.end, &Ok(0));
        prop_assert_eq!(ours.frames.len(), commands.len());
        for (req, cmd) in ours.frames.iter().zip(&commands) {
            prop_assert!(req.is_inline());
            prop_assert!(req.args().eq(cmd.iter().map(|a| &a[..])));
            let wire = encoded_command(cmd);
            prop_assert_eq!(&req.wire()[..], &wire[..]);
        }
    }

    #[test]
    fn resp2_replies_agree_with_redis_protocol(
        values in proptest::collection::vec(resp2_value(), 1..5),
        sizes in chunk_sizes(),
    ) {
        let input: Vec<u8> = values.iter().flat_map(|v| encoded(v, 0)).collect();
        let reference = reference_frames(&input, |b| {
            resp2_decode(b).unwrap().map(|(f, n)| (from_resp2(f), n))
        });
        for ((_, theirs), generated) in reference.iter().zip(&values) {
            prop_assert_eq!(theirs, generated);
        }
        check_replies(&input, &sizes, reference);
    }

    #[test]
    fn resp3_replies_agree_with_redis_protocol(
        values in proptest::collection::vec(resp3_value(), 1..5),
        seed in 1u64..,
        sizes in chunk_sizes(),
    ) {
        let mut input = Vec::new();
        let mut s = seed;
        for v in &values {
            let mut buf = bytes::BytesMut::new();
            write_value(&mut buf, v, &mut s);
            input.extend_from_slice(&buf);
        }
        let reference = reference_frames(&input, |b| {
            resp3_decode(b).unwrap().map(|(f, n)| (from_resp3(f), n))
        });
        for ((_, theirs), generated) in reference.iter().zip(&values) {
            prop_assert_eq!(normalize(theirs.clone()), normalize(generated.clone()));
        }
        check_replies(&input, &sizes, reference);
    }

    #[test]
    fn random_bytes_never_panic(input in bytes(256)) {
        slotgate_resp::fuzzing::request_decoder(&input);
        slotgate_resp::fuzzing::reply_scanner(&input);
    }

    #[test]
    fn mutated_frames_never_panic(
        values in proptest::collection::vec(resp3_value(), 1..4),
        commands in proptest::collection::vec(command(), 1..4),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut replies: Vec<u8> = values.iter().flat_map(|v| encoded(v, 7)).collect();
        let mut requests: Vec<u8> = commands.iter().flat_map(|c| encoded_command(c)).collect();
        for (i, b) in &flips {
            let at = i.index(replies.len());
            replies[at] = *b;
            let at = i.index(requests.len());
            requests[at] = *b;
        }
        slotgate_resp::fuzzing::reply_scanner(&replies);
        slotgate_resp::fuzzing::request_decoder(&requests);
    }
}

fn encoded_command(args: &[Vec<u8>]) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    encode::command(&mut buf, args);
    buf.to_vec()
}
