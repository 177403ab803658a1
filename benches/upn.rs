//! UPN-L (full size, random weights) on an 800×1333 input, CPU backend: time and peak heap.

mod common;

use burn::tensor::{Distribution, Tensor};
use chatrex::upn::{PromptType, Upn, UpnConfig};
use chatrex::{Backend, WeightDType};
use criterion::{Criterion, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: common::PeakAlloc = common::PeakAlloc;

fn upn(c: &mut Criterion) {
    chatrex::common::allocator::reuse_freed_memory();
    let device = Backend::Cpu.device().expect("cpu backend");
    let model = Upn::random(&UpnConfig::large(), &device, WeightDType::F32, 1).expect("model");
    let input = || Tensor::<4>::random([1, 3, 800, 1333], Distribution::Normal(0.0, 1.0), &device);
    let run = || model.forward(input(), PromptType::Fine).expect("forward").logits.into_data();
    let note = format!("UPN-L f32, 800x1333, {} threads", common::threads());
    common::measure_once("upn_forward", &note, run);
    c.bench_function("upn_forward_800x1333", |b| b.iter(run));
}

criterion_group! {
    name = benches;
    config = common::slow_criterion();
    targets = upn
}
criterion_main!(benches);
