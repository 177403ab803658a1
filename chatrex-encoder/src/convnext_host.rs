//! ConvNeXt stages on the CPU backend: channels-last f32 maps in host memory, the pointwise
//! layers and the 2×2 downsampling convolutions as `gemm` products (on AMX tiles, inputs
//! rounded to bf16, when the weights are bf16), and one fused pass for
//! each of depthwise conv, layer norm, bias + GELU and bias + layer scale + residual (the
//! tensor-op path spends about half its time in those element-wise passes).
//!
//! Same parameters and the same arithmetic as [`crate::convnext`]'s tensor path; only the
//! order of floating-point sums differs.

use chatrex_common::amx::{RoundedRows, round_to_bf16};
use chatrex_common::host_ops::{Activation, bias_activation, depthwise_conv, depthwise_conv_row, layer_norm_row};
use chatrex_common::layers::{HostLayerNorm, HostLinear, residual_mlp, residual_mlp_rounded};
use chatrex_common::weights::WeightLoader;
use rayon::prelude::*;

/// Depthwise kernel size of a ConvNeXt block.
const DW_KERNEL: usize = 7;

/// A channels-last map `[H, W, C]` in host memory.
#[derive(Debug, Clone)]
pub struct ChannelsLast {
    /// `H·W·C` values, channel fastest.
    pub data: Vec<f32>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels.
    pub channels: usize,
}

#[derive(Debug, Clone)]
struct HostBlock {
    /// `[7·7, C]`, tap-major (the checkpoint's `[C, 1, 7, 7]` transposed at load).
    dw_weight: Vec<f32>,
    dw_bias: Vec<f32>,
    norm: HostLayerNorm,
    fc1: HostLinear,
    fc2: HostLinear,
    gamma: Vec<f32>,
}

impl HostBlock {
    fn load(vb: &WeightLoader, c: usize, eps: f64) -> Self {
        let taps = DW_KERNEL * DW_KERNEL;
        let dw = vb.host_f32("conv_dw.weight", &[c, 1, DW_KERNEL, DW_KERNEL]);
        let mut dw_weight = vec![0f32; taps * c];
        for ch in 0..c {
            for tap in 0..taps {
                dw_weight[tap * c + ch] = dw[ch * taps + tap];
            }
        }
        // As the tensor path: `gamma`, or RexSeek's renamed `ramma`.
        let gamma_name = if !vb.contains("gamma") && vb.contains("ramma") { "ramma" } else { "gamma" };
        Self {
            dw_weight,
            dw_bias: vb.host_f32("conv_dw.bias", &[c]),
            norm: HostLayerNorm::load(&vb.pp("norm"), c, eps),
            fc1: HostLinear::load(&vb.pp("mlp.fc1"), c, 4 * c, true),
            fc2: HostLinear::load(&vb.pp("mlp.fc2"), 4 * c, c, true),
            gamma: vb.host_f32(gamma_name, &[c]),
        }
    }

    /// `x ← x + γ · fc2(GELU(fc1(norm(dwconv(x)))))` (the MLP over token blocks in parallel,
    /// see `residual_mlp`).
    fn forward(&self, x: &mut ChannelsLast) {
        if self.fc1.tile_weight().is_some() && self.fc2.tile_weight().is_some() {
            // bf16 on AMX tiles: each image row is convolved and normalised in cache, straight
            // into the bf16 rows fc1 reads (the f32 map between them is never written).
            let rows = self.normed_rounded_rows(x);
            if residual_mlp_rounded(&mut x.data, &rows, &self.fc1, Activation::Gelu, &self.fc2, Some(&self.gamma)) {
                return;
            }
        }
        self.forward_in_passes(x);
    }

    /// [`forward`](Self::forward) as separate passes over the whole map: convolution, norm,
    /// then the MLP (f32 and f16 weights; the reference for the fused bf16 path).
    fn forward_in_passes(&self, x: &mut ChannelsLast) {
        let shape = (x.height, x.width, x.channels);
        let mut t = depthwise_conv(&x.data, shape, &self.dw_weight, &self.dw_bias, DW_KERNEL);
        self.norm.forward_in_place(&mut t);
        residual_mlp(&mut x.data, &t, &self.fc1, Activation::Gelu, &self.fc2, Some(&self.gamma));
    }

    /// `norm(dwconv(x))` rounded to bf16 `[H·W, C]`, one image row per task: the same values
    /// as the f32 path rounds before its first product.
    fn normed_rounded_rows(&self, x: &ChannelsLast) -> RoundedRows {
        let (h, w, c) = (x.height, x.width, x.channels);
        let norm = &self.norm;
        let mut rows = RoundedRows::recycled(h * w, c);
        rows.par_groups_mut(w).for_each_init(
            || (vec![0f32; w * c], vec![0f32; c]),
            |(conv, normed), (first, mut group)| {
                depthwise_conv_row(&x.data, (h, w, c), &self.dw_weight, &self.dw_bias, DW_KERNEL, first / w.max(1), conv);
                for (px, pixel) in conv.chunks_exact(c).enumerate().take(group.rows()) {
                    layer_norm_row(pixel, &norm.weight, &norm.bias, norm.eps, normed);
                    round_to_bf16(normed, group.row_mut(px));
                }
            },
        );
        rows
    }
}

/// LayerNorm + 2×2 stride-2 convolution, the convolution as a product over 2×2 patches.
#[derive(Debug, Clone)]
struct HostDownsample {
    norm: HostLayerNorm,
    /// `[C_out, 2·2·C_in]`, input order (ky, kx, c).
    conv: HostLinear,
}

impl HostDownsample {
    fn load(vb: &WeightLoader, c_in: usize, c_out: usize, eps: f64) -> Self {
        let w = vb.host_f32("1.weight", &[c_out, c_in, 2, 2]);
        let mut reordered = vec![0f32; c_out * 4 * c_in];
        for o in 0..c_out {
            for ch in 0..c_in {
                for tap in 0..4 {
                    reordered[o * 4 * c_in + tap * c_in + ch] = w[(o * c_in + ch) * 4 + tap];
                }
            }
        }
        Self {
            norm: HostLayerNorm::load(&vb.pp("0"), c_in, eps),
            conv: HostLinear::from_out_in(&reordered, 4 * c_in, c_out, vb.host_f32("1.bias", &[c_out]), vb.dtype()),
        }
    }

    fn forward(&self, x: &ChannelsLast) -> ChannelsLast {
        let c = x.channels;
        let mut normed = vec![0f32; x.data.len()];
        self.norm.forward(&x.data, &mut normed);
        let (oh, ow) = (x.height / 2, x.width / 2);
        let mut patches = vec![0f32; oh * ow * 4 * c];
        for oy in 0..oh {
            for ox in 0..ow {
                let dst = &mut patches[(oy * ow + ox) * 4 * c..(oy * ow + ox + 1) * 4 * c];
                for (tap, (ky, kx)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                    let src = ((2 * oy + ky) * x.width + 2 * ox + kx) * c;
                    dst[tap * c..(tap + 1) * c].copy_from_slice(&normed[src..src + c]);
                }
            }
        }
        let mut data = self.conv.matmul(&patches, oh * ow);
        bias_activation(&mut data, &self.conv.bias, Activation::Identity);
        ChannelsLast {
            data,
            height: oh,
            width: ow,
            channels: self.conv.d_out(),
        }
    }
}

/// The stem (`vision_stem.{0,1}`): a 4×4 stride-4 convolution as a product over 4×4 patches
/// (f32), then LayerNorm — `[3, H, W]` pixels → `[H/4, W/4, C]` channels-last.
#[derive(Debug, Clone)]
pub struct HostStem {
    /// `[C, 4·4·3]`, input order (ky, kx, channel).
    conv: HostLinear,
    norm: HostLayerNorm,
}

/// Stem kernel size and stride.
const STEM_PATCH: usize = 4;

impl HostStem {
    /// Loads `vision_stem.0` (the convolution `[C, 3, 4, 4]` and its bias) and
    /// `vision_stem.1` (the LayerNorm) under `vb` for `c` output channels.
    pub fn load(vb: &WeightLoader, c: usize, eps: f64) -> Self {
        let taps = STEM_PATCH * STEM_PATCH;
        let w = vb.host_f32("vision_stem.0.weight", &[c, 3, STEM_PATCH, STEM_PATCH]);
        let mut reordered = vec![0f32; c * taps * 3];
        for o in 0..c {
            for ch in 0..3 {
                for tap in 0..taps {
                    reordered[(o * taps + tap) * 3 + ch] = w[(o * 3 + ch) * taps + tap];
                }
            }
        }
        Self {
            conv: HostLinear::from_out_in_f32(&reordered, taps * 3, c, vb.host_f32("vision_stem.0.bias", &[c])),
            norm: HostLayerNorm::load(&vb.pp("vision_stem.1"), c, eps),
        }
    }

    /// One image's pixels `[3, H, W]` (channel planes) → `[H/4, W/4, C]` (the last rows and
    /// columns that do not fill a patch are dropped, as the strided convolution does).
    pub fn forward(&self, pixels: &[f32], height: usize, width: usize) -> ChannelsLast {
        let (oh, ow) = (height / STEM_PATCH, width / STEM_PATCH);
        let patch = STEM_PATCH * STEM_PATCH * 3;
        let mut patches = vec![0f32; oh * ow * patch];
        if pixels.len() >= 3 * height * width {
            patches.par_chunks_mut(ow * patch).enumerate().for_each(|(oy, row)| {
                for (ox, dst) in row.chunks_exact_mut(patch).enumerate() {
                    for ky in 0..STEM_PATCH {
                        for kx in 0..STEM_PATCH {
                            let (y, x) = (oy * STEM_PATCH + ky, ox * STEM_PATCH + kx);
                            for ch in 0..3 {
                                dst[(ky * STEM_PATCH + kx) * 3 + ch] = pixels[(ch * height + y) * width + x];
                            }
                        }
                    }
                }
            });
        }
        let mut data = self.conv.matmul(&patches, oh * ow);
        bias_activation(&mut data, &self.conv.bias, Activation::Identity);
        self.norm.forward_in_place(&mut data);
        ChannelsLast { data, height: oh, width: ow, channels: self.conv.d_out() }
    }
}

/// One ConvNeXt stage (`vision_stages.{s}`) on host memory.
#[derive(Debug, Clone)]
pub struct HostStage {
    downsample: Option<HostDownsample>,
    blocks: Vec<HostBlock>,
}

impl HostStage {
    /// Loads stage weights under `vb` (`downsample.{0,1}` when `c_in` is given, `blocks.{i}`).
    pub fn load(vb: &WeightLoader, c_in: Option<usize>, c: usize, depth: usize, eps: f64) -> Self {
        Self {
            downsample: c_in.map(|c_in| HostDownsample::load(&vb.pp("downsample"), c_in, c, eps)),
            blocks: (0..depth)
                .map(|b| HostBlock::load(&vb.pp(format!("blocks.{b}")), c, eps))
                .collect(),
        }
    }

    /// `[H, W, C_in]` → `[H', W', C]`.
    pub fn forward(&self, x: ChannelsLast) -> ChannelsLast {
        let mut x = match &self.downsample {
            Some(downsample) => downsample.forward(&x),
            None => x,
        };
        for block in &self.blocks {
            block.forward(&mut x);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatrex_common::weights::WeightDType;

    /// With bf16 weights on AMX tiles, a block convolves and normalises each image row straight
    /// into the rounded rows of its first product: exactly the numbers of the separate passes.
    #[test]
    fn fused_bf16_block_equals_its_separate_passes() {
        if !chatrex_common::amx::available() {
            return;
        }
        let device = chatrex_common::Backend::Cpu.device().expect("the CPU backend");
        let vb = WeightLoader::random(3, &device, WeightDType::BF16);
        let c = 64;
        let block = HostBlock::load(&vb, c, 1e-6);
        assert!(block.fc1.tile_weight().is_some(), "bf16 weights of whole tiles are held in tile order");
        let (h, w) = (9, 11);
        let data: Vec<f32> = (0..h * w * c).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 2.0).collect();
        let map = ChannelsLast { data, height: h, width: w, channels: c };
        let (mut fused, mut passes) = (map.clone(), map.clone());
        block.forward(&mut fused);
        block.forward_in_passes(&mut passes);
        assert_eq!(fused.data, passes.data);
        assert_ne!(fused.data, map.data, "the block changed the map");
    }
}
