//! The RoI object tokenizer (`MultiLevelROIVisualPrompt` + `mm_object_projector`): one LLM
//! embedding per box from all four ConvNeXt stages.
//!
//! Officially the four stage maps are upsampled to the stride-4 grid (192², bilinear,
//! `align_corners=False`), concatenated (2880 channels, ≈425 MB in f32), RoI-aligned 7×7 and
//! averaged over the bins. Both the upsampling and the bin average are linear and separable
//! in y and x, so the pooled vector of a box is `vyᵀ·F_l·vx` on each level's *own* map, with
//! `v = Uᵀ·w` (U the 1-D upsampling matrix, w the RoI sample weights of
//! [`roi_mean_weights`]). The 2880×192×192 tensor is never built: the extra memory is
//! `O(C·h·K)` per level (≈15 MB for 100 boxes at full size).

use crate::interpolate::linear_taps;
use crate::roi_align::{RoiAlignParams, roi_mean_weights};
use burn::tensor::{DType, Device, Tensor, TensorData};
use chatrex_common::sine::{sine_divisors, sine_embed_value};

/// Temperature of the box position embedding.
const BOX_TEMPERATURE: f32 = 10000.0;

/// Pools one vector per box from the stage maps.
///
/// `stages[l]`: `[1, C_l, h_l, w_l]`, level 0 defines the RoI grid; `boxes`: xyxy in the
/// padded high-resolution frame (768 px). Returns `[K, ΣC_l]` in f32: the bin-averaged RoI
/// features plus the sine embedding of the normalised box (see [`box_position_embedding`]).
pub fn pooled_object_features(stages: &[Tensor<4>], boxes: &[[f32; 4]], params: &RoiAlignParams) -> Tensor<2> {
    let device = stages[0].device();
    let [_, _, grid_h, grid_w] = stages[0].dims();
    let k = boxes.len();
    let weights: Vec<(Vec<f32>, Vec<f32>)> = boxes.iter().map(|b| roi_mean_weights(b, grid_h, grid_w, params)).collect();
    let mut per_level = Vec::with_capacity(stages.len());
    for stage in stages {
        let [_, c, h, w] = stage.dims();
        let (vy, vx) = project_weights(&weights, grid_h, grid_w, h, w);
        let vy = Tensor::<3>::from_data(TensorData::new(vy, [1, h, k]), &device);
        let vx = Tensor::<2>::from_data(TensorData::new(vx, [w, k]), &device);
        let map = stage.clone().cast(DType::F32).reshape([c * h, w]);
        let pooled = (map.matmul(vx).reshape([c, h, k]) * vy).sum_dim(1).reshape([c, k]);
        per_level.push(pooled.transpose());
    }
    let side = grid_h as f32 / params.spatial_scale;
    let channels: usize = stages.iter().map(|s| s.dims()[1]).sum();
    let feats = channels / 4;
    let pos = box_position_embedding(boxes, side, feats);
    Tensor::cat(per_level, 1) + upload(pos, k, 4 * feats, &device)
}

/// Maps per-box weights on the `grid_h × grid_w` RoI grid to a level of `h × w` through the
/// transposed bilinear upsampling: returns `vy [h, K]` and `vx [w, K]` (row-major).
fn project_weights(weights: &[(Vec<f32>, Vec<f32>)], grid_h: usize, grid_w: usize, h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
    let ys: Vec<&[f32]> = weights.iter().map(|(wy, _)| wy.as_slice()).collect();
    let xs: Vec<&[f32]> = weights.iter().map(|(_, wx)| wx.as_slice()).collect();
    (project_axis(&ys, grid_h, h), project_axis(&xs, grid_w, w))
}

/// One axis of [`project_weights`]: per-box weights over `grid` samples → `[len, K]` over the
/// level's `len` pixels (identity when the level is the grid itself).
fn project_axis(per_box: &[&[f32]], grid: usize, len: usize) -> Vec<f32> {
    let k = per_box.len();
    let mut v = vec![0f32; len * k];
    if len == grid {
        for (b, wts) in per_box.iter().enumerate() {
            for (i, &x) in wts.iter().enumerate() {
                v[i * k + b] = x;
            }
        }
    } else {
        let taps = linear_taps(len, grid);
        for (b, wts) in per_box.iter().enumerate() {
            for (t, &x) in taps.iter().zip(wts.iter()) {
                v[t.i0 * k + b] += x * t.w0;
                v[t.i1 * k + b] += x * t.w1;
            }
        }
    }
    v
}

/// Sine embedding of each box (xyxy in a `side × side` frame): normalised to [0, 1], turned
/// into (cx, cy, w, h), `feats` features per coordinate in the order (cy, cx, w, h) →
/// `[K, 4·feats]` row-major.
pub fn box_position_embedding(boxes: &[[f32; 4]], side: f32, feats: usize) -> Vec<f32> {
    let divisors = sine_divisors(feats, BOX_TEMPERATURE);
    let scale = std::f32::consts::TAU;
    let mut out = Vec::with_capacity(boxes.len() * 4 * feats);
    for b in boxes {
        let (x1, y1, x2, y2) = (b[0] / side, b[1] / side, b[2] / side, b[3] / side);
        let (w, h) = (x2 - x1, y2 - y1);
        let (cx, cy) = (x1 + w / 2.0, y1 + h / 2.0);
        for v in [cy, cx, w, h] {
            sine_embed_value(&mut out, v * scale, &divisors);
        }
    }
    out
}

/// Uploads host data as a `[rows, cols]` f32 tensor.
pub fn upload(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}
