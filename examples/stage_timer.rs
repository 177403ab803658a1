//! Times full-size stages with random weights on the CPU backend, one run per command read
//! from stdin, so that another process can alternate its own runs with ours: on a machine
//! whose speed swings by up to 2× within minutes (measured here), only runs interleaved in time
//! compare. `tools/bench/interleaved.py` drives it against PyTorch.
//!
//! Commands (one per line): `clip` (CLIP ViT-L/14@336, 23 layers), `convnext`
//! (ConvNeXt-L@768, four stage maps), `prefill-qwen` / `prefill-llama` (700 tokens into a fresh
//! KV cache and the last position's logits: Qwen2.5-0.5B, and Llama-7B with 4 of its 32
//! layers, as `benches/llm.rs`), `decode-qwen` / `decode-llama` (32 greedy steps after such a
//! prefill, which is not timed), `quit`. Each run prints one line, its wall time in seconds.
//! Each model is built (random weights) on its first command.
//!
//! Weights and inputs come from the seeded generator that `tools/reference/common.py`
//! mirrors (weights under `clip.`, `convnext.`, `qwen.`, `llama.`; pixels `50 ·
//! input.{clip,convnext}_pixels`; prompt ids `(7919 · i) mod vocab`), so the PyTorch side can
//! run the very same weights; with `--dump DIR`, the first run of each stage writes its output
//! (CLIP's patch tokens, ConvNeXt's last map, the prefill's last logits) to `DIR/<stage>.f32`
//! (raw little-endian f32) for it to compare.
//!
//! `cargo run --release --example stage_timer -- --dtype bf16` (then type `clip`).

use burn::tensor::Tensor;
use chatrex::common::weights::WeightLoader;
use chatrex::encoder::clip::ClipVisionTower;
use chatrex::encoder::convnext::ConvNext;
use chatrex::encoder::{ClipVisionConfig, ConvNextConfig, SelectFeature};
use chatrex::llm::{CausalLm, LlmConfig, LlmKeys};
use chatrex::{Backend, WeightDType};
use clap::Parser;
use std::io::{BufRead, Write};
use std::time::Instant;

/// Prompt length of the prefill runs.
const PREFILL: usize = 700;
/// Greedy steps of the decode runs (after an untimed prefill).
const DECODE: usize = 32;

/// Times full-size stages on command, for interleaving with another process's runs.
#[derive(Parser)]
struct Args {
    /// Weight dtype: f32, f16 or bf16.
    #[arg(long, default_value = "bf16")]
    dtype: WeightDType,
    /// Directory for each stage's first output (`<stage>.f32`).
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
}

/// Seeded pixels `[1, 3, side, side]`: `50 · input.<name>` of the weight generator (0.02 · N
/// for a vector, so ≈ N(0, 1)), the same values as `tools/reference/common.py` draws.
fn seeded_pixels(vb: &WeightLoader, name: &str, side: usize, device: &burn::tensor::Device) -> Tensor<4> {
    let len = 3 * side * side;
    let values: Vec<f32> = vb.pp("input").host_f32(name, &[len]).iter().map(|v| v * 50.0).collect();
    Tensor::<1>::from_data(burn::tensor::TensorData::new(values, [len]), device).reshape([1, 3, side, side])
}

/// `values` as raw little-endian f32 in `dir/<stage>.f32`.
fn dump(dir: &std::path::Path, stage: &str, values: &[f32]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("{stage}.f32")), bytes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    chatrex::common::allocator::reuse_freed_memory();
    let device = Backend::Cpu.device()?;
    let vb = WeightLoader::random(5, &device, args.dtype);
    let (mut clip, mut convnext, mut qwen, mut llama) = (None, None, None, None);
    let low = seeded_pixels(&vb, "clip_pixels", 336, &device).cast(args.dtype.dtype());
    let high = seeded_pixels(&vb, "convnext_pixels", 768, &device).cast(args.dtype.dtype());
    let mut dumped = std::collections::HashSet::new();
    // The prefill's time, then (`decode` steps > 0) the time of that many greedy steps after
    // it, and the prefill's last logits.
    let generate = |lm: &CausalLm, decode: usize| -> Result<(f64, f64, Vec<f32>), Box<dyn std::error::Error>> {
        let prompt: Vec<u32> = (0..PREFILL as u32).map(|i| (i * 7919) % lm.config().vocab_size as u32).collect();
        let mut cache = lm.new_cache(PREFILL + decode);
        let start = Instant::now();
        let hidden = lm.forward(lm.embed(&prompt)?.unsqueeze::<3>(), &mut cache)?;
        let mut logits = lm.last_logits(&hidden)?;
        let prefill = start.elapsed().as_secs_f64();
        let prefill_logits = logits.clone();
        let start = Instant::now();
        for _ in 0..decode {
            let next = chatrex::llm::sampling::argmax(&logits).unwrap_or(0) as u32;
            let hidden = lm.forward(lm.embed(&[next])?.unsqueeze::<3>(), &mut cache)?;
            logits = lm.last_logits(&hidden)?;
        }
        Ok((prefill, start.elapsed().as_secs_f64(), prefill_logits))
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let command = line.trim();
        // Built outside the timed run.
        match command {
            "clip" => drop(clip.get_or_insert_with(|| ClipVisionTower::load(&vb.pp("clip"), &ClipVisionConfig::vit_large_patch14_336(), 23, SelectFeature::Patch))),
            "convnext" => drop(convnext.get_or_insert_with(|| ConvNext::load(&vb.pp("convnext"), &ConvNextConfig::large()))),
            "prefill-qwen" | "decode-qwen" => drop(qwen.get_or_insert_with(|| CausalLm::from_loader(&vb.pp("qwen"), &LlmConfig::qwen25_0_5b(), &LlmKeys::default()))),
            "prefill-llama" | "decode-llama" => drop(llama.get_or_insert_with(|| {
                let mut config = LlmConfig::vicuna_7b();
                config.num_hidden_layers = 4;
                CausalLm::from_loader(&vb.pp("llama"), &config, &LlmKeys::default())
            })),
            _ => {}
        }
        let start = Instant::now();
        let (seconds, output) = match (command, &clip, &convnext, &qwen, &llama) {
            ("clip", Some(clip), ..) => {
                let tokens = clip.forward(low.clone())?.into_data();
                (start.elapsed().as_secs_f64(), tokens)
            }
            ("convnext", _, Some(convnext), ..) => {
                let last = convnext.forward(high.clone())?.pop().ok_or("ConvNeXt returned no stage")?.into_data();
                (start.elapsed().as_secs_f64(), last)
            }
            ("prefill-qwen", _, _, Some(lm), _) | ("prefill-llama", _, _, _, Some(lm)) => {
                let (seconds, _, logits) = generate(lm, 0)?;
                let len = logits.len();
                (seconds, burn::tensor::TensorData::new(logits, [len]))
            }
            ("decode-qwen", _, _, Some(lm), _) | ("decode-llama", _, _, _, Some(lm)) => {
                (generate(lm, DECODE)?.1, burn::tensor::TensorData::new(Vec::<f32>::new(), [0]))
            }
            ("quit", ..) => break,
            (other, ..) => {
                return Err(format!("unknown command {other:?} (clip, convnext, prefill-qwen, prefill-llama, decode-qwen, decode-llama, quit)").into());
            }
        };
        if let Some(dir) = &args.dump
            && output.num_elements() > 0
            && dumped.insert(command.to_string())
        {
            dump(dir, command, &output.convert::<f32>().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?)?;
        }
        writeln!(out, "{seconds}")?;
        out.flush()?;
    }
    Ok(())
}
