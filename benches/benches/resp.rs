//! RESP micro-benchmarks: the request decoder and the reply scanner on the shapes the proxy
//! sees most (pipelined SETs, GET, a bulk reply, an MGET-like array reply).
//!
//! Run with `cargo bench -p slotgate-benches --bench resp`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use slotgate_resp::{encode, ReplyScanner, RequestDecoder};

/// A pipeline of 16 `SET key:000123 <64 bytes>` commands.
fn set_pipeline() -> Vec<u8> {
    let mut buf = BytesMut::new();
    for i in 0..16 {
        let key = format!("key:{:06}", 123 + i);
        encode::command(&mut buf, &[&b"SET"[..], key.as_bytes(), &[b'v'; 64]]);
    }
    buf.to_vec()
}

fn decode_requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_decoder");

    let pipeline = set_pipeline();
    group.throughput(Throughput::Bytes(pipeline.len() as u64));
    group.bench_function("pipeline_16_set_64b", |b| {
        let mut decoder = RequestDecoder::default();
        b.iter_batched(
            || BytesMut::from(&pipeline[..]),
            |mut buf| {
                let mut n = 0;
                while let Some(req) = decoder.decode(&mut buf).unwrap() {
                    n += req.argc();
                }
                black_box(n)
            },
            BatchSize::SmallInput,
        )
    });

    let get = b"*2\r\n$3\r\nGET\r\n$10\r\nkey:000123\r\n";
    group.throughput(Throughput::Bytes(get.len() as u64));
    group.bench_function("get", |b| {
        let mut decoder = RequestDecoder::default();
        b.iter_batched(
            || BytesMut::from(&get[..]),
            |mut buf| black_box(decoder.decode(&mut buf).unwrap()),
            BatchSize::SmallInput,
        )
    });

    let inline = b"PING\r\n";
    group.throughput(Throughput::Bytes(inline.len() as u64));
    group.bench_function("inline_ping", |b| {
        let mut decoder = RequestDecoder::default();
        b.iter_batched(
            || BytesMut::from(&inline[..]),
            |mut buf| black_box(decoder.decode(&mut buf).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn scan_replies(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply_scanner");

    let mut bulk = BytesMut::new();
    encode::bulk(&mut bulk, &[b'x'; 1024]);
    group.throughput(Throughput::Bytes(bulk.len() as u64));
    group.bench_function("bulk_1k", |b| {
        let mut scanner = ReplyScanner::new();
        b.iter_batched(
            || bulk.clone(),
            |mut buf| black_box(scanner.scan(&mut buf).unwrap()),
            BatchSize::SmallInput,
        )
    });

    let mut array = BytesMut::new();
    encode::array_header(&mut array, 100);
    for i in 0..100 {
        encode::bulk(&mut array, format!("value:{i:058}").as_bytes());
    }
    group.throughput(Throughput::Bytes(array.len() as u64));
    group.bench_function("array_100_bulks", |b| {
        let mut scanner = ReplyScanner::new();
        b.iter_batched(
            || array.clone(),
            |mut buf| black_box(scanner.scan(&mut buf).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, decode_requests, scan_replies);
criterion_main!(benches);
