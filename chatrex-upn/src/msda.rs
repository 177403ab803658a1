//! Multi-scale deformable attention (Zhu et al. 2021, Deformable DETR), written with Burn ops so
//! it runs on every backend — the official UPN only has a CUDA kernel.
//!
//! Each query predicts, per head, level and point, an offset from its reference and an
//! attention weight (softmax over levels × points). Values are read by bilinear sampling with
//! zero padding and `align_corners = False` semantics (pixel coordinate = `loc · size − 0.5`),
//! i.e. `grid_sample(value, 2·loc − 1)`. Everything runs in f32 whatever the model dtype.

use burn::tensor::activation::softmax;
use burn::tensor::ops::{GridSampleOptions, GridSamplePaddingMode, InterpolateMode};
use burn::tensor::{DType, Tensor, TensorData};
use crate::padding::Padding;
use chatrex_common::layers::Linear;
use chatrex_common::weights::{WeightDType, WeightLoader};

/// Queries × images processed per chunk in the sampling step (bounds the temporary memory).
const QUERY_CHUNK: usize = 8192;

/// Spatial layout of the flattened multi-level value sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelLayout {
    /// `(h, w)` of each level.
    pub shapes: Vec<(usize, usize)>,
}

impl LevelLayout {
    /// A layout from level sizes.
    pub fn new(shapes: Vec<(usize, usize)>) -> Self {
        Self { shapes }
    }

    /// First token of each level.
    pub fn starts(&self) -> Vec<usize> {
        let mut start = 0;
        self.shapes
            .iter()
            .map(|(h, w)| {
                let s = start;
                start += h * w;
                s
            })
            .collect()
    }

    /// Total number of tokens.
    pub fn len(&self) -> usize {
        self.shapes.iter().map(|(h, w)| h * w).sum()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reference of each query: a point `[B, Lq, L, 2]` (x, y) or a box `[B, Lq, L, 4]`
/// (cx, cy, w, h), normalised to [0, 1] per level (to the image's valid extent in a padded
/// batch).
#[derive(Debug, Clone)]
pub enum Reference {
    /// Encoder: offsets are divided by the level's (W, H).
    Points(Tensor<4>),
    /// Decoder: offsets are scaled by `wh / n_points · 0.5`.
    Boxes(Tensor<4>),
}

/// The intermediate tensors of one MSDA call (for parity checks).
#[derive(Debug, Clone)]
pub struct MsdaParts {
    /// `[B, Lq, M, L, P, 2]` normalised (x, y) sampling locations.
    pub sampling_locations: Tensor<6>,
    /// `[B, Lq, M, L, P]` attention weights after the softmax.
    pub attention_weights: Tensor<5>,
    /// `[B, Lq, M·D]` sampled and weighted values before `output_proj`.
    pub core_out: Tensor<3>,
}

/// `MSDeformAttn` with keys `sampling_offsets`, `attention_weights`, `value_proj`,
/// `output_proj`.
#[derive(Debug, Clone)]
pub struct MultiScaleDeformableAttention {
    sampling_offsets: Linear,
    attention_weights: Linear,
    value_proj: Linear,
    output_proj: Linear,
    n_heads: usize,
    n_levels: usize,
    n_points: usize,
}

impl MultiScaleDeformableAttention {
    /// Loads the four linear layers (always in f32).
    pub fn load(vb: &WeightLoader, d_model: usize, n_heads: usize, n_levels: usize, n_points: usize) -> Self {
        let f32_linear = |name: &str, d_out: usize| {
            let v = vb.pp(name);
            Linear {
                weight: v.float_as("weight", [d_out, d_model], WeightDType::F32),
                bias: Some(v.float_as("bias", [d_out], WeightDType::F32)),
            }
        };
        Self {
            sampling_offsets: f32_linear("sampling_offsets", n_heads * n_levels * n_points * 2),
            attention_weights: f32_linear("attention_weights", n_heads * n_levels * n_points),
            value_proj: f32_linear("value_proj", d_model),
            output_proj: f32_linear("output_proj", d_model),
            n_heads,
            n_levels,
            n_points,
        }
    }

    /// `query [B, Lq, C]`, `value_input [B, S, C]` → `[B, Lq, C]` in the query's dtype.
    ///
    /// With `padding` (a padded batch), the values of padded tokens are zeroed and references
    /// are normalised to each image's valid extent per level (see [`crate::padding`]).
    pub fn forward(
        &self,
        query: Tensor<3>,
        reference: &Reference,
        value_input: Tensor<3>,
        layout: &LevelLayout,
        padding: Option<&Padding>,
    ) -> Tensor<3> {
        // On GPU backends, queries in chunks: the per-query offsets, weights and locations
        // (320 values per query at UPN-L's sizes) of a large image or a padded batch can
        // exceed the largest buffer a device allows (128 MiB on Mesa's lavapipe). The CPU
        // kernel reads all values at once and has no such limit.
        let [b, lq, _] = query.dims();
        let chunk = (QUERY_CHUNK / b.max(1)).max(1);
        if lq <= chunk || chatrex_common::device::is_host_cpu(&query.device()) {
            return self.forward_parts(query, reference, value_input, layout, padding).0;
        }
        let value = self.project_values(value_input, padding);
        let outputs: Vec<Tensor<3>> = (0..lq)
            .step_by(chunk)
            .map(|q0| {
                let n = chunk.min(lq - q0);
                let part = match reference {
                    Reference::Points(t) => Reference::Points(t.clone().narrow(1, q0, n)),
                    Reference::Boxes(t) => Reference::Boxes(t.clone().narrow(1, q0, n)),
                };
                self.attend(query.clone().narrow(1, q0, n), &part, value.clone(), layout, padding).0
            })
            .collect();
        Tensor::cat(outputs, 1)
    }

    /// `value_proj(value_input)` in f32 with padded tokens zeroed → `[B, S, M, D]`.
    fn project_values(&self, value_input: Tensor<3>, padding: Option<&Padding>) -> Tensor<4> {
        let [b, s, c] = value_input.dims();
        let value = self.value_proj.forward(value_input.cast(DType::F32));
        match padding {
            Some(padding) => value * padding.keep.clone(),
            None => value,
        }
        .reshape([b, s, self.n_heads, c / self.n_heads])
    }

    /// Like [`forward`](Self::forward), also returning the intermediate tensors.
    pub fn forward_parts(
        &self,
        query: Tensor<3>,
        reference: &Reference,
        value_input: Tensor<3>,
        layout: &LevelLayout,
        padding: Option<&Padding>,
    ) -> (Tensor<3>, MsdaParts) {
        let value = self.project_values(value_input, padding);
        self.attend(query, reference, value, layout, padding)
    }

    /// The sampling of [`forward_parts`](Self::forward_parts) on projected values
    /// `[B, S, M, D]`.
    fn attend(
        &self,
        query: Tensor<3>,
        reference: &Reference,
        value: Tensor<4>,
        layout: &LevelLayout,
        padding: Option<&Padding>,
    ) -> (Tensor<3>, MsdaParts) {
        let out_dtype = query.dtype();
        let query = query.cast(DType::F32);
        let [b, lq, _] = query.dims();
        let (m, l, p) = (self.n_heads, self.n_levels, self.n_points);
        let device = query.device();

        let offsets = self.sampling_offsets.forward(query.clone()).reshape([b, lq, m, l, p, 2]);
        let weights = softmax(
            self.attention_weights.forward(query).reshape([b, lq, m, l * p]),
            3,
        )
        .reshape([b, lq, m, l, p]);

        let locations = match reference {
            Reference::Points(points) => {
                // offset / (W_l, H_l), per level (per image: its valid extent when padded).
                let extents = padding.map_or_else(|| vec![layout.shapes.clone()], |p| p.valid.clone());
                let norm: Vec<f32> = extents
                    .iter()
                    .flatten()
                    .flat_map(|&(h, w)| [w as f32, h as f32])
                    .collect();
                let norm =
                    Tensor::<6>::from_data(TensorData::new(norm, [extents.len(), 1, 1, l, 1, 2]), &device);
                let refs = points.clone().cast(DType::F32).reshape([b, lq, 1, l, 1, 2]);
                refs + offsets / norm
            }
            Reference::Boxes(boxes) => {
                let boxes = boxes.clone().cast(DType::F32);
                let xy = boxes.clone().narrow(3, 0, 2).reshape([b, lq, 1, l, 1, 2]);
                let wh = boxes.narrow(3, 2, 2).reshape([b, lq, 1, l, 1, 2]);
                xy + offsets / (p as f64) * wh * 0.5
            }
        };
        let core_out = msda_core_padded(value, layout, padding, locations.clone(), weights.clone());
        let out = self.output_proj.forward(core_out.clone()).cast(out_dtype);
        (
            out,
            MsdaParts {
                sampling_locations: locations,
                attention_weights: weights,
                core_out,
            },
        )
    }
}

/// The sampling core: `value [B, S, M, D]`, `locations [B, Lq, M, L, P, 2]` (normalised x, y),
/// `weights [B, Lq, M, L, P]` → `[B, Lq, M·D]` (channel = head·D + d).
///
/// Per level, the value map of every (batch, head) is bilinearly sampled at `2·loc − 1` with
/// zero padding and `align_corners = False`, weighted, and summed over levels and points.
pub fn msda_core(
    value: Tensor<4>,
    layout: &LevelLayout,
    locations: Tensor<6>,
    weights: Tensor<5>,
) -> Tensor<3> {
    msda_core_padded(value, layout, None, locations, weights)
}

/// [`msda_core`] for a padded batch: `locations` are normalised to each image's valid extent
/// per level (pixel = `loc · valid_size − 0.5`, the arithmetic of a single-image run); the
/// values of padded tokens must already be zero.
pub fn msda_core_padded(
    value: Tensor<4>,
    layout: &LevelLayout,
    padding: Option<&Padding>,
    locations: Tensor<6>,
    weights: Tensor<5>,
) -> Tensor<3> {
    #[cfg(feature = "flex")]
    if value.device() == burn::tensor::Device::flex()
        && let Some(out) = crate::msda_cpu::msda_core_cpu(
            &value,
            layout,
            padding.map(|p| p.valid.as_slice()),
            &locations,
            &weights,
        )
    {
        return out;
    }
    let locations = match padding {
        Some(padding) => to_padded_normalisation(locations, padding),
        None => locations,
    };
    msda_core_tensor_ops(value, layout, locations, weights)
}

/// Locations normalised to each image's valid extent → normalised to the padded maps
/// (`loc · valid / padded`), as `grid_sample` on the padded maps wants them.
fn to_padded_normalisation(locations: Tensor<6>, padding: &Padding) -> Tensor<6> {
    let [b, _, _, l, _, _] = locations.dims();
    locations * padding.valid_ratios.clone().reshape([b, 1, 1, l, 1, 2])
}

/// [`msda_core`] with Burn tensor ops only (`grid_sample_2d` per level, queries in chunks):
/// the path of every backend but the CPU one.
pub fn msda_core_tensor_ops(
    value: Tensor<4>,
    layout: &LevelLayout,
    locations: Tensor<6>,
    weights: Tensor<5>,
) -> Tensor<3> {
    let [b, _, m, d] = value.dims();
    let [_, lq, _, l, p, _] = locations.dims();
    let options = GridSampleOptions::new(InterpolateMode::Bilinear)
        .with_padding_mode(GridSamplePaddingMode::Zeros)
        .with_align_corners(false);
    // Per level: value map [B·M, D, h, w].
    let maps: Vec<Tensor<4>> = layout
        .shapes
        .iter()
        .zip(layout.starts())
        .map(|(&(h, w), start)| {
            value
                .clone()
                .narrow(1, start, h * w)
                .permute([0, 2, 3, 1])
                .reshape([b * m, d, h, w])
        })
        .collect();
    let grids = locations * 2.0 - 1.0;
    let chunk = (QUERY_CHUNK / b.max(1)).max(1);
    let mut chunks = Vec::with_capacity(lq.div_ceil(chunk));
    let mut q0 = 0;
    while q0 < lq {
        let n = chunk.min(lq - q0);
        let grid_chunk = grids.clone().narrow(1, q0, n);
        let weight_chunk = weights.clone().narrow(1, q0, n);
        let mut acc: Option<Tensor<3>> = None;
        for (level, map) in maps.iter().enumerate() {
            // [B, n, M, P, 2] → [B·M, n, P, 2]
            let grid = grid_chunk
                .clone()
                .narrow(3, level, 1)
                .reshape([b, n, m, p, 2])
                .permute([0, 2, 1, 3, 4])
                .reshape([b * m, n, p, 2]);
            let w = weight_chunk
                .clone()
                .narrow(3, level, 1)
                .reshape([b, n, m, p])
                .permute([0, 2, 1, 3])
                .reshape([b * m, 1, n, p]);
            let sampled = map.clone().grid_sample_2d(grid, options.clone()); // [B·M, D, n, P]
            let contribution = (sampled * w).sum_dim(3).reshape([b * m, d, n]);
            acc = Some(match acc {
                Some(a) => a + contribution,
                None => contribution,
            });
        }
        if let Some(acc) = acc {
            chunks.push(acc);
        }
        q0 += n;
    }
    let _ = l;
    Tensor::cat(chunks, 2)
        .reshape([b, m, d, lq])
        .permute([0, 3, 1, 2])
        .reshape([b, lq, m * d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// A padded batch of two images: the CPU sampler (locations read with each image's valid
    /// extent) and the `grid_sample` path of the other backends (locations rescaled to the
    /// padded maps) agree, and image 0 — which fills the layout — gives what it gives alone.
    #[test]
    fn padded_sampling_agrees_between_cpu_kernel_and_grid_sample() {
        let device = Device::flex();
        let layout = LevelLayout::new(vec![(6, 9), (3, 5)]);
        let valid = vec![vec![(6, 9), (3, 5)], vec![(4, 7), (2, 4)]];
        let padding = Padding::new(valid, &layout, &device).unwrap();
        let (b, lq, m, d, l, p) = (2, 11, 2, 4, 2, 3);
        let value = Tensor::<4>::random([b, layout.len(), m, d], Distribution::Normal(0.0, 1.0), &device)
            * padding.keep.clone().reshape([b, layout.len(), 1, 1]);
        // Locations in [-0.2, 1.2]: some fall outside the image, into the padding or beyond.
        let locations = Tensor::<6>::random([b, lq, m, l, p, 2], Distribution::Uniform(-0.2, 1.2), &device);
        let weights = Tensor::<5>::random([b, lq, m, l, p], Distribution::Uniform(0.0, 1.0), &device);

        let cpu = msda_core_padded(value.clone(), &layout, Some(&padding), locations.clone(), weights.clone());
        let grid = msda_core_tensor_ops(
            value.clone(),
            &layout,
            to_padded_normalisation(locations.clone(), &padding),
            weights.clone(),
        );
        let diff: f32 = (cpu.clone() - grid).abs().max().into_scalar();
        assert!(diff < 1e-5, "CPU kernel vs grid_sample on a padded batch: {diff}");

        let alone = msda_core(
            value.narrow(0, 0, 1),
            &layout,
            locations.narrow(0, 0, 1),
            weights.narrow(0, 0, 1),
        );
        let diff: f32 = (cpu.narrow(0, 0, 1) - alone).abs().max().into_scalar();
        assert_eq!(diff, 0.0);
    }
}
