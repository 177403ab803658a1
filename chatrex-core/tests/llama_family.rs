//! End to end with a Llama (Vicuna-style) ChatRex in the official layout, against our
//! PyTorch reference of the whole pipeline (tools/reference/chatrex_llama.py): identical
//! prompt, ids with placeholders, greedy output ids, text and groundings; image and object
//! embeddings within 1e-4.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::image::{ImageLimits, load_rgb};
use chatrex_common::parity::{Fixture, check_close, repo_fixtures, shared_fixtures, test_device};
use chatrex_core::{AnswerOptions, ChatRex, LoadOptions, ProposalBox};
use chatrex_llm::{ChatTokenizer, GenerationOptions};
use serde_json::Value;
use std::path::PathBuf;

/// The fixture plus a ChatRex tokenizer (shared Llama-2 tokenizer + 104 tokens) in a temp dir.
fn model_dir() -> PathBuf {
    let src = repo_fixtures().join("chatrex_llama");
    let dir = std::env::temp_dir().join(format!("chatrex-llama-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("vision_tower")).unwrap();
    for f in ["config.json", "model.safetensors", "vision_tower/config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let shared = shared_fixtures().unwrap().join("tokenizers/llama2");
    let mut tok = ChatTokenizer::from_files(&shared.join("tokenizer.json"), None).unwrap();
    assert_eq!(tok.add_chatrex_tokens(), 104);
    tok.inner().save(dir.join("tokenizer.json"), false).unwrap();
    std::fs::copy(shared.join("tokenizer_config.json"), dir.join("tokenizer_config.json")).unwrap();
    dir
}

#[test]
fn llama_chatrex_matches_the_reference_pipeline() {
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(repo_fixtures().join("chatrex_llama/ref.json")).unwrap()).unwrap();
    let fx = Fixture::open(&repo_fixtures().join("chatrex_llama/ref.safetensors")).unwrap();
    let dir = model_dir();
    let model = ChatRex::load(&dir, &LoadOptions::default(), &test_device()).unwrap();
    assert!(model.config().notes.iter().any(|n| n.contains("unverified")), "the Vicuna template assumption is reported");
    let image = load_rgb(&shared_fixtures().unwrap().join("mllm/test_chatrex_install.jpg"), &ImageLimits::default()).unwrap();
    let boxes: Vec<ProposalBox> = reference["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let v: Vec<f32> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            ProposalBox { bbox: [v[0], v[1], v[2], v[3]], score: None }
        })
        .collect();
    let dump = dir.join("dump");
    let options = AnswerOptions {
        generation: GenerationOptions { max_new_tokens: 24, ..Default::default() },
        index_mask: false,
        official_parser: true,
        dump: Some(dump.clone()),
        ..Default::default()
    };
    let answer = model.answer(&image, &boxes, reference["question"].as_str().unwrap(), &options).unwrap();
    assert_eq!(answer.prompt, reference["prompt"].as_str().unwrap());
    let ids: Vec<i64> = reference["input_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(answer.input_ids, ids, "ids with placeholders");
    let out: Vec<u32> = reference["output_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(answer.generation.all_ids(), out, "greedy ids");
    assert_eq!(answer.text, reference["text"].as_str().unwrap());
    let groundings: Vec<(String, Vec<usize>)> = answer.groundings.iter().map(|g| (g.phrase.clone(), g.indices.clone())).collect();
    let expected: Vec<(String, Vec<usize>)> = serde_json::from_value(reference["groundings"].clone()).unwrap();
    assert_eq!(groundings, expected);
    let dumped = Fixture::open(&dump.join("tensors.safetensors")).unwrap();
    for name in ["boxes_768", "image_embeds", "object_embeds", "first_step_logits"] {
        let c = check_close(name, &dumped.f32(name).unwrap(), &fx.f32(name).unwrap(), 1e-4).unwrap_or_else(|e| panic!("{e}"));
        println!("{name}: {c}");
    }
    let pv = dumped.f32("pixel_values").unwrap();
    let sum: f64 = pv.iter().map(|&v| f64::from(v)).sum();
    assert!((sum - reference["pixel_values"]["sum"].as_f64().unwrap()).abs() < 1e-2, "pixel_values sum {sum}");
    let _ = std::fs::remove_dir_all(&dir);
}
