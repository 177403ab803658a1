//! Text generation with the language model alone.
//!
//! `cargo run --release --example generate -- --model-dir DIR --prompt "Hello" --json`

use chatrex::llm::{CausalLm, ChatTokenizer, GenerationOptions, Sampling, generate};
use chatrex::{Backend, WeightDType};
use clap::Parser;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

/// Generates text from a Llama or Qwen2 model directory (config.json, *.safetensors, tokenizer.json).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The model directory.
    #[arg(long)]
    model_dir: PathBuf,
    /// The prompt, tokenized as-is (plus BOS if the tokenizer adds one).
    #[arg(long)]
    prompt: String,
    /// Most new tokens.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Sampling temperature (greedy when absent).
    #[arg(long)]
    temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[arg(long)]
    top_p: Option<f32>,
    /// Top-k sampling.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Repetition penalty (1.0 = off).
    #[arg(long)]
    repetition_penalty: Option<f32>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Compute backend.
    #[arg(long, default_value = "cpu")]
    backend: Backend,
    /// Weight dtype.
    #[arg(long, default_value = "f32")]
    dtype: WeightDType,
}

#[derive(Serialize)]
struct Output<'a> {
    input_ids: &'a [u32],
    output_ids: &'a [u32],
    text: &'a str,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    chatrex::init_cli_logging();
    let args = Args::parse();
    let device = chatrex::cli_device(args.backend)?;
    let (lm, _) = CausalLm::load_dir(&args.model_dir, &device, args.dtype)?;
    let tokenizer = ChatTokenizer::from_dir(&args.model_dir)?;
    let input_ids = tokenizer.encode_prompt(&args.prompt)?;
    if input_ids.is_empty() {
        return Err("the prompt tokenizes to nothing".into());
    }
    let sampling = match args.temperature {
        None => Sampling::Greedy,
        Some(temperature) => Sampling::Sample {
            temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
    };
    let options = GenerationOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        repetition_penalty: args.repetition_penalty,
        ..Default::default()
    };
    let embeds = lm.embed(&input_ids)?.unsqueeze::<3>();
    let json = args.json;
    let mut stdout = std::io::stdout();
    let mut on_text = |t: &str| {
        if !json {
            let _ = stdout.write_all(t.as_bytes());
            let _ = stdout.flush();
        }
    };
    let out = generate(&lm, &tokenizer, embeds, &options, &mut [], &mut on_text)?;
    if json {
        let o = Output {
            input_ids: &input_ids,
            output_ids: &out.ids,
            text: &out.text,
        };
        println!("{}", serde_json::to_string(&o)?);
    } else {
        println!();
    }
    Ok(())
}
