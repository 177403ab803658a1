//! Runs every stage at full size with random weights on one backend (`wgpu` or `cuda`), times
//! it, and checks its outputs against the CPU backend on the same weights and inputs.
//!
//! Stages: UPN-L on 800×1333, CLIP-L@336, ConvNeXt-L@768, the object tokenizer for 100 boxes,
//! a Llama-7B-shaped LLM (prefill of ~800 positions and greedy decode), and one `detect` call end
//! to end on the whole 7B ChatRex. Parity uses the relative error ‖gpu−cpu‖/‖cpu‖ per output
//! (f32) and exact equality for greedy token ids; the 7B stages are timed on the GPU only (a
//! CPU 7B reference run would take minutes), their parity is shown on the same shapes with
//! `--parity-layers` LLM layers.
//!
//! `scripts/gpu-bench.sh` builds and runs it; by hand:
//! `cargo run --release --features cuda --example backend_check -- --backend cuda --json out.json`

use burn::tensor::{Tensor, TensorData};
use chatrex::common::weights::WeightLoader;
use chatrex::encoder::clip::ClipVisionTower;
use chatrex::encoder::convnext::ConvNext;
use chatrex::encoder::object_tokenizer::pooled_object_features;
use chatrex::encoder::roi_align::RoiAlignParams;
use chatrex::encoder::{ClipVisionConfig, ConvNextConfig, SelectFeature};
use chatrex::llm::{CausalLm, ChatTokenizer, GenerationOptions, LlmConfig, LlmKeys};
use chatrex::upn::{PromptType, Upn, UpnConfig};
use chatrex::{AnswerOptions, Backend, ChatRex, LoadOptions, ModelConfig, ProposalOptions, Task, WeightDType};
use clap::Parser;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Times each full-size stage on a backend and checks it against the CPU backend.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Backend to measure (`cpu` measures the CPU against itself).
    #[arg(long, default_value = "cuda")]
    backend: Backend,
    /// Comma-separated stages: fused, upn, clip, convnext, objects, llm, detect.
    #[arg(long, default_value = "fused,upn,clip,convnext,objects,llm,detect")]
    stages: String,
    /// Timed repetitions after one warm-up run.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// LLM layers in the CPU-vs-backend parity run (the timed runs use all 32).
    #[arg(long, default_value_t = 2)]
    parity_layers: usize,
    /// Prompt length of the LLM prefill.
    #[arg(long, default_value_t = 800)]
    prefill: usize,
    /// Greedy tokens after the prefill.
    #[arg(long, default_value_t = 32)]
    decode: usize,
    /// Weight dtype of the 7B LLM on the backend.
    #[arg(long, default_value = "f16")]
    llm_dtype: WeightDType,
    /// Llama-2 tokenizer folder (tokenizer.json, tokenizer_config.json) for the `detect` stage.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One measured stage.
#[derive(Serialize, Default)]
struct StageResult {
    stage: String,
    /// Median seconds of the timed runs on the backend.
    seconds: f64,
    /// Every timed run.
    runs: Vec<f64>,
    /// Relative error of each compared output against the CPU backend.
    parity: Vec<(String, f64)>,
    /// Whether greedy ids (or proposal order) match the CPU exactly, where compared.
    exact: Option<bool>,
    note: String,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `f` once to warm up (kernel compilation, autotune), then `repeat` times; returns the
/// last output and the timings. `f` must end by reading its result back to the host.
fn timed<R>(repeat: usize, mut f: impl FnMut() -> R) -> (R, Vec<f64>) {
    let mut out = f();
    let mut runs = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        out = f();
        runs.push(t.elapsed().as_secs_f64());
    }
    (out, runs)
}

fn host(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

fn host2(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

fn host3(t: Tensor<3>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        num += ((x - y) as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

/// A smooth deterministic test input `[1, 3, h, w]` in roughly N(0,1) range, built on the host.
fn input(h: usize, w: usize, device: &burn::tensor::Device) -> Tensor<4> {
    let v: Vec<f32> = (0..3 * h * w).map(|i| ((i as f32) * 0.000_37).sin() * 1.5 + ((i % 97) as f32 / 97.0 - 0.5)).collect();
    Tensor::from_data(TensorData::new(v, [1, 3, h, w]), device)
}

fn test_image() -> image::RgbImage {
    image::RgbImage::from_fn(1333, 800, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8]))
}

fn boxes(n: usize) -> Vec<[f32; 4]> {
    (0..n)
        .map(|i| {
            let f = i as f32;
            let (x, y) = ((f * 37.0) % 700.0, (f * 53.0) % 700.0);
            [x, y, (x + 20.0 + (f * 13.0) % 300.0).min(768.0), (y + 15.0 + (f * 29.0) % 300.0).min(768.0)]
        })
        .collect()
}

fn stage_upn(args: &Args, gpu: &burn::tensor::Device, cpu: &burn::tensor::Device) -> Result<StageResult, Box<dyn std::error::Error>> {
    let config = UpnConfig::large();
    let model = Upn::random(&config, gpu, WeightDType::F32, 1)?;
    let (out, runs) = timed(args.repeat, || -> Result<_, chatrex::upn::UpnError> {
        let o = model.forward(input(800, 1333, gpu), PromptType::Fine)?;
        Ok((host2(o.logits), host3(o.boxes)))
    });
    let (logits, boxes) = out?;
    // Where the backends part: the stages before the top-k query selection, and the overlap of
    // the selected tokens (near-tied selection logits reorder under rounding differences, and
    // every later output follows the selected set).
    let (_, trace) = model.forward_traced(input(800, 1333, gpu), PromptType::Fine)?;
    drop(model);
    let reference = Upn::random(&config, cpu, WeightDType::F32, 1)?;
    let (o, ref_trace) = reference.forward_traced(input(800, 1333, cpu), PromptType::Fine)?;
    let (ref_logits, ref_boxes) = (host2(o.logits), host3(o.boxes));
    let mut parity = Vec::new();
    if let (Some(a), Some(b)) = (trace.backbone.last(), ref_trace.backbone.last()) {
        parity.push(("backbone stage 4".into(), rel(&host(a.clone()), &host(b.clone()))));
    }
    if let (Some(a), Some(b)) = (trace.encoder_layers.last(), ref_trace.encoder_layers.last()) {
        parity.push(("encoder memory".into(), rel(&host3(a.clone()), &host3(b.clone()))));
    }
    let finite = |v: Vec<f32>| v.into_iter().map(|x| if x.is_finite() { x } else { 0.0 }).collect::<Vec<f32>>();
    parity.push((
        "selection logits".into(),
        rel(&finite(host2(trace.selection.logits.clone())), &finite(host2(ref_trace.selection.logits.clone()))),
    ));
    let overlap = match (trace.selection.indices.first(), ref_trace.selection.indices.first()) {
        (Some(a), Some(b)) => {
            let set: std::collections::HashSet<_> = b.iter().collect();
            a.iter().filter(|i| set.contains(i)).count() as f64 / b.len().max(1) as f64
        }
        _ => 0.0,
    };
    let same_slot = match (trace.selection.indices.first(), ref_trace.selection.indices.first()) {
        (Some(a), Some(b)) => a.iter().zip(b).take_while(|(x, y)| x == y).count(),
        _ => 0,
    };
    parity.push(("logits".into(), rel(&logits, &ref_logits)));
    parity.push(("boxes".into(), rel(&boxes, &ref_boxes)));
    Ok(StageResult {
        stage: "upn_l_800x1333_f32".into(),
        seconds: median(&runs),
        runs,
        parity,
        exact: None,
        note: format!(
            "UPN-L forward (fine prompt), 900 queries; selected tokens shared with the CPU {:.1}%, same order for the first {same_slot}",
            overlap * 100.0
        ),
    })
}

fn stage_clip(args: &Args, gpu: &burn::tensor::Device, cpu: &burn::tensor::Device) -> Result<StageResult, Box<dyn std::error::Error>> {
    let cfg = ClipVisionConfig::vit_large_patch14_336();
    let tower = ClipVisionTower::load(&WeightLoader::random(5, gpu, WeightDType::F32).pp("clip"), &cfg, 23, SelectFeature::Patch);
    let (out, runs) = timed(args.repeat, || tower.forward(input(336, 336, gpu)).map(host3));
    let out = out?;
    drop(tower);
    let reference = ClipVisionTower::load(&WeightLoader::random(5, cpu, WeightDType::F32).pp("clip"), &cfg, 23, SelectFeature::Patch);
    let expected = host3(reference.forward(input(336, 336, cpu))?);
    Ok(StageResult {
        stage: "clip_l336_f32".into(),
        seconds: median(&runs),
        runs,
        parity: vec![("features".into(), rel(&out, &expected))],
        note: "CLIP ViT-L/14@336, 23 of 24 layers".into(),
        ..Default::default()
    })
}

fn stage_convnext(args: &Args, gpu: &burn::tensor::Device, cpu: &burn::tensor::Device, objects: bool) -> Result<Vec<StageResult>, Box<dyn std::error::Error>> {
    let cfg = ConvNextConfig::large();
    let model = ConvNext::load(&WeightLoader::random(5, gpu, WeightDType::F32).pp("convnext"), &cfg);
    let (stages, runs) = timed(args.repeat, || {
        let s = model.forward(input(768, 768, gpu))?;
        if let Some(last) = s.last() {
            let _ = last.clone().into_data();
        }
        Ok::<_, chatrex::encoder::EncoderError>(s)
    });
    let stages = stages?;
    let reference = ConvNext::load(&WeightLoader::random(5, cpu, WeightDType::F32).pp("convnext"), &cfg);
    let ref_stages = reference.forward(input(768, 768, cpu))?;
    let parity = stages.iter().zip(&ref_stages).enumerate().map(|(i, (a, b))| (format!("stage{i}"), rel(&host(a.clone()), &host(b.clone())))).collect();
    let mut results = vec![StageResult {
        stage: "convnext_l768_f32".into(),
        seconds: median(&runs),
        runs,
        parity,
        note: "ConvNeXt-L@768, four stage maps".into(),
        ..Default::default()
    }];
    if objects {
        let b = boxes(100);
        let params = RoiAlignParams::chatrex();
        let (pooled, runs) = timed(args.repeat, || host2(pooled_object_features(&stages, &b, &params)));
        let expected = host2(pooled_object_features(&ref_stages, &b, &params));
        results.push(StageResult {
            stage: "object_tokenizer_100_f32".into(),
            seconds: median(&runs),
            runs,
            parity: vec![("pooled".into(), rel(&pooled, &expected))],
            note: "RoI pooling + box embedding of 100 boxes (before the projector)".into(),
            ..Default::default()
        });
    }
    Ok(results)
}

/// Prefill of `prompt` then `decode` greedy steps; returns (prefill s, per-token s, prefill logits, ids).
fn run_llm(lm: &CausalLm, prompt: &[u32], decode: usize) -> Result<(f64, f64, Vec<f32>, Vec<u32>), chatrex::llm::LlmError> {
    let mut cache = lm.new_cache(prompt.len() + decode + 1);
    let t = Instant::now();
    let hidden = lm.forward(lm.embed(prompt)?.unsqueeze::<3>(), &mut cache)?;
    let first = lm.last_logits(&hidden)?;
    let prefill = t.elapsed().as_secs_f64();
    let mut logits = first.clone();
    let mut ids = Vec::new();
    let t = Instant::now();
    for _ in 0..decode {
        let next = chatrex::llm::sampling::argmax(&logits).unwrap_or(0) as u32;
        ids.push(next);
        let hidden = lm.forward(lm.embed(&[next])?.unsqueeze::<3>(), &mut cache)?;
        logits = lm.last_logits(&hidden)?;
    }
    let per_token = t.elapsed().as_secs_f64() / decode.max(1) as f64;
    Ok((prefill, per_token, first, ids))
}

fn stage_llm(args: &Args, gpu: &burn::tensor::Device, cpu: &burn::tensor::Device) -> Result<Vec<StageResult>, Box<dyn std::error::Error>> {
    let full = LlmConfig::vicuna_7b();
    let prompt: Vec<u32> = (0..args.prefill as u32).map(|i| (i * 7919) % full.vocab_size as u32).collect();
    let mut results = Vec::new();
    // Parity: the 7B shapes with a few layers, f32 on both backends.
    let mut small = full.clone();
    small.num_hidden_layers = args.parity_layers;
    let lm = CausalLm::from_loader(&WeightLoader::random(3, gpu, WeightDType::F32), &small, &LlmKeys::default());
    let (_, _, logits, ids) = run_llm(&lm, &prompt, 8)?;
    drop(lm);
    let reference = CausalLm::from_loader(&WeightLoader::random(3, cpu, WeightDType::F32), &small, &LlmKeys::default());
    let (_, _, ref_logits, ref_ids) = run_llm(&reference, &prompt, 8)?;
    drop(reference);
    // Timing: all 32 layers in the chosen dtype.
    let mut lm = CausalLm::from_loader(&WeightLoader::random(3, gpu, args.llm_dtype), &full, &LlmKeys::default());
    let _ = run_llm(&lm, &prompt[..64.min(prompt.len())], 2)?;
    let mut prefills = Vec::new();
    let mut tokens = Vec::new();
    let mut fused_ids = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let (p, d, _, ids) = run_llm(&lm, &prompt, args.decode)?;
        prefills.push(p);
        tokens.push(d);
        fused_ids = ids;
    }
    // The same decode with Burn's tensor ops instead of the fused kernels (where they ran).
    let fused = lm.fused_decode();
    let mut op_tokens = Vec::new();
    let mut op_ids = Vec::new();
    if fused && !lm.set_fused_decode(false) {
        let _ = run_llm(&lm, &prompt[..64.min(prompt.len())], 2)?;
        for _ in 0..args.repeat.max(1) {
            let (_, d, _, ids) = run_llm(&lm, &prompt, args.decode)?;
            op_tokens.push(d);
            op_ids = ids;
        }
    }
    let dtype = args.llm_dtype;
    let bytes = {
        let c = &full;
        let h = c.hidden_size;
        let kv = c.num_key_value_heads * c.head_dim();
        ((h * h * 2 + 2 * h * kv + 3 * h * c.intermediate_size) * c.num_hidden_layers + c.vocab_size * h) * dtype.size()
    };
    results.push(StageResult {
        stage: format!("llama7b_prefill{}_{dtype}", args.prefill),
        seconds: median(&prefills),
        runs: prefills.clone(),
        parity: vec![(format!("prefill logits ({} layers, f32)", args.parity_layers), rel(&logits, &ref_logits))],
        exact: Some(ids == ref_ids),
        note: format!("{:.0} tok/s", args.prefill as f64 / median(&prefills)),
    });
    let per_token = median(&tokens);
    let comparison = if op_tokens.is_empty() {
        String::from("; tensor-op decode (fused kernels unavailable)")
    } else {
        let op = median(&op_tokens);
        format!(
            "; tensor-op decode {:.1} ms/token ({:.2}x slower), same ids as fused: {}",
            op * 1e3,
            op / per_token,
            op_ids == fused_ids
        )
    };
    results.push(StageResult {
        stage: format!("llama7b_decode_{dtype}"),
        seconds: per_token,
        runs: tokens,
        note: format!(
            "{:.1} tok/s; {:.2} GB of weights per token → {:.0} GB/s effective; fused kernels: {fused}{comparison}",
            1.0 / per_token,
            bytes as f64 / 1e9,
            bytes as f64 / per_token / 1e9
        ),
        ..Default::default()
    });
    Ok(results)
}

/// Prefill `prompt`, then `steps` greedy positions: the logits of every step and the ids.
fn stepwise(lm: &CausalLm, prompt: &[u32], steps: usize) -> Result<(Vec<Vec<f32>>, Vec<u32>), chatrex::llm::LlmError> {
    let mut cache = lm.new_cache(prompt.len() + steps);
    let hidden = lm.forward(lm.embed(prompt)?.unsqueeze::<3>(), &mut cache)?;
    let mut logits = lm.last_logits(&hidden)?;
    let (mut all, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let next = chatrex::llm::sampling::argmax(&logits).unwrap_or(0) as u32;
        ids.push(next);
        let hidden = lm.forward(lm.embed(&[next])?.unsqueeze::<3>(), &mut cache)?;
        logits = lm.last_logits(&hidden)?;
        all.push(logits.clone());
    }
    Ok((all, ids))
}

/// The fused decode kernels against Burn's tensor ops on the backend, on the small reference
/// models of `fixtures/llm` (f32 and f16): the worst step's logits error and the greedy ids.
fn stage_fused(gpu: &burn::tensor::Device) -> Result<Vec<StageResult>, Box<dyn std::error::Error>> {
    let mut results = Vec::new();
    for (name, dtype) in [("qwen2_gqa_untied", WeightDType::F32), ("llama_gqa_untied", WeightDType::F32), ("qwen2_gqa_untied", WeightDType::F16)] {
        let dir = chatrex::common::parity::repo_fixtures().join("llm").join(name);
        let (mut lm, _) = CausalLm::load_dir(&dir, gpu, dtype)?;
        let fused = lm.fused_decode();
        let vocab = lm.config().vocab_size as u32;
        let prompt_len = (lm.config().max_position_embeddings - 24).min(300);
        let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| (i * 37 + 5) % vocab).collect();
        let t = Instant::now();
        let (a, ids_a) = stepwise(&lm, &prompt, 20)?;
        let fused_s = t.elapsed().as_secs_f64();
        lm.set_fused_decode(false);
        let (b, ids_b) = stepwise(&lm, &prompt, 20)?;
        let worst = a.iter().zip(&b).map(|(x, y)| rel(x, y)).fold(0f64, f64::max);
        results.push(StageResult {
            stage: format!("fused_decode_{name}_{dtype}"),
            seconds: fused_s,
            parity: vec![("worst step logits vs tensor ops".into(), worst)],
            exact: Some(ids_a == ids_b),
            note: format!("fused kernels: {fused}; prefill {prompt_len} + 20 steps"),
            ..Default::default()
        });
    }
    Ok(results)
}

fn chatrex_model(args: &Args, layers: usize, device: &burn::tensor::Device, dtype: WeightDType) -> Result<ChatRex, Box<dyn std::error::Error>> {
    let mut config = ModelConfig::chatrex_7b();
    config.llm.num_hidden_layers = layers;
    let dir = args.tokenizer.clone().ok_or("--tokenizer is needed for the detect stage")?;
    let mut tokenizer = ChatTokenizer::from_files(&dir.join("tokenizer.json"), Some(&dir.join("tokenizer_config.json")))?;
    tokenizer.add_chatrex_tokens();
    let options = LoadOptions { dtype, vision_dtype: WeightDType::F32, ..Default::default() };
    Ok(ChatRex::random(config, tokenizer, Some(&UpnConfig::large()), &options, device, 9)?)
}

fn detect(model: &ChatRex, image: &image::RgbImage) -> Result<(f64, f64, chatrex::Answer), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let proposals = model.propose(image, &ProposalOptions::official(PromptType::Fine))?;
    let upn = t.elapsed().as_secs_f64();
    let options = AnswerOptions { generation: GenerationOptions { max_new_tokens: 16, ..Default::default() }, ..Default::default() };
    let answer = model.run_task(image, &Task::Detect(vec!["person".into(), "pigeon".into()]), Some(proposals), None, &options)?;
    Ok((upn, t.elapsed().as_secs_f64() - upn, answer))
}

fn stage_detect(args: &Args, gpu: &burn::tensor::Device, cpu: &burn::tensor::Device) -> Result<Vec<StageResult>, Box<dyn std::error::Error>> {
    let image = test_image();
    // Parity: the whole pipeline with a shallow LLM, f32, same answer ids on both backends.
    let small = chatrex_model(args, args.parity_layers, gpu, WeightDType::F32)?;
    let (_, _, answer) = detect(&small, &image)?;
    drop(small);
    let reference = chatrex_model(args, args.parity_layers, cpu, WeightDType::F32)?;
    let (_, _, expected) = detect(&reference, &image)?;
    drop(reference);
    let boxes = |a: &chatrex::Answer| a.proposals.iter().flat_map(|p| p.bbox).collect::<Vec<f32>>();
    let same_ids = answer.generation.ids == expected.generation.ids && answer.proposals.len() == expected.proposals.len();
    let model = chatrex_model(args, 32, gpu, args.llm_dtype)?;
    let _ = detect(&model, &image)?;
    let mut totals = Vec::new();
    let mut parts = Vec::new();
    let mut last = None;
    for _ in 0..args.repeat.max(1) {
        let (upn, mllm, answer) = detect(&model, &image)?;
        totals.push(upn + mllm);
        parts.push((upn, mllm));
        last = Some(answer);
    }
    let (upn, mllm) = parts[parts.len() / 2];
    let new_tokens = last.as_ref().map(|a| a.generation.ids.len()).unwrap_or(0);
    let prompt_ids = last.as_ref().map(|a| a.input_ids.len()).unwrap_or(0);
    Ok(vec![StageResult {
        stage: format!("detect_7b_{}", args.llm_dtype),
        seconds: median(&totals),
        runs: totals,
        parity: vec![(format!("proposal boxes ({} layers, f32)", args.parity_layers), rel(&boxes(&answer), &boxes(&expected)))],
        exact: Some(same_ids),
        note: format!("UPN {upn:.3} s + encoder/prefill/decode {mllm:.3} s ({prompt_ids} prompt ids, {new_tokens} new tokens)"),
    }])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    chatrex::init_cli_logging();
    let args = Args::parse();
    chatrex::common::allocator::reuse_freed_memory();
    let gpu = args.backend.device()?;
    let cpu = Backend::Cpu.device()?;
    let stages: Vec<&str> = args.stages.split(',').map(str::trim).collect();
    let mut results = Vec::new();
    let mut report = |r: StageResult| {
        let parity: Vec<String> = r.parity.iter().map(|(k, v)| format!("{k} {v:.1e}")).collect();
        println!(
            "{:<28} {:>9.4} s  {}{}  {}",
            r.stage,
            r.seconds,
            parity.join(", "),
            r.exact.map(|e| if e { "; ids identical" } else { "; IDS DIFFER" }).unwrap_or(""),
            r.note
        );
        results.push(r);
        // Written after every stage so that a run cut short keeps what it measured.
        if let (Some(path), Ok(text)) = (&args.json, serde_json::to_string_pretty(&results)) {
            let _ = std::fs::write(path, text);
        }
    };
    println!(
        "backend {} ({:?}, {}), {} timed runs after one warm-up",
        args.backend.name(),
        gpu,
        chatrex::common::device::device_name(&gpu).unwrap_or_else(|| "unnamed".into()),
        args.repeat
    );
    if stages.contains(&"fused") {
        // A failure here is reported, not fatal: the timed stages still run.
        match stage_fused(&gpu) {
            Ok(rs) => rs.into_iter().for_each(&mut report),
            Err(e) => report(StageResult { stage: "fused_decode".into(), note: format!("FAILED: {e}"), ..Default::default() }),
        }
    }
    if stages.contains(&"upn") {
        report(stage_upn(&args, &gpu, &cpu)?);
    }
    if stages.contains(&"clip") {
        report(stage_clip(&args, &gpu, &cpu)?);
    }
    if stages.contains(&"convnext") || stages.contains(&"objects") {
        for r in stage_convnext(&args, &gpu, &cpu, stages.contains(&"objects"))? {
            report(r);
        }
    }
    if stages.contains(&"llm") {
        for r in stage_llm(&args, &gpu, &cpu)? {
            report(r);
        }
    }
    if stages.contains(&"detect") {
        for r in stage_detect(&args, &gpu, &cpu)? {
            report(r);
        }
    }
    Ok(())
}
