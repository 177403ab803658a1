//! Parity with the official RexSeek code (the ChatRex MLLM design): tiny random weights, real
//! photo, fixture in `../shared/fixtures/mllm/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::{Device, Tensor};
use chatrex_common::image::{ImageLimits, load_rgb};
use chatrex_common::parity::{Fixture, check_close, compare, shared_fixtures, values};
use chatrex_common::weights::{WeightDType, WeightLoader, open_checkpoint};
use chatrex_encoder::interpolate::resize_bilinear_planar;
use chatrex_encoder::object_tokenizer::box_position_embedding;
use chatrex_encoder::preprocess::tower_inputs;
use chatrex_encoder::roi_align::{RoiAlignParams, roi_align};
use chatrex_encoder::{ClipVisionConfig, ConvNextConfig, DualEncoder, DualEncoderConfig, EncoderKeys, SelectFeature};
use serde_json::Value;
use std::path::PathBuf;

const TOL: f64 = 1e-4;

fn dir() -> PathBuf {
    shared_fixtures().expect("shared fixtures").join("mllm")
}

fn config() -> DualEncoderConfig {
    DualEncoderConfig {
        clip: ClipVisionConfig::from_file(&dir().join("tiny/vision_tower/config.json")).unwrap(),
        convnext: ConvNextConfig {
            depths: vec![1, 1, 1, 1],
            dims: vec![8, 16, 32, 64],
        },
        select_layer: -2,
        select_feature: SelectFeature::Patch,
        llm_hidden_size: 64,
        high_res: 768,
        roi_output_size: 7,
        max_objects: 100,
    }
}

fn encoder(device: &Device) -> DualEncoder {
    let source = open_checkpoint(&dir().join("tiny/model.safetensors"), None).unwrap();
    let vb = WeightLoader::new(source, device, WeightDType::F32);
    DualEncoder::from_loader(&vb, &config(), &EncoderKeys::default()).unwrap()
}

fn case(name: &str) -> (Value, Fixture) {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir().join(format!("ref/{name}.json"))).unwrap()).unwrap();
    (json, Fixture::open(&dir().join(format!("ref/{name}.safetensors"))).unwrap())
}

fn check(what: &str, actual: &[f32], expected: &[f32]) {
    let c = check_close(what, actual, expected, TOL).unwrap_or_else(|e| panic!("{e}"));
    println!("{what}: {c}");
}

fn boxes_of(json: &Value, key: &str) -> Vec<[f32; 4]> {
    json[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let v: Vec<f32> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}

#[test]
fn preprocessing_matches_the_official_processor() {
    let fx = Fixture::open(&dir().join("ref/intermediates_test_chatrex_install.safetensors")).unwrap();
    let image = load_rgb(&dir().join("test_chatrex_install.jpg"), &ImageLimits::default()).unwrap();
    let inputs = tower_inputs(&image, 768, 336);
    let expected = fx.f32("pixel_values").unwrap();
    let c = compare(&inputs.low_res, &expected);
    let exact = inputs.low_res.iter().zip(&expected).filter(|(a, b)| a == b).count();
    println!("pixel_values: {c}, {exact} of {} bit-identical", expected.len());
    assert!(c.max_abs <= 1e-6, "{c}");
    let (json, _) = case("test_chatrex_install_b5_detect");
    let aux = &json["pixel_values_aux"];
    let sum: f64 = inputs.high_res.iter().map(|&v| f64::from(v)).sum();
    let expected_sum = aux["sum"].as_f64().unwrap();
    println!("pixel_values_aux sum {sum} vs {expected_sum}");
    assert!((sum - expected_sum).abs() < 1e-3);
    let first: Vec<f32> = aux["first"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(&inputs.high_res[..first.len()], &first[..]);
    // Box mapping into the 768 frame is exact.
    for name in ["test_chatrex_install_b5_detect", "test_chatrex_install_b1_phrase"] {
        let (json, fx) = case(name);
        let mapped: Vec<f32> = boxes_of(&json, "boxes_xyxy").iter().flat_map(|b| inputs.frame.map_box(*b)).collect();
        assert_eq!(mapped, fx.f32("gt_boxes_768").unwrap(), "{name}");
    }
}

#[test]
fn towers_fusion_and_object_tokens_match() {
    let device = chatrex_common::parity::test_device();
    let enc = encoder(&device);
    let fx = Fixture::open(&dir().join("ref/intermediates_test_chatrex_install.safetensors")).unwrap();
    let image = load_rgb(&dir().join("test_chatrex_install.jpg"), &ImageLimits::default()).unwrap();
    let features = enc.encode_image(&image).unwrap();
    check("clip selected features", &values(features.clip_tokens.clone()), &fx.f32("clip_selected_features").unwrap());
    for s in 0..4 {
        check(&format!("convnext stage {s}"), &values(features.stages[s].clone()), &fx.f32(&format!("convnext_stage{s}")).unwrap());
    }
    check("fused image features", &values(enc.fused_features(&features)), &fx.f32("image_features_before_mm_projector").unwrap());
    check("image tokens", &values(enc.image_tokens(&features)), &fx.f32("image_embeds_after_mm_projector").unwrap());

    for name in ["test_chatrex_install_b5_detect", "test_chatrex_install_b1_phrase"] {
        let (json, cf) = case(name);
        let boxes = boxes_of(&json, "boxes_xyxy");
        let frame_boxes: Vec<[f32; 4]> = boxes.iter().map(|b| features.frame.map_box(*b)).collect();
        let pos = box_position_embedding(&frame_boxes, 768.0, 30);
        check(&format!("{name} box position embedding"), &pos, &cf.f32("box_pos_embed").unwrap());
        let pooled = enc.object_features(&features, &boxes).unwrap();
        check(&format!("{name} object features"), &values(pooled), &cf.f32("object_features_before_mm_object_projector").unwrap());
        let tokens = enc.object_tokens(&features, &boxes).unwrap();
        check(&format!("{name} object tokens"), &values(tokens), &cf.f32("object_embeds_after_mm_object_projector").unwrap());

        // The full RoIAlign (host reference of torchvision) on the official upsampled features.
        let mut upsampled = Vec::new();
        for s in 0..4 {
            let t: Tensor<4> = features.stages[s].clone();
            let [_, c, h, w] = t.dims();
            upsampled.extend(resize_bilinear_planar(&values(t), c, h, w, 192, 192));
        }
        let roi = roi_align(&upsampled, 120, 192, 192, &frame_boxes, &RoiAlignParams::chatrex());
        check(&format!("{name} roi_align"), &roi, &cf.f32("roi_align_out").unwrap());
    }
}
