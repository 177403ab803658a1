//! Which implementation a vision tower runs.

use burn::tensor::Device;
use chatrex_common::device::is_host_cpu;

/// The kernels of a vision tower, chosen at load time (the weights are stored for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// On the CPU backend, weights in host memory with `gemm` and fused host kernels
    /// (`chatrex_common::host_ops`); Burn tensor ops on every other backend.
    #[default]
    Auto,
    /// Burn tensor ops on every backend (the reference the host kernels are tested against).
    TensorOps,
}

impl Kernels {
    /// Whether a tower loaded on `device` uses the host kernels.
    pub fn host(self, device: &Device) -> bool {
        self == Kernels::Auto && is_host_cpu(device)
    }
}
