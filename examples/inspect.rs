//! Lists a checkpoint's tensors, dtypes, shapes and the module that loads each.
//!
//! `cargo run --release --example inspect -- --checkpoint upn_large.pth`

use chatrex::inspect::inspect_checkpoint;
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Shows how a checkpoint maps onto chatrex-rs modules.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// A `.pth`, a `.safetensors`, a `*.safetensors.index.json` or a model directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only the per-module summary.
    #[arg(long)]
    summary: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let entries = inspect_checkpoint(&args.checkpoint)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    let mut summary: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for e in &entries {
        let module = e.module.unwrap_or("UNKNOWN (not loaded by any module)");
        let s = summary.entry(module).or_default();
        s.0 += 1;
        s.1 += e.shape.iter().product::<usize>();
        if !args.summary {
            println!("{:<80} {:<5} {:<20} {}", e.name, e.dtype, format!("{:?}", e.shape), module);
        }
    }
    println!("\n{} tensors", entries.len());
    for (module, (n, params)) in summary {
        println!("  {module:<45} {n:>6} tensors {params:>14} values");
    }
    Ok(())
}
