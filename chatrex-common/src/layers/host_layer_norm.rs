//! `nn.LayerNorm` parameters in host memory, for the CPU backend's fast paths.

use crate::weights::WeightLoader;

/// Layer normalisation over the last dimension with affine `weight` / `bias` (biased
/// variance), applied by `host_ops::layer_norm` to rows in host memory.
#[derive(Debug, Clone)]
pub struct HostLayerNorm {
    /// `[d]`.
    pub weight: Vec<f32>,
    /// `[d]`.
    pub bias: Vec<f32>,
    /// Added to the variance.
    pub eps: f32,
}

impl HostLayerNorm {
    /// Loads `weight` and `bias` of width `d`.
    pub fn load(vb: &WeightLoader, d: usize, eps: f64) -> Self {
        Self {
            weight: vb.host_f32("weight", &[d]),
            bias: vb.host_f32("bias", &[d]),
            eps: eps as f32,
        }
    }

    /// Rows `x [N, d]` → `out [N, d]`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        crate::host_ops::layer_norm(x, &self.weight, &self.bias, self.eps, out);
    }

    /// Rows `x [N, d]` normalised in place.
    pub fn forward_in_place(&self, x: &mut [f32]) {
        crate::host_ops::layer_norm_in_place(x, &self.weight, &self.bias, self.eps);
    }
}
