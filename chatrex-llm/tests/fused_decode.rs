//! The fused decode kernels (CubeCL backends) against Burn's tensor ops on the same model:
//! logits of every step and greedy ids, over a cache that grows and spans two attention
//! chunks. Run with `CHATREX_TEST_BACKEND=wgpu` (scripts/test-wgpu.sh) or `cuda`; on the CPU
//! backend the fused step does not exist and the test says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::parity::{check_close, repo_fixtures, test_device};
use chatrex_common::weights::WeightDType;
use chatrex_llm::CausalLm;

/// Prefill `prompt`, then `steps` greedy positions; returns the logits of every step and the ids.
fn run(lm: &CausalLm, prompt: &[u32], steps: usize) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut cache = lm.new_cache(prompt.len() + steps);
    let hidden = lm.forward(lm.embed(prompt).unwrap().unsqueeze::<3>(), &mut cache).unwrap();
    let mut logits = lm.last_logits(&hidden).unwrap();
    let (mut all, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let next = chatrex_llm::sampling::argmax(&logits).unwrap() as u32;
        ids.push(next);
        let hidden = lm.forward(lm.embed(&[next]).unwrap().unsqueeze::<3>(), &mut cache).unwrap();
        logits = lm.last_logits(&hidden).unwrap();
        all.push(logits.clone());
    }
    (all, ids)
}

#[test]
fn fused_decode_matches_tensor_ops() {
    let device = test_device();
    for (name, dtype, tol) in [
        ("qwen2_gqa_untied", WeightDType::F32, 1e-4),
        ("llama_gqa_untied", WeightDType::F32, 1e-4),
        ("qwen2_gqa_untied", WeightDType::F16, 1e-2),
    ] {
        let dir = repo_fixtures().join("llm").join(name);
        let mut lm = match CausalLm::load_dir(&dir, &device, dtype) {
            Ok((lm, _)) => lm,
            Err(e) if dtype != WeightDType::F32 => {
                eprintln!("{name} {dtype}: not on this device ({e})");
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        if !lm.fused_decode_supported() {
            eprintln!("fused decode kernels not available on {device:?}: nothing to compare");
            return;
        }
        assert!(lm.fused_decode(), "on by default where supported");
        let vocab = lm.config().vocab_size as u32;
        let limit = lm.config().max_position_embeddings;
        // Longer than one attention chunk (256 positions) where the model allows it; the cache
        // grows during the steps (allocated in steps of 128 beyond the prompt).
        let prompt_len = (limit - 24).min(300);
        let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| (i * 37 + 5) % vocab).collect();
        let (fused, fused_ids) = run(&lm, &prompt, 20);
        assert!(!lm.set_fused_decode(false));
        let (reference, reference_ids) = run(&lm, &prompt, 20);
        for (step, (a, b)) in fused.iter().zip(&reference).enumerate() {
            check_close(&format!("{name} {dtype} step {step} logits"), a, b, tol).unwrap();
        }
        if dtype == WeightDType::F32 {
            assert_eq!(fused_ids, reference_ids, "{name}: greedy ids");
        }
    }
}
