//! Micro-benchmark of the relay's UTF-8 validator (`relay::utf8`) on text of 64 B,
//! 4 KiB and 1 MiB: unmasked (backend -> client) and masked (client -> backend, as
//! the relay checks it: unmasked through a stack buffer), fed whole and in the 16 KiB
//! pieces the relay's buffer hands it, next to `std::str::from_utf8` as a yardstick.
//!
//! cargo bench --bench utf8            (criterion; results in target/criterion)

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wsgate::relay::utf8::Utf8;

/// `size` bytes of text like chat or JSON traffic: mostly ASCII, some multi-byte.
fn text(size: usize) -> Vec<u8> {
    const PIECE: &str = "{\"user\":\"zoë\",\"msg\":\"naïve café ✓ 日本 🦀\"} ";
    let mut s = String::with_capacity(size);
    while s.len() + PIECE.len() <= size {
        s.push_str(PIECE);
    }
    while s.len() < size {
        s.push('.');
    }
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let key = [0x12, 0x9a, 0x07, 0xe3];
    let mut g = c.benchmark_group("utf8");
    for (name, size) in [("64B", 64), ("4KiB", 4096), ("1MiB", 1 << 20)] {
        let t = text(size);
        let mut masked = t.clone();
        wsgate::relay::frame::apply_mask(&mut masked, key);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("std", name), &t, |b, t| {
            b.iter(|| std::str::from_utf8(black_box(t)).is_ok())
        });
        g.bench_with_input(BenchmarkId::new("relay", name), &t, |b, t| {
            b.iter(|| {
                let mut u = Utf8::new();
                for piece in black_box(t).chunks(16 * 1024) {
                    u.feed(piece).unwrap();
                }
                u.finish().unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("relay_masked", name), &masked, |b, m| {
            b.iter(|| {
                let mut u = Utf8::new();
                let mut off = 0u64;
                for piece in black_box(m).chunks(16 * 1024) {
                    u.feed_masked(piece, key, off).unwrap();
                    off += piece.len() as u64;
                }
                u.finish().unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
