//! LLM prefill and decode on the CPU backend with random weights: Qwen2.5-0.5B shapes (all 24
//! layers) and Llama-7B layer shapes (4 of 32 layers, full vocabulary), f32, f16 and bf16 (its
//! prefill on AMX tiles where the CPU has them), against the memory-bandwidth limit (weight
//! bytes per token / measured bandwidth).

mod common;

use chatrex::common::weights::WeightLoader;
use chatrex::llm::{CausalLm, LlmConfig, LlmKeys};
use chatrex::{Backend, WeightDType};
use criterion::{Criterion, criterion_group, criterion_main};
use rayon::prelude::*;
use std::time::Instant;

#[global_allocator]
static ALLOC: common::PeakAlloc = common::PeakAlloc;

const PREFILL: usize = 700;
const DECODE: usize = 32;

/// Streaming read bandwidth (GB/s): every rayon thread sums its own contiguous share of a
/// 1 GiB buffer (larger than the 300 MB L3 here) with eight independent integer lanes
/// (vectorized, exact, memory-bound), reading its share as 1 and as 4 interleaved streams
/// (one stream per core reaches only about two thirds of what the memory delivers); the best
/// of ten passes of the faster.
fn memory_bandwidth() -> f64 {
    let data: Vec<u64> = (0..1u64 << 27).collect();
    let share = data.len().div_ceil(rayon::current_num_threads());
    let sum_streams = |c: &[u64], streams: usize| {
        let part = c.len() / streams;
        let mut acc = [0u64; 8];
        for i in (0..part.saturating_sub(7)).step_by(8) {
            for s in 0..streams {
                let block = &c[s * part + i..s * part + i + 8];
                for (a, v) in acc.iter_mut().zip(block) {
                    *a = a.wrapping_add(*v);
                }
            }
        }
        acc.iter().fold(0u64, |x, y| x.wrapping_add(*y))
    };
    let mut best = f64::INFINITY;
    for streams in [1usize, 4] {
        for _ in 0..10 {
            let t = Instant::now();
            let s: u64 = data.par_chunks(share).map(|c| sum_streams(c, streams)).reduce(|| 0, u64::wrapping_add);
            std::hint::black_box(s);
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    (data.len() * 8) as f64 / best / 1e9
}

/// Bytes of weights read per decoded token (every linear layer and the LM head).
fn weight_bytes_per_token(c: &LlmConfig, dtype: WeightDType) -> f64 {
    let h = c.hidden_size;
    let kv = c.num_key_value_heads * c.head_dim();
    let per_layer = h * h * 2 + 2 * h * kv + 3 * h * c.intermediate_size;
    ((per_layer * c.num_hidden_layers + c.vocab_size * h) * dtype.size()) as f64
}

fn run(name: &str, config: &LlmConfig, dtype: WeightDType, bandwidth: f64) -> (CausalLm, Vec<u32>) {
    let device = Backend::Cpu.device().expect("cpu");
    let vb = WeightLoader::random(3, &device, dtype);
    let lm = CausalLm::from_loader(&vb, config, &LlmKeys::default());
    let prompt: Vec<u32> = (0..PREFILL as u32).map(|i| (i * 7919) % config.vocab_size as u32).collect();
    let mut cache = lm.new_cache(PREFILL + DECODE);
    let t = Instant::now();
    let hidden = lm.forward(lm.embed(&prompt).expect("embed").unsqueeze::<3>(), &mut cache).expect("prefill");
    let mut logits = lm.last_logits(&hidden).expect("logits");
    let prefill = t.elapsed().as_secs_f64();
    common::record(&format!("{name}_{dtype}_prefill{PREFILL}"), prefill, 0, &format!("{:.1} tok/s", PREFILL as f64 / prefill));
    let base = common::reset_peak();
    let t = Instant::now();
    for _ in 0..DECODE {
        let next = chatrex::llm::sampling::argmax(&logits).unwrap_or(0) as u32;
        let hidden = lm.forward(lm.embed(&[next]).expect("embed").unsqueeze::<3>(), &mut cache).expect("decode");
        logits = lm.last_logits(&hidden).expect("logits");
    }
    let per_token = t.elapsed().as_secs_f64() / DECODE as f64;
    let bytes = weight_bytes_per_token(config, dtype);
    let limit = bandwidth * 1e9 / bytes;
    let note = format!(
        "{dtype}: prefill {PREFILL} tokens {:.1} tok/s; decode {:.2} tok/s = {:.0}% of the bandwidth limit {:.2} tok/s ({:.2} GB/token at {bandwidth:.1} GB/s)",
        PREFILL as f64 / prefill,
        1.0 / per_token,
        100.0 / per_token / limit,
        limit,
        bytes / 1e9
    );
    common::record(&format!("{name}_{dtype}_decode"), per_token, base, &note);
    (lm, prompt)
}

fn llm(c: &mut Criterion) {
    chatrex::common::allocator::reuse_freed_memory();
    let bandwidth = memory_bandwidth();
    eprintln!("memory bandwidth: {bandwidth:.1} GB/s ({} threads)", common::threads());
    let mut llama = LlmConfig::vicuna_7b();
    llama.num_hidden_layers = 4;
    for (name, config) in [("qwen2.5-0.5b", LlmConfig::qwen25_0_5b()), ("llama-7b-4layers", llama)] {
        for dtype in common::dtypes() {
            let (lm, prompt) = run(name, &config, dtype, bandwidth);
            let mut cache = lm.new_cache(PREFILL + 1);
            let hidden = lm.forward(lm.embed(&prompt).expect("embed").unsqueeze::<3>(), &mut cache).expect("prefill");
            let _ = lm.last_logits(&hidden);
            c.bench_function(&format!("{name}_{dtype}_decode_step"), |b| {
                b.iter(|| {
                    let mut step_cache = cache.clone();
                    let hidden = lm.forward(lm.embed(&[1]).expect("embed").unsqueeze::<3>(), &mut step_cache).expect("step");
                    lm.last_logits(&hidden).expect("logits")
                })
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = common::slow_criterion();
    targets = llm
}
criterion_main!(benches);
