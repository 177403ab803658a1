//! The CPU weight-stationary kernels alone: `[m, 4096] × [11008, 4096]ᵀ` (a Llama-7B MLP
//! matrix) for m = 1 (decode) and m = 128 (prefill block), f32 / f16 / bf16, against the
//! measured memory bandwidth; the two bf16 tile layouts (in place, for the LLM, and
//! `TileWeight`, for the towers) on tower shapes, and CLIP-L's attention on tiles, where the
//! CPU has AMX; the softmax numerators of one head's scores; the 7×7 depthwise convolution on
//! ConvNeXt-L's stage shapes.

mod common;

use chatrex::common::host_matmul::{HostData, HostMatrix, dot};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use half::{bf16, f16};
use rayon::prelude::*;
use std::time::Instant;

/// Read bandwidth (GB/s) of a 1 GiB buffer streamed by all threads with SIMD loads.
pub fn read_bandwidth() -> f64 {
    let data: Vec<f32> = vec![1.0; 1 << 28];
    let ones = vec![1.0f32; 1 << 14];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let s: f32 = data.par_chunks(1 << 14).map(|c| dot(c, &ones)).sum();
        std::hint::black_box(s);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (data.len() * 4) as f64 / best / 1e9
}

fn kernels(c: &mut Criterion) {
    let bw = read_bandwidth();
    eprintln!("read bandwidth: {bw:.1} GB/s ({} threads)", common::threads());
    let (n, k) = (11008, 4096);
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mats = [
        ("f32", HostData::F32(w.clone())),
        ("f16", HostData::F16(w.iter().map(|&v| f16::from_f32(v)).collect())),
        ("bf16", HostData::BF16(w.iter().map(|&v| bf16::from_f32(v)).collect())),
    ];
    drop(w);
    let mut group = c.benchmark_group("gemv_11008x4096");
    for (name, data) in mats {
        let bytes = data.bytes();
        let mat = HostMatrix { rows: n, cols: k, data };
        for m in [1usize, 128] {
            let x = vec![0.5f32; m * k];
            let mut y = vec![0f32; m * n];
            let t = Instant::now();
            mat.matmul_t(&x, m, &mut y);
            let secs = t.elapsed().as_secs_f64();
            eprintln!("{name} m={m}: {:.2} ms, {:.1} GB/s of weights ({:.0}% of read bandwidth)", secs * 1e3, bytes as f64 / secs / 1e9, 100.0 * bytes as f64 / secs / 1e9 / bw);
            group.throughput(Throughput::Bytes(bytes as u64));
            group.bench_function(format!("{name}_m{m}"), |b| b.iter(|| mat.matmul_t(&x, m, &mut y)));
        }
    }
    group.finish();

    if chatrex::common::amx::available() {
        let mut group = c.benchmark_group("amx_bf16");
        // (rows, outputs, inputs): CLIP-L's attention projections, fc1 and fc2; ConvNeXt-L's
        // first-stage fc1; a 700-token prefill's o_proj and down_proj of Llama-7B.
        let shapes = [(577usize, 1024usize, 1024usize), (577, 4096, 1024), (577, 1024, 4096), (9216, 768, 192), (700, 4096, 4096), (700, 4096, 11008)];
        for (m, n, k) in shapes {
            let w: Vec<bf16> = (0..n * k).map(|i| bf16::from_f32(((i * 7919) % 1000) as f32 / 1000.0 - 0.5)).collect();
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
            let mut y = vec![0f32; m * n];
            let tiles = chatrex::common::amx::TileWeight::pack(&w, n, k).expect("whole tiles");
            group.throughput(Throughput::Elements((m * n * k) as u64));
            group.bench_function(format!("in_place_{m}x{n}x{k}"), |b| {
                b.iter(|| chatrex::common::amx::matmul_t_bf16(&w, n, k, &x, m, &mut y))
            });
            group.bench_function(format!("tile_order_{m}x{n}x{k}"), |b| b.iter(|| tiles.matmul_t(&x, m, &mut y)));
        }
        group.finish();

        // f16 weights `[in, out]` on the tiles, inputs and weights split in two bf16 parts
        // (three tile products per step): the same shapes.
        let mut group = c.benchmark_group("amx_f16_split");
        for (m, n, k) in shapes {
            let w: Vec<half::f16> = (0..n * k).map(|i| half::f16::from_f32(((i * 7919) % 1000) as f32 / 1000.0 - 0.5)).collect();
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
            let mut y = vec![0f32; m * n];
            group.throughput(Throughput::Elements((m * n * k) as u64));
            group.bench_function(format!("{m}x{n}x{k}"), |b| {
                b.iter(|| chatrex::common::amx::matmul_f16_split(&w, k, n, &x, m, &mut y, false))
            });
        }
        group.finish();

        // CLIP-L's attention (577 tokens, 16 heads of 64) with both products on tiles; its
        // work counted as the two products' multiply-adds (keys padded to 608).
        let mut group = c.benchmark_group("amx_attention");
        let (tokens, heads, d) = (577usize, 16usize, 1024usize);
        let qkv: Vec<f32> = (0..tokens * d).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        group.throughput(Throughput::Elements((2 * heads * tokens * 608 * (d / heads)) as u64));
        group.bench_function(format!("tiles_{tokens}x{heads}x{}", d / heads), |b| {
            b.iter(|| chatrex::common::amx::attention_bf16(&qkv, &qkv, &qkv, tokens, heads, 0.125))
        });
        group.finish();
    }

    let mut group = c.benchmark_group("softmax_numerators");
    let mut rows: Vec<f32> = (0..577 * 577).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0).collect();
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("577x577", |b| {
        b.iter(|| rows.chunks_exact_mut(577).map(|row| chatrex::common::host_ops::softmax_numerators(row, 0.125)).sum::<f32>())
    });
    group.finish();

    let mut group = c.benchmark_group("depthwise_7x7");
    for (side, channels) in [(192usize, 192usize), (96, 384), (48, 768), (24, 1536)] {
        let input: Vec<f32> = (0..side * side * channels).map(|i| (i % 11) as f32 - 5.0).collect();
        let weight: Vec<f32> = (0..49 * channels).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
        let bias = vec![0.1f32; channels];
        group.throughput(Throughput::Elements((side * side * channels * 49) as u64));
        group.bench_function(format!("{side}x{side}x{channels}"), |b| {
            b.iter(|| chatrex::common::host_ops::depthwise_conv(&input, (side, side, channels), &weight, &bias, 7))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion::Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2)).configure_from_args();
    targets = kernels
}
criterion_main!(benches);
