//! A prompt fed as two prefills into one KV cache must give the logits of the same positions
//! fed one at a time (one-row products, one query per attention), on the CPU backend's host
//! path: a wrong mask, head mapping, block range or cache offset gives errors of order 1.

#![allow(clippy::expect_used)]

use chatrex_common::parity::Comparison;
use chatrex_common::weights::{WeightDType, WeightLoader};
use chatrex_llm::{Architecture, CausalLm, LlmConfig, LlmKeys};

/// A random Qwen2 model (GQA, tied embeddings, biases) of `hidden` features in `dtype`.
fn model(hidden: usize, intermediate: usize, heads: usize, seed: u64, dtype: WeightDType) -> CausalLm {
    let device = chatrex_common::Backend::Cpu.device().expect("the CPU backend");
    let config = LlmConfig::from_json(
        &format!(
            r#"{{"model_type": "qwen2", "hidden_size": {hidden}, "intermediate_size": {intermediate}, "num_hidden_layers": 2,
            "num_attention_heads": {heads}, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
            "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true}}"#
        ),
        Some(Architecture::Qwen2),
    )
    .expect("config");
    CausalLm::from_loader(&WeightLoader::random(seed, &device, dtype), &config, &LlmKeys::default())
}

/// The logits of `first` and then `more` as two prefills into one cache, against the same
/// positions one at a time.
fn prefill_vs_stepwise(lm: &CausalLm, first: &[u32], more: &[u32]) -> Comparison {
    let logits = |ids: &[u32], cache: &mut chatrex_llm::kv_cache::KvCache| {
        let hidden = lm.forward(lm.embed(ids).expect("ids").unsqueeze::<3>(), cache).expect("forward");
        let [_, l, h] = hidden.dims();
        chatrex_common::parity::values(lm.logits(hidden.reshape([l, h])))
    };
    let total = first.len() + more.len();
    let mut cache = lm.new_cache(total);
    let mut prefill = logits(first, &mut cache);
    prefill.extend(logits(more, &mut cache));
    let mut cache = lm.new_cache(total);
    let stepwise: Vec<f32> = first.iter().chain(more).flat_map(|&id| logits(&[id], &mut cache)).collect();
    chatrex_common::parity::compare(&prefill, &stepwise)
}

/// A bf16 model whose heads fit AMX tiles (32 values): where the CPU has AMX, a prompt of 40
/// positions attends on tiles (causal, grouped queries, operands rounded to bf16), one
/// position at a time with f32 attention (the products of both on tiles, inputs rounded).
/// Both must give the same logits within bf16 rounding.
#[test]
fn tile_attention_prefill_matches_stepwise_decoding() {
    let lm = model(128, 256, 4, 21, WeightDType::BF16);
    println!("AMX tiles: {}", chatrex_common::amx::available());
    // Two prefills into one cache (40, then 36 more positions after them).
    let first: Vec<u32> = (0..40).map(|i| (i * 37 % 256) as u32).collect();
    let more: Vec<u32> = (0..36).map(|i| (i * 11 % 256) as u32).collect();
    let between = prefill_vs_stepwise(&lm, &first, &more);
    println!("prefill (tile attention) vs stepwise (f32 attention): {between}");
    // Measured 7.0e-3 with tile attention (5.5e-3 with f32 attention); 6.9e-3 with the weights
    // in tile order (decode steps round their inputs to bf16 too); a non-causal mask 0.94.
    assert!(between.rel < 1e-2, "{between}");
}

/// f32 and f16 models (weights held `[in, out]`, f32 activations): prompts long enough for
/// several blocks of the f32 attention's queries (64 per block, each against only the keys
/// its last query sees). Both paths compute in f32 from the same weight values, so they agree
/// to f32 rounding (about 1e-6) — except f16 prefill products on AMX tiles, whose inputs and
/// weights are split in two bf16 parts each (every term within 2⁻¹⁵, a product ≈ 3e-6 of
/// the exact one, `amx::split_f16`): measured 1.2e-5 through the two layers and the head,
/// against the one-row products, which are exact. A wrong block range or f16 block of the
/// prefill's products gives errors of order 1; a split part left out, ≈ 2e-3.
#[test]
fn blocked_prefill_matches_stepwise_decoding() {
    // 100 positions (a whole block of 64 and a partial one), then 70 more after them (a
    // block and a partial block that start past the first prefill).
    let first: Vec<u32> = (0..100).map(|i| (i * 37 % 256) as u32).collect();
    let more: Vec<u32> = (0..70).map(|i| (i * 11 % 256) as u32).collect();
    for dtype in [WeightDType::F32, WeightDType::F16] {
        let between = prefill_vs_stepwise(&model(96, 160, 6, 23, dtype), &first, &more);
        println!("blocked prefill vs stepwise ({dtype:?}): {between}");
        let split = dtype == WeightDType::F16 && chatrex_common::amx::available();
        assert!(between.rel < if split { 5e-5 } else { 1e-5 }, "{dtype:?}: {between}");
    }
}
