//! Errors of the LLM crate.

use chatrex_common::weights::WeightError;

/// Everything that can go wrong in the decoder, tokenizer or generation.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Unsupported or inconsistent configuration.
    #[error("invalid LLM config: {0}")]
    Config(String),
    /// Checkpoint problems.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// Tokenizer problems (unreadable file, missing special token).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The prompt does not fit the model's context.
    #[error("the sequence of {needed} positions exceeds the model's context of {limit}")]
    ContextOverflow {
        /// Positions needed (prompt + requested new tokens).
        needed: usize,
        /// The limit.
        limit: usize,
    },
    /// Invalid generation options or inputs.
    #[error("invalid request: {0}")]
    Request(String),
    /// A backend failed while reading results back.
    #[error("backend error: {0}")]
    Backend(String),
}
