//! Image input: safe decoding to RGB and Pillow-exact resampling.

mod decode;
pub mod draw;
mod jpeg;
mod resample;

pub use decode::{ImageLimits, ImageLoadError, decode_rgb, load_rgb, to_rgb8};
pub use resample::{ResampleFilter, resize_rgb8};
pub use image::RgbImage;
