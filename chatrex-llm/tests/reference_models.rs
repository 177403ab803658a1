//! Parity with transformers' `LlamaForCausalLM` and `Qwen2ForCausalLM` (small random configs:
//! GQA and MHA, tied and untied embeddings, Qwen2 biases), loaded from sharded safetensors:
//! prompt logits, 32 greedy steps with and without the KV cache and through the embeddings
//! path (tools/reference/llm_models.py).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::Tensor;
use chatrex_common::parity::{Fixture, check_close, repo_fixtures, values};
use chatrex_common::weights::{WeightDType, WeightError};
use chatrex_llm::{CausalLm, LlmError};

const MODELS: [&str; 4] = ["llama_gqa_untied", "llama_mha_tied", "qwen2_gqa_tied", "qwen2_gqa_untied"];

fn greedy_with_cache(lm: &CausalLm, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut cache = lm.new_cache(prompt.len() + steps);
    let hidden = lm.forward(lm.embed(prompt).unwrap().unsqueeze::<3>(), &mut cache).unwrap();
    let mut logits = lm.last_logits(&hidden).unwrap();
    let mut out = Vec::new();
    for _ in 0..steps {
        let next = chatrex_llm::sampling::argmax(&logits).unwrap() as u32;
        out.push(next);
        let hidden = lm.forward(lm.embed(&[next]).unwrap().unsqueeze::<3>(), &mut cache).unwrap();
        logits = lm.last_logits(&hidden).unwrap();
    }
    out
}

fn greedy_without_cache(lm: &CausalLm, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut ids = prompt.to_vec();
    for _ in 0..steps {
        let mut cache = lm.new_cache(ids.len());
        let hidden = lm.forward(lm.embed(&ids).unwrap().unsqueeze::<3>(), &mut cache).unwrap();
        ids.push(chatrex_llm::sampling::argmax(&lm.last_logits(&hidden).unwrap()).unwrap() as u32);
    }
    ids[prompt.len()..].to_vec()
}

#[test]
fn logits_and_greedy_ids_match_transformers() {
    let device = chatrex_common::parity::test_device();
    for name in MODELS {
        let dir = repo_fixtures().join("llm").join(name);
        let (lm, report) = CausalLm::load_dir(&dir, &device, WeightDType::F32).unwrap();
        assert!(report.tensors > 0);
        let fx = Fixture::open(&repo_fixtures().join(format!("llm/{name}.ref.safetensors"))).unwrap();
        let prompt: Vec<u32> = fx.i64("input_ids").unwrap().iter().map(|&i| i as u32).collect();
        let expected_ids: Vec<u32> = fx.i64("greedy_ids").unwrap().iter().map(|&i| i as u32).collect();

        let mut cache = lm.new_cache(prompt.len());
        let hidden = lm.forward(lm.embed(&prompt).unwrap().unsqueeze::<3>(), &mut cache).unwrap();
        let [_, l, h] = hidden.dims();
        let logits = chatrex_common::parity::values(lm.logits(hidden.reshape([l, h])));
        let c = check_close(&format!("{name} logits"), &logits, &fx.f32("logits").unwrap(), 1e-4).unwrap_or_else(|e| panic!("{e}"));
        println!("{name}: prompt logits {c}");

        // A batch of two sequences takes the tensor-op path (one sequence on the CPU backend
        // takes the host path): both rows match transformers too.
        let batch = Tensor::stack(vec![lm.embed(&prompt).unwrap(), lm.embed(&prompt).unwrap()], 0);
        let mut batch_cache = lm.new_cache(prompt.len());
        let hidden = lm.forward(batch, &mut batch_cache).unwrap();
        for row in 0..2 {
            let rows = hidden.clone().narrow(0, row, 1).reshape([l, h]);
            let c = check_close(&format!("{name} logits, batch row {row}"), &values(lm.logits(rows)), &fx.f32("logits").unwrap(), 1e-4)
                .unwrap_or_else(|e| panic!("{e}"));
            println!("{name}: batch row {row} logits {c}");
        }

        assert_eq!(greedy_with_cache(&lm, &prompt, expected_ids.len()), expected_ids, "{name}: greedy with cache");
        assert_eq!(greedy_without_cache(&lm, &prompt, expected_ids.len()), expected_ids, "{name}: greedy without cache");
    }
}

/// Logits of every prompt position fed one token at a time through the cache: every product
/// has one input row, so it reads the weights in f32 registers and never rounds activations.
fn logits_one_token_at_a_time(lm: &CausalLm, prompt: &[u32]) -> Vec<f32> {
    let mut cache = lm.new_cache(prompt.len());
    let mut all = Vec::new();
    for &id in prompt {
        let hidden = lm.forward(lm.embed(&[id]).unwrap().unsqueeze::<3>(), &mut cache).unwrap();
        let [_, l, h] = hidden.dims();
        all.extend(values(lm.logits(hidden.reshape([l, h]))));
    }
    all
}

/// bf16 weights (the official checkpoint's type): the prompt's products run on AMX tiles where
/// the CPU has them, with their inputs rounded to bf16 as in PyTorch; the token-by-token path
/// keeps f32 activations. Both stay within bf16 precision of transformers' f32 logits, and
/// rounding the activations adds little to what rounding the weights costs.
#[test]
fn bf16_weights_stay_within_bf16_precision() {
    let device = chatrex_common::parity::test_device();
    println!("AMX tiles: {}", chatrex_common::amx::available());
    for name in MODELS {
        let dir = repo_fixtures().join("llm").join(name);
        let lm = match CausalLm::load_dir(&dir, &device, WeightDType::BF16) {
            Ok((lm, _)) => lm,
            // Devices without general bf16 arithmetic (lavapipe) refuse at load time.
            Err(e @ LlmError::Weights(WeightError::UnsupportedDType { .. })) => {
                println!("bf16 skipped on this device: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let fx = Fixture::open(&repo_fixtures().join(format!("llm/{name}.ref.safetensors"))).unwrap();
        let prompt: Vec<u32> = fx.i64("input_ids").unwrap().iter().map(|&i| i as u32).collect();
        let expected = fx.f32("logits").unwrap();
        let mut cache = lm.new_cache(prompt.len());
        let hidden = lm.forward(lm.embed(&prompt).unwrap().unsqueeze::<3>(), &mut cache).unwrap();
        let [_, l, h] = hidden.dims();
        let prefill = values(lm.logits(hidden.reshape([l, h])));
        let stepwise = logits_one_token_at_a_time(&lm, &prompt);
        let weights_only = chatrex_common::parity::compare(&stepwise, &expected);
        let with_inputs = chatrex_common::parity::compare(&prefill, &expected);
        let between = chatrex_common::parity::compare(&prefill, &stepwise);
        println!("{name}: bf16 weights, f32 activations {weights_only}; prefill {with_inputs}; prefill vs stepwise {between}");
        // Measured: 5.6e-3 – 7.8e-3 from the weights, 6.2e-3 – 9.7e-3 with rounded inputs
        // (these tiny random models have small logits, which magnifies relative errors); a
        // wrong tile or layout gives errors of order 1.
        assert!(weights_only.rel < 1.5e-2, "{name}: {weights_only}");
        assert!(with_inputs.rel < 1.5e-2, "{name}: {with_inputs}");
        assert!(between.rel < 1e-2, "{name}: {between}");
        if !chatrex_common::amx::available() {
            // Without tiles both paths compute in f32 (measured: ≤ 7.8e-7 apart).
            assert!(between.rel < 1e-5, "{name}: without AMX, prefill vs stepwise {between}");
        }
    }
}
