//! Slot hashing and slot-map lookup: paid once per key of every routed command.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use slotgate_cluster::{crc16, slot, SlotMap};
use slotgate_resp::value::Value;

fn node(port: i64) -> Value {
    Value::Array(vec![
        Value::Bulk(b"127.0.0.1".to_vec()),
        Value::Integer(port),
        Value::Bulk(b"id".to_vec()),
    ])
}

fn three_shard_map() -> SlotMap {
    let range =
        |a: i64, b: i64, p: i64| Value::Array(vec![Value::Integer(a), Value::Integer(b), node(p)]);
    let reply = Value::Array(vec![
        range(0, 5460, 7000),
        range(5461, 10922, 7001),
        range(10923, 16383, 7002),
    ]);
    SlotMap::from_cluster_slots(&reply, "127.0.0.1:7000").expect("valid reply")
}

fn bench_slot(c: &mut Criterion) {
    c.bench_function("slot/key:000123 (redis-benchmark key)", |b| {
        b.iter(|| slot(black_box(b"key:000000123456")))
    });
    c.bench_function("slot/hash tag", |b| {
        b.iter(|| slot(black_box(b"{user1000}.following")))
    });
    let long = vec![b'k'; 256];
    c.bench_function("slot/256-byte key", |b| b.iter(|| slot(black_box(&long))));
    // The checksum alone, in-house against the `crc16` crate (docs/architecture.md, "Dependencies").
    for len in [8, 16, 256] {
        let data: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        c.bench_function(&format!("crc16/in-house {len} bytes"), |b| {
            b.iter(|| crc16(black_box(&data)))
        });
        c.bench_function(&format!("crc16/crc16 crate {len} bytes"), |b| {
            b.iter(|| ::crc16::State::<::crc16::XMODEM>::calculate(black_box(&data)))
        });
    }
    let map = three_shard_map();
    c.bench_function("slotmap/primary_for_slot", |b| {
        b.iter(|| map.primary_for_slot(black_box(12182)).is_some())
    });
}

criterion_group!(benches, bench_slot);
criterion_main!(benches);
