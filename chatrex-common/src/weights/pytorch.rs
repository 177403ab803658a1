//! PyTorch checkpoints (`torch.save` zip or legacy pickle), read without executing anything.

use super::{StoredDType, TensorInfo, TensorSource, WeightError};
use pytorch_reader::{DType, PytorchReader};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A PyTorch state dict read by Burn's `pytorch-reader`.
///
/// The pickle is interpreted, never executed: a pickle that refers to arbitrary Python
/// callables reads as containing no tensors, which [`PytorchCheckpoint::open`] turns into
/// [`WeightError::Empty`]. Tensor bytes are read lazily, one tensor at a time.
pub struct PytorchCheckpoint {
    path: PathBuf,
    tensors: BTreeMap<String, pytorch_reader::Tensor>,
}

fn stored(dtype: DType) -> StoredDType {
    match dtype {
        DType::F64 => StoredDType::F64,
        DType::F32 => StoredDType::F32,
        DType::F16 => StoredDType::F16,
        DType::BF16 => StoredDType::BF16,
        DType::I64 => StoredDType::I64,
        DType::I32 => StoredDType::I32,
        DType::I16 => StoredDType::I16,
        DType::I8 => StoredDType::I8,
        DType::U8 => StoredDType::U8,
        DType::Bool => StoredDType::Bool,
        DType::U64 => StoredDType::Other("U64"),
        DType::U32 => StoredDType::Other("U32"),
        DType::U16 => StoredDType::Other("U16"),
    }
}

impl PytorchCheckpoint {
    /// Opens `path`; with `top_level_key`, the state dict is taken from that key of the
    /// top-level dict when the key exists (the official UPN file stores `{"model": ...}`).
    pub fn open(path: &Path, top_level_key: Option<&str>) -> Result<Self, WeightError> {
        let corrupt = |reason: String| WeightError::Corrupt {
            path: path.to_path_buf(),
            format: "PyTorch",
            reason,
        };
        let reader = match top_level_key {
            Some(key) => match PytorchReader::with_top_level_key(path, key) {
                Ok(r) => r,
                Err(pytorch_reader::PytorchError::KeyNotFound(_)) => {
                    PytorchReader::new(path).map_err(|e| corrupt(e.to_string()))?
                }
                Err(e) => return Err(corrupt(e.to_string())),
            },
            None => PytorchReader::new(path).map_err(|e| corrupt(e.to_string()))?,
        };
        if reader.is_empty() {
            return Err(WeightError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors: reader.into_tensors().into_iter().collect(),
        })
    }
}

impl TensorSource for PytorchCheckpoint {
    fn describe(&self) -> String {
        format!("PyTorch {}", self.path.display())
    }

    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn info(&self, name: &str) -> Option<TensorInfo> {
        self.tensors.get(name).map(|t| TensorInfo {
            dtype: stored(t.dtype()),
            shape: t.shape().to_vec(),
        })
    }

    fn read(&self, name: &str) -> Result<Cow<'_, [u8]>, String> {
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| format!("no tensor `{name}`"))?;
        let bytes = tensor.read().map_err(|e| e.to_string())?;
        // pytorch-reader returns native-endian bytes; we only run on little-endian targets.
        Ok(Cow::Owned(bytes))
    }
}
