//! Generation options and their edge cases: streaming equals the final text, sampling is
//! seeded, stop strings, EOS, zero tokens, context overflow, invalid options, and the grammar
//! mode's well-formedness.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::parity::{repo_fixtures, shared_fixtures, test_device};
use chatrex_common::weights::WeightDType;
use chatrex_llm::grammar::GroundingGrammar;
use chatrex_llm::grounding::parse_segments;
use chatrex_llm::{CausalLm, ChatTokenizer, GenerationOptions, LlmError, LogitsFilter, Sampling, StopReason, generate};

fn setup() -> (CausalLm, ChatTokenizer) {
    let (lm, _) = CausalLm::load_dir(&repo_fixtures().join("llm/qwen2_gqa_tied"), &test_device(), WeightDType::F32).unwrap();
    let dir = shared_fixtures().unwrap().join("tokenizers/qwen");
    let tok = ChatTokenizer::from_files(&dir.join("tokenizer.json"), Some(&dir.join("tokenizer_config.json"))).unwrap();
    (lm, tok)
}

fn prompt(lm: &CausalLm) -> burn::tensor::Tensor<3> {
    lm.embed(&[11, 42, 97, 200, 5]).unwrap().unsqueeze::<3>()
}

#[test]
fn options_and_stop_conditions() {
    let (lm, tok) = setup();
    let opts = |n: usize| GenerationOptions { max_new_tokens: n, eos_token_ids: vec![u32::MAX], ..Default::default() };
    // Streaming yields exactly the final text.
    let mut streamed = String::new();
    let out = generate(&lm, &tok, prompt(&lm), &opts(20), &mut [], &mut |t| streamed.push_str(t)).unwrap();
    assert_eq!(out.ids.len(), 20);
    assert_eq!(out.stop, StopReason::MaxTokens);
    assert_eq!(streamed, out.text);
    assert_eq!(out.text, tok.decode(&out.ids, false).unwrap());
    // EOS: make the greedy first token the EOS.
    let first = out.ids[0];
    let eos = GenerationOptions { max_new_tokens: 20, eos_token_ids: vec![first], ..Default::default() };
    let stopped = generate(&lm, &tok, prompt(&lm), &eos, &mut [], &mut |_| {}).unwrap();
    assert_eq!((stopped.ids.len(), stopped.eos, stopped.stop), (0, Some(first), StopReason::Eos));
    // Stop strings end generation once the text contains them.
    let needle: String = out.text.chars().take(3).collect();
    if !needle.is_empty() {
        let s = GenerationOptions { stop_strings: vec![needle.clone()], ..opts(20) };
        let r = generate(&lm, &tok, prompt(&lm), &s, &mut [], &mut |_| {}).unwrap();
        assert_eq!(r.stop, StopReason::StopString);
        assert!(r.text.contains(&needle) && r.ids.len() < 20);
    }
    // Zero tokens: nothing generated, no error.
    let zero = generate(&lm, &tok, prompt(&lm), &opts(0), &mut [], &mut |_| {}).unwrap();
    assert!(zero.ids.is_empty() && zero.text.is_empty());
    // Sampling: same seed, same tokens; different seeds differ somewhere.
    let sample = |seed| GenerationOptions {
        sampling: Sampling::Sample { temperature: 1.5, top_k: Some(50), top_p: Some(0.95), seed },
        repetition_penalty: Some(1.2),
        ..opts(16)
    };
    let a = generate(&lm, &tok, prompt(&lm), &sample(1), &mut [], &mut |_| {}).unwrap();
    let b = generate(&lm, &tok, prompt(&lm), &sample(1), &mut [], &mut |_| {}).unwrap();
    let c = generate(&lm, &tok, prompt(&lm), &sample(2), &mut [], &mut |_| {}).unwrap();
    assert_eq!(a.ids, b.ids);
    assert_ne!(a.ids, c.ids);
}

#[test]
fn invalid_requests_are_errors() {
    let (lm, tok) = setup();
    let bad = |o: GenerationOptions| generate(&lm, &tok, prompt(&lm), &o, &mut [], &mut |_| {});
    let base = GenerationOptions { max_new_tokens: 4, ..Default::default() };
    for sampling in [
        Sampling::Sample { temperature: 0.0, top_k: None, top_p: None, seed: 0 },
        Sampling::Sample { temperature: f32::NAN, top_k: None, top_p: None, seed: 0 },
        Sampling::Sample { temperature: 1.0, top_k: Some(0), top_p: None, seed: 0 },
        Sampling::Sample { temperature: 1.0, top_k: None, top_p: Some(1.5), seed: 0 },
    ] {
        assert!(matches!(bad(GenerationOptions { sampling, ..base.clone() }), Err(LlmError::Request(_))));
    }
    assert!(matches!(bad(GenerationOptions { repetition_penalty: Some(-1.0), ..base.clone() }), Err(LlmError::Request(_))));
    let limit = lm.config().max_position_embeddings;
    assert!(matches!(bad(GenerationOptions { max_new_tokens: limit, ..base.clone() }), Err(LlmError::ContextOverflow { .. })));
    assert!(matches!(lm.embed(&[1_000_000]), Err(LlmError::Request(_))));
}

#[test]
fn grammar_keeps_output_well_formed() {
    // The official RexSeek-layout tiny model (grammar tokens exist) with random prompts.
    let dir = shared_fixtures().unwrap().join("mllm/tiny");
    let (lm, _) = CausalLm::load_dir(&dir, &test_device(), WeightDType::F32).unwrap();
    let tok = ChatTokenizer::from_dir(&dir).unwrap();
    let tokens = tok.chatrex_tokens().unwrap();
    for (seed, k) in [(1u64, 3usize), (2, 1), (3, 5), (4, 2)] {
        let mut grammar = GroundingGrammar::new(tokens.clone(), k, vec![151645]);
        let opts = GenerationOptions {
            max_new_tokens: 40,
            sampling: Sampling::Sample { temperature: 2.0, top_k: None, top_p: None, seed },
            ..Default::default()
        };
        let ids = tok.encode_plain("<ground>").unwrap();
        let mut filters: Vec<&mut dyn LogitsFilter> = vec![&mut grammar];
        let out = generate(&lm, &tok, lm.embed(&ids).unwrap().unsqueeze::<3>(), &opts, &mut filters, &mut |_| {}).unwrap();
        // No object index out of range, and every <ground> that was opened and closed is
        // followed by a complete <objects> list (or generation ran out of tokens inside it).
        for &id in &out.ids {
            if let Some(n) = tokens.object_index(id) {
                assert!(n < k, "seed {seed}: <obj{n}> with {k} boxes");
            }
        }
        let text = out.text.clone();
        for seg in parse_segments(&text) {
            if let chatrex_llm::grounding::Segment::Grounded(g) = seg {
                assert!(!g.indices.is_empty() && g.indices.iter().all(|&i| i < k));
            }
        }
        assert!(!text.contains("</ground><ground>") && !text.contains("<objects></objects>"), "{text}");
    }
}
