//! Every ChatRex task from the command line.
//!
//! `cargo run --release --example chatrex -- detect --categories "person; pigeon" \
//!     --model IDEA-Research/ChatRex-7B --upn upn_large.pth --image photo.jpg --json`

use chatrex::common::image::draw::{draw_labelled_box, label_color};
use chatrex::llm::GenerationOptions;
use chatrex::tasks::{RegionStyle, parse_categories};
use chatrex::upn::PromptType;
use chatrex::{AnswerOptions, Backend, ChatRex, ImageLimits, LoadOptions, ProposalBox, ProposalOptions, Task, WeightDType, load_rgb};
use clap::{Parser, Subcommand};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// ChatRex: detection, referring, counting, grounded captions, region captions and chat.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    task: TaskArgs,
    /// Model directory in the Hugging Face layout, or a hub id (downloaded into the cache).
    #[arg(long, global = true)]
    model: Option<String>,
    /// UPN checkpoint (`upn_large.pth`); not needed with --proposals or for `region`.
    #[arg(long, global = true)]
    upn: Option<PathBuf>,
    /// The image.
    #[arg(long, global = true)]
    image: Option<PathBuf>,
    /// Use these proposals (the UPN example's JSON) instead of running UPN.
    #[arg(long, global = true)]
    proposals: Option<PathBuf>,
    /// Override the task's UPN prompt.
    #[arg(long, global = true)]
    prompt: Option<PromptType>,
    /// UPN minimum score.
    #[arg(long, global = true, default_value_t = 0.3)]
    min_score: f32,
    /// UPN NMS IoU (≤ 0 disables).
    #[arg(long, global = true, default_value_t = 0.8)]
    nms: f32,
    /// Decode exactly as the official code: no mask on `<objN>` beyond the proposals.
    #[arg(long, global = true)]
    no_index_mask: bool,
    /// Constrain the answer to well-formed grounding segments.
    #[arg(long, global = true)]
    grammar: bool,
    /// Most new tokens.
    #[arg(long, global = true, default_value_t = 512)]
    max_new_tokens: usize,
    /// Write input_ids.json and tensors.safetensors of the request into this directory.
    #[arg(long, global = true)]
    dump: Option<PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Write the image with the grounded boxes drawn.
    #[arg(long, global = true)]
    output: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, global = true, default_value = "cpu")]
    backend: Backend,
    /// Language-model weight dtype (default on the CPU: bf16 where it has AMX tiles, else f16;
    /// on GPUs bf16 where the device computes in it, else f16, else f32).
    #[arg(long, global = true)]
    dtype: Option<WeightDType>,
    /// Vision-tower weight dtype (default on the CPU: bf16 where it has AMX tiles, else f32; the
    /// LLM's dtype on GPUs).
    #[arg(long, global = true)]
    vision_dtype: Option<WeightDType>,
    /// UPN's f32 products on AMX tiles with both operands split in two bf16 parts (CPU
    /// backend, CPUs with AMX): about 1.2× faster, ≈ 1e-6 of the exact f32 products.
    #[arg(long, global = true)]
    upn_split_products: bool,
}

#[derive(Subcommand)]
enum TaskArgs {
    /// Detect a category list: `--categories "person; pigeon"`.
    Detect {
        /// Categories separated by `;`.
        #[arg(long)]
        categories: String,
    },
    /// Locate what a referring expression describes.
    Refer {
        /// The expression.
        #[arg(long)]
        expression: String,
    },
    /// Count and locate a category.
    Count {
        /// The category.
        #[arg(long)]
        category: String,
    },
    /// Grounded image caption.
    Caption {
        /// A detailed caption instead of one sentence.
        #[arg(long)]
        detailed: bool,
    },
    /// Describe given boxes: `--boxes "x1,y1,x2,y2;x1,y1,x2,y2"`.
    Region {
        /// Boxes in original pixels.
        #[arg(long)]
        boxes: String,
        /// category, phrase, brief or sentence.
        #[arg(long, default_value = "phrase")]
        style: RegionStyle,
    },
    /// A free question (may mention `<objN>`).
    Ask {
        /// The question.
        #[arg(long)]
        question: String,
    },
    /// Interactive grounded conversation (streams answers; empty line or EOF ends).
    Chat,
}

fn parse_boxes(text: &str) -> Result<Vec<ProposalBox>, String> {
    text.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|b| {
            let v: Vec<f32> = b.split(',').map(|x| x.trim().parse::<f32>().map_err(|e| format!("box `{b}`: {e}"))).collect::<Result<_, _>>()?;
            match v.as_slice() {
                [x1, y1, x2, y2] => Ok(ProposalBox { bbox: [*x1, *y1, *x2, *y2], score: None }),
                _ => Err(format!("box `{b}` needs 4 numbers x1,y1,x2,y2")),
            }
        })
        .collect()
}

fn read_proposals(path: &Path) -> Result<Vec<ProposalBox>, Box<dyn std::error::Error>> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let list = v.get("proposals").and_then(|p| p.as_array()).ok_or("proposals file: no `proposals` array")?;
    list.iter()
        .take(100)
        .map(|p| {
            let b: Vec<f32> = p.get("bbox").and_then(|b| b.as_array()).ok_or("proposal without bbox")?
                .iter().map(|x| x.as_f64().map(|f| f as f32).ok_or("bbox values must be numbers")).collect::<Result<_, _>>()?;
            if b.len() != 4 {
                return Err("bbox must have 4 numbers".into());
            }
            Ok(ProposalBox { bbox: [b[0], b[1], b[2], b[3]], score: p.get("score").and_then(|s| s.as_f64()).map(|s| s as f32) })
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    chatrex::init_cli_logging();
    let args = Args::parse();
    chatrex::common::allocator::reuse_freed_memory();
    let model_spec = args.model.clone().ok_or("--model DIR_OR_HUB_ID is required")?;
    let image_path = args.image.clone().ok_or("--image IMG is required")?;
    let device = chatrex::cli_device(args.backend)?;
    let model_dir = if chatrex::hub::looks_like_hub_id(&model_spec) {
        chatrex::hub::download_model(&model_spec)?
    } else {
        PathBuf::from(&model_spec)
    };
    let dtype = args.dtype.unwrap_or_else(|| WeightDType::fastest_on(&device));
    let vision_dtype = args.vision_dtype.unwrap_or(match args.backend {
        // f16 towers on a CPU without AMX convert every weight block: f32 is faster there.
        Backend::Cpu if WeightDType::host_low_precision() == WeightDType::F16 => WeightDType::F32,
        Backend::Cpu => WeightDType::BF16,
        _ => dtype,
    });
    let options = LoadOptions {
        dtype,
        vision_dtype,
        upn: args.upn.clone(),
        upn_split_f32_products: args.upn_split_products,
        progress: !args.json,
        ..Default::default()
    };
    let model = ChatRex::load(&model_dir, &options, &device)?;
    let image = load_rgb(&image_path, &ImageLimits::default())?;
    let answer_options = AnswerOptions {
        generation: GenerationOptions { max_new_tokens: args.max_new_tokens, ..Default::default() },
        index_mask: !args.no_index_mask,
        grammar: args.grammar,
        dump: args.dump.clone(),
        ..Default::default()
    };
    let task = match &args.task {
        TaskArgs::Detect { categories } => Task::Detect(parse_categories(categories)),
        TaskArgs::Refer { expression } => Task::Refer(expression.clone()),
        TaskArgs::Count { category } => Task::Count(category.clone()),
        TaskArgs::Caption { detailed } => Task::Caption { detailed: *detailed },
        TaskArgs::Region { style, .. } => Task::Region(*style),
        TaskArgs::Ask { question } => Task::Ask(question.clone()),
        TaskArgs::Chat => Task::Chat(String::new()),
    };
    let proposals = match (&args.task, &args.proposals) {
        (TaskArgs::Region { boxes, .. }, _) => parse_boxes(boxes)?,
        (_, Some(path)) => read_proposals(path)?,
        _ => model.propose(&image, &ProposalOptions {
            min_score: args.min_score,
            nms_iou: args.nms,
            ..ProposalOptions::official(args.prompt.unwrap_or(task.proposal_prompt()))
        })?,
    };

    if let TaskArgs::Chat = args.task {
        let mut conversation = model.conversation(&image, &proposals)?;
        eprintln!("{} proposals. Ask questions; an empty line ends.", proposals.len());
        let stdin = std::io::stdin();
        loop {
            eprint!("> ");
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
            let mut stdout = std::io::stdout();
            let answer = conversation.ask(&chatrex::tasks::grounded_conversation(line.trim()), &answer_options, &mut |t| {
                let _ = stdout.write_all(t.as_bytes());
                let _ = stdout.flush();
            })?;
            println!();
            for g in &answer.groundings {
                eprintln!("  {} → {:?}", g.phrase, g.boxes);
            }
        }
        return Ok(());
    }

    let answer = model.run_task(&image, &task, Some(proposals), args.prompt, &answer_options)?;
    if args.json {
        println!("{}", serde_json::to_string(&answer.to_json())?);
    } else {
        println!("{}", answer.text);
        for g in &answer.groundings {
            println!("{}:", g.phrase);
            for (i, b) in g.indices.iter().zip(&g.boxes) {
                println!("  <obj{i}> [{:.1}, {:.1}, {:.1}, {:.1}]", b[0], b[1], b[2], b[3]);
            }
        }
    }
    if let Some(path) = &args.output {
        let mut canvas = image.clone();
        let line_width = i64::from((image.width().max(image.height()) / 300).max(2));
        for g in &answer.groundings {
            for b in &g.boxes {
                draw_labelled_box(&mut canvas, *b, &g.phrase, label_color(&g.phrase), line_width);
            }
        }
        canvas.save(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
