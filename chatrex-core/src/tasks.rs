//! The official task prompts (the first template of each list in
//! `chatrex/tools/prompt_templates.py`).

use serde::{Deserialize, Serialize};

/// Style of a region caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionStyle {
    /// The category name.
    Category,
    /// A short phrase.
    Phrase,
    /// A brief description.
    Brief,
    /// One sentence.
    Sentence,
}

impl std::str::FromStr for RegionStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "category" => Ok(Self::Category),
            "phrase" | "short" | "short_phrase" => Ok(Self::Phrase),
            "brief" => Ok(Self::Brief),
            "sentence" | "one_sentence" => Ok(Self::Sentence),
            other => Err(format!("unknown region style `{other}`: category, phrase, brief or sentence")),
        }
    }
}

/// Joins items the way the official demos do (`"; "`).
pub fn join_objects(items: &[String]) -> String {
    items.join("; ")
}

/// `<obj0>; <obj1>; …` for the first `k` proposals (the demo's "caption all regions").
pub fn object_list(k: usize) -> String {
    join_objects(&(0..k).map(|i| format!("<obj{i}>")).collect::<Vec<_>>())
}

/// Detection / referring: `Please detect [OBJ] in this image. Answer the question with object indexes.`
pub fn detect(objects: &str) -> String {
    format!("Please detect {objects} in this image. Answer the question with object indexes.")
}

/// Grounded counting.
pub fn count(objects: &str) -> String {
    format!(
        "How many {objects} are there in this image? Answer the question with the number of objects and locate them with object indexes."
    )
}

/// Brief (one-sentence) grounded caption (the template's "breifly" typo is kept).
pub fn brief_caption() -> String {
    "Please breifly describe this image in one sentence and detect all the mentioned objects. Answer the question with grounded answer.".into()
}

/// Detailed grounded caption.
pub fn detailed_caption() -> String {
    "Please provide a detailed description of the image and detect all the mentioned objects. Answer the question with grounded object indexes.".into()
}

/// Region caption of `objects` (e.g. `<obj0>` or `<obj0>; <obj1>`).
pub fn region_caption(objects: &str, style: RegionStyle) -> String {
    match style {
        RegionStyle::Category => format!(
            "What is the category name of {objects}? Answer the question with its category name in free format."
        ),
        RegionStyle::Phrase => format!(
            "Can you provide me with a short phrase to describe {objects}? Answer the question with a short phrase."
        ),
        RegionStyle::Brief => format!(
            "Can you provide me with a brief description of {objects}? Answer the question with brief description."
        ),
        RegionStyle::Sentence => format!(
            "Can you provide a one sentence description of {objects} in the image? Answer the question with a one sentence description."
        ),
    }
}

/// Grounded conversation: the official prefix before the user's question.
pub fn grounded_conversation(question: &str) -> String {
    format!("Answer the question in grounded format. {question}")
}

/// Splits a category list given as `"a; b"` (or `"a, b"`) into trimmed, non-empty names.
pub fn parse_categories(text: &str) -> Vec<String> {
    text.split([';', ','])
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_match_the_official_templates() {
        assert_eq!(
            detect(&join_objects(&parse_categories("person ; pigeon"))),
            "Please detect person; pigeon in this image. Answer the question with object indexes."
        );
        assert_eq!(object_list(3), "<obj0>; <obj1>; <obj2>");
        assert!(region_caption("<obj0>", RegionStyle::Phrase).starts_with("Can you provide me with a short phrase to describe <obj0>?"));
        assert!(parse_categories(" ; ,").is_empty());
    }
}
