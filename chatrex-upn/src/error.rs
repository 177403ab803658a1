//! Errors of the UPN crate.

use chatrex_common::image::ImageLoadError;
use chatrex_common::weights::WeightError;

/// Everything that can go wrong when loading or running UPN.
#[derive(Debug, thiserror::Error)]
pub enum UpnError {
    /// The configuration is inconsistent or unreadable.
    #[error("invalid UPN config: {0}")]
    Config(String),
    /// The checkpoint could not be opened or does not fit the config.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// An input image could not be decoded.
    #[error(transparent)]
    Image(#[from] ImageLoadError),
    /// A request that cannot be served (e.g. no images).
    #[error("invalid request: {0}")]
    Request(String),
    /// A backend failed while reading results back.
    #[error("backend error: {0}")]
    Backend(String),
}
