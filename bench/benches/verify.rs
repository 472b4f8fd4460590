//! Criterion micro-benchmarks of signature verification, beside raw libsecp256k1 recovery.
#![allow(clippy::indexing_slicing)]
//!
//! `cargo bench -p sigil-bench --bench verify`. For the same-run ratio table see
//! `cargo run --release -p sigil-bench --bin verify-report` (docs/benchmarks.md).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use sigil_bench::{Kind, RawRecover, checks, mixed_checks};
use sigil_engine::verify::{Policy, verify_batch};
use std::hint::black_box;

fn single(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify-1-thread");
    group.throughput(Throughput::Elements(1));
    let raw = RawRecover::new(256);
    let mut i = 0;
    group.bench_function("raw-libsecp256k1-recover", |b| {
        b.iter(|| {
            i += 1;
            black_box(raw.recover(i))
        })
    });
    for kind in [Kind::BtcCompressed, Kind::BtcUncompressed, Kind::Eth] {
        let set = checks(kind, 256);
        let mut i = 0;
        group.bench_function(kind.label(), |b| {
            b.iter(|| {
                i = (i + 1) % set.len();
                black_box(set[i].verify(Policy::SIGIL).is_ok())
            })
        });
    }
    group.finish();
}

fn batch(c: &mut Criterion) {
    const N: usize = 2048;
    let mut group = c.benchmark_group("verify-all-threads");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    let raw = RawRecover::new(N);
    group.bench_function("raw-libsecp256k1-recover", |b| {
        b.iter(|| (0..N).into_par_iter().with_min_len(8).filter(|i| raw.recover(*i)).count())
    });
    let set = mixed_checks(N);
    group.bench_function("verify_batch-mixed", |b| b.iter(|| black_box(verify_batch(&set, Policy::SIGIL))));
    group.finish();
}

criterion_group!(benches, single, batch);
criterion_main!(benches);
