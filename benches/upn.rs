//! UPN-L (full size, random weights) on an 800×1333 input, CPU backend: time and peak heap.

mod common;

use burn::tensor::{Distribution, Tensor};
use chatrex::upn::{PromptType, Upn, UpnConfig};
use chatrex::common::weights::WeightLoader;
use chatrex::{Backend, WeightDType};
use criterion::{Criterion, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: common::PeakAlloc = common::PeakAlloc;

fn upn(c: &mut Criterion) {
    chatrex::common::allocator::reuse_freed_memory();
    let device = Backend::Cpu.device().expect("cpu backend");
    // CHATREX_BENCH_UPN_SPLIT=1: f32 host products on split bf16 tiles (AMX CPUs).
    let split = std::env::var("CHATREX_BENCH_UPN_SPLIT").is_ok_and(|v| v == "1");
    let vb = WeightLoader::random(1, &device, WeightDType::F32).with_split_f32_products(split);
    let (model, _) = Upn::from_loader(&vb, &UpnConfig::large()).expect("model");
    let input = || Tensor::<4>::random([1, 3, 800, 1333], Distribution::Normal(0.0, 1.0), &device);
    let run = || model.forward(input(), PromptType::Fine).expect("forward").logits.into_data();
    let products = if split { ", split bf16 products" } else { "" };
    let note = format!("UPN-L f32{products}, 800x1333, {} threads", common::threads());
    let name = if split { "upn_forward_split" } else { "upn_forward" };
    common::measure_once(name, &note, run);
    c.bench_function(&format!("{name}_800x1333"), |b| b.iter(run));
}

criterion_group! {
    name = benches;
    config = common::slow_criterion();
    targets = upn
}
criterion_main!(benches);
