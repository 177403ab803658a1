//! `nn.LayerNorm` over the last dimension.

use crate::weights::WeightLoader;
use burn::tensor::Tensor;

/// Layer normalisation over the last dimension with affine `weight`/`bias`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// `[d]`.
    pub weight: Tensor<1>,
    /// `[d]`.
    pub bias: Tensor<1>,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of width `d`.
    pub fn load(vb: &WeightLoader, d: usize, eps: f64) -> Self {
        Self {
            weight: vb.float("weight", [d]),
            bias: vb.float("bias", [d]),
            eps,
        }
    }

    /// `[..., d]` → `[..., d]`: `(x − mean) / sqrt(var + eps) · weight + bias`, biased variance.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (var, mean) = x.clone().var_mean_bias(D - 1);
        let normed = (x - mean) / (var + self.eps).sqrt();
        normed * self.weight.clone().unsqueeze::<D>() + self.bias.clone().unsqueeze::<D>()
    }
}
