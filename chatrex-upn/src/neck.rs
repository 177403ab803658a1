//! The neck: per-level input projections to `d_model` (1×1 conv + GroupNorm(32)), plus extra
//! stride-2 levels (3×3 conv + GroupNorm(32)), the first of which reads the *normed* last
//! backbone stage.

use burn::tensor::Tensor;
use chatrex_common::layers::{Conv2d, Conv2dSpec, GroupNorm};
use chatrex_common::weights::WeightLoader;

/// GroupNorm groups in every projection, whatever `d_model` is.
const GROUPS: usize = 32;
/// GroupNorm epsilon (PyTorch default).
const GN_EPS: f64 = 1e-5;

/// The `input_proj.{l}` projections.
#[derive(Debug, Clone)]
pub struct Neck {
    levels: Vec<(Conv2d, GroupNorm)>,
    num_backbone_levels: usize,
}

impl Neck {
    /// Loads `input_proj.{0..n_levels}` for backbone channels `stage_dims`.
    pub fn load(vb: &WeightLoader, stage_dims: &[usize], n_levels: usize, d_model: usize) -> Self {
        let mut levels = Vec::with_capacity(n_levels);
        let mut in_channels = stage_dims.last().copied().unwrap_or(d_model);
        for l in 0..n_levels {
            let vl = vb.pp(format!("input_proj.{l}"));
            let spec = if l < stage_dims.len() {
                Conv2dSpec {
                    d_in: stage_dims[l],
                    d_out: d_model,
                    kernel: 1,
                    stride: 1,
                    padding: 0,
                    groups: 1,
                    bias: true,
                }
            } else {
                let spec = Conv2dSpec {
                    d_in: in_channels,
                    d_out: d_model,
                    kernel: 3,
                    stride: 2,
                    padding: 1,
                    groups: 1,
                    bias: true,
                };
                in_channels = d_model;
                spec
            };
            levels.push((
                Conv2d::load(&vl.pp("0"), spec),
                GroupNorm::load(&vl.pp("1"), GROUPS, d_model, GN_EPS),
            ));
        }
        Self {
            levels,
            num_backbone_levels: stage_dims.len(),
        }
    }

    /// Backbone maps `[B, C_i, H_i, W_i]` → `n_levels` maps `[B, d_model, h_l, w_l]`.
    pub fn forward(&self, features: &[Tensor<4>]) -> Vec<Tensor<4>> {
        let mut out: Vec<Tensor<4>> = Vec::with_capacity(self.levels.len());
        for (l, (conv, norm)) in self.levels.iter().enumerate() {
            let input = if l < self.num_backbone_levels {
                features[l].clone()
            } else if l == self.num_backbone_levels {
                features[features.len() - 1].clone()
            } else {
                out[l - 1].clone()
            };
            out.push(norm.forward(conv.forward(input)));
        }
        out
    }
}
