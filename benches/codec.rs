//! Micro benchmarks of the UPPER codec: what a model pays per request
//! before any syscall. `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use iolab::server::protocol::Codec;

/// `n` lines of `size` bytes (LF included) of lower-case letters.
fn lines(n: usize, size: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            (0..size - 1)
                .map(move |j| b'a' + ((i + j) % 26) as u8)
                .chain([b'\n'])
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    // One 16 KiB read of pipelined 64-byte requests: the fast path.
    let burst = lines(256, 64);
    group.throughput(Throughput::Bytes(burst.len() as u64));
    group.bench_function("256 x 64-byte lines in one read", |b| {
        let mut out = Vec::with_capacity(burst.len());
        b.iter(|| {
            let mut codec = Codec::new(65536);
            out.clear();
            black_box(codec.decode(black_box(&burst), &mut out)).ok();
        })
    });
    // One request per read: the request/response shape.
    let one = lines(1, 64);
    group.throughput(Throughput::Elements(1));
    group.bench_function("one 64-byte line", |b| {
        let mut codec = Codec::new(65536);
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            out.clear();
            black_box(codec.decode(black_box(&one), &mut out)).ok();
        })
    });
    // A line cut into 8-byte reads: the partial-line path.
    let cut = lines(1, 64);
    group.bench_function("one 64-byte line in 8-byte reads", |b| {
        b.iter_batched(
            || (Codec::new(65536), Vec::with_capacity(64)),
            |(mut codec, mut out)| {
                for chunk in cut.chunks(8) {
                    black_box(codec.decode(chunk, &mut out)).ok();
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
