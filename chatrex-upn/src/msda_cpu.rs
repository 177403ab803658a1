//! The deformable-attention sampling core on the CPU backend: a direct, multithreaded host
//! loop over queries (each head's `D` channels are contiguous, so a sample is `D` fused
//! multiply-adds per bilinear corner), instead of `grid_sample` on every level with large
//! temporaries. Same arithmetic as the CUDA kernel: pixel = `loc · size − 0.5`, corners
//! outside the map read as zero.

use crate::msda::LevelLayout;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

fn host(t: TensorData) -> Option<Vec<f32>> {
    t.convert::<f32>().try_into_vec::<f32>().ok()
}

/// `value [B, S, M, D]`, `locations [B, Lq, M, L, P, 2]`, `weights [B, Lq, M, L, P]` →
/// `[B, Lq, M·D]`, or `None` if the data cannot be read back (the caller falls back).
/// `extents[b][l]`: the `(h, w)` that image `b`'s locations are normalised to at level `l`
/// (a padded batch); `None`: the layout's sizes.
pub fn msda_core_cpu(
    value: &Tensor<4>,
    layout: &LevelLayout,
    extents: Option<&[Vec<(usize, usize)>]>,
    locations: &Tensor<6>,
    weights: &Tensor<5>,
) -> Option<Tensor<3>> {
    let [b, s, m, d] = value.dims();
    let [_, lq, _, l, p, _] = locations.dims();
    let device = value.device();
    let value = host(value.clone().try_into_data().ok()?)?;
    let loc = host(locations.clone().try_into_data().ok()?)?;
    let aw = host(weights.clone().try_into_data().ok()?)?;
    let starts = layout.starts();
    let shapes = &layout.shapes;
    let mut out = vec![0f32; b * lq * m * d];
    let sampling = Sampling { value: &value, loc: &loc, aw: &aw, starts: &starts, shapes, extents, dims: (s, m, d, l, p), lq };
    let sample_row = sampling.row_kernel();
    out.par_chunks_mut(m * d).enumerate().for_each(|(row, dst)| sample_row(&sampling, row, dst));
    Some(Tensor::from_data(TensorData::new(out, [b, lq, m * d]), &device))
}

/// The host operands of one call, as [`msda_core_cpu`] reads them.
struct Sampling<'a> {
    value: &'a [f32],
    loc: &'a [f32],
    aw: &'a [f32],
    starts: &'a [usize],
    shapes: &'a [(usize, usize)],
    extents: Option<&'a [Vec<(usize, usize)>]>,
    /// `(S, M, D, L, P)`.
    dims: (usize, usize, usize, usize, usize),
    lq: usize,
}

impl Sampling<'_> {
    /// The kernel of one output row compiled for the best instruction set this CPU has (the
    /// workspace builds for baseline x86-64, where `floor` is a libm call and the `D`-wide sums
    /// run four lanes at a time); the same arithmetic, so the same bits, on every path.
    fn row_kernel(&self) -> fn(&Self, usize, &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return |s, row, dst| {
                    // SAFETY: the CPU has AVX-512 F, AVX2 and FMA (checked above).
                    #[allow(unsafe_code)]
                    unsafe {
                        s.row_avx512(row, dst)
                    }
                };
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return |s, row, dst| {
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    #[allow(unsafe_code)]
                    unsafe {
                        s.row_avx2(row, dst)
                    }
                };
            }
        }
        Self::row
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn row_avx512(&self, row: usize, dst: &mut [f32]) {
        self.row(row, dst)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn row_avx2(&self, row: usize, dst: &mut [f32]) {
        self.row(row, dst)
    }

    /// Output row `row` (`[M·D]`: every head's samples summed).
    #[inline(always)]
    fn row(&self, row: usize, dst: &mut [f32]) {
        let (s, m, d, l, p) = self.dims;
        let (value, loc, aw, starts, shapes) = (self.value, self.loc, self.aw, self.starts, self.shapes);
        let batch = row / self.lq;
        let value_b = &value[batch * s * m * d..(batch + 1) * s * m * d];
        for head in 0..m {
            let acc = &mut dst[head * d..(head + 1) * d];
            for level in 0..l {
                let (h, w) = shapes[level];
                let (scale_h, scale_w) = self.extents.map_or((h, w), |e| e[batch][level]);
                let start = starts[level];
                for point in 0..p {
                    let idx = (((row * m + head) * l + level) * p) + point;
                    let a = aw[idx];
                    let x = loc[idx * 2] * scale_w as f32 - 0.5;
                    let y = loc[idx * 2 + 1] * scale_h as f32 - 0.5;
                    if !(x > -1.0 && y > -1.0 && x < w as f32 && y < h as f32) {
                        continue;
                    }
                    let (x0, y0) = (x.floor(), y.floor());
                    let (fx, fy) = (x - x0, y - y0);
                    let (x0, y0) = (x0 as i64, y0 as i64);
                    let corners = [
                        (y0, x0, (1.0 - fy) * (1.0 - fx)),
                        (y0, x0 + 1, (1.0 - fy) * fx),
                        (y0 + 1, x0, fy * (1.0 - fx)),
                        (y0 + 1, x0 + 1, fy * fx),
                    ];
                    for (yy, xx, bw) in corners {
                        if yy < 0 || xx < 0 || yy >= h as i64 || xx >= w as i64 {
                            continue;
                        }
                        let token = start + yy as usize * w + xx as usize;
                        let src = &value_b[(token * m + head) * d..(token * m + head + 1) * d];
                        let wgt = a * bw;
                        for (o, v) in acc.iter_mut().zip(src) {
                            *o += wgt * v;
                        }
                    }
                }
            }
        }
    }
}
