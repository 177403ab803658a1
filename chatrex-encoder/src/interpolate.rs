//! PyTorch's `F.interpolate(mode="bilinear", align_corners=False)` (no antialiasing), as
//! separable per-axis weights and a host implementation on planar f32 data.

/// For one output index: the two input indices and their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearTap {
    /// Lower input index.
    pub i0: usize,
    /// Upper input index (equal to `i0` at the border).
    pub i1: usize,
    /// Weight of `i0`.
    pub w0: f32,
    /// Weight of `i1`.
    pub w1: f32,
}

/// Taps of a linear resize from `input` to `output` samples (half-pixel centres, source
/// index clamped at 0, as PyTorch computes them in f32).
pub fn linear_taps(input: usize, output: usize) -> Vec<LinearTap> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input.saturating_sub(1));
            let w1 = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
            LinearTap {
                i0,
                i1,
                w0: 1.0 - w1,
                w1,
            }
        })
        .collect()
}

/// Resizes `channels` planes of `in_h × in_w` to `out_h × out_w`.
pub fn resize_bilinear_planar(
    input: &[f32],
    channels: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let ty = linear_taps(in_h, out_h);
    let tx = linear_taps(in_w, out_w);
    let mut out = vec![0f32; channels * out_h * out_w];
    for c in 0..channels {
        let plane = &input[c * in_h * in_w..(c + 1) * in_h * in_w];
        for (oy, y) in ty.iter().enumerate() {
            for (ox, x) in tx.iter().enumerate() {
                let at = |r: usize, col: usize| plane[r * in_w + col];
                let top = at(y.i0, x.i0) * x.w0 + at(y.i0, x.i1) * x.w1;
                let bottom = at(y.i1, x.i0) * x.w0 + at(y.i1, x.i1) * x.w1;
                let v = top * y.w0 + bottom * y.w1;
                out[c * out_h * out_w + oy * out_w + ox] = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_downsample_taps() {
        let t = linear_taps(4, 4);
        assert!(t.iter().enumerate().all(|(i, t)| t.i0 == i && t.w1 == 0.0));
        // 768 → 336: scale 16/7.
        let t = linear_taps(768, 336);
        assert_eq!(t[0].i0, 0);
        assert!((t[0].w1 - (16.0 / 7.0 * 0.5 - 0.5)).abs() < 1e-6);
        assert_eq!(t.last().map(|t| t.i1), Some(767));
    }
}
