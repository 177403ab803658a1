//! MLLM image preprocessing (RexSeek / ChatRex processor): pad to a centred square filled with
//! the CLIP mean colour, bicubic resize to 768 (Pillow), CLIP normalisation; the 336 low-res
//! input is a bilinear downsample of the *normalised* 768 tensor. Boxes are mapped into the
//! same padded 768 frame.

use crate::interpolate::resize_bilinear_planar;
use chatrex_common::image::{ResampleFilter, RgbImage, resize_rgb8};

/// CLIP channel means (R, G, B).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP channel standard deviations (R, G, B).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// Fill colour of the square padding: `int(255 · mean)` = (122, 116, 104).
pub const PAD_COLOR: [u8; 3] = [122, 116, 104];

/// Where the original image sits in the padded, resized square.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquareFrame {
    /// Original width.
    pub width: u32,
    /// Original height.
    pub height: u32,
    /// Side of the padded square before resizing (`max(width, height)`).
    pub side: u32,
    /// Left and top padding in original pixels.
    pub offset: (u32, u32),
    /// Side after resizing (768).
    pub target: usize,
}

impl SquareFrame {
    /// The frame of a `width × height` image resized to `target`.
    pub fn new(width: u32, height: u32, target: usize) -> Self {
        let side = width.max(height).max(1);
        Self {
            width,
            height,
            side,
            offset: ((side - width) / 2, (side - height) / 2),
            target,
        }
    }

    /// Maps an xyxy box in original pixels into the padded `target` frame, in f32 in the
    /// official order (w, h from the given corners; offset; scale x, y, w, h; x2 = x + w).
    pub fn map_box(&self, b: [f32; 4]) -> [f32; 4] {
        let scale = (self.target as f64 / self.side as f64) as f32;
        let (w, h) = (b[2] - b[0], b[3] - b[1]);
        let x = (b[0] + self.offset.0 as f32) * scale;
        let y = (b[1] + self.offset.1 as f32) * scale;
        let (w, h) = (w * scale, h * scale);
        [x, y, x + w, y + h]
    }
}

/// The two tower inputs of one image.
#[derive(Debug, Clone)]
pub struct TowerInputs {
    /// `[3, high, high]` normalised (ConvNeXt input, `pixel_values_aux`), row-major planes.
    pub high_res: Vec<f32>,
    /// `[3, low, low]` normalised (CLIP input, `pixel_values`).
    pub low_res: Vec<f32>,
    /// The padded frame (for mapping boxes).
    pub frame: SquareFrame,
}

/// Pads `image` to a centred square with [`PAD_COLOR`] (`expand2square`).
pub fn expand_to_square(image: &RgbImage) -> RgbImage {
    let frame = SquareFrame::new(image.width(), image.height(), 0);
    if image.width() == image.height() {
        return image.clone();
    }
    let mut square = RgbImage::from_pixel(frame.side, frame.side, image::Rgb(PAD_COLOR));
    image::imageops::replace(&mut square, image, i64::from(frame.offset.0), i64::from(frame.offset.1));
    square
}

/// CLIP normalisation of a resized RGB image into `[3, H, W]` planes:
/// `(u8 / 255 − mean) / std` in f32 (bit-identical to the processor's float64 rescale).
pub fn normalize_clip(image: &RgbImage) -> Vec<f32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut planar = vec![0f32; 3 * h * w];
    for (i, px) in image.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            planar[c * h * w + i] = (f32::from(px[c]) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    planar
}

/// Full preprocessing of one RGB image for towers of `high` and `low` pixels.
pub fn tower_inputs(image: &RgbImage, high: usize, low: usize) -> TowerInputs {
    let frame = SquareFrame::new(image.width(), image.height(), high);
    let square = expand_to_square(image);
    let resized = resize_rgb8(&square, high as u32, high as u32, ResampleFilter::Bicubic);
    let high_res = normalize_clip(&resized);
    let low_res = resize_bilinear_planar(&high_res, 3, high, high, low, low);
    TowerInputs {
        high_res,
        low_res,
        frame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_of_a_landscape_image_pads_top_and_bottom() {
        let f = SquareFrame::new(640, 426, 768);
        assert_eq!(f.offset, (0, 107));
        let b = f.map_box([0.0, 38.0, 640.0, 426.0]);
        assert_eq!(b, [0.0, 174.0, 768.0, 639.6]);
    }
}
