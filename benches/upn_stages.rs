//! Where UPN-L's time goes: one forward pass split into stages (run once, no statistics).
//! `cargo bench --bench upn_stages`

mod common;

use burn::tensor::{Distribution, Tensor};
use chatrex::upn::encoder::{Encoder, LayerSizes};
use chatrex::upn::msda::LevelLayout;
use chatrex::upn::neck::Neck;
use chatrex::upn::swin::SwinTransformer;
use chatrex::upn::UpnConfig;
use chatrex::common::weights::WeightLoader;
use chatrex::{Backend, WeightDType};
use std::time::Instant;

#[global_allocator]
static ALLOC: common::PeakAlloc = common::PeakAlloc;

fn sync<const D: usize>(t: &Tensor<D>) {
    let _ = t.clone().slice_dim(0, 0..1).into_data();
}

fn main() {
    chatrex::common::allocator::reuse_freed_memory();
    let device = Backend::Cpu.device().expect("cpu");
    let cfg = UpnConfig::large();
    let vb = WeightLoader::random(1, &device, WeightDType::F32);
    let swin = SwinTransformer::load(&vb.pp("backbone.model.backbone"), &cfg.backbone);
    let neck = Neck::load(&vb, &cfg.stage_dims(), cfg.n_levels, cfg.d_model);
    let sizes = LayerSizes { d_model: 256, d_ffn: 2048, n_heads: 8, n_levels: 5, n_points: 4 };
    let encoder = Encoder::load(&vb.pp("transformer.encoder"), 1, sizes);
    let images = Tensor::<4>::random([1, 3, 800, 1333], Distribution::Normal(0.0, 1.0), &device);

    let t = Instant::now();
    let feats = swin.forward(images).expect("swin backbone");
    sync(&feats[3]);
    eprintln!("swin backbone: {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let levels = neck.forward(&feats);
    sync(&levels[4]);
    eprintln!("neck: {:.2} s", t.elapsed().as_secs_f64());
    let layout = LevelLayout::new(levels.iter().map(|l| (l.dims()[2], l.dims()[3])).collect());
    let src = Tensor::cat(levels.iter().map(|t| {
        let [b, c, h, w] = t.dims();
        t.clone().reshape([b, c, h * w]).swap_dims(1, 2)
    }).collect(), 1);
    let pos = src.clone() * 0.0;
    let t = Instant::now();
    let mem = encoder.forward(src, &pos, &layout, None, |_, _| {});
    sync(&mem);
    eprintln!("one encoder layer ({} tokens): {:.2} s", layout.len(), t.elapsed().as_secs_f64());
}
