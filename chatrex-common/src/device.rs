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
    /// The backend is built in but its driver finds no device on this machine.
    #[error("backend `{backend}` found no device on this machine: {hint}")]
    NoDevice {
        /// The backend asked for.
        backend: Backend,
        /// What the backend needs to find one.
        hint: &'static str,
    },
}

/// What `wgpu` needs to find an adapter.
#[cfg(feature = "wgpu")]
const WGPU_NEEDS: &str = "wgpu found no adapter on Vulkan, Metal, DX12 or GL. On Linux it needs \
    the Vulkan loader (libvulkan.so.1) and the GPU driver's ICD; NVIDIA's also loads the GL \
    dispatch library (libglvnd: libGLdispatch.so.0). Without a GPU, Mesa's lavapipe \
    (mesa-vulkan-drivers) runs it on the CPU";

/// What `cuda` needs to find a device.
#[cfg(feature = "cuda")]
const CUDA_NEEDS: &str =
    "no NVIDIA driver (libcuda.so) or no CUDA GPU was found (check `nvidia-smi`)";

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
    /// adapter, `cuda` → GPU 0). A GPU backend whose driver lists no device is an error here
    /// ([`BackendError::NoDevice`]), not a panic at the first tensor: Burn's devices are lazy.
    pub fn device(self) -> Result<Device, BackendError> {
        match self {
            #[cfg(feature = "flex")]
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => {
                self.require_listed(burn::tensor::DeviceType::Wgpu, WGPU_NEEDS)?;
                Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda => {
                self.require_listed(burn::tensor::DeviceType::Cuda, CUDA_NEEDS)?;
                Ok(Device::cuda(0))
            }
            #[allow(unreachable_patterns)]
            other => Err(BackendError::NotCompiled {
                backend: other,
                feature: other.feature(),
            }),
        }
    }

    /// `Err(NoDevice)` where Burn lists no device of `kind` on this machine.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    fn require_listed(
        self,
        kind: burn::tensor::DeviceType,
        hint: &'static str,
    ) -> Result<(), BackendError> {
        if Device::enumerate(kind).into_vec().is_empty() {
            return Err(BackendError::NoDevice { backend: self, hint });
        }
        Ok(())
    }
}

/// The name a GPU device gives itself (`NVIDIA H100 80GB HBM3`, `llvmpipe (LLVM 15.0.6, 256
/// bits)`) with what its kernels are compiled for; `None` on the CPU backend. Opens the device.
pub fn device_name(device: &Device) -> Option<String> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        device.identity().map(|id| format!("{} ({})", id.name, id.fingerprint))
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    {
        let _ = device;
        None
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
    fn backend_without_feature_or_device_is_a_clear_error() {
        for backend in Backend::ALL {
            match backend.device() {
                Ok(_) => assert!(backend.is_compiled()),
                Err(err @ BackendError::NotCompiled { .. }) => {
                    assert!(!backend.is_compiled());
                    assert!(err.to_string().contains(backend.feature()));
                }
                // A GPU backend built in on a machine without its driver or device.
                Err(err @ BackendError::NoDevice { .. }) => {
                    assert!(backend.is_compiled() && backend != Backend::Cpu);
                    assert!(err.to_string().contains(&format!("`{}`", backend.name())), "{err}");
                }
                Err(err) => panic!("unexpected error for {backend}: {err}"),
            }
        }
    }

    #[test]
    fn the_cpu_backend_has_no_device_name() {
        if let Ok(device) = Backend::Cpu.device() {
            assert_eq!(device_name(&device), None);
        }
    }
}
