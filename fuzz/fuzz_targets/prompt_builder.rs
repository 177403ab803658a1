//! Prompt assembly and chunk-wise tokenization on arbitrary questions and box counts.
#![no_main]
use chatrex_core::ChatTemplate;
use chatrex_core::processor::build_prompt;
use chatrex_llm::ChatTokenizer;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn tokenizer() -> &'static ChatTokenizer {
    static TOK: OnceLock<ChatTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/mllm/tiny");
        ChatTokenizer::from_dir(&dir).expect("the shared tiny tokenizer")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else { return };
    let question = String::from_utf8_lossy(rest);
    let k = usize::from(k % 101);
    for template in [ChatTemplate::Qwen, ChatTemplate::Vicuna { system: None }] {
        if let Ok(p) = build_prompt(&template, tokenizer(), &[], k, &question) {
            // Exactly one image placeholder and k object placeholders, whatever the user typed.
            assert_eq!(p.input_ids.iter().filter(|&&i| i == -200).count(), 1);
            assert_eq!(p.input_ids.iter().filter(|&&i| i == -300).count(), k);
        }
    }
});
