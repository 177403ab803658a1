//! Module-level parity with our PyTorch formulation of the SPEC
//! (tools/reference/upn_modules.py, seeded weights): Swin on an odd-sized input (patch,
//! window and merge padding, shifted windows), a deformable encoder layer, two-stage
//! selection and a two-layer decoder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::activation::sigmoid;
use burn::tensor::Tensor;
use chatrex_common::parity::{Fixture, check_close, repo_fixtures, values};
use chatrex_common::weights::{WeightDType, WeightLoader};
use chatrex_upn::decoder::Decoder;
use chatrex_upn::encoder::{EncoderLayer, LayerSizes, encoder_reference_points};
use chatrex_upn::msda::{LevelLayout, Reference};
use chatrex_upn::swin::SwinTransformer;
use chatrex_upn::two_stage::QuerySelection;
use chatrex_upn::SwinConfig;

const SEED: u64 = 21;
const TOL: f64 = 1e-4;

fn check(what: &str, actual: Vec<f32>, fx: &Fixture, name: &str) {
    let c = check_close(what, &actual, &fx.f32(name).unwrap(), TOL).unwrap_or_else(|e| panic!("{e}"));
    println!("{what}: {c}");
}

#[test]
fn swin_encoder_selection_and_decoder_match_the_reference() {
    let device = chatrex_common::parity::test_device();
    let fx = Fixture::open(&repo_fixtures().join("upn_modules/cases.safetensors")).unwrap();
    let vb = WeightLoader::random(SEED, &device, WeightDType::F32);

    let swin = SwinTransformer::load(
        &vb.pp("swin"),
        &SwinConfig {
            embed_dim: 16,
            depths: vec![2, 2, 2],
            num_heads: vec![2, 4, 4],
            window_size: 7,
            patch_size: 4,
            mlp_ratio: 4.0,
        },
    );
    let images: Tensor<4> = fx.tensor("swin.images", &device).unwrap();
    for (i, level) in swin.forward(images).unwrap().into_iter().enumerate() {
        check(&format!("swin level {i} {:?}", level.dims()), values(level), &fx, &format!("swin.level{i}"));
    }

    let sizes = LayerSizes { d_model: 32, d_ffn: 48, n_heads: 4, n_levels: 3, n_points: 3 };
    let layout = LevelLayout::new(vec![(5, 7), (3, 4), (2, 2)]);
    let layer = EncoderLayer::load(&vb.pp("enc"), sizes);
    let src: Tensor<3> = fx.tensor("enc.src", &device).unwrap();
    let pos: Tensor<3> = fx.tensor("enc.pos", &device).unwrap();
    let reference = Reference::Points(encoder_reference_points(&layout, &device));
    let memory = layer.forward(src, &pos, &reference, &layout, None);
    check("encoder layer", values(memory.clone()), &fx, "enc.out");

    let selection = QuerySelection::load(&vb.pp("sel"), 32);
    let prompt = vb.pp("sel").float("fine_grained_prompt.weight", [1, 32]);
    let picked = selection.select(memory.clone(), &prompt, &layout, None, 12).unwrap();
    check("selection logits", values(picked.logits.clone()), &fx, "sel.logits");
    let expected: Vec<usize> = fx.i64("sel.topk").unwrap().iter().map(|&i| i as usize).collect();
    assert_eq!(picked.indices[0], expected);
    check("initial references", values(picked.reference_unsigmoid.clone()), &fx, "sel.reference_unsigmoid");

    let decoder = Decoder::load(&vb.pp("dec.decoder"), 2, sizes);
    let tgt = vb.pp("dec").float("tgt_embed.weight", [12, 32]).unsqueeze::<3>();
    let out = decoder.forward(tgt, &memory, sigmoid(picked.reference_unsigmoid), &layout, None, false);
    for (i, hs) in out.hs.into_iter().enumerate() {
        check(&format!("decoder hs {i}"), values(hs), &fx, &format!("dec.hs{i}"));
    }
    for (i, r) in out.references.into_iter().enumerate() {
        check(&format!("decoder reference {i}"), values(r), &fx, &format!("dec.ref{i}"));
    }
}
