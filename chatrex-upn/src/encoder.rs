//! Deformable transformer encoder: post-norm layers of multi-scale deformable self-attention
//! (queries = memory + position embedding, values = memory) and a ReLU feed-forward network.

use crate::msda::{LevelLayout, MultiScaleDeformableAttention, Reference};
use crate::padding::Padding;
use burn::tensor::{Device, Tensor, TensorData};
use chatrex_common::layers::{Activation, FeedForward, LayerNorm, NormPlacement};
use chatrex_common::weights::WeightLoader;

const LN_EPS: f64 = 1e-5;

/// Rows (tokens × images) per block of the encoder's feed-forward network: bounds its hidden
/// activation (`[rows, d_ffn]`, 134 MB in f32 at d_ffn 2048 — also under GPU backends' buffer
/// limits).
const FFN_ROWS_PER_BLOCK: usize = 16384;

/// One encoder layer (`transformer.encoder.layers.{i}`).
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    self_attn: MultiScaleDeformableAttention,
    norm1: LayerNorm,
    /// `norm2(x + linear2(ReLU(linear1(x))))`.
    ffn: FeedForward,
}

/// Sizes shared by encoder and decoder layers.
#[derive(Debug, Clone, Copy)]
pub struct LayerSizes {
    /// Model width.
    pub d_model: usize,
    /// Feed-forward width.
    pub d_ffn: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Feature levels.
    pub n_levels: usize,
    /// Sampling points.
    pub n_points: usize,
}

impl EncoderLayer {
    /// Loads one layer.
    pub fn load(vb: &WeightLoader, s: LayerSizes) -> Self {
        Self {
            self_attn: MultiScaleDeformableAttention::load(
                &vb.pp("self_attn"),
                s.d_model,
                s.n_heads,
                s.n_levels,
                s.n_points,
            ),
            norm1: LayerNorm::load(&vb.pp("norm1"), s.d_model, LN_EPS),
            ffn: FeedForward::load(
                &vb.pp("norm2"),
                &vb.pp("linear1"),
                &vb.pp("linear2"),
                s.d_model,
                s.d_ffn,
                LN_EPS,
                Activation::Relu,
                NormPlacement::Post,
            ),
        }
    }

    /// `src [B, S, C]`, `pos [1 or B, S, C]` → `[B, S, C]`; `padding` describes a padded batch.
    pub fn forward(
        &self,
        src: Tensor<3>,
        pos: &Tensor<3>,
        reference: &Reference,
        layout: &LevelLayout,
        padding: Option<&Padding>,
    ) -> Tensor<3> {
        let attended = self
            .self_attn
            .forward(src.clone() + pos.clone(), reference, src.clone(), layout, padding);
        let src = self.norm1.forward(src + attended);
        // The feed-forward network and norm are per token: run them over blocks of tokens so
        // that the `[S, d_ffn]` hidden activation (≈ 730 MB at 800×1333 in f32) is never whole
        // (the host path blocks tokens itself).
        let [b, seq, c] = src.dims();
        let tokens_per_block = (FFN_ROWS_PER_BLOCK / b.max(1)).max(1);
        if seq <= tokens_per_block || self.ffn.is_host() {
            return self.ffn.forward(src);
        }
        let blocks: Vec<Tensor<3>> = (0..seq)
            .step_by(tokens_per_block)
            .map(|start| {
                let end = (start + tokens_per_block).min(seq);
                self.ffn.forward(src.clone().slice([0..b, start..end, 0..c]))
            })
            .collect();
        Tensor::cat(blocks, 1)
    }
}

/// Appends the reference points of one image whose level `l` fills the top-left
/// `image_sizes[l]` of the layout: every token's centre `((x+0.5)/w_image, (y+0.5)/h_image)`,
/// repeated for all `L` levels.
fn push_image_reference_points(layout: &LevelLayout, image_sizes: &[(usize, usize)], points: &mut Vec<f32>) {
    let l = layout.shapes.len();
    for (&(h, w), &(vh, vw)) in layout.shapes.iter().zip(image_sizes) {
        for y in 0..h {
            for x in 0..w {
                let (rx, ry) = ((x as f32 + 0.5) / vw as f32, (y as f32 + 0.5) / vh as f32);
                for _ in 0..l {
                    points.push(rx);
                    points.push(ry);
                }
            }
        }
    }
}

/// Reference points of the encoder for unpadded levels: every token's centre
/// `((x+0.5)/w, (y+0.5)/h)`, the same for all `L` levels → `[1, S, L, 2]`.
pub fn encoder_reference_points(layout: &LevelLayout, device: &Device) -> Tensor<4> {
    let l = layout.shapes.len();
    let mut points = Vec::with_capacity(layout.len() * l * 2);
    push_image_reference_points(layout, &layout.shapes, &mut points);
    Tensor::from_data(TensorData::new(points, [1, layout.len(), l, 2]), device)
}

/// Reference points of the encoder in a padded batch → `[B, S, L, 2]`: each token's centre
/// normalised by its image's valid extent on its own level, `((x+0.5)/w_valid, (y+0.5)/h_valid)`,
/// the same for all `L` levels — the single-image reference of every image token (offsets are
/// then normalised by the valid extents too, see [`crate::padding`]).
pub fn padded_encoder_reference_points(layout: &LevelLayout, padding: &Padding, device: &Device) -> Tensor<4> {
    let l = layout.shapes.len();
    let b = padding.batch();
    let mut points = Vec::with_capacity(b * layout.len() * l * 2);
    for valid in &padding.valid {
        push_image_reference_points(layout, valid, &mut points);
    }
    Tensor::from_data(TensorData::new(points, [b, layout.len(), l, 2]), device)
}

/// The encoder (`transformer.encoder`).
#[derive(Debug, Clone)]
pub struct Encoder {
    /// Its layers.
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// Loads `num_layers` layers.
    pub fn load(vb: &WeightLoader, num_layers: usize, sizes: LayerSizes) -> Self {
        Self {
            layers: (0..num_layers)
                .map(|i| EncoderLayer::load(&vb.pp(format!("layers.{i}")), sizes))
                .collect(),
        }
    }

    /// `src [B, S, C]` → memory `[B, S, C]`; `padding` describes a padded batch (`None`: every
    /// image fills the layout); `each_layer` sees every layer's output.
    pub fn forward(
        &self,
        src: Tensor<3>,
        pos: &Tensor<3>,
        layout: &LevelLayout,
        padding: Option<&Padding>,
        mut each_layer: impl FnMut(usize, &Tensor<3>),
    ) -> Tensor<3> {
        let [b, _, _] = src.dims();
        let reference = match padding {
            Some(padding) => padded_encoder_reference_points(layout, padding, &src.device()),
            None => {
                let reference = encoder_reference_points(layout, &src.device());
                let [_, s, l, two] = reference.dims();
                if b > 1 { reference.expand([b, s, l, two]) } else { reference }
            }
        };
        let reference = Reference::Points(reference);
        let mut x = src;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, pos, &reference, layout, padding);
            each_layer(i, &x);
        }
        x
    }
}
