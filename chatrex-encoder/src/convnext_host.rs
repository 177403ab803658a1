//! ConvNeXt stages on the CPU backend: channels-last f32 maps in host memory, the pointwise
//! layers and the 2×2 downsampling convolutions as `gemm` products (on AMX tiles, inputs
//! rounded to bf16, when the weights are bf16), and one fused pass for
//! each of depthwise conv, layer norm, bias + GELU and bias + layer scale + residual (the
//! tensor-op path spends about half its time in those element-wise passes).
//!
//! Same parameters and the same arithmetic as [`crate::convnext`]'s tensor path; only the
//! order of floating-point sums differs.

use chatrex_common::host_ops::{Activation, bias_activation, depthwise_conv};
use chatrex_common::layers::{HostLayerNorm, HostLinear, residual_mlp};
use chatrex_common::weights::WeightLoader;

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
        let c = x.channels;
        let shape = (x.height, x.width, c);
        let mut t = depthwise_conv(&x.data, shape, &self.dw_weight, &self.dw_bias, DW_KERNEL);
        self.norm.forward_in_place(&mut t);
        residual_mlp(&mut x.data, &t, &self.fc1, Activation::Gelu, &self.fc2, Some(&self.gamma));
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
