//! UPN as a standalone proposal generator.
//!
//! `cargo run --release --example upn -- --checkpoint upn_large.pth --image photo.jpg --json`

use chatrex::upn::{PromptType, Upn, UpnConfig};
use chatrex::{Backend, ImageLimits, WeightDType, load_rgb};
use clap::Parser;
use std::path::PathBuf;

/// Proposes object boxes with ChatRex's Universal Proposal Network.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// `upn_large.pth` (PyTorch) or a `.safetensors` with the same keys.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Config JSON (default: the official large config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input image (any format the `image` crate decodes; JPEG exactly as Pillow).
    #[arg(long)]
    image: PathBuf,
    /// Prompt: `fine` (part-level boxes) or `coarse` (objects).
    #[arg(long, default_value = "fine")]
    prompt: PromptType,
    /// Keep proposals with at least this score.
    #[arg(long, default_value_t = 0.3)]
    min_score: f32,
    /// NMS IoU threshold (≤ 0 disables NMS).
    #[arg(long, default_value_t = 0.8)]
    nms: f32,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Write the image with the boxes drawn (PNG or JPEG by extension).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
    /// Weight dtype (deformable attention always runs in f32).
    #[arg(long, default_value = "f32")]
    dtype: WeightDType,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    chatrex::init_cli_logging();
    let args = Args::parse();
    chatrex::common::allocator::reuse_freed_memory();
    let device = chatrex::cli_device(args.backend)?;
    let config = match &args.config {
        Some(path) => UpnConfig::from_file(path)?,
        None => UpnConfig::large(),
    };
    let upn = Upn::load_with_dtype(&args.checkpoint, &config, &device, args.dtype)?;
    let image = load_rgb(&args.image, &ImageLimits::default())?;
    let proposals = upn.propose(std::slice::from_ref(&image), args.prompt)?.remove(0).filter(args.min_score, args.nms);
    if args.json {
        println!("{}", serde_json::to_string(&proposals)?);
    } else {
        println!("{} proposals ({} prompt, score ≥ {}, NMS {})", proposals.len(), args.prompt, args.min_score, args.nms);
        for p in &proposals.proposals {
            let [x1, y1, x2, y2] = p.bbox;
            println!("{:.3}  [{x1:.1}, {y1:.1}, {x2:.1}, {y2:.1}]", p.score);
        }
    }
    if let Some(path) = &args.output {
        let mut canvas = image.clone();
        let line_width = i64::from((image.width().max(image.height()) / 400).max(2));
        for p in &proposals.proposals {
            let label = format!("{:.2}", p.score);
            chatrex::common::image::draw::draw_labelled_box(&mut canvas, p.bbox, &label, chatrex::common::image::draw::label_color(&label), line_width);
        }
        canvas.save(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
