//! One `detect` call end to end at full size with random weights on the CPU backend:
//! UPN-L on the image → top-100 proposals → CLIP-L + ConvNeXt-L → 7B Llama (weights in host
//! memory; LLM and towers in bf16 on a CPU with AMX tiles, else f16) prefill of ~800 positions
//! and 16 new tokens. Run once (it takes minutes): time per stage, heap peak and max RSS.
//! `cargo bench --bench pipeline` (needs ../shared/fixtures for the Llama-2 tokenizer).

mod common;

use chatrex::common::parity::shared_fixtures;
use chatrex::llm::{ChatTokenizer, GenerationOptions};
use chatrex::upn::{PromptType, UpnConfig};
use chatrex::{AnswerOptions, Backend, ChatRex, LoadOptions, ModelConfig, ProposalOptions, Task, WeightDType};
use std::time::Instant;

#[global_allocator]
static ALLOC: common::PeakAlloc = common::PeakAlloc;

fn max_rss_bytes() -> usize {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    #[allow(unsafe_code)]
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_maxrss as usize * 1024
}

fn main() {
    chatrex::common::allocator::reuse_freed_memory();
    let device = Backend::Cpu.device().expect("cpu");
    let layers: usize = std::env::var("CHATREX_BENCH_LLM_LAYERS").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let mut config = ModelConfig::chatrex_7b();
    config.llm.num_hidden_layers = layers;
    let dir = shared_fixtures().expect("shared fixtures").join("tokenizers/llama2");
    let mut tokenizer = ChatTokenizer::from_files(&dir.join("tokenizer.json"), Some(&dir.join("tokenizer_config.json"))).expect("tokenizer");
    tokenizer.add_chatrex_tokens();
    // Weight dtypes of the LLM and of the two vision towers: by default the 16-bit type host
    // weights run fastest in (bf16 on a CPU with AMX tiles, else f16);
    // CHATREX_BENCH_LLM_DTYPE / CHATREX_BENCH_VISION_DTYPE = f32 | f16 | bf16 override them.
    let dtype_from_env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(WeightDType::host_low_precision());
    let dtype = dtype_from_env("CHATREX_BENCH_LLM_DTYPE");
    let vision_dtype = dtype_from_env("CHATREX_BENCH_VISION_DTYPE");
    // CHATREX_BENCH_UPN_SPLIT=1: the UPN's f32 host products on split bf16 tiles.
    let upn_split_f32_products = std::env::var("CHATREX_BENCH_UPN_SPLIT").is_ok_and(|v| v == "1");
    let options = LoadOptions { dtype, vision_dtype, upn_split_f32_products, ..Default::default() };
    let t = Instant::now();
    let model = ChatRex::random(config, tokenizer, Some(&UpnConfig::large()), &options, &device, 9).expect("model");
    eprintln!("random 7B ChatRex ({layers} LLM layers) built in {:.0} s, heap {:.2} GB", t.elapsed().as_secs_f64(), common::current_bytes() as f64 / 1e9);
    let image = image::RgbImage::from_fn(1333, 800, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8]));
    let base = common::reset_peak();
    let t = Instant::now();
    let proposals = model.propose(&image, &ProposalOptions::official(PromptType::Fine)).expect("proposals");
    let upn = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let answer = model
        .run_task(
            &image,
            &Task::Detect(vec!["person".into(), "pigeon".into()]),
            Some(proposals.clone()),
            None,
            &AnswerOptions { generation: GenerationOptions { max_new_tokens: 16, ..Default::default() }, ..Default::default() },
        )
        .expect("detect");
    let mllm = t.elapsed().as_secs_f64();
    let note = format!(
        "UPN {upn:.1} s ({} proposals), encoder + {} prompt ids + {} new tokens {mllm:.1} s; heap peak {:.2} GB, max RSS {:.2} GB",
        proposals.len(),
        answer.input_ids.len(),
        answer.generation.ids.len() + usize::from(answer.generation.eos.is_some()),
        common::peak_bytes() as f64 / 1e9,
        max_rss_bytes() as f64 / 1e9
    );
    let upn_products = if upn_split_f32_products { "_upn_split" } else { "" };
    common::record(&format!("detect_7b_{dtype}_vision_{vision_dtype}{upn_products}"), upn + mllm, base, &note);
}
