//! `nn.Conv2d` with PyTorch weight layout.

use crate::weights::WeightLoader;
use burn::tensor::Tensor;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

/// 2-D convolution, weight `[out, in / groups, kh, kw]`, symmetric zero padding.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `[out, in / groups, kh, kw]`.
    pub weight: Tensor<4>,
    /// `[out]`.
    pub bias: Option<Tensor<1>>,
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Zero padding (h, w) on both sides.
    pub padding: [usize; 2],
    /// Channel groups (`in` for depthwise).
    pub groups: usize,
}

/// Shape and options of a [`Conv2d`].
#[derive(Debug, Clone, Copy)]
pub struct Conv2dSpec {
    /// Input channels.
    pub d_in: usize,
    /// Output channels.
    pub d_out: usize,
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Padding (both axes).
    pub padding: usize,
    /// Groups.
    pub groups: usize,
    /// Whether there is a bias.
    pub bias: bool,
}

impl Conv2d {
    /// Loads a convolution described by `spec`.
    pub fn load(vb: &WeightLoader, spec: Conv2dSpec) -> Self {
        Self {
            weight: vb.float(
                "weight",
                [spec.d_out, spec.d_in / spec.groups, spec.kernel, spec.kernel],
            ),
            bias: spec.bias.then(|| vb.float("bias", [spec.d_out])),
            stride: [spec.stride; 2],
            padding: [spec.padding; 2],
            groups: spec.groups,
        }
    }

    /// `[B, in, H, W]` → `[B, out, H', W']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.weight.clone(),
            self.bias.clone(),
            ConvOptions::new(self.stride, self.padding, [1, 1], self.groups),
        )
    }
}


