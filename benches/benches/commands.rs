//! Command-table micro-benchmarks: lookup of argv[0] (hot path for every request) and
//! key extraction for a 10-pair MSET.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use slotgate_commands::{lookup, lookup_name, KeyIndices};

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("commands/lookup");
    for name in [&b"GET"[..], b"set", b"ZUNIONSTORE"] {
        group.bench_function(String::from_utf8_lossy(name).into_owned(), |b| {
            b.iter(|| lookup_name(black_box(name)))
        });
    }
    let client_setname: [&[u8]; 3] = [b"CLIENT", b"SETNAME", b"app"];
    group.bench_function("CLIENT SETNAME", |b| {
        b.iter(|| lookup(black_box(&client_setname[..])))
    });
    group.bench_function("unknown", |b| {
        b.iter(|| lookup_name(black_box(b"NOSUCHCOMMAND")))
    });
    group.finish();
}

fn bench_key_indices(c: &mut Criterion) {
    let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
    for i in 0..10 {
        args.push(format!("key:{i}").into_bytes());
        args.push(format!("value:{i}").into_bytes());
    }
    let mset = lookup(&args[..]).expect("mset is in the table");
    let mut out = KeyIndices::new();
    c.bench_function("commands/key_indices/mset_10_pairs", |b| {
        b.iter(|| {
            mset.key_indices(black_box(&args[..]), &mut out).unwrap();
            black_box(out.len())
        })
    });
    let eval: [&[u8]; 6] = [b"EVAL", b"return 1", b"3", b"a", b"b", b"c"];
    let eval_cmd = lookup(&eval[..]).expect("eval is in the table");
    c.bench_function("commands/key_indices/eval_3_keys", |b| {
        b.iter(|| {
            eval_cmd
                .key_indices(black_box(&eval[..]), &mut out)
                .unwrap();
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench_lookup, bench_key_indices);
criterion_main!(benches);
