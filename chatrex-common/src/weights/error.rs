//! Errors of checkpoint loading.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong between a checkpoint and the model that loads it.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightProblem {
    /// The model needs a tensor the checkpoint does not have.
    Missing {
        /// Full key.
        key: String,
        /// Shape the model expects.
        expected: Vec<usize>,
    },
    /// The checkpoint has the key with another shape.
    ShapeMismatch {
        /// Full key.
        key: String,
        /// Shape the model expects.
        expected: Vec<usize>,
        /// Shape in the checkpoint.
        found: Vec<usize>,
    },
    /// The checkpoint has a tensor nothing in the model uses.
    Unexpected {
        /// Full key.
        key: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// The tensor is stored with an element type the model cannot use.
    BadDType {
        /// Full key.
        key: String,
        /// What was found.
        found: String,
    },
    /// Two names that must hold the same tensor (shared heads) hold different values.
    AliasMismatch {
        /// The alias.
        key: String,
        /// The key it must equal.
        canonical: String,
    },
    /// The tensor could not be read or converted.
    Unreadable {
        /// Full key.
        key: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for WeightProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightProblem::Missing { key, expected } => {
                write!(f, "missing key `{key}` (expected shape {expected:?})")
            }
            WeightProblem::ShapeMismatch {
                key,
                expected,
                found,
            } => write!(
                f,
                "shape mismatch for `{key}`: model expects {expected:?}, checkpoint has {found:?}"
            ),
            WeightProblem::Unexpected { key, shape } => {
                write!(f, "unexpected key `{key}` (shape {shape:?}) not used by the model")
            }
            WeightProblem::BadDType { key, found } => {
                write!(f, "key `{key}` has unsupported element type {found}")
            }
            WeightProblem::AliasMismatch { key, canonical } => write!(
                f,
                "key `{key}` should be the same shared tensor as `{canonical}` but differs"
            ),
            WeightProblem::Unreadable { key, reason } => {
                write!(f, "key `{key}` could not be read: {reason}")
            }
        }
    }
}

/// Why a checkpoint could not be opened or loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file or directory does not exist.
    #[error("checkpoint not found: {0}")]
    NotFound(PathBuf),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid checkpoint of the format its name or content says.
    #[error("{path} is not a valid {format} checkpoint: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// `safetensors`, `PyTorch pickle`, ...
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A sharded checkpoint's index names a shard file that is not there.
    #[error("the index {index} names shard {shard} which does not exist")]
    MissingShard {
        /// The index file.
        index: PathBuf,
        /// The missing shard.
        shard: PathBuf,
    },
    /// The checkpoint holds no tensor at all (a pickle whose objects were refused reads as empty).
    #[error(
        "{path} contains no tensors: it is not a state dict, or its pickle refers to code that is never executed"
    )]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The device cannot compute in the dtype the weights were to be converted to.
    #[error("the {model} model asks for {dtype:?} weights, which device {device} does not support for general tensor operations; choose another dtype (f32 works everywhere)")]
    UnsupportedDType {
        /// Which model was being loaded.
        model: String,
        /// The dtype the device lacks.
        dtype: super::WeightDType,
        /// The device, as Burn names it.
        device: String,
    },
    /// The checkpoint does not fit the model. Every problem is listed.
    #[error("checkpoint {source_name} does not match the {model} model ({} problems):\n  {}", problems.len(), problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Mismatch {
        /// Which model was being loaded.
        model: String,
        /// Which checkpoint.
        source_name: String,
        /// Every problem found.
        problems: Vec<WeightProblem>,
    },
}
