//! The high-resolution tower: a timm ConvNeXt trunk (stem + 4 stages) returning every
//! stage's output map. On the CPU backend the stages run on host memory
//! ([`crate::convnext_host`]); elsewhere as Burn tensor ops.

use crate::config::ConvNextConfig;
use crate::convnext_host::{HostStage, HostStem};
use crate::kernels::Kernels;
use crate::EncoderError;
use chatrex_common::device::read_f32;
use burn::tensor::activation::gelu;
use burn::tensor::{Tensor, TensorData};
use chatrex_common::layers::{Conv2d, Conv2dSpec, LayerNorm, Linear};
use chatrex_common::weights::WeightLoader;

/// timm's LayerNorm epsilon.
const LN_EPS: f64 = 1e-6;

/// LayerNorm over channels of an NCHW map (timm `LayerNorm2d`).
fn layer_norm_2d(norm: &LayerNorm, x: Tensor<4>) -> Tensor<4> {
    norm.forward(x.permute([0, 2, 3, 1])).permute([0, 3, 1, 2])
}

#[derive(Debug, Clone)]
struct Block {
    conv_dw: Conv2d,
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    /// Layer scale `[C]`.
    gamma: Tensor<1>,
}

impl Block {
    fn load(vb: &WeightLoader, c: usize) -> Self {
        Self {
            conv_dw: Conv2d::load(
                &vb.pp("conv_dw"),
                Conv2dSpec {
                    d_in: c,
                    d_out: c,
                    kernel: 7,
                    stride: 1,
                    padding: 3,
                    groups: c,
                    bias: true,
                },
            ),
            norm: LayerNorm::load(&vb.pp("norm"), c, LN_EPS),
            fc1: Linear::load(&vb.pp("mlp.fc1"), c, 4 * c, true),
            fc2: Linear::load(&vb.pp("mlp.fc2"), 4 * c, c, true),
            // RexSeek's vendored timm code renamed `gamma` to `ramma`.
            gamma: vb.float_any(&["gamma", "ramma"], [c]),
        }
    }

    /// `[B, C, H, W]` → `[B, C, H, W]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv_dw.forward(x.clone()).permute([0, 2, 3, 1]);
        let y = self.fc2.forward(gelu(self.fc1.forward(self.norm.forward(y))));
        let y = y * self.gamma.clone().unsqueeze::<4>();
        x + y.permute([0, 3, 1, 2])
    }
}

#[derive(Debug, Clone)]
struct Stage {
    downsample: Option<(LayerNorm, Conv2d)>,
    blocks: Vec<Block>,
}

/// The stem and the stages, as tensor ops or on host memory.
#[derive(Debug, Clone)]
enum Trunk {
    /// The stem's convolution and norm boxed (a Conv2d holds its tensors inline).
    Tensor { stem: Box<(Conv2d, LayerNorm)>, stages: Vec<Stage> },
    Host { stem: HostStem, stages: Vec<HostStage> },
}

/// The ConvNeXt trunk (keys `vision_stem.{0,1}`, `vision_stages.{s}`).
#[derive(Debug, Clone)]
pub struct ConvNext {
    trunk: Trunk,
}

impl ConvNext {
    /// Loads the trunk under `vb`, with the fastest kernels for its device.
    pub fn load(vb: &WeightLoader, c: &ConvNextConfig) -> Self {
        Self::load_with(vb, c, Kernels::Auto)
    }

    /// Loads the trunk under `vb` with the given kernels.
    pub fn load_with(vb: &WeightLoader, c: &ConvNextConfig, kernels: Kernels) -> Self {
        let d0 = c.dims.first().copied().unwrap_or(0);
        let trunk = if kernels.host(vb.device()) {
            Trunk::Host {
                stem: HostStem::load(vb, d0, LN_EPS),
                stages: c
                    .dims
                    .iter()
                    .zip(&c.depths)
                    .enumerate()
                    .map(|(s, (&dim, &depth))| {
                        let c_in = (s > 0).then(|| c.dims[s - 1]);
                        HostStage::load(&vb.pp(format!("vision_stages.{s}")), c_in, dim, depth, LN_EPS)
                    })
                    .collect(),
            }
        } else {
            Trunk::Tensor {
                stem: Box::new((Conv2d::load(
                    &vb.pp("vision_stem.0"),
                    Conv2dSpec {
                        d_in: 3,
                        d_out: d0,
                        kernel: 4,
                        stride: 4,
                        padding: 0,
                        groups: 1,
                        bias: true,
                    },
                ),
                LayerNorm::load(&vb.pp("vision_stem.1"), d0, LN_EPS))),
                stages: Self::tensor_stages(vb, c),
            }
        };
        Self { trunk }
    }

    fn tensor_stages(vb: &WeightLoader, c: &ConvNextConfig) -> Vec<Stage> {
        c
            .dims
            .iter()
            .zip(&c.depths)
            .enumerate()
            .map(|(s, (&dim, &depth))| {
                let vs = vb.pp(format!("vision_stages.{s}"));
                let downsample = (s > 0).then(|| {
                    let prev = c.dims[s - 1];
                    (
                        LayerNorm::load(&vs.pp("downsample.0"), prev, LN_EPS),
                        Conv2d::load(
                            &vs.pp("downsample.1"),
                            Conv2dSpec {
                                d_in: prev,
                                d_out: dim,
                                kernel: 2,
                                stride: 2,
                                padding: 0,
                                groups: 1,
                                bias: true,
                            },
                        ),
                    )
                });
                let blocks = (0..depth).map(|b| Block::load(&vs.pp(format!("blocks.{b}")), dim)).collect();
                Stage { downsample, blocks }
            })
            .collect()
    }

    /// `[B, 3, H, W]` → the four stage maps `[B, C_s, H/2^(s+2), W/2^(s+2)]` (in the input's
    /// dtype). Errors only if a backend fails to read data back.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<Vec<Tensor<4>>, EncoderError> {
        match &self.trunk {
            Trunk::Tensor { stem, stages } => {
                let (conv, norm) = stem.as_ref();
                Ok(Self::forward_tensor(stages, layer_norm_2d(norm, conv.forward(pixels))))
            }
            Trunk::Host { stem, stages } => Self::forward_host(stem, stages, pixels),
        }
    }

    fn forward_tensor(stages: &[Stage], mut x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut outs = Vec::with_capacity(stages.len());
        for stage in stages {
            if let Some((norm, conv)) = &stage.downsample {
                x = conv.forward(layer_norm_2d(norm, x));
            }
            for block in &stage.blocks {
                x = block.forward(x);
            }
            outs.push(x.clone());
        }
        outs
    }

    /// Each image of the batch through the host stem and stages, channels-last (the stem in
    /// f32 on the pixels as given).
    fn forward_host(stem: &HostStem, stages: &[HostStage], pixels: Tensor<4>) -> Result<Vec<Tensor<4>>, EncoderError> {
        let [b, channels, h, w] = pixels.dims();
        if channels != 3 {
            return Err(EncoderError::Config(format!("ConvNeXt's stem takes 3-channel pixels, got {channels} channels")));
        }
        let (device, dtype) = (pixels.device(), pixels.dtype());
        let values = read_f32(pixels).map_err(EncoderError::Backend)?;
        let mut per_stage: Vec<Vec<Tensor<4>>> = vec![Vec::with_capacity(b); stages.len()];
        for image in values.chunks_exact((3 * h * w).max(1)).take(b) {
            let mut x = stem.forward(image, h, w);
            for (s, stage) in stages.iter().enumerate() {
                x = stage.forward(x);
                let map = TensorData::new(x.data.clone(), [1, x.height, x.width, x.channels]);
                per_stage[s].push(Tensor::<4>::from_data(map, &device).permute([0, 3, 1, 2]).cast(dtype));
            }
        }
        Ok(per_stage.into_iter().map(|maps| Tensor::cat(maps, 0)).collect())
    }
}
