//! f32 and f16 models on the CPU backend (weights held `[in, out]`, f32 activations): prompts
//! long enough for several blocks of the host attention's queries (64 per block, each against
//! only the keys its last query sees), fed as two prefills into one cache, must give the
//! logits of the same positions fed one at a time (one-row products on the weight-streaming
//! kernel, one query per attention). Both paths compute in f32 from the same weight values, so
//! they agree to f32 rounding (about 1e-6); a wrong block range, mask, cache offset or f16
//! block of the prefill's products gives errors of order 1.

#![allow(clippy::expect_used)]

use chatrex_common::weights::{WeightDType, WeightLoader};
use chatrex_llm::{Architecture, CausalLm, LlmConfig, LlmKeys};

#[test]
fn blocked_prefill_matches_stepwise_decoding() {
    let device = chatrex_common::Backend::Cpu.device().expect("the CPU backend");
    let config = LlmConfig::from_json(
        r#"{"model_type": "qwen2", "hidden_size": 96, "intermediate_size": 160, "num_hidden_layers": 2,
            "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
            "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true}"#,
        Some(Architecture::Qwen2),
    )
    .expect("config");
    for dtype in [WeightDType::F32, WeightDType::F16] {
        let lm = CausalLm::from_loader(&WeightLoader::random(23, &device, dtype), &config, &LlmKeys::default());
        check(&lm, dtype);
    }
}

fn check(lm: &CausalLm, dtype: WeightDType) {
    let logits = |ids: &[u32], cache: &mut chatrex_llm::kv_cache::KvCache| {
        let hidden = lm.forward(lm.embed(ids).expect("ids").unsqueeze::<3>(), cache).expect("forward");
        let [_, l, h] = hidden.dims();
        chatrex_common::parity::values(lm.logits(hidden.reshape([l, h])))
    };
    // 100 positions (a whole block of 64 and a partial one), then 70 more after them (a
    // block and a partial block that start past the first prefill), against the same 170
    // positions one at a time.
    let first: Vec<u32> = (0..100).map(|i| (i * 37 % 256) as u32).collect();
    let more: Vec<u32> = (0..70).map(|i| (i * 11 % 256) as u32).collect();
    let mut cache = lm.new_cache(170);
    let mut prefill = logits(&first, &mut cache);
    prefill.extend(logits(&more, &mut cache));
    let mut cache = lm.new_cache(170);
    let stepwise: Vec<f32> = first.iter().chain(&more).flat_map(|&id| logits(&[id], &mut cache)).collect();
    let between = chatrex_common::parity::compare(&prefill, &stepwise);
    println!("blocked prefill vs stepwise ({dtype:?}): {between}");
    assert!(between.rel < 1e-5, "{dtype:?}: {between}");
}
