//! The LLM side of the official RexSeek run (tiny Qwen2 with a grammar edit): tokenization,
//! multimodal prefill, first-step logits and greedy output ids.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::Device;
use chatrex_common::parity::{Fixture, check_close, shared_fixtures};
use chatrex_common::weights::{WeightDType, WeightLoader, open_checkpoint};
use chatrex_llm::multimodal::splice_embeddings;
use chatrex_llm::{Architecture, CausalLm, ChatTokenizer, GenerationOptions, LlmConfig, LlmKeys, generate};
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    shared_fixtures().expect("shared fixtures").join("mllm")
}

fn load(device: &Device) -> (CausalLm, ChatTokenizer) {
    let config = LlmConfig::from_file(&dir().join("tiny/config.json"), Some(Architecture::Qwen2)).unwrap();
    let vb = WeightLoader::new(open_checkpoint(&dir().join("tiny/model.safetensors"), None).unwrap(), device, WeightDType::F32);
    let lm = CausalLm::from_loader(&vb, &config, &LlmKeys::default());
    let tok = ChatTokenizer::from_dir(&dir().join("tiny")).unwrap();
    (lm, tok)
}

#[test]
fn official_cases_give_identical_ids() {
    let device = chatrex_common::parity::test_device();
    let (lm, tok) = load(&device);
    let inter = Fixture::open(&dir().join("ref/intermediates_test_chatrex_install.safetensors")).unwrap();
    let image = inter.tensor::<3>("image_embeds_after_mm_projector", &device).unwrap().reshape([576, 64]);
    for name in ["test_chatrex_install_b5_detect", "test_chatrex_install_b1_phrase"] {
        let json: Value = serde_json::from_str(&std::fs::read_to_string(dir().join(format!("ref/{name}.json"))).unwrap()).unwrap();
        let fx = Fixture::open(&dir().join(format!("ref/{name}.safetensors"))).unwrap();
        let ids = tok.encode_multimodal(json["prompt"].as_str().unwrap()).unwrap();
        assert_eq!(ids, fx.i64("input_ids").unwrap(), "{name}: input ids");
        let objects = fx.tensor::<2>("object_embeds_after_mm_object_projector", &device).unwrap();
        let embeds = splice_embeddings(&lm, &ids, Some(&image), Some(&objects)).unwrap();
        assert_eq!(embeds.dims()[0], json["num_llm_positions"].as_u64().unwrap() as usize);
        let options = GenerationOptions { max_new_tokens: 40, ..Default::default() };
        let out = generate(&lm, &tok, embeds.unsqueeze::<3>(), &options, &mut [], &mut |_| {}).unwrap();
        let c = check_close(&format!("{name} first-step logits"), &out.first_step_logits, &fx.f32("first_step_logits").unwrap(), 1e-4)
            .unwrap_or_else(|e| panic!("{e}"));
        println!("{name}: first-step logits {c}");
        let expected: Vec<u32> = fx.i64("output_ids").unwrap().iter().map(|&i| i as u32).collect();
        assert_eq!(out.all_ids(), expected, "{name}: output ids");
        let raw = tok.decode(&out.all_ids(), false).unwrap();
        assert_eq!(raw, json["decoded_raw"].as_str().unwrap(), "{name}: decoded text");
    }
}
