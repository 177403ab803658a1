//! Parity of the towers with transformers' CLIPVisionModel and timm's ConvNeXt (small and
//! full-width, seeded weights), and of RoIAlign with torchvision on 240 boxes
//! (tools/reference/vision_towers.py, roi_align_cases.py).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::Tensor;
use chatrex_common::parity::{Fixture, check_close, repo_fixtures, values};
use chatrex_common::weights::{WeightDType, WeightError, WeightLoader};
use chatrex_encoder::clip::ClipVisionTower;
use chatrex_encoder::convnext::ConvNext;
use chatrex_encoder::roi_align::{RoiAlignParams, roi_align, roi_mean_weights};
use chatrex_encoder::{ClipVisionConfig, ConvNextConfig, Kernels, SelectFeature};

const SEED: u64 = 12;

fn towers() -> Fixture {
    Fixture::open(&repo_fixtures().join("vision/towers.safetensors")).unwrap()
}

#[test]
fn clip_matches_transformers() {
    let device = chatrex_common::parity::test_device();
    let fx = towers();
    for (name, hidden, inter, layers, heads) in [("clip_small", 48, 96, 3, 4), ("clip_full_width", 1024, 4096, 2, 16)] {
        let config = ClipVisionConfig {
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            image_size: 56,
            patch_size: 14,
            layer_norm_eps: 1e-5,
            hidden_act: "quick_gelu".into(),
            num_channels: 3,
        };
        let vb = WeightLoader::random(SEED, &device, WeightDType::F32);
        let pixels: Tensor<4> = fx.tensor(&format!("{name}.pixels"), &device).unwrap();
        // Both implementations: host kernels (CPU backend) and tensor ops.
        for kernels in [Kernels::Auto, Kernels::TensorOps] {
            for (layers_used, expected) in [(layers - 1, "selected"), (layers, "last")] {
                let tower =
                    ClipVisionTower::load_with(&vb.pp("vision_model"), &config, layers_used, SelectFeature::Patch, kernels);
                let out = values(tower.forward(pixels.clone()).unwrap());
                let what = format!("{name} {expected} ({kernels:?})");
                let c = check_close(&what, &out, &fx.f32(&format!("{name}.{expected}")).unwrap(), 1e-4)
                    .unwrap_or_else(|e| panic!("{e}"));
                println!("{what}: {c}");
            }
        }
    }
}

#[test]
fn convnext_matches_timm() {
    let device = chatrex_common::parity::test_device();
    let fx = towers();
    for (name, depths, dims) in [
        ("convnext_small", vec![1, 1, 2, 1], vec![8, 16, 24, 32]),
        ("convnext_full_width", vec![1, 1, 1, 1], vec![192, 384, 768, 1536]),
    ] {
        let pixels: Tensor<4> = fx.tensor(&format!("{name}.pixels"), &device).unwrap();
        // Both implementations: host kernels (CPU backend) and tensor ops.
        for kernels in [Kernels::Auto, Kernels::TensorOps] {
            let vb = WeightLoader::random(SEED, &device, WeightDType::F32);
            // timm names the layer scale `gamma`; the loader accepts it as well as `ramma`.
            let trunk = ConvNext::load_with(&vb, &ConvNextConfig { depths: depths.clone(), dims: dims.clone() }, kernels);
            for (s, map) in trunk.forward(pixels.clone()).unwrap().into_iter().enumerate() {
                let what = format!("{name} stage {s} ({kernels:?})");
                let c = check_close(&what, &values(map), &fx.f32(&format!("{name}.stage{s}")).unwrap(), 1e-4)
                    .unwrap_or_else(|e| panic!("{e}"));
                println!("{what}: {c}");
            }
        }
    }
}

#[test]
fn roi_align_matches_torchvision_on_240_boxes() {
    let fx = Fixture::open(&repo_fixtures().join("roi_align/cases.safetensors")).unwrap();
    let feat = fx.f32("features").unwrap();
    let [c, h, w]: [usize; 3] = fx.shape("features").unwrap().try_into().unwrap();
    let boxes: Vec<[f32; 4]> = fx.f32("boxes").unwrap().chunks(4).map(|b| [b[0], b[1], b[2], b[3]]).collect();
    assert!(boxes.len() >= 200);
    let p = RoiAlignParams::chatrex();
    let full = roi_align(&feat, c, h, w, &boxes, &p);
    let cf = check_close("roi_align", &full, &fx.f32("output").unwrap(), 1e-6).unwrap_or_else(|e| panic!("{e}"));
    println!("roi_align: {cf}");
    let mut means = Vec::new();
    for b in &boxes {
        let (wy, wx) = roi_mean_weights(b, h, w, &p);
        for ch in 0..c {
            let mut acc = 0f32;
            for i in 0..h {
                for j in 0..w {
                    acc += wy[i] * wx[j] * feat[ch * h * w + i * w + j];
                }
            }
            means.push(acc);
        }
    }
    let cm = check_close("separable RoI mean", &means, &fx.f32("mean").unwrap(), 1e-5).unwrap_or_else(|e| panic!("{e}"));
    println!("separable mean: {cm}");
}

/// Weights stored in f16 or bf16 (the host kernels convert them block by block and compute in
/// f32, or, for bf16 on a CPU with AMX, multiply on tiles with inputs rounded to bf16): the
/// same towers within the rounding of the weights.
#[test]
fn half_precision_weights_stay_close_to_the_f32_towers() {
    let device = chatrex_common::parity::test_device();
    let fx = towers();
    for dtype in [WeightDType::F16, WeightDType::BF16] {
        let vb = WeightLoader::random(SEED, &device, dtype);
        let config = ClipVisionConfig {
            hidden_size: 48,
            intermediate_size: 96,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            image_size: 56,
            patch_size: 14,
            layer_norm_eps: 1e-5,
            hidden_act: "quick_gelu".into(),
            num_channels: 3,
        };
        let tower = ClipVisionTower::load(&vb.pp("vision_model"), &config, 3, SelectFeature::Patch);
        let trunk = ConvNext::load(&vb, &ConvNextConfig { depths: vec![1, 1, 2, 1], dims: vec![8, 16, 24, 32] });
        match vb.finish("half-precision towers") {
            Ok(_) => {}
            // Devices without general bf16 arithmetic (lavapipe) must refuse at load time,
            // with this error, instead of panicking in the first product.
            Err(e @ WeightError::UnsupportedDType { .. }) => {
                assert_ne!(dtype, WeightDType::F16, "f16 is expected to work on every test device");
                println!("{dtype} skipped on this device: {e}");
                continue;
            }
            Err(e) => panic!("{e}"),
        }
        let pixels: Tensor<4> = fx.tensor("clip_small.pixels", &device).unwrap();
        let out = values(tower.forward(pixels.cast(dtype.dtype())).unwrap());
        let what = format!("clip_small {dtype} weights");
        let c = check_close(&what, &out, &fx.f32("clip_small.last").unwrap(), 1e-2).unwrap_or_else(|e| panic!("{e}"));
        println!("{what}: {c}");

        let pixels: Tensor<4> = fx.tensor("convnext_small.pixels", &device).unwrap();
        for (s, map) in trunk.forward(pixels.cast(dtype.dtype())).unwrap().into_iter().enumerate() {
            let what = format!("convnext_small stage {s}, {dtype} weights");
            let c = check_close(&what, &values(map), &fx.f32(&format!("convnext_small.stage{s}")).unwrap(), 1e-2)
                .unwrap_or_else(|e| panic!("{e}"));
            println!("{what}: {c}");
        }
    }
}
