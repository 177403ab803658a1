//! CLIP encoder layers on the CPU backend: token rows in host memory, every projection a
//! `gemm` product, attention per head (in parallel over heads), and one fused pass for each
//! layer norm, bias + activation and bias + residual.
//!
//! Same parameters and the same arithmetic as [`crate::clip`]'s tensor path; only the order
//! of floating-point sums differs (and the `1/√d` scale is applied to the `q·kᵀ` product
//! rather than to `q`).

use chatrex_common::host_matmul::{StridedMatrix, matmul_strided};
use chatrex_common::host_ops::{Activation, add_scaled_residual, bias_activation, softmax_row};
use chatrex_common::layers::{HostLayerNorm, HostLinear, residual_mlp};
use chatrex_common::weights::WeightLoader;
use rayon::prelude::*;

use crate::config::ClipVisionConfig;

/// One pre-LN CLIP encoder layer (`encoder.layers.{i}`) on host memory.
#[derive(Debug, Clone)]
pub struct HostClipLayer {
    layer_norm1: HostLayerNorm,
    q_proj: HostLinear,
    k_proj: HostLinear,
    v_proj: HostLinear,
    out_proj: HostLinear,
    layer_norm2: HostLayerNorm,
    fc1: HostLinear,
    fc2: HostLinear,
    heads: usize,
    activation: Activation,
}

impl HostClipLayer {
    /// Loads one layer.
    pub fn load(vb: &WeightLoader, c: &ClipVisionConfig) -> Self {
        let d = c.hidden_size;
        let attn = vb.pp("self_attn");
        Self {
            layer_norm1: HostLayerNorm::load(&vb.pp("layer_norm1"), d, c.layer_norm_eps),
            q_proj: HostLinear::load(&attn.pp("q_proj"), d, d, true),
            k_proj: HostLinear::load(&attn.pp("k_proj"), d, d, true),
            v_proj: HostLinear::load(&attn.pp("v_proj"), d, d, true),
            out_proj: HostLinear::load(&attn.pp("out_proj"), d, d, true),
            layer_norm2: HostLayerNorm::load(&vb.pp("layer_norm2"), d, c.layer_norm_eps),
            fc1: HostLinear::load(&vb.pp("mlp.fc1"), d, c.intermediate_size, true),
            fc2: HostLinear::load(&vb.pp("mlp.fc2"), c.intermediate_size, d, true),
            heads: c.num_attention_heads,
            activation: if c.hidden_act == "quick_gelu" {
                Activation::QuickGelu
            } else {
                Activation::Gelu
            },
        }
    }

    /// `x [N, D]` (one image's tokens) updated in place:
    /// `x += attn(ln1(x))`, then `x += mlp(ln2(x))`.
    pub fn forward(&self, x: &mut [f32], n: usize) -> Result<(), String> {
        let d = self.q_proj.d_in();
        let mut h = vec![0f32; n * d];
        self.layer_norm1.forward(x, &mut h);
        let project = |linear: &HostLinear| {
            let mut y = linear.matmul(&h, n);
            bias_activation(&mut y, &linear.bias, Activation::Identity);
            y
        };
        let (q, k, v) = (project(&self.q_proj), project(&self.k_proj), project(&self.v_proj));
        let attended = self.attention(&q, &k, &v, n)?;
        let o = self.out_proj.matmul(&attended, n);
        add_scaled_residual(x, &o, &self.out_proj.bias, None);

        self.layer_norm2.forward(x, &mut h);
        residual_mlp(x, &h, &self.fc1, self.activation, &self.fc2, None);
        Ok(())
    }

    /// Softmax attention of `q, k, v [N, D]` per head (heads in parallel) → `[N, D]`.
    fn attention(&self, q: &[f32], k: &[f32], v: &[f32], n: usize) -> Result<Vec<f32>, String> {
        let d = self.q_proj.d_out();
        let hd = d / self.heads;
        let scale = (hd as f32).powf(-0.5);
        // One score buffer per rayon job rather than per head: every value is overwritten,
        // and zeroing 16 fresh [N, N] buffers per layer costs more than the softmax.
        let per_head: Vec<Vec<f32>> = (0..self.heads)
            .into_par_iter()
            .map_init(
                || vec![0f32; n * n],
                |scores, head| {
                    let view = StridedMatrix::new;
                    let offset = head * hd;
                    // scores [N, N] = scale · q_h · k_hᵀ
                    matmul_strided(
                        view(&q[offset..], n, hd, d, 1),
                        view(&k[offset..], hd, n, 1, d),
                        scale,
                        scores,
                        n,
                    )?;
                    for row in scores.chunks_mut(n) {
                        softmax_row(row);
                    }
                    // out_h [N, hd] = scores · v_h
                    let mut out = vec![0f32; n * hd];
                    matmul_strided(view(scores, n, n, n, 1), view(&v[offset..], n, hd, d, 1), 1.0, &mut out, hd)?;
                    Ok(out)
                },
            )
            .collect::<Result<_, String>>()?;
        let mut out = vec![0f32; n * d];
        for (head, values) in per_head.iter().enumerate() {
            for (row, src) in out.chunks_mut(d).zip(values.chunks(hd)) {
                row[head * hd..(head + 1) * hd].copy_from_slice(src);
            }
        }
        Ok(out)
    }
}
