//! RoIAlign with torchvision's semantics (`torchvision.ops.roi_align`, CPU kernel), plus the
//! separable form of its bin-averaged output that the object tokenizer uses.
//!
//! For `aligned = False` the RoI starts at `x1·scale` (no half-pixel shift) and its size is
//! clamped to at least one feature pixel; each of the `out × out` bins averages an adaptive
//! `ceil(roi/out)²` grid of bilinear samples; a sample more than one pixel outside the map
//! contributes 0, samples just outside are clamped to the border.

/// RoIAlign parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlignParams {
    /// Output side (7).
    pub output_size: usize,
    /// Box-to-feature scale (0.25 = 192/768).
    pub spatial_scale: f32,
    /// Samples per bin side; ≤ 0 means adaptive (`ceil(bin size)`).
    pub sampling_ratio: i32,
    /// Half-pixel alignment (`aligned=True`); ChatRex uses `false`.
    pub aligned: bool,
}

impl RoiAlignParams {
    /// ChatRex's object tokenizer: 7×7, scale 0.25, adaptive sampling, not aligned.
    pub fn chatrex() -> Self {
        Self {
            output_size: 7,
            spatial_scale: 0.25,
            sampling_ratio: -1,
            aligned: false,
        }
    }
}

/// One axis of one RoI: where its samples fall.
struct AxisGrid {
    start: f32,
    bin: f32,
    grid: usize,
}

fn axis_grid(lo: f32, hi: f32, p: &RoiAlignParams) -> AxisGrid {
    let offset = if p.aligned { 0.5 } else { 0.0 };
    let start = lo * p.spatial_scale - offset;
    let end = hi * p.spatial_scale - offset;
    let mut size = end - start;
    if !p.aligned {
        size = size.max(1.0);
    }
    let bin = size / p.output_size as f32;
    let grid = if p.sampling_ratio > 0 {
        p.sampling_ratio as usize
    } else {
        (size / p.output_size as f32).ceil().max(0.0) as usize
    };
    AxisGrid { start, bin, grid }
}

/// Bilinear taps of one sample coordinate along an axis of `len` pixels: `None` when the
/// sample is more than one pixel outside, else `(low, high, w_low, w_high)`.
fn axis_taps(coord: f32, len: usize) -> Option<(usize, usize, f32, f32)> {
    if coord < -1.0 || coord > len as f32 || len == 0 {
        return None;
    }
    let mut c = if coord <= 0.0 { 0.0 } else { coord };
    let mut low = c as usize;
    let high;
    if low >= len - 1 {
        low = len - 1;
        high = low;
        c = low as f32;
    } else {
        high = low + 1;
    }
    let l = c - low as f32;
    Some((low, high, 1.0 - l, l))
}

fn samples(g: &AxisGrid, out: usize) -> impl Iterator<Item = f32> + '_ {
    (0..out).flat_map(move |p| {
        (0..g.grid).map(move |i| {
            g.start + p as f32 * g.bin + (i as f32 + 0.5) * g.bin / g.grid as f32
        })
    })
}

/// Full RoIAlign of `boxes` (xyxy, input coordinates) on one `[C, H, W]` map:
/// `[K, C, out, out]`, computed exactly as the torchvision CPU kernel (f32).
pub fn roi_align(features: &[f32], c: usize, h: usize, w: usize, boxes: &[[f32; 4]], p: &RoiAlignParams) -> Vec<f32> {
    let out = p.output_size;
    let mut result = vec![0f32; boxes.len() * c * out * out];
    for (k, b) in boxes.iter().enumerate() {
        let gy = axis_grid(b[1], b[3], p);
        let gx = axis_grid(b[0], b[2], p);
        let count = (gy.grid * gx.grid).max(1) as f32;
        for ph in 0..out {
            for pw in 0..out {
                // Pre-computed taps of this bin's samples.
                let mut taps = Vec::with_capacity(gy.grid * gx.grid);
                for iy in 0..gy.grid {
                    let y = gy.start + ph as f32 * gy.bin + (iy as f32 + 0.5) * gy.bin / gy.grid as f32;
                    for ix in 0..gx.grid {
                        let x = gx.start + pw as f32 * gx.bin + (ix as f32 + 0.5) * gx.bin / gx.grid as f32;
                        if let (Some(ty), Some(tx)) = (axis_taps(y, h), axis_taps(x, w)) {
                            taps.push((ty, tx));
                        }
                    }
                }
                for ch in 0..c {
                    let plane = &features[ch * h * w..(ch + 1) * h * w];
                    let mut acc = 0f32;
                    for &((yl, yh, hy, ly), (xl, xh, hx, lx)) in &taps {
                        acc += hy * hx * plane[yl * w + xl]
                            + hy * lx * plane[yl * w + xh]
                            + ly * hx * plane[yh * w + xl]
                            + ly * lx * plane[yh * w + xh];
                    }
                    result[((k * c + ch) * out + ph) * out + pw] = acc / count;
                }
            }
        }
    }
    result
}

/// Weights `(wy [h], wx [w])` such that the mean over the `out × out` bins of RoIAlign of
/// one box equals `Σᵢⱼ wy[i]·wx[j]·F[i, j]` for every channel.
///
/// The mean of all bins weighs every sample equally, and each sample's bilinear weight and
/// validity factor into a y part and an x part, so the whole pooled value is a rank-1 form.
/// The normalisation `1 / (count · out²)` is folded into `wy`.
pub fn roi_mean_weights(b: &[f32; 4], h: usize, w: usize, p: &RoiAlignParams) -> (Vec<f32>, Vec<f32>) {
    let out = p.output_size;
    let gy = axis_grid(b[1], b[3], p);
    let gx = axis_grid(b[0], b[2], p);
    let count = (gy.grid * gx.grid).max(1) as f32;
    let mut wy = vec![0f32; h];
    for y in samples(&gy, out) {
        if let Some((lo, hi, a, bw)) = axis_taps(y, h) {
            wy[lo] += a;
            wy[hi] += bw;
        }
    }
    let mut wx = vec![0f32; w];
    for x in samples(&gx, out) {
        if let Some((lo, hi, a, bw)) = axis_taps(x, w) {
            wx[lo] += a;
            wx[hi] += bw;
        }
    }
    let norm = count * (out * out) as f32;
    wy.iter_mut().for_each(|v| *v /= norm);
    (wy, wx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_mean_equals_the_bin_average() {
        let (c, h, w) = (3, 9, 11);
        let features: Vec<f32> = (0..c * h * w).map(|i| ((i * 37) % 17) as f32 * 0.25 - 1.0).collect();
        let p = RoiAlignParams { output_size: 3, spatial_scale: 0.5, sampling_ratio: -1, aligned: false };
        for b in [[2.0, 3.0, 15.0, 12.0], [-4.0, -4.0, 5.0, 30.0], [7.0, 7.0, 7.0, 7.0], [21.0, 17.0, 40.0, 40.0]] {
            let full = roi_align(&features, c, h, w, &[b], &p);
            let (wy, wx) = roi_mean_weights(&b, h, w, &p);
            for ch in 0..c {
                let mean: f32 = full[ch * 9..(ch + 1) * 9].iter().sum::<f32>() / 9.0;
                let mut sep = 0f32;
                for i in 0..h {
                    for j in 0..w {
                        sep += wy[i] * wx[j] * features[ch * h * w + i * w + j];
                    }
                }
                assert!((mean - sep).abs() < 1e-5, "box {b:?} ch {ch}: {mean} vs {sep}");
            }
        }
    }
}
