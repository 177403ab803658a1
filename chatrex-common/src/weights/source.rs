//! Where tensors come from: the [`TensorSource`] trait and format detection.

use super::{PytorchCheckpoint, SafetensorsFiles, StoredDType, WeightError};
use std::borrow::Cow;
use std::path::Path;

/// Element type and shape of one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type as stored.
    pub dtype: StoredDType,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A checkpoint that lists its tensors and reads them one at a time.
pub trait TensorSource: Send + Sync {
    /// A short human description (format and path) for messages.
    fn describe(&self) -> String;
    /// Every tensor name, sorted.
    fn names(&self) -> Vec<String>;
    /// Element type and shape of a tensor, if present.
    fn info(&self, name: &str) -> Option<TensorInfo>;
    /// The tensor's little-endian bytes, row-major (borrowed from a memory map when possible).
    fn read(&self, name: &str) -> Result<Cow<'_, [u8]>, String>;
}

/// Opens a checkpoint by looking at what `path` is.
///
/// - a directory: `model.safetensors.index.json` (sharded) or the `*.safetensors` files in it;
/// - a `.safetensors` file;
/// - a `.safetensors.index.json` file;
/// - anything else is read as a PyTorch checkpoint (zip or legacy pickle); `top_level_key`
///   selects the state dict inside it (`"model"` for the official UPN checkpoint), and is
///   ignored when the file has no such key but is itself a state dict.
pub fn open_checkpoint(
    path: &Path,
    top_level_key: Option<&str>,
) -> Result<Box<dyn TensorSource>, WeightError> {
    if !path.exists() {
        return Err(WeightError::NotFound(path.to_path_buf()));
    }
    if path.is_dir() {
        return Ok(Box::new(SafetensorsFiles::open_dir(path)?));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if name.ends_with(".index.json") {
        return Ok(Box::new(SafetensorsFiles::open_index(path)?));
    }
    if name.ends_with(".safetensors") || SafetensorsFiles::looks_like_safetensors(path) {
        return Ok(Box::new(SafetensorsFiles::open_files(&[path.to_path_buf()])?));
    }
    Ok(Box::new(PytorchCheckpoint::open(path, top_level_key)?))
}
