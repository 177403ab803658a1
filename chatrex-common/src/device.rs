//! Run-time choice of the Burn backend: `cpu` (Burn's `flex`), `wgpu` or `cuda`.
//!
//! Nothing in chatrex-rs calls `Device::default()`: every API takes a `&Device`, and binaries
//! build it here from an explicit [`Backend`], with a clear error when the backend's cargo
//! feature was not compiled in.

use burn::tensor::Device;
use std::fmt;
use std::str::FromStr;

/// A compute backend that a [`Device`] can be created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend `flex` (cargo feature `flex`, on by default).
    Cpu,
    /// Burn's `wgpu` backend (Vulkan/Metal/DX12; cargo feature `wgpu`).
    Wgpu,
    /// Burn's CUDA backend (cargo feature `cuda`).
    Cuda,
}

/// Why a [`Device`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The name is not one of `cpu`, `wgpu`, `cuda`.
    #[error("unknown backend `{0}`: expected one of cpu, wgpu, cuda")]
    Unknown(String),
    /// The backend exists but this binary was built without its cargo feature.
    #[error(
        "backend `{backend}` is not built into this binary: rebuild with `--features {feature}`"
    )]
    NotCompiled {
        /// The backend asked for.
        backend: Backend,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
}

impl Backend {
    /// All backends, in the order they are listed in help texts.
    pub const ALL: [Backend; 3] = [Backend::Cpu, Backend::Wgpu, Backend::Cuda];

    /// The name used on command lines (`cpu`, `wgpu`, `cuda`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Cpu => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with the backend's feature.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Cpu => cfg!(feature = "flex"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Creates the device of this backend (`cpu` → `Device::flex()`, `wgpu` → the default
    /// adapter, `cuda` → GPU 0).
    pub fn device(self) -> Result<Device, BackendError> {
        match self {
            #[cfg(feature = "flex")]
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(BackendError::NotCompiled {
                backend: other,
                feature: other.feature(),
            }),
        }
    }
}

/// The values of a float tensor as f32 on the host, in its logical (row-major) order. A
/// backend that fails to execute or read back gives an error, not a panic.
pub fn read_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>, String> {
    t.cast(burn::tensor::DType::F32)
        .try_into_data()
        .map_err(|e| format!("{e:?}"))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// Whether `device` is the CPU backend, whose fast paths keep weights in host memory and run
/// the host kernels of [`crate::host_matmul`] and [`crate::host_ops`].
pub fn is_host_cpu(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Backend::Cpu),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            _ => Err(BackendError::Unknown(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_unknown() {
        assert_eq!("cpu".parse::<Backend>().ok(), Some(Backend::Cpu));
        assert_eq!("CUDA".parse::<Backend>().ok(), Some(Backend::Cuda));
        assert!(matches!(
            "tpu".parse::<Backend>(),
            Err(BackendError::Unknown(name)) if name == "tpu"
        ));
    }

    #[test]
    fn backend_without_feature_is_a_clear_error() {
        for backend in Backend::ALL {
            match backend.device() {
                Ok(_) => assert!(backend.is_compiled()),
                Err(err) => {
                    assert!(!backend.is_compiled());
                    assert!(err.to_string().contains(backend.feature()));
                }
            }
        }
    }
}
