//! The output grammar parser on arbitrary model text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let segments = chatrex_llm::grounding::parse_segments(&text);
    let _ = chatrex_llm::grounding::official_groundings(&text);
    let _ = chatrex_llm::grounding::object_indices(&text);
    // The segments cover the text: joined back, they never exceed it.
    let total: usize = segments
        .iter()
        .map(|s| match s {
            chatrex_llm::grounding::Segment::Text(t) => t.len(),
            chatrex_llm::grounding::Segment::Grounded(_) => 0,
        })
        .sum();
    assert!(total <= text.len());
});
