//! Inference layers with PyTorch parameter names and layouts, built from a [`WeightLoader`].
//!
//! These hold plain tensors (no training state) so models are cheap to clone and share
//! between threads. Each `load` takes the sizes the model expects, so a checkpoint of another
//! size is reported by key instead of failing inside a matmul.
//!
//! [`WeightLoader`]: crate::weights::WeightLoader

mod conv2d;
mod feed_forward;
mod group_norm;
mod host_layer_norm;
mod host_linear;
mod host_mlp;
mod layer_norm;
mod linear;
mod mlp;

pub use conv2d::{Conv2d, Conv2dSpec};
pub use feed_forward::{FeedForward, NormPlacement};
pub use group_norm::GroupNorm;
pub use host_layer_norm::HostLayerNorm;
pub use host_linear::HostLinear;
pub use host_mlp::{residual_mlp, residual_mlp_rounded};
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use mlp::{Activation, Mlp};
