//! The ChatRex processor: the object block, the chat template and the multimodal
//! tokenization, exactly as the official processor assembles them.

use crate::template::{ChatTemplate, Turn};
use crate::ChatRexError;
use chatrex_llm::ChatTokenizer;
use chatrex_llm::tokenizer::{IMAGE_TAG, OBJECT_FEATURE_TAG};

/// `<obj0><objfeat><obj1><objfeat>…` for `k` boxes.
pub fn object_block(k: usize) -> String {
    (0..k).map(|i| format!("<obj{i}>{OBJECT_FEATURE_TAG}")).collect()
}

/// The first user turn: `<image>\n` + object block + `\n` + question (any `<image>` the
/// question contains is removed first).
pub fn first_user_input(k: usize, question: &str) -> String {
    format!("{IMAGE_TAG}\n{}\n{}", object_block(k), question.replace(IMAGE_TAG, ""))
}

/// A prompt ready for the LLM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The full prompt text (template applied).
    pub text: String,
    /// Its ids with the `-200` image and `-300` object placeholders.
    pub input_ids: Vec<i64>,
    /// The user input of this turn as it went into the template (kept in history).
    pub user: String,
}

/// Builds the prompt of a turn. The first turn (empty `history`) carries the image and the
/// `k` object slots; later turns are plain text. Placeholders the user typed
/// (`<objfeat>`) are removed so the slot count stays `k`.
pub fn build_prompt(
    template: &ChatTemplate,
    tokenizer: &ChatTokenizer,
    history: &[Turn],
    k: usize,
    question: &str,
) -> Result<Prompt, ChatRexError> {
    let question = question.replace(OBJECT_FEATURE_TAG, "");
    let user = if history.is_empty() {
        first_user_input(k, &question)
    } else {
        question.replace(IMAGE_TAG, "")
    };
    let text = template.render(history, &user);
    let input_ids = tokenizer.encode_multimodal(&text)?;
    Ok(Prompt { text, input_ids, user })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_block_and_first_input() {
        assert_eq!(object_block(2), "<obj0><objfeat><obj1><objfeat>");
        assert_eq!(
            first_user_input(1, "what is <image><obj0>?"),
            "<image>\n<obj0><objfeat>\nwhat is <obj0>?"
        );
    }
}
