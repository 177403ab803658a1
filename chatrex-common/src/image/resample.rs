//! Pillow-exact image resizing (`Image.resize` with BILINEAR or BICUBIC, any scale).
//!
//! Pillow resamples in two separable passes (horizontal first, on the rows the vertical pass
//! needs), with a filter stretched by the downscale factor (its implicit antialiasing),
//! coefficients normalised per output pixel and then quantised to 22-bit fixed point, and
//! integer accumulation with rounding. Reproducing each of these steps gives bit-identical
//! pixels, which the UPN and MLLM fixtures check.

use rayon::prelude::*;
use image::RgbImage;

/// The resampling filters the ChatRex pipelines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResampleFilter {
    /// Triangle filter, support 1 (`PIL.Image.BILINEAR`; UPN preprocessing).
    Bilinear,
    /// Cubic convolution with a = −0.5, support 2 (`PIL.Image.BICUBIC`; CLIP processor).
    Bicubic,
}

impl ResampleFilter {
    fn support(self) -> f64 {
        match self {
            ResampleFilter::Bilinear => 1.0,
            ResampleFilter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            ResampleFilter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            ResampleFilter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index, number of taps, and fixed-point weights.
struct Coefficients {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, filter: ResampleFilter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero; negative values are clamped to 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let taps = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, slot) in k.iter_mut().enumerate().take(taps) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *slot = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for (slot, &w) in row.iter_mut().zip(k.iter()).take(taps) {
            let w = if ww != 0.0 { w / ww } else { w };
            let scaled = w * f64::from(1u32 << PRECISION_BITS);
            *slot = if w < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        bounds.push((xmin, taps));
    }
    Coefficients {
        ksize,
        bounds,
        weights,
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB image to `width × height` exactly as Pillow's `Image.resize` does for an
/// RGB image with the given filter (no `box`, no `reducing_gap`).
///
/// Sizes of zero are clamped to one pixel.
pub fn resize_rgb8(src: &RgbImage, width: u32, height: u32, filter: ResampleFilter) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = (width.max(1) as usize, height.max(1) as usize);
    if in_w == out_w && in_h == out_h {
        return src.clone();
    }
    let horiz = precompute(in_w, out_w, filter);
    let vert = precompute(in_h, out_h, filter);
    let input = src.as_raw();
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;

    // Horizontal pass over the rows the vertical pass reads.
    let (row_first, row_last) = if need_vertical {
        let first = vert.bounds[0].0;
        let (last_min, last_taps) = vert.bounds[out_h - 1];
        (first, last_min + last_taps)
    } else {
        (0, in_h)
    };
    let (tmp, tmp_w): (std::borrow::Cow<'_, [u8]>, usize) = if need_horizontal {
        let rows = row_last - row_first;
        let mut out = vec![0u8; rows * out_w * 3];
        // Rows are independent: resampled in parallel (the same integer arithmetic per row).
        out.par_chunks_mut(out_w * 3).enumerate().for_each(|(y, dst_row)| {
            let src_row = &input[(y + row_first) * in_w * 3..(y + row_first + 1) * in_w * 3];
            for xx in 0..out_w {
                let (xmin, taps) = horiz.bounds[xx];
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + taps];
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (x, &w) in k.iter().enumerate() {
                    let p = &src_row[(x + xmin) * 3..(x + xmin) * 3 + 3];
                    acc[0] += i32::from(p[0]) * w;
                    acc[1] += i32::from(p[1]) * w;
                    acc[2] += i32::from(p[2]) * w;
                }
                dst_row[xx * 3] = clip8(acc[0]);
                dst_row[xx * 3 + 1] = clip8(acc[1]);
                dst_row[xx * 3 + 2] = clip8(acc[2]);
            }
        });
        (std::borrow::Cow::Owned(out), out_w)
    } else {
        (std::borrow::Cow::Borrowed(input.as_slice()), in_w)
    };

    if !need_vertical {
        let data = tmp.into_owned();
        return RgbImage::from_raw(out_w as u32, out_h as u32, data)
            .unwrap_or_else(|| RgbImage::new(out_w as u32, out_h as u32));
    }
    let mut out = vec![0u8; out_w * out_h * 3];
    out.par_chunks_mut(out_w * 3).enumerate().for_each(|(yy, dst_row)| {
        let (ymin, taps) = vert.bounds[yy];
        // The horizontal pass only produced rows row_first..row_last.
        let ymin = if need_horizontal { ymin - row_first } else { ymin };
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + taps];
        for (xx, px) in dst_row.chunks_exact_mut(3).enumerate() {
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (y, &w) in k.iter().enumerate() {
                let base = ((y + ymin) * tmp_w + xx) * 3;
                acc[0] += i32::from(tmp[base]) * w;
                acc[1] += i32::from(tmp[base + 1]) * w;
                acc[2] += i32::from(tmp[base + 2]) * w;
            }
            px[0] = clip8(acc[0]);
            px[1] = clip8(acc[1]);
            px[2] = clip8(acc[2]);
        }
    });
    RgbImage::from_raw(out_w as u32, out_h as u32, out)
        .unwrap_or_else(|| RgbImage::new(out_w as u32, out_h as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
        assert_eq!(resize_rgb8(&img, 5, 3, ResampleFilter::Bicubic), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        for filter in [ResampleFilter::Bilinear, ResampleFilter::Bicubic] {
            for (w, h) in [(10, 7), (80, 50), (1, 1)] {
                let out = resize_rgb8(&img, w, h, filter);
                assert!(out.pixels().all(|p| p.0 == [200, 10, 99]), "{filter:?} {w}x{h}");
            }
        }
    }
}
