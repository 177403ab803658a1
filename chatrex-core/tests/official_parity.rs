//! End to end against the official RexSeek run (`../shared/fixtures/mllm/`): the model
//! directory in the official layout is loaded strictly, and with the index mask off
//! (official decoding) the ids, text, parsed groundings and every dumped tensor match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::image::{ImageLimits, load_rgb};
use chatrex_common::parity::{Fixture, check_close, shared_fixtures};
use chatrex_core::{AnswerOptions, ChatRex, LoadOptions, ProposalBox};
use chatrex_llm::GenerationOptions;
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    shared_fixtures().expect("shared fixtures").join("mllm")
}

fn case(name: &str) -> (Value, Fixture) {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir().join(format!("ref/{name}.json"))).unwrap()).unwrap();
    (json, Fixture::open(&dir().join(format!("ref/{name}.safetensors"))).unwrap())
}

fn boxes(json: &Value) -> Vec<ProposalBox> {
    json["boxes_xyxy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let v: Vec<f32> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            ProposalBox { bbox: [v[0], v[1], v[2], v[3]], score: None }
        })
        .collect()
}

fn options(mask: bool, dump: Option<PathBuf>) -> AnswerOptions {
    AnswerOptions {
        generation: GenerationOptions { max_new_tokens: 40, ..Default::default() },
        index_mask: mask,
        official_parser: true,
        dump,
        ..Default::default()
    }
}

const CASES: [&str; 2] = ["test_chatrex_install_b5_detect", "test_chatrex_install_b1_phrase"];

#[test]
fn official_decoding_reproduces_ids_text_groundings_and_tensors() {
    let device = chatrex_common::parity::test_device();
    let model = ChatRex::load(&dir().join("tiny"), &LoadOptions::default(), &device).expect("strict load");
    let image = load_rgb(&dir().join("test_chatrex_install.jpg"), &ImageLimits::default()).unwrap();
    let inter = Fixture::open(&dir().join("ref/intermediates_test_chatrex_install.safetensors")).unwrap();
    for name in CASES {
        let (json, fx) = case(name);
        let tmp = std::env::temp_dir().join(format!("chatrex-dump-{name}-{}", std::process::id()));
        let question = json["question"].as_str().unwrap();
        let answer = model.answer(&image, &boxes(&json), question, &options(false, Some(tmp.clone()))).unwrap();
        assert_eq!(answer.prompt, json["prompt"].as_str().unwrap(), "{name}: prompt");
        let expected: Vec<u32> = fx.i64("output_ids").unwrap().iter().map(|&i| i as u32).collect();
        assert_eq!(answer.generation.all_ids(), expected, "{name}: output ids");
        let raw = model.tokenizer().decode(&answer.generation.all_ids(), false).unwrap();
        assert_eq!(raw, json["decoded_raw"].as_str().unwrap(), "{name}: text");
        // Parsed groundings (official parser, indices as written).
        let parsed: Vec<(String, Vec<usize>)> = answer
            .groundings
            .iter()
            .map(|g| {
                let mut all = g.indices.clone();
                all.extend(&g.out_of_range);
                (g.phrase.clone(), all)
            })
            .collect();
        let expected_parsed: Vec<(String, Vec<usize>)> = json["parsed_groundings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["phrase"].as_str().unwrap().to_string(),
                    g["indices"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect(),
                )
            })
            .collect();
        assert_eq!(parsed, expected_parsed, "{name}: groundings");

        // The dump.
        let ids: Vec<i64> = serde_json::from_str(&std::fs::read_to_string(tmp.join("input_ids.json")).unwrap()).unwrap();
        assert_eq!(ids, fx.i64("input_ids").unwrap(), "{name}: dumped ids");
        let dumped = Fixture::open(&tmp.join("tensors.safetensors")).unwrap();
        let pairs = [
            ("pixel_values", inter.f32("pixel_values").unwrap()),
            ("boxes_768", fx.f32("gt_boxes_768").unwrap()),
            ("image_embeds", inter.f32("image_embeds_after_mm_projector").unwrap()),
            ("object_embeds", fx.f32("object_embeds_after_mm_object_projector").unwrap()),
            ("first_step_logits", fx.f32("first_step_logits").unwrap()),
        ];
        for (tensor, expected) in pairs {
            let c = check_close(&format!("{name} {tensor}"), &dumped.f32(tensor).unwrap(), &expected, 1e-4).unwrap_or_else(|e| panic!("{e}"));
            println!("{name} {tensor}: {c}");
        }
        let aux = dumped.f32("pixel_values_aux").unwrap();
        assert_eq!(dumped.shape("pixel_values_aux").unwrap(), vec![1, 3, 768, 768]);
        let sum: f64 = aux.iter().map(|&v| f64::from(v)).sum();
        assert!((sum - json["pixel_values_aux"]["sum"].as_f64().unwrap()).abs() < 1e-3);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

#[test]
fn index_mask_changes_output_only_where_the_official_model_erred() {
    let device = chatrex_common::parity::test_device();
    let model = ChatRex::load(&dir().join("tiny"), &LoadOptions::default(), &device).unwrap();
    let image = load_rgb(&dir().join("test_chatrex_install.jpg"), &ImageLimits::default()).unwrap();
    let tokens = model.tokenizer().chatrex_tokens().unwrap();
    for name in CASES {
        let (json, fx) = case(name);
        let proposals = boxes(&json);
        let k = proposals.len();
        let official: Vec<u32> = fx.i64("output_ids").unwrap().iter().map(|&i| i as u32).collect();
        let answer = model.answer(&image, &proposals, json["question"].as_str().unwrap(), &options(true, None)).unwrap();
        let ours = answer.generation.all_ids();
        let first_bad = official
            .iter()
            .position(|&id| tokens.object_index(id).is_some_and(|n| n >= k))
            .expect("the official answer writes an out-of-range index in these cases");
        assert_eq!(&ours[..first_bad], &official[..first_bad], "{name}: prefix before the first invalid index");
        assert_ne!(ours.get(first_bad), official.get(first_bad));
        assert!(ours.iter().all(|&id| tokens.object_index(id).is_none_or(|n| n < k)), "{name}: masked output has an invalid index");
        println!("{name}: official {:?} / masked {:?}", model.tokenizer().decode(&official, false).unwrap(), answer.text);
    }
}
