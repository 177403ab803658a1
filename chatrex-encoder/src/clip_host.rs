//! CLIP encoder layers on the CPU backend: token rows in host memory, every projection a
//! `gemm` product, attention per head (in parallel over heads), and one fused pass for each
//! layer norm, bias + activation and bias + residual.
//!
//! Same parameters and the same arithmetic as [`crate::clip`]'s tensor path; only the order
//! of floating-point sums differs (and the `1/√d` scale is applied to the `q·kᵀ` product
//! rather than to `q`).

use chatrex_common::host_matmul::{StridedMatrix, matmul_strided};
use chatrex_common::amx::{RoundedRows, TileWeight};
use chatrex_common::host_ops::{Activation, bias_activation, softmax_row};
use chatrex_common::layers::{HostLayerNorm, HostLinear, residual_mlp, residual_mlp_rounded};
use chatrex_common::weights::{WeightDType, WeightLoader};
use rayon::prelude::*;

use crate::config::ClipVisionConfig;

/// The attention's input projections: q, k and v as three products, or stacked into one
/// `[3D, D]` product — in f32 (its output rows hold q, k, v side by side), or on AMX tiles
/// with an epilogue that adds the bias and rounds to bf16 (the attention on tiles reading
/// those rows in place).
#[derive(Debug, Clone)]
enum QkvProjection {
    /// q, k and v.
    Separate(Box<[HostLinear; 3]>),
    Fused(HostLinear),
}

/// One pre-LN CLIP encoder layer (`encoder.layers.{i}`) on host memory.
#[derive(Debug, Clone)]
pub struct HostClipLayer {
    layer_norm1: HostLayerNorm,
    qkv: QkvProjection,
    out_proj: HostLinear,
    layer_norm2: HostLayerNorm,
    fc1: HostLinear,
    fc2: HostLinear,
    heads: usize,
    activation: Activation,
    /// Attention products on AMX tiles with bf16-rounded operands (bf16 weights on a CPU with
    /// tiles and a head width they fit), else in f32.
    tile_attention: bool,
}

impl HostClipLayer {
    /// Loads one layer.
    pub fn load(vb: &WeightLoader, c: &ClipVisionConfig) -> Self {
        Self::load_with(vb, c, true)
    }

    /// Loads one layer; `fuse`: stack q/k/v into one product where the whole layer runs on
    /// tiles, or the three weights are f32.
    fn load_with(vb: &WeightLoader, c: &ClipVisionConfig, fuse: bool) -> Self {
        let d = c.hidden_size;
        let attn = vb.pp("self_attn");
        let head_dim = d / c.num_attention_heads.max(1);
        let tile_attention = vb.dtype() == WeightDType::BF16 && chatrex_common::amx::attention_fits(head_dim);
        let (q, k, v) = (
            HostLinear::load(&attn.pp("q_proj"), d, d, true),
            HostLinear::load(&attn.pp("k_proj"), d, d, true),
            HostLinear::load(&attn.pp("v_proj"), d, d, true),
        );
        let out_proj = HostLinear::load(&attn.pp("out_proj"), d, d, true);
        let fc1 = HostLinear::load(&vb.pp("mlp.fc1"), d, c.intermediate_size, true);
        let fc2 = HostLinear::load(&vb.pp("mlp.fc2"), c.intermediate_size, d, true);
        // Stacked where the whole layer runs on tiles, or in f32 (one `gemm` instead of three).
        let all_tiles = [&q, &k, &v, &out_proj, &fc1, &fc2].iter().all(|l| l.tile_weight().is_some());
        let all_f32 = [&q, &k, &v].iter().all(|l| l.is_f32());
        let qkv = if fuse && ((tile_attention && all_tiles) || all_f32) {
            match HostLinear::concat_outputs([q, k, v]) {
                Ok(fused) => QkvProjection::Fused(fused),
                Err(parts) => QkvProjection::Separate(Box::new(parts)),
            }
        } else {
            QkvProjection::Separate(Box::new([q, k, v]))
        };
        Self {
            layer_norm1: HostLayerNorm::load(&vb.pp("layer_norm1"), d, c.layer_norm_eps),
            qkv,
            out_proj,
            layer_norm2: HostLayerNorm::load(&vb.pp("layer_norm2"), d, c.layer_norm_eps),
            fc1,
            fc2,
            heads: c.num_attention_heads,
            activation: if c.hidden_act == "quick_gelu" {
                Activation::QuickGelu
            } else {
                Activation::Gelu
            },
            tile_attention,
        }
    }

    /// `x [N, D]` (one image's tokens) updated in place:
    /// `x += attn(ln1(x))`, then `x += mlp(ln2(x))`.
    pub fn forward(&self, x: &mut [f32], n: usize) -> Result<(), String> {
        let (q_proj, k_proj, v_proj) = match &self.qkv {
            QkvProjection::Fused(qkv) if qkv.tile_weight().is_some() => return self.forward_on_tiles(x, n, qkv),
            QkvProjection::Fused(qkv) => return self.forward_stacked_f32(x, n, qkv),
            QkvProjection::Separate(parts) => {
                let [q, k, v] = parts.as_ref();
                (q, k, v)
            }
        };
        let d = q_proj.d_in();
        let mut h = vec![0f32; n * d];
        self.layer_norm1.forward(x, &mut h);
        // With the projections on AMX tiles, `h` is rounded to bf16 once for all three.
        let rounded = q_proj.tile_weight().map(|_| RoundedRows::from_f32(&h, n, d));
        let project = |linear: &HostLinear| {
            let mut y = match (linear.tile_weight(), &rounded) {
                (Some(tiles), Some(rows)) => {
                    let mut y = vec![0f32; n * linear.d_out()];
                    if !tiles.matmul_t_rounded(rows, &mut y) {
                        y = linear.matmul(&h, n);
                    }
                    y
                }
                _ => linear.matmul(&h, n),
            };
            bias_activation(&mut y, &linear.bias, Activation::Identity);
            y
        };
        let (q, k, v) = (project(q_proj), project(k_proj), project(v_proj));
        drop(rounded);
        let attended = self.attention((&q, &k, &v, d), n)?;
        self.out_proj.add_to_residual(&attended, n, x, None);

        self.layer_norm2.forward(x, &mut h);
        residual_mlp(x, &h, &self.fc1, self.activation, &self.fc2, None);
        Ok(())
    }

    /// [`forward`](Self::forward) with f32 weights and q/k/v stacked into one product: its
    /// `[N, 3D]` rows hold q, k and v side by side, which the attention reads in place.
    fn forward_stacked_f32(&self, x: &mut [f32], n: usize, qkv: &HostLinear) -> Result<(), String> {
        let d = qkv.d_in();
        let mut h = vec![0f32; n * d];
        self.layer_norm1.forward(x, &mut h);
        let mut projected = qkv.matmul(&h, n);
        bias_activation(&mut projected, &qkv.bias, Activation::Identity);
        let attended = self.attention((&projected, &projected[d..], &projected[2 * d..], 3 * d), n)?;
        drop(projected);
        self.out_proj.add_to_residual(&attended, n, x, None);
        self.layer_norm2.forward(x, &mut h);
        residual_mlp(x, &h, &self.fc1, self.activation, &self.fc2, None);
        Ok(())
    }

    /// [`forward`](Self::forward) with every product on AMX tiles and every activation
    /// between them as bf16 rows: ln1 normalised straight into rows, one q/k/v product
    /// (bias and rounding in its epilogue), attention reading those rows in place and writing
    /// rounded rows, out_proj and fc2 summing into `x` from their blocks. The same roundings
    /// as the separate path (bit-identical), without its f32 round trips.
    fn forward_on_tiles(&self, x: &mut [f32], n: usize, qkv: &HostLinear) -> Result<(), String> {
        fn tiles(l: &HostLinear) -> Result<&TileWeight, String> {
            l.tile_weight().ok_or_else(|| "CLIP layer: a fused layer's weight is not in tile order".to_string())
        }
        let shape = || "CLIP layer: operands do not match the layer's widths".to_string();
        let normed = self.layer_norm1.forward_rounded(x, n);
        let projected = tiles(qkv)?.matmul_t_activated(&normed, &qkv.bias, Activation::Identity).ok_or_else(shape)?;
        drop(normed);
        let scale = ((qkv.d_out() / 3 / self.heads.max(1)) as f32).powf(-0.5);
        let attended = chatrex_common::amx::attention_bf16_fused(&projected, self.heads, scale).ok_or_else(shape)?;
        drop(projected);
        if !tiles(&self.out_proj)?.matmul_t_residual(&attended, x, Some(&self.out_proj.bias), None) {
            return Err(shape());
        }
        drop(attended);
        let normed = self.layer_norm2.forward_rounded(x, n);
        if !residual_mlp_rounded(x, &normed, &self.fc1, self.activation, &self.fc2, None) {
            return Err(shape());
        }
        Ok(())
    }

    /// Softmax attention of `q, k, v` (`N` rows of `D` values, `row_stride` apart: their own
    /// buffers, or side by side in one) per head (heads in parallel) → `[N, D]`; on AMX tiles
    /// in bf16 when the layer's weights are bf16 (as PyTorch's bf16 attention).
    fn attention(&self, (q, k, v, row_stride): (&[f32], &[f32], &[f32], usize), n: usize) -> Result<Vec<f32>, String> {
        let d = self.out_proj.d_in();
        let hd = d / self.heads.max(1);
        let scale = (hd as f32).powf(-0.5);
        if self.tile_attention
            && row_stride == d
            && let Some(out) = chatrex_common::amx::attention_bf16(q, k, v, n, self.heads, scale)
        {
            return Ok(out);
        }
        // One score buffer per rayon job rather than per head (every value is overwritten, and
        // zeroing 16 fresh [N, N] buffers per layer costs more than the softmax), and one job
        // per thread: rayon calls `init` again for every piece it splits off.
        let per_thread = self.heads.div_ceil(rayon::current_num_threads().max(1));
        let per_head: Vec<Vec<f32>> = (0..self.heads)
            .into_par_iter()
            .with_min_len(per_thread)
            .map_init(
                || vec![0f32; n * n],
                |scores, head| {
                    let view = StridedMatrix::new;
                    let offset = head * hd;
                    // scores [N, N] = scale · q_h · k_hᵀ
                    matmul_strided(
                        view(&q[offset..], n, hd, row_stride, 1),
                        view(&k[offset..], hd, n, 1, row_stride),
                        scale,
                        scores,
                        n,
                    )?;
                    for row in scores.chunks_mut(n) {
                        softmax_row(row);
                    }
                    // out_h [N, hd] = scores · v_h
                    let mut out = vec![0f32; n * hd];
                    matmul_strided(view(scores, n, n, n, 1), view(&v[offset..], n, hd, row_stride, 1), 1.0, &mut out, hd)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClipVisionConfig;

    /// CLIP-L's layer shape scaled down: width 64, two heads of 32 values.
    fn small_config() -> ClipVisionConfig {
        ClipVisionConfig { hidden_size: 64, intermediate_size: 128, num_attention_heads: 2, ..ClipVisionConfig::vit_large_patch14_336() }
    }

    /// Two layers run on the same 45 tokens (one whole block of 32 and a partial one): the
    /// input, then each layer's output.
    fn run_pair(first: &HostClipLayer, second: &HostClipLayer) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = 45;
        let x: Vec<f32> = (0..n * 64).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let (mut a, mut b) = (x.clone(), x.clone());
        first.forward(&mut a, n).expect("first layer");
        second.forward(&mut b, n).expect("second layer");
        (x, a, b)
    }

    /// A layer's update `y − x` (x is added back by the residuals).
    fn update(y: &[f32], x: &[f32]) -> Vec<f32> {
        y.iter().zip(x).map(|(y, x)| y - x).collect()
    }

    /// One layer with 32 values per head: with bf16 weights on a CPU with AMX, its attention
    /// runs on tiles (bf16 operands, as PyTorch's bf16 attention); it stays within bf16
    /// rounding of the same layer with f32 weights (the same random values before rounding).
    #[test]
    fn bf16_layer_with_tile_attention_stays_close_to_f32() {
        let device = chatrex_common::Backend::Cpu.device().expect("the CPU backend");
        let layer = |dtype| HostClipLayer::load(&WeightLoader::random(3, &device, dtype).pp("layer"), &small_config());
        let (f32_layer, bf16_layer) = (layer(WeightDType::F32), layer(WeightDType::BF16));
        assert!(!f32_layer.tile_attention);
        assert_eq!(bf16_layer.tile_attention, chatrex_common::amx::available());
        let (x, a, b) = run_pair(&f32_layer, &bf16_layer);
        let err = chatrex_common::parity::compare(&update(&b, &x), &update(&a, &x)).rel;
        assert!(err < 1e-2, "rel. error of the update {err} (measured 4.9e-3)");
        assert!(err > 0.0, "the bf16 layer rounds");
    }

    /// With bf16 weights on tiles, the layer stacks q/k/v into one product and keeps every
    /// activation as bf16 rows: the same roundings as the three separate products, so the
    /// same bits (heads of 32 values: a scale that is not a power of two).
    #[test]
    fn fused_qkv_layer_is_bit_identical_to_separate_products() {
        let device = chatrex_common::Backend::Cpu.device().expect("the CPU backend");
        let vb = WeightLoader::random(4, &device, WeightDType::BF16).pp("layer");
        let (fused, separate) = (HostClipLayer::load_with(&vb, &small_config(), true), HostClipLayer::load_with(&vb, &small_config(), false));
        assert!(matches!(separate.qkv, QkvProjection::Separate(_)));
        if !chatrex_common::amx::available() {
            assert!(matches!(fused.qkv, QkvProjection::Separate(_)), "no tiles: nothing to fuse");
            return;
        }
        assert!(matches!(fused.qkv, QkvProjection::Fused(_)));
        let (x, a, b) = run_pair(&fused, &separate);
        assert_eq!(a, b);
        assert_ne!(a, x, "the layer changed its input");
    }

    /// With f32 weights, q/k/v are stacked into one `gemm` and the attention reads them from
    /// its rows: the same layer as three products, up to the order of the sums.
    #[test]
    fn stacked_f32_qkv_layer_matches_separate_products() {
        let device = chatrex_common::Backend::Cpu.device().expect("the CPU backend");
        let vb = WeightLoader::random(4, &device, WeightDType::F32).pp("layer");
        let (fused, separate) = (HostClipLayer::load_with(&vb, &small_config(), true), HostClipLayer::load_with(&vb, &small_config(), false));
        assert!(matches!(fused.qkv, QkvProjection::Fused(_)));
        assert!(matches!(separate.qkv, QkvProjection::Separate(_)));
        let (x, a, b) = run_pair(&fused, &separate);
        let err = chatrex_common::parity::compare(&update(&a, &x), &update(&b, &x)).rel;
        assert!(err < 1e-6, "rel. error of the update {err}");
    }
}
