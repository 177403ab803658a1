//! Rotary position embeddings in the Hugging Face Llama/Qwen2 convention: the head dimension
//! is split into two halves that rotate together (`rotate_half`), not interleaved pairs (which
//! is what Burn's `RotaryEncoding` does).

use burn::tensor::{Device, Tensor, TensorData};

/// RoPE frequencies of one model.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

impl Rope {
    /// `inv_freq[i] = 1 / theta^(2i / head_dim)`, in f32 as HF computes it.
    pub fn new(head_dim: usize, theta: f64) -> Self {
        let base = theta as f32;
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        Self { inv_freq, head_dim }
    }

    /// `cos` and `sin` tables for positions `start..start+len`: each `[1, 1, len, head_dim/2]`.
    pub fn tables(&self, start: usize, len: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let half = self.head_dim / 2;
        let (cos, sin) = self.host_tables(start, len);
        (
            Tensor::from_data(TensorData::new(cos, [1, 1, len, half]), device),
            Tensor::from_data(TensorData::new(sin, [1, 1, len, half]), device),
        )
    }
}

impl Rope {
    /// Host `cos` and `sin` tables for positions `start..start+len`: each `[len, head_dim/2]`.
    pub fn host_tables(&self, start: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.head_dim / 2;
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in start..start + len {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        (cos, sin)
    }
}

/// Rotates host rows `x [L, heads·D]` in place by the host tables `cos, sin [L, D/2]` (same
/// split-half convention as [`apply_rope`]).
pub fn apply_rope_rows(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    if half == 0 {
        return;
    }
    let rows = cos.len() / half;
    let width = x.len() / rows.max(1);
    for (t, row) in x.chunks_mut(width.max(1)).enumerate().take(rows) {
        let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
        for head in row.chunks_mut(head_dim) {
            let (x1, x2) = head.split_at_mut(half);
            for j in 0..half {
                let (a, b) = (x1[j], x2[j]);
                x1[j] = a * c[j] - b * s[j];
                x2[j] = b * c[j] + a * s[j];
            }
        }
    }
}

/// Rotates `x [B, H, L, D]` by the tables (already cast to `x`'s dtype):
/// `[x₁·cos − x₂·sin, x₂·cos + x₁·sin]` with `x₁, x₂` the two halves.
pub fn apply_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d / 2);
    Tensor::cat(
        vec![
            x1.clone() * cos.clone() - x2.clone() * sin.clone(),
            x2 * cos.clone() + x1 * sin.clone(),
        ],
        3,
    )
}
