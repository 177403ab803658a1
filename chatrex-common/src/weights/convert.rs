//! Element types of stored tensors and their conversion to the dtype a model runs in.

use burn::tensor::{DType, FloatDType, TensorData};
use half::{bf16, f16};
use std::fmt;
use std::str::FromStr;

/// Element type of a tensor as stored in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum StoredDType {
    /// 64-bit float.
    F64,
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// 16-bit signed integer.
    I16,
    /// 8-bit signed integer.
    I8,
    /// 8-bit unsigned integer.
    U8,
    /// Boolean (one byte).
    Bool,
    /// Anything else (name as the format spells it).
    Other(&'static str),
}

impl StoredDType {
    /// Bytes per element, or `None` for types we cannot read.
    pub fn size(self) -> Option<usize> {
        match self {
            StoredDType::F64 | StoredDType::I64 => Some(8),
            StoredDType::F32 | StoredDType::I32 => Some(4),
            StoredDType::F16 | StoredDType::BF16 | StoredDType::I16 => Some(2),
            StoredDType::I8 | StoredDType::U8 | StoredDType::Bool => Some(1),
            StoredDType::Other(_) => None,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            StoredDType::F64 | StoredDType::F32 | StoredDType::F16 | StoredDType::BF16
        )
    }
}

impl fmt::Display for StoredDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            StoredDType::F64 => "F64",
            StoredDType::F32 => "F32",
            StoredDType::F16 => "F16",
            StoredDType::BF16 => "BF16",
            StoredDType::I64 => "I64",
            StoredDType::I32 => "I32",
            StoredDType::I16 => "I16",
            StoredDType::I8 => "I8",
            StoredDType::U8 => "U8",
            StoredDType::Bool => "BOOL",
            StoredDType::Other(name) => name,
        };
        f.write_str(name)
    }
}

/// Float dtype a model's weights are converted to when loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDType {
    /// 32-bit float (reference precision).
    #[default]
    F32,
    /// IEEE half: the fastest low-precision type on Burn's CPU backend.
    F16,
    /// bfloat16: the checkpoint's own type for ChatRex-7B; fast on GPUs and, for weights
    /// held in host memory, on CPUs with AMX tiles; slow in Burn's CPU tensor ops.
    BF16,
}

impl WeightDType {
    /// The 16-bit type that weights held in host memory on the CPU backend (the LLM, the
    /// vision towers) run fastest in: bf16 where the CPU has AMX tiles (products on tiles,
    /// and the checkpoint's own type, so no range check), else f16 (converted in registers).
    pub fn host_low_precision() -> Self {
        if crate::amx::available() { WeightDType::BF16 } else { WeightDType::F16 }
    }

    /// The 16-bit type large weights run fastest in on `device`: [`host_low_precision`]
    /// on the CPU backend; on a GPU bf16 (the checkpoint's own type) where the device
    /// computes in it, else f16, else f32 (e.g. Vulkan drivers without 16-bit arithmetic).
    ///
    /// [`host_low_precision`]: Self::host_low_precision
    pub fn fastest_on(device: &burn::tensor::Device) -> Self {
        if crate::device::is_host_cpu(device) {
            return Self::host_low_precision();
        }
        [WeightDType::BF16, WeightDType::F16]
            .into_iter()
            .find(|d| device.supports_dtype(d.float_dtype()))
            .unwrap_or(WeightDType::F32)
    }

    /// The Burn float dtype.
    pub fn float_dtype(self) -> FloatDType {
        match self {
            WeightDType::F32 => FloatDType::F32,
            WeightDType::F16 => FloatDType::F16,
            WeightDType::BF16 => FloatDType::BF16,
        }
    }

    /// The Burn dtype.
    pub fn dtype(self) -> DType {
        match self {
            WeightDType::F32 => DType::F32,
            WeightDType::F16 => DType::F16,
            WeightDType::BF16 => DType::BF16,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            WeightDType::F32 => 4,
            WeightDType::F16 | WeightDType::BF16 => 2,
        }
    }
}

impl fmt::Display for WeightDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightDType::F32 => "f32",
            WeightDType::F16 => "f16",
            WeightDType::BF16 => "bf16",
        })
    }
}

impl FromStr for WeightDType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(WeightDType::F32),
            "f16" | "float16" | "fp16" | "half" => Ok(WeightDType::F16),
            "bf16" | "bfloat16" => Ok(WeightDType::BF16),
            other => Err(format!("unknown dtype `{other}`: expected f32, f16 or bf16")),
        }
    }
}

/// Largest finite f16 value.
const F16_MAX: f32 = 65504.0;

/// Reads little-endian float elements of type `stored` from `bytes` as f32 values.
fn floats_as_f32(bytes: &[u8], stored: StoredDType) -> Result<Vec<f32>, String> {
    let chunk = stored
        .size()
        .ok_or_else(|| format!("unsupported element type {stored}"))?;
    if !bytes.len().is_multiple_of(chunk) {
        return Err(format!(
            "{} bytes is not a whole number of {stored} elements",
            bytes.len()
        ));
    }
    let it = bytes.chunks_exact(chunk);
    Ok(match stored {
        StoredDType::F32 => it
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        StoredDType::F64 => it
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        StoredDType::F16 => it
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        StoredDType::BF16 => it
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => return Err(format!("element type {other} is not a float type")),
    })
}

/// Converts stored float bytes to a [`TensorData`] of the target dtype.
///
/// Conversions to f16 check the range of every value: a value beyond ±65504 would become
/// infinite, so it is an error that names the largest magnitude found.
pub fn float_data(
    bytes: &[u8],
    stored: StoredDType,
    shape: &[usize],
    target: WeightDType,
) -> Result<TensorData, String> {
    match (stored, target) {
        (StoredDType::F16, WeightDType::F16) | (StoredDType::BF16, WeightDType::BF16) => {
            let dtype = target.dtype();
            return TensorData::try_from_bytes_vec(bytes.to_vec(), shape.to_vec(), dtype)
                .map_err(|e| format!("{e:?}"));
        }
        _ => {}
    }
    let values = floats_as_f32(bytes, stored)?;
    Ok(match target {
        WeightDType::F32 => TensorData::new(values, shape.to_vec()),
        WeightDType::F16 => {
            let mut max_abs = 0.0f32;
            let converted: Vec<f16> = values
                .iter()
                .map(|&v| {
                    if v.is_finite() {
                        max_abs = max_abs.max(v.abs());
                    }
                    f16::from_f32(v)
                })
                .collect();
            if max_abs > F16_MAX {
                return Err(format!(
                    "value of magnitude {max_abs} does not fit f16 (max 65504); load this model in f32 or bf16"
                ));
            }
            TensorData::new(converted, shape.to_vec())
        }
        WeightDType::BF16 => TensorData::new(
            values.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>(),
            shape.to_vec(),
        ),
    })
}

/// Converts stored integer bytes to an i64 vector.
pub fn int_values(bytes: &[u8], stored: StoredDType) -> Result<Vec<i64>, String> {
    let chunk = stored
        .size()
        .ok_or_else(|| format!("unsupported element type {stored}"))?;
    if !bytes.len().is_multiple_of(chunk) {
        return Err(format!(
            "{} bytes is not a whole number of {stored} elements",
            bytes.len()
        ));
    }
    let it = bytes.chunks_exact(chunk);
    Ok(match stored {
        StoredDType::I64 => it
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        StoredDType::I32 => it
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        StoredDType::I16 => it.map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect(),
        StoredDType::I8 => it.map(|c| c[0] as i8 as i64).collect(),
        StoredDType::U8 | StoredDType::Bool => it.map(|c| c[0] as i64).collect(),
        other => return Err(format!("element type {other} is not an integer type")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_to_f16_checks_range() {
        let big = bf16::from_f32(1.0e6).to_le_bytes();
        let err = float_data(&big, StoredDType::BF16, &[1], WeightDType::F16);
        assert!(err.is_err_and(|e| e.contains("f16")));
        let ok = bf16::from_f32(3.5).to_le_bytes();
        let data = float_data(&ok, StoredDType::BF16, &[1], WeightDType::F16);
        assert!(data.is_ok_and(|d| d.dtype() == DType::F16));
    }

    #[test]
    fn f32_roundtrip_is_exact() {
        let values = [1.5f32, -2.25, 3.0e-8];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let data = float_data(&bytes, StoredDType::F32, &[3], WeightDType::F32);
        let back = data.ok().and_then(|d| d.try_to_vec::<f32>().ok());
        assert_eq!(back.as_deref(), Some(&values[..]));
    }

    #[test]
    fn truncated_bytes_are_an_error() {
        assert!(float_data(&[0, 1, 2], StoredDType::F32, &[1], WeightDType::F32).is_err());
    }
}
