//! Tokenizer parity with Python `tokenizers` on the real Llama-2 and Qwen tokenizers of
//! `../shared/fixtures/tokenizers/` with the ChatRex tokens added (cases from
//! tools/reference/tokenizer_cases.py).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::parity::{repo_fixtures, shared_fixtures};
use chatrex_llm::ChatTokenizer;
use serde_json::Value;

fn load(name: &str) -> ChatTokenizer {
    let dir = shared_fixtures().unwrap().join("tokenizers").join(name);
    let mut tok = ChatTokenizer::from_files(&dir.join("tokenizer.json"), Some(&dir.join("tokenizer_config.json"))).unwrap();
    assert_eq!(tok.add_chatrex_tokens(), 104);
    tok
}

#[test]
fn ids_match_python_tokenizers() {
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(repo_fixtures().join("tokenizers/cases.json")).unwrap()).unwrap();
    for name in ["llama2", "qwen"] {
        let tok = load(name);
        let c = &cases[name];
        assert_eq!(tok.bos().map(i64::from), c["bos_id"].as_i64(), "{name}: bos");
        assert_eq!(tok.adds_bos(), c["add_bos"].as_bool().unwrap(), "{name}: add_bos");
        for (token, id) in c["chatrex_ids"].as_object().unwrap() {
            assert_eq!(tok.token_id(token).map(u64::from), id.as_u64(), "{name}: {token}");
        }
        let plain = c["plain"].as_array().unwrap();
        assert!(plain.len() >= 50);
        for case in plain {
            let text = case["text"].as_str().unwrap();
            let expected: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(tok.encode_plain(text).unwrap(), expected, "{name}: {text:?}");
        }
        for case in c["multimodal"].as_array().unwrap() {
            let prompt = case["prompt"].as_str().unwrap();
            let expected: Vec<i64> = case["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(tok.encode_multimodal(prompt).unwrap(), expected, "{name}: {prompt:?}");
        }
        for case in c["decode"].as_array().unwrap() {
            let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(tok.decode(&ids, false).unwrap(), case["text"].as_str().unwrap(), "{name}: decode {ids:?}");
        }
    }
}
