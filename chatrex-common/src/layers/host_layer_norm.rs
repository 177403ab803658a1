//! `nn.LayerNorm` parameters in host memory, for the CPU backend's fast paths.

use crate::amx::{RoundedRows, round_to_bf16};
use crate::weights::WeightLoader;
use rayon::prelude::*;

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

    /// Rows `x [N, d]` normalised and rounded to bf16 straight into a tile product's row
    /// operand (the f32 rows are never written out; rows in parallel), for layers whose next
    /// products run on AMX tiles.
    pub fn forward_rounded(&self, x: &[f32], n: usize) -> RoundedRows {
        let d = self.weight.len();
        let mut rows = RoundedRows::recycled(n, d);
        rows.par_groups_mut(16).for_each_init(
            || vec![0f32; d],
            |normed, (first, mut group)| {
                for i in 0..group.rows() {
                    let Some(src) = x.get((first + i) * d..(first + i + 1) * d) else { return };
                    crate::host_ops::layer_norm_row(src, &self.weight, &self.bias, self.eps, normed);
                    round_to_bf16(normed, group.row_mut(i));
                }
            },
        );
        rows
    }

    /// Rows `x [N, d]` normalised in place.
    pub fn forward_in_place(&self, x: &mut [f32]) {
        crate::host_ops::layer_norm_in_place(x, &self.weight, &self.bias, self.eps);
    }
}
