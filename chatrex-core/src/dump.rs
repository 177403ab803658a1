//! Parity dumps: the ids and every intermediate tensor of one request, in the layout the
//! official-code fixtures use.

use crate::ChatRexError;
use safetensors::tensor::{Dtype, TensorView};
use std::path::Path;

/// One named f32 tensor to dump.
pub struct DumpTensor {
    /// Name.
    pub name: &'static str,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

fn output_error(path: &Path, e: impl std::fmt::Display) -> ChatRexError {
    ChatRexError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes `dir/input_ids.json` and `dir/tensors.safetensors` (f32).
pub fn write_dump(dir: &Path, input_ids: &[i64], tensors: &[DumpTensor]) -> Result<(), ChatRexError> {
    std::fs::create_dir_all(dir).map_err(|e| output_error(dir, e))?;
    let ids_path = dir.join("input_ids.json");
    let json = serde_json::to_string(input_ids).map_err(|e| output_error(&ids_path, e))?;
    std::fs::write(&ids_path, json).map_err(|e| output_error(&ids_path, e))?;
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let path = dir.join("tensors.safetensors");
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| TensorView::new(Dtype::F32, t.shape.clone(), b).map(|v| (t.name, v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| output_error(&path, e))?;
    let data = safetensors::serialize(views, None).map_err(|e| output_error(&path, e))?;
    std::fs::write(&path, data).map_err(|e| output_error(&path, e))
}
