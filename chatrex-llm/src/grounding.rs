//! The output grammar parser: grounded text → typed segments.
//!
//! ChatRex answers like `<ground>person</ground><objects><obj10><obj14></objects>` embedded in
//! free text. Two readings are offered:
//!
//! - [`parse_segments`]: every well-formed grounding in order, with the text around it —
//!   tolerant of malformed output, with this documented behaviour:
//!   - an unclosed `<ground>` / `<objects>` (e.g. generation stopped) is kept as text;
//!   - a `<ground>…</ground>` not followed by `<objects>` is kept as text;
//!   - anything inside `<objects>…</objects>` other than `<objN>` tags is ignored;
//!   - indices ≥ the number of boxes are kept in `indices` and reported in
//!     `out_of_range` (the caller decides; the official drawing code ignores them);
//!   - repeated indices are kept once, in first-seen order.
//! - [`official_groundings`]: exactly the official `convert_all_cate_prediction_to_ans`
//!   (non-greedy regex without DOTALL, phrase stripped, a grounding whose tags were all used
//!   by earlier groundings is skipped, the first grounding of a phrase wins and keeps its
//!   *unfiltered* tag list).

use regex::Regex;
use std::sync::LazyLock;

#[allow(clippy::expect_used)]
static GROUNDING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<ground>(.*?)</ground><objects>(.*?)</objects>").expect("valid regex")
});
#[allow(clippy::expect_used)]
static OBJECT_TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<obj(\d+)>").expect("valid regex"));

/// One grounded phrase.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Grounding {
    /// The phrase (trimmed).
    pub phrase: String,
    /// Object indices, in order (each once).
    pub indices: Vec<usize>,
}

/// A piece of a parsed answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Segment {
    /// Free text (may contain inline `<objN>` mentions).
    Text(String),
    /// A grounded phrase.
    Grounded(Grounding),
}

/// Indices of `<objN>` tags in `text`, in order (repeats included). Numbers that do not fit
/// `usize` are skipped.
pub fn object_indices(text: &str) -> Vec<usize> {
    OBJECT_TAG
        .captures_iter(text)
        .filter_map(|c| c.get(1).and_then(|m| m.as_str().parse().ok()))
        .collect()
}

/// Splits an answer into text and grounded segments (see the module docs for malformed input).
pub fn parse_segments(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut last = 0;
    for caps in GROUNDING.captures_iter(text) {
        let (Some(all), Some(phrase), Some(objects)) = (caps.get(0), caps.get(1), caps.get(2)) else {
            continue;
        };
        if all.start() > last {
            out.push(Segment::Text(text[last..all.start()].to_string()));
        }
        let mut indices = Vec::new();
        for i in object_indices(objects.as_str()) {
            if !indices.contains(&i) {
                indices.push(i);
            }
        }
        out.push(Segment::Grounded(Grounding {
            phrase: phrase.as_str().trim().to_string(),
            indices,
        }));
        last = all.end();
    }
    if last < text.len() {
        out.push(Segment::Text(text[last..].to_string()));
    }
    out
}

/// The grounded phrases of an answer, in order.
pub fn groundings(text: &str) -> Vec<Grounding> {
    parse_segments(text)
        .into_iter()
        .filter_map(|s| match s {
            Segment::Grounded(g) => Some(g),
            Segment::Text(_) => None,
        })
        .collect()
}

/// The official parser's result, in its dictionary order (see the module docs).
pub fn official_groundings(text: &str) -> Vec<Grounding> {
    let mut result: Vec<Grounding> = Vec::new();
    let mut used: Vec<String> = Vec::new();
    for caps in GROUNDING.captures_iter(text) {
        let (Some(phrase), Some(objects)) = (caps.get(1), caps.get(2)) else {
            continue;
        };
        let phrase = phrase.as_str().trim().to_string();
        let tags: Vec<&str> = OBJECT_TAG.find_iter(objects.as_str()).map(|m| m.as_str()).collect();
        let mut fresh = 0;
        for tag in &tags {
            if !used.iter().any(|u| u == tag) {
                used.push((*tag).to_string());
                fresh += 1;
            }
        }
        if fresh == 0 || result.iter().any(|g| g.phrase == phrase) {
            continue;
        }
        result.push(Grounding {
            phrase,
            indices: object_indices(objects.as_str()),
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples() {
        let t = "<ground>person</ground><objects><obj10><obj14><obj15></objects>\n<ground>pigeon</ground><objects><obj0></objects>";
        let g = groundings(t);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0], Grounding { phrase: "person".into(), indices: vec![10, 14, 15] });
        assert_eq!(g[1].indices, vec![0]);
        assert_eq!(official_groundings(t), g);
    }

    #[test]
    fn malformed_output_is_tolerated() {
        // Unclosed tags stay text.
        let s = parse_segments("a <ground>dog</ground><objects><obj1>");
        assert!(s.iter().all(|x| matches!(x, Segment::Text(_))));
        // Repeats are kept once; junk inside objects ignored.
        let g = groundings("<ground> cat </ground><objects><obj2>x<obj2><obj3></objects> tail");
        assert_eq!(g, vec![Grounding { phrase: "cat".into(), indices: vec![2, 3] }]);
        // Huge numbers do not panic.
        assert!(object_indices("<obj99999999999999999999999>").is_empty());
    }

    #[test]
    fn official_quirks() {
        // Second grounding of the same phrase is dropped; a grounding whose tags were all used
        // is skipped; the stored list is the unfiltered one.
        let t = "<ground>a</ground><objects><obj1></objects><ground>b</ground><objects><obj1></objects><ground>c</ground><objects><obj1><obj2></objects><ground>a</ground><objects><obj5></objects>";
        let g = official_groundings(t);
        assert_eq!(g, vec![
            Grounding { phrase: "a".into(), indices: vec![1] },
            Grounding { phrase: "c".into(), indices: vec![1, 2] },
        ]);
    }
}
