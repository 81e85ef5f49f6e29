//! Differential against `redis-protocol`: wherever it decodes a frame that it re-encodes to
//! the very same bytes (a canonical frame), our scanner finds the same frame, and for an array
//! of bulk strings our request decoder finds the same arguments.
#![no_main]

use redis_protocol::resp2::types::{OwnedFrame as R2, Resp2Frame};
use redis_protocol::resp3::types::{FrameKind, OwnedFrame as R3, Resp3Frame};
use slotgate_resp::fuzzing::{decode_in_chunks, scan_in_chunks};
use slotgate_resp::Limits;

fn canonical_resp2(data: &[u8]) -> Option<(R2, usize)> {
    let (frame, n) = redis_protocol::resp2::decode::decode(data).ok()??;
    let mut again = vec![0; frame.encode_len(false)];
    redis_protocol::resp2::encode::encode(&mut again, &frame, false).ok()?;
    (again == data[..n]).then_some((frame, n))
}

/// Whether redis-protocol accepted frames Redis never sends as replies (`HELLO`, stream
/// chunks and terminators, which it also takes as elements of ordinary aggregates).
fn has_non_reply_frames(frame: &R3) -> bool {
    let odd = matches!(
        frame.kind(),
        FrameKind::Hello | FrameKind::ChunkedString | FrameKind::EndStream
    );
    let in_attributes = frame.attributes().is_some_and(|a| {
        a.iter()
            .any(|(k, v)| has_non_reply_frames(k) || has_non_reply_frames(v))
    });
    let in_children = match frame {
        R3::Array { data, .. } | R3::Push { data, .. } => data.iter().any(has_non_reply_frames),
        R3::Set { data, .. } => data.iter().any(has_non_reply_frames),
        R3::Map { data, .. } => data
            .iter()
            .any(|(k, v)| has_non_reply_frames(k) || has_non_reply_frames(v)),
        _ => false,
    };
    odd || in_attributes || in_children
}

fn canonical_resp3(data: &[u8]) -> Option<(R3, usize)> {
    let (frame, n) = redis_protocol::resp3::decode::complete::decode(data).ok()??;
    if has_non_reply_frames(&frame) {
        return None;
    }
    let mut again = vec![0; frame.encode_len(false)];
    redis_protocol::resp3::encode::complete::encode(&mut again, &frame, false).ok()?;
    (again == data[..n]).then_some((frame, n))
}

fn assert_one_reply(frame: &[u8]) {
    let replies = scan_in_chunks(frame, &[1]);
    assert_eq!(replies.end, Ok(0));
    assert_eq!(replies.frames.len(), 1);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((frame, n)) = canonical_resp2(data) {
        assert_one_reply(&data[..n]);
        if let R2::Array(items) = &frame {
            let args: Option<Vec<&[u8]>> = items
                .iter()
                .map(|f| match f {
                    R2::BulkString(b) => Some(&b[..]),
                    _ => None,
                })
                .collect();
            if let Some(args) = args.filter(|a| !a.is_empty()) {
                let requests = decode_in_chunks(Limits::default(), &data[..n], &[1]);
                assert_eq!(requests.end, Ok(0));
                assert_eq!(requests.frames.len(), 1);
                assert!(requests.frames[0].args().eq(args.iter().copied()));
            }
        }
    }
    if let Some((_, n)) = canonical_resp3(data) {
        assert_one_reply(&data[..n]);
    }
});
