//! `nn.GroupNorm` on NCHW maps.

use crate::weights::WeightLoader;
use burn::tensor::Tensor;

/// Group normalisation: channels split into `groups`, each normalised over its channels and
/// all positions, then a per-channel affine transform.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    /// Number of groups.
    pub groups: usize,
    /// `[C]`.
    pub weight: Tensor<1>,
    /// `[C]`.
    pub bias: Tensor<1>,
    /// Added to the variance.
    pub eps: f64,
}

impl GroupNorm {
    /// Loads `weight` and `bias` for `channels` channels.
    pub fn load(vb: &WeightLoader, groups: usize, channels: usize, eps: f64) -> Self {
        Self {
            groups,
            weight: vb.float("weight", [channels]),
            bias: vb.float("bias", [channels]),
            eps,
        }
    }

    /// `[B, C, H, W]` → `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let grouped = x.reshape([b, self.groups, (c / self.groups) * h * w]);
        let (var, mean) = grouped.clone().var_mean_bias(2);
        let normed = ((grouped - mean) / (var + self.eps).sqrt()).reshape([b, c, h, w]);
        normed * self.weight.clone().reshape([1, c, 1, 1]) + self.bias.clone().reshape([1, c, 1, 1])
    }
}
