//! Chat templates wrapping the user input (image/object block + question).

use serde::{Deserialize, Serialize};

/// One finished exchange of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// What the user asked (the first turn carries the image/object block).
    pub user: String,
    /// The raw answer the model gave.
    pub assistant: String,
}

/// How user input is wrapped for the LLM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatTemplate {
    /// Qwen / RexSeek (verified by running the official code):
    /// `<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n`, no system prompt.
    Qwen,
    /// xtuner's `vicuna` template: `USER: {input} ASSISTANT:`, optionally after a system line.
    /// Assumed for the Vicuna-based ChatRex-7B; its exact string is unverified (SPEC §12).
    Vicuna {
        /// System text placed before the first turn, if any.
        system: Option<String>,
    },
}

impl ChatTemplate {
    /// The full prompt for a conversation: finished turns, then `user` awaiting an answer.
    pub fn render(&self, history: &[Turn], user: &str) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::Qwen => {
                for t in history {
                    out.push_str(&format!(
                        "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n{}<|im_end|>\n",
                        t.user, t.assistant
                    ));
                }
                out.push_str(&format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"));
            }
            ChatTemplate::Vicuna { system } => {
                if let Some(system) = system {
                    out.push_str(system);
                }
                for t in history {
                    out.push_str(&format!("USER: {} ASSISTANT:{}</s>", t.user, t.assistant));
                }
                out.push_str(&format!("USER: {user} ASSISTANT:"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_single_and_multi_turn() {
        let t = ChatTemplate::Qwen;
        assert_eq!(t.render(&[], "hi"), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
        let h = [Turn { user: "a".into(), assistant: "b".into() }];
        assert_eq!(
            t.render(&h, "c"),
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(ChatTemplate::Vicuna { system: None }.render(&[], "q"), "USER: q ASSISTANT:");
    }
}
