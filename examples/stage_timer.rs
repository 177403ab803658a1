//! Times full-size stages with random weights on the CPU backend, one run per command read
//! from stdin, so that another process can alternate its own runs with ours: on a machine
//! whose speed swings by up to 2× within minutes (measured here), only runs interleaved in time
//! compare. `tools/bench/interleaved.py` drives it against PyTorch.
//!
//! Commands (one per line): `clip` (CLIP ViT-L/14@336, 23 layers), `convnext`
//! (ConvNeXt-L@768, four stage maps), `quit`. Each run prints one line, its wall time in seconds.
//!
//! `cargo run --release --example stage_timer -- --dtype bf16` (then type `clip`).

use burn::tensor::{Distribution, Tensor};
use chatrex::common::weights::WeightLoader;
use chatrex::encoder::clip::ClipVisionTower;
use chatrex::encoder::convnext::ConvNext;
use chatrex::encoder::{ClipVisionConfig, ConvNextConfig, SelectFeature};
use chatrex::{Backend, WeightDType};
use clap::Parser;
use std::io::{BufRead, Write};
use std::time::Instant;

/// Times full-size stages on command, for interleaving with another process's runs.
#[derive(Parser)]
struct Args {
    /// Weight dtype: f32, f16 or bf16.
    #[arg(long, default_value = "bf16")]
    dtype: WeightDType,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    chatrex::common::allocator::reuse_freed_memory();
    let device = Backend::Cpu.device()?;
    let vb = WeightLoader::random(5, &device, args.dtype);
    let clip = ClipVisionTower::load(&vb.pp("clip"), &ClipVisionConfig::vit_large_patch14_336(), 23, SelectFeature::Patch);
    let convnext = ConvNext::load(&vb.pp("convnext"), &ConvNextConfig::large());
    let low = Tensor::<4>::random([1, 3, 336, 336], Distribution::Normal(0.0, 1.0), &device).cast(args.dtype.dtype());
    let high = Tensor::<4>::random([1, 3, 768, 768], Distribution::Normal(0.0, 1.0), &device).cast(args.dtype.dtype());
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let start = Instant::now();
        match line?.trim() {
            "clip" => drop(clip.forward(low.clone())?.into_data()),
            "convnext" => drop(convnext.forward(high.clone())?.pop().map(|s| s.into_data())),
            "quit" => break,
            other => return Err(format!("unknown command {other:?} (clip, convnext, quit)").into()),
        }
        writeln!(out, "{}", start.elapsed().as_secs_f64())?;
        out.flush()?;
    }
    Ok(())
}
