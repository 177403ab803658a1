//! Errors of the encoder crate.

use chatrex_common::weights::WeightError;

/// Everything that can go wrong in the dual encoder.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// Inconsistent or unreadable configuration.
    #[error("invalid encoder config: {0}")]
    Config(String),
    /// Checkpoint problems.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// A box that cannot be encoded.
    #[error("invalid box {index} {bbox:?}: {reason}")]
    InvalidBox {
        /// Position in the request.
        index: usize,
        /// The box as given (x1, y1, x2, y2).
        bbox: [f32; 4],
        /// What is wrong.
        reason: String,
    },
    /// More boxes than the model has object tokens.
    #[error("{given} boxes given, at most {max} are supported (object tokens <obj0>..<obj{}>)", max - 1)]
    TooManyBoxes {
        /// Boxes given.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// A backend failed while reading data back.
    #[error("backend error: {0}")]
    Backend(String),
}
