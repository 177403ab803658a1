//! The two learned prompts that take the place of a class vocabulary.

use std::fmt;
use std::str::FromStr;

/// Which learned prompt embedding scores the queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptType {
    /// Part-level granularity (SA-1B-like, many small boxes): used by ChatRex detection and
    /// captioning (`fine_grained_prompt`).
    Fine,
    /// Instance-level granularity (COCO/O365-like): used by grounded conversation
    /// (`coarse_grained_prompt`).
    Coarse,
}

impl PromptType {
    /// The checkpoint key of the prompt embedding.
    pub fn key(self) -> &'static str {
        match self {
            PromptType::Fine => "transformer.fine_grained_prompt.weight",
            PromptType::Coarse => "transformer.coarse_grained_prompt.weight",
        }
    }
}

impl fmt::Display for PromptType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PromptType::Fine => "fine",
            PromptType::Coarse => "coarse",
        })
    }
}

impl FromStr for PromptType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fine" | "fine_grained" | "fine_grained_prompt" => Ok(PromptType::Fine),
            "coarse" | "coarse_grained" | "coarse_grained_prompt" => Ok(PromptType::Coarse),
            other => Err(format!("unknown prompt `{other}`: expected fine or coarse")),
        }
    }
}
