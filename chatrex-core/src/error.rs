//! Errors of the ChatRex pipeline.

use chatrex_common::image::ImageLoadError;
use chatrex_common::weights::WeightError;
use chatrex_encoder::EncoderError;
use chatrex_llm::LlmError;
use chatrex_upn::UpnError;

/// Everything that can go wrong when loading or running ChatRex.
#[derive(Debug, thiserror::Error)]
pub enum ChatRexError {
    /// The model directory's configuration is unusable.
    #[error("invalid ChatRex config: {0}")]
    Config(String),
    /// Required files are missing (the message says which and where).
    #[error("{0}")]
    MissingFiles(String),
    /// Checkpoint problems.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// Image problems.
    #[error(transparent)]
    Image(#[from] ImageLoadError),
    /// Proposal network problems.
    #[error(transparent)]
    Upn(#[from] UpnError),
    /// Vision encoder problems.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// Language model problems.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// A task needs proposals and there are none.
    #[error("no proposal boxes: {0}")]
    NoProposals(String),
    /// An invalid request (empty category list, bad boxes, ...).
    #[error("invalid request: {0}")]
    Request(String),
    /// Writing outputs (dumps, images) failed.
    #[error("cannot write {path}: {reason}")]
    Output {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Downloading from the hub failed.
    #[error("hub download failed: {0}")]
    Hub(String),
}
