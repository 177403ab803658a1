//! The dual encoder at full size with random weights on the CPU backend: CLIP ViT-L/14 at 336,
//! ConvNeXt-L at 768, and the object tokenizer for 100 boxes — time and peak heap, the last
//! measured above the stage maps it reads (the official path allocates a 425 MB tensor). Weights
//! in f32, f16 and bf16 (multiplied on AMX tiles where the CPU has them).

mod common;

use burn::tensor::{Distribution, Tensor};
use chatrex::common::weights::WeightLoader;
use chatrex::encoder::clip::ClipVisionTower;
use chatrex::encoder::convnext::ConvNext;
use chatrex::encoder::object_tokenizer::pooled_object_features;
use chatrex::encoder::roi_align::RoiAlignParams;
use chatrex::encoder::{ClipVisionConfig, ConvNextConfig, SelectFeature};
use chatrex::{Backend, WeightDType};
use criterion::{Criterion, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: common::PeakAlloc = common::PeakAlloc;

fn boxes(n: usize) -> Vec<[f32; 4]> {
    (0..n)
        .map(|i| {
            let f = i as f32;
            let (x, y) = ((f * 37.0) % 700.0, (f * 53.0) % 700.0);
            [x, y, (x + 20.0 + (f * 13.0) % 300.0).min(768.0), (y + 15.0 + (f * 29.0) % 300.0).min(768.0)]
        })
        .collect()
}

fn encoder(c: &mut Criterion) {
    chatrex::common::allocator::reuse_freed_memory();
    let device = Backend::Cpu.device().expect("cpu");
    let threads = common::threads();
    for dtype in common::dtypes() {
        let vb = WeightLoader::random(5, &device, dtype);
        let clip_cfg = ClipVisionConfig::vit_large_patch14_336();
        let clip = ClipVisionTower::load(&vb.pp("clip"), &clip_cfg, 23, SelectFeature::Patch);
        let convnext = ConvNext::load(&vb.pp("convnext"), &ConvNextConfig::large());
        let low = Tensor::<4>::random([1, 3, 336, 336], Distribution::Normal(0.0, 1.0), &device).cast(dtype.dtype());
        let high = Tensor::<4>::random([1, 3, 768, 768], Distribution::Normal(0.0, 1.0), &device).cast(dtype.dtype());
        common::measure_best(&format!("clip_l336_{dtype}"), &format!("CLIP ViT-L/14@336, 23 of 24 layers, {threads} threads"), 3, || {
            clip.forward(low.clone()).expect("clip").into_data()
        });
        let stages = common::measure_best(&format!("convnext_l768_{dtype}"), &format!("ConvNeXt-L@768, {threads} threads"), 3, || {
            let s = convnext.forward(high.clone()).expect("convnext");
            let _ = s[3].clone().into_data();
            s
        });
        let b = boxes(100);
        common::measure_best(&format!("object_tokenizer_100_{dtype}"), "RoI pooling + box embedding of 100 boxes (before the projector)", 3, || {
            pooled_object_features(&stages, &b, &RoiAlignParams::chatrex()).into_data()
        });
        if dtype == WeightDType::F32 {
            c.bench_function("clip_l336_f32", |bench| bench.iter(|| clip.forward(low.clone()).expect("clip").into_data()));
            c.bench_function("convnext_l768_f32", |bench| bench.iter(|| convnext.forward(high.clone()).expect("convnext")[3].clone().into_data()));
            c.bench_function("object_tokenizer_100_f32", |bench| {
                bench.iter(|| pooled_object_features(&stages, &b, &RoiAlignParams::chatrex()).into_data())
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = common::slow_criterion();
    targets = encoder
}
criterion_main!(benches);
