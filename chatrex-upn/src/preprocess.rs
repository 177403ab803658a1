//! UPN image preprocessing: resize (short side 800, long side ≤ 1333, Pillow bilinear with
//! antialiasing), to \[0,1\], ImageNet normalisation.

use burn::tensor::{Device, Tensor, TensorData};
use chatrex_common::image::{ResampleFilter, RgbImage, resize_rgb8};

/// ImageNet channel means (R, G, B).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (R, G, B).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Target length of the shorter side.
pub const SHORT_SIDE: usize = 800;
/// Upper bound of the longer side.
pub const MAX_SIDE: usize = 1333;

/// The official `RandomResize([800], max_size=1333)` size rule for a `width × height` image,
/// returning the resized `(width, height)`.
///
/// The short side becomes 800 unless the long side would then exceed 1333, in which case the
/// short side becomes `round(1333 · short / long)` (Python's round-half-even); the long side is
/// scaled by truncation. Degenerate results are clamped to one pixel (the official code would
/// fail on them).
pub fn resized_size(width: usize, height: usize) -> (usize, usize) {
    let (w, h) = (width.max(1), height.max(1));
    let (min_s, max_s) = (w.min(h) as f64, w.max(h) as f64);
    let mut size = SHORT_SIDE as f64;
    if max_s / min_s * size > MAX_SIDE as f64 {
        size = (MAX_SIDE as f64 * min_s / max_s).round_ties_even();
    }
    let size_u = size as usize;
    if (w <= h && w == size_u) || (h <= w && h == size_u) {
        return (w, h);
    }
    let (ow, oh) = if w < h {
        (size_u, (size * h as f64 / w as f64) as usize)
    } else {
        ((size * w as f64 / h as f64) as usize, size_u)
    };
    (ow.max(1), oh.max(1))
}

/// Resizes and normalises one RGB image: `[3, H, W]` f32 on `device`, H×W from
/// [`resized_size`]. Bit-identical to the official torchvision/PIL chain.
pub fn preprocess(image: &RgbImage, device: &Device) -> Tensor<3> {
    let (ow, oh) = resized_size(image.width() as usize, image.height() as usize);
    let resized = resize_rgb8(image, ow as u32, oh as u32, ResampleFilter::Bilinear);
    let (w, h) = (resized.width() as usize, resized.height() as usize);
    let mut planar = vec![0f32; 3 * h * w];
    for (i, px) in resized.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            planar[c * h * w + i] = (f32::from(px[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    Tensor::from_data(TensorData::new(planar, [3, h, w]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_rule_matches_the_official_examples() {
        assert_eq!(resized_size(2246, 1590), (1130, 800));
        assert_eq!(resized_size(640, 426), (1201, 800));
        assert_eq!(resized_size(1, 1), (800, 800));
        // 3×2000: short side round(1333·3/2000) = 2, long side int(2·2000/3) = 1333.
        assert_eq!(resized_size(3, 2000), (2, 1333));
        assert_eq!(resized_size(800, 600), (1066, 800));
        assert_eq!(resized_size(800, 800), (800, 800));
        assert_eq!(resized_size(1, 100_000), (1, 1));
    }
}
