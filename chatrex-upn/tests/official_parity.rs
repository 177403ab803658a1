//! Parity with the official ChatRex UPN (tiny random weights, real photo), from the fixture in
//! `../shared/fixtures/upn/` made by running the official code on CPU in float32.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::{Device, Tensor};
use chatrex_common::image::{ImageLimits, load_rgb};
use chatrex_common::parity::{Fixture, check_close, shared_fixtures, values};
use chatrex_common::weights::WeightDType;
use chatrex_upn::preprocess::preprocess;
use chatrex_upn::{PromptType, Upn, UpnConfig, UpnTrace};
use serde_json::Value;
use std::path::PathBuf;

/// Per-module tolerance on ‖a−b‖/‖b‖ (f32).
const TOL: f64 = 1e-4;

fn dir() -> PathBuf {
    shared_fixtures().expect("shared fixtures").join("upn")
}

/// The official tiny checkpoint, strictly; with `split`, its f32 host linear layers multiply
/// on split bf16 tiles (`WeightLoader::with_split_f32_products`) where the CPU has AMX.
fn load_tiny(device: &Device, split: bool) -> Upn {
    let config = UpnConfig::from_file(&dir().join("config.json")).expect("config");
    let vb = Upn::checkpoint_loader(&dir().join("upn_tiny.pth"), device, WeightDType::F32).expect("checkpoint").with_split_f32_products(split);
    Upn::from_loader(&vb, &config).expect("strict load of the official checkpoint").0
}

fn run(prompt: PromptType, split: bool) -> (Upn, UpnTrace) {
    let device = chatrex_common::parity::test_device();
    let upn = load_tiny(&device, split);
    let image = load_rgb(&dir().join("test_upn.jpeg"), &ImageLimits::default()).unwrap();
    let input = preprocess(&image, &device).unsqueeze::<4>();
    let (_, trace) = upn.forward_traced(input, prompt).unwrap();
    (upn, trace)
}

/// NCHW map → the 16×16 crops and per-position channel mean the fixture stores.
fn crops(map: &Tensor<4>) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [_, c, h, w] = map.dims();
    let tl = values(map.clone().slice([0..1, 0..c, 0..16, 0..16]));
    let br = values(map.clone().slice([0..1, 0..c, h - 16..h, w - 16..w]));
    let mean_c = values(map.clone().mean_dim(1).reshape([1, h, w]));
    (tl, br, mean_c)
}

fn check(what: &str, actual: &[f32], fixture: &Fixture, name: &str) {
    let expected = fixture.f32(name).unwrap();
    let c = check_close(what, actual, &expected, TOL).unwrap_or_else(|e| panic!("{e}"));
    println!("{what}: {c}");
}

#[test]
fn every_stage_matches_the_official_intermediates() {
    every_stage_matches(false);
}

/// The same stages and tolerances with the opt-in split bf16 products for f32 weights; on the
/// CPU backend of a CPU with AMX tiles the Swin levels must also differ from the exact
/// products' (the split path ran; other devices run Burn's tensor ops either way).
#[test]
fn every_stage_matches_the_official_intermediates_with_split_f32_products() {
    every_stage_matches(true);
    let host = chatrex_common::device::is_host_cpu(&chatrex_common::parity::test_device());
    if host && chatrex_common::amx::split_f16_fits(32, 32) {
        let (exact, split) = (run(PromptType::Fine, false).1, run(PromptType::Fine, true).1);
        let (a, b) = (values(exact.backbone[3].clone()), values(split.backbone[3].clone()));
        assert_ne!(a, b, "split products gave the exact products' values: the split path did not run");
        println!("swin level 3, split against exact: {}", check_close("split", &b, &a, TOL).unwrap_or_else(|e| panic!("{e}")));
    }
}

fn every_stage_matches(split: bool) {
    let (_, t) = run(PromptType::Fine, split);
    let fx = Fixture::open(&dir().join("intermediates_test_upn_fine.safetensors")).unwrap();

    for l in 0..2 {
        let (tl, br, mean_c) = crops(&t.backbone[l]);
        check(&format!("swin level {l} top-left"), &tl, &fx, &format!("backbone.level{l}.crop_tl"));
        check(&format!("swin level {l} bottom-right"), &br, &fx, &format!("backbone.level{l}.crop_br"));
        check(&format!("swin level {l} channel mean"), &mean_c, &fx, &format!("backbone.level{l}.mean_c"));
        let (tl, br, _) = crops(&t.projected[l]);
        check(&format!("input_proj {l} top-left"), &tl, &fx, &format!("input_proj.level{l}.crop_tl"));
        check(&format!("input_proj {l} bottom-right"), &br, &fx, &format!("input_proj.level{l}.crop_br"));
    }
    for l in 2..4 {
        check(&format!("swin level {l}"), &values(t.backbone[l].clone()), &fx, &format!("backbone.level{l}"));
    }
    for l in 2..5 {
        check(&format!("input_proj {l}"), &values(t.projected[l].clone()), &fx, &format!("input_proj.level{l}"));
    }

    // Position embedding (+ level embed), stored separably.
    let starts = t.layout.starts();
    for (l, &(h, w)) in t.layout.shapes.iter().enumerate() {
        let d = 64;
        let pos = t.pos.clone().narrow(1, starts[l], h * w).reshape([h, w, d]);
        let col0 = values(pos.clone().slice([0..h, 0..1, 0..d]));
        let row0 = values(pos.slice([0..1, 0..w, 0..d]));
        check(&format!("pos level {l} column 0"), &col0, &fx, &format!("encoder.pos.level{l}.col0"));
        check(&format!("pos level {l} row 0"), &row0, &fx, &format!("encoder.pos.level{l}.row0"));
    }

    for (i, out) in t.encoder_layers.iter().enumerate() {
        for (l, &(h, w)) in t.layout.shapes.iter().enumerate() {
            let level = out.clone().narrow(1, starts[l], h * w);
            if l < 2 {
                let map = level.reshape([1, h, w, 64]).permute([0, 3, 1, 2]);
                let (_, _, mean_c) = crops(&map);
                check(&format!("encoder {i} level {l} mean"), &mean_c, &fx, &format!("encoder.layer{i}.out.level{l}.mean_c"));
                let tl = values(map.clone().slice([0..1, 0..64, 0..16, 0..16]).permute([0, 2, 3, 1]));
                check(&format!("encoder {i} level {l} top-left"), &tl, &fx, &format!("encoder.layer{i}.out.level{l}.crop_tl"));
            } else {
                check(&format!("encoder {i} level {l}"), &values(level), &fx, &format!("encoder.layer{i}.out.level{l}"));
            }
        }
    }

    check("two-stage logits", &values(t.selection.logits.clone()), &fx, "two_stage.logits");
    let expected_topk: Vec<usize> = fx.i64("two_stage.topk_indices").unwrap().iter().map(|&i| i as usize).collect();
    assert_eq!(t.selection.indices[0], expected_topk, "two-stage top-k selection differs");
    check("initial reference (unsigmoid)", &values(t.selection.reference_unsigmoid.clone()), &fx, "two_stage.topk_coords_unsig");

    for (i, layer) in t.decoder.traces.iter().enumerate() {
        let p = format!("decoder.layer{i}");
        check(&format!("{p} query_sine_embed"), &values(layer.query_sine_embed.clone()), &fx, &format!("{p}.query_sine_embed"));
        check(&format!("{p} query_pos"), &values(layer.query_pos.clone()), &fx, &format!("{p}.query_pos"));
        check(&format!("{p} after_self_attn"), &values(layer.after_self_attn.clone()), &fx, &format!("{p}.after_self_attn"));
        check(&format!("{p} sampling locations"), &values(layer.cross_attn.sampling_locations.clone()), &fx, &format!("{p}.cross_attn.sampling_locations"));
        check(&format!("{p} attention weights"), &values(layer.cross_attn.attention_weights.clone()), &fx, &format!("{p}.cross_attn.attention_weights"));
        check(&format!("{p} msda core"), &values(layer.cross_attn.core_out.clone()), &fx, &format!("{p}.cross_attn.core_out"));
        check(&format!("{p} after_cross_attn"), &values(layer.after_cross_attn.clone()), &fx, &format!("{p}.after_cross_attn"));
        check(&format!("{p} out"), &values(layer.out.clone()), &fx, &format!("{p}.out"));
        check(&format!("{p} out_normed"), &values(layer.out_normed.clone()), &fx, &format!("{p}.out_normed"));
        check(&format!("reference {i}"), &values(layer.reference_in.clone()), &fx, &format!("decoder.reference.{i}"));
        check(&format!("reference {}", i + 1), &values(layer.reference_out.clone()), &fx, &format!("decoder.reference.{}", i + 1));
        check(&format!("head {i} boxes"), &values(t.layer_boxes[i].clone()), &fx, &format!("head.layer{i}.pred_boxes"));
        check(&format!("head {i} logits"), &values(t.layer_logits[i].clone()), &fx, &format!("head.layer{i}.pred_logits"));
    }
}

fn json(prompt: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(format!("out_test_upn_{prompt}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN) as f32),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn end_to_end(prompt: PromptType, name: &str, split: bool) {
    let device = chatrex_common::parity::test_device();
    let upn = load_tiny(&device, split);
    let image = load_rgb(&dir().join("test_upn.jpeg"), &ImageLimits::default()).unwrap();
    let reference = json(name);

    // Every query, in query order: normalised boxes and scores within 1e-4.
    let input = preprocess(&image, &device).unsqueeze::<4>();
    let out = upn.forward(input, prompt).unwrap();
    let boxes = values(out.boxes);
    let scores: Vec<f32> = values(out.logits).iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect();
    let e_boxes = floats(&reference["pred_boxes_cxcywh"]);
    let e_scores = floats(&reference["scores"]);
    let (db, ds) = (max_abs(&boxes, &e_boxes), max_abs(&scores, &e_scores));
    println!("{name}: max |Δbox| {db:.2e}, max |Δscore| {ds:.2e}");
    assert!(db <= 1e-4 && ds <= 1e-4, "boxes {db} scores {ds}");

    // The filtered list (score ≥ 0.3, NMS 0.8): same queries in the same order.
    let post = &reference["postprocessed"];
    let filtered = upn.propose(&[image], prompt).unwrap().remove(0).filter(0.3, 0.8);
    let queries: Vec<u64> = filtered.proposals.iter().map(|p| p.query as u64).collect();
    let expected: Vec<u64> = post["query_indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(queries, expected, "filtered proposals differ");
    let ours: Vec<f32> = filtered.proposals.iter().flat_map(|p| p.bbox).collect();
    let d_px = max_abs(&ours, &floats(&post["original_xyxy_boxes"]));
    println!("{name}: {} filtered proposals, max |Δ| {d_px:.2e} px", queries.len());
    // 1e-4 of the normalised box, in pixels of a 2246-wide image.
    assert!(d_px <= 1e-4 * 2246.0);
}

#[test]
fn fine_prompt_end_to_end() {
    end_to_end(PromptType::Fine, "fine", false);
}

#[test]
fn coarse_prompt_end_to_end() {
    end_to_end(PromptType::Coarse, "coarse", false);
}

/// Boxes, scores and the filtered proposals with the opt-in split bf16 products, at the same
/// tolerances and with the same proposals as the exact products.
#[test]
fn fine_prompt_end_to_end_with_split_f32_products() {
    end_to_end(PromptType::Fine, "fine", true);
}

#[test]
fn msda_core_matches_the_grid_sample_cases() {
    use chatrex_upn::msda::{LevelLayout, msda_core, msda_core_tensor_ops};
    let device = chatrex_common::parity::test_device();
    let fx = Fixture::open(&dir().join("msda_cases.safetensors")).unwrap();
    for case in 0..3 {
        let p = format!("case{case}");
        let shapes: Vec<(usize, usize)> = fx
            .i64(&format!("{p}.spatial_shapes"))
            .unwrap()
            .chunks(2)
            .map(|c| (c[0] as usize, c[1] as usize))
            .collect();
        let value = fx.tensor::<4>(&format!("{p}.value"), &device).unwrap();
        let loc = fx.tensor::<6>(&format!("{p}.sampling_locations"), &device).unwrap();
        let w = fx.tensor::<5>(&format!("{p}.attention_weights"), &device).unwrap();
        let layout = LevelLayout::new(shapes);
        // The backend's default path (a host kernel on the CPU backend) and the portable
        // grid_sample formulation both match.
        let out = values(msda_core(value.clone(), &layout, loc.clone(), w.clone()));
        check(&format!("msda {p}"), &out, &fx, &format!("{p}.output_f64"));
        let out = values(msda_core_tensor_ops(value, &layout, loc, w));
        check(&format!("msda {p} (tensor ops)"), &out, &fx, &format!("{p}.output_f64"));
    }
}
