//! Decoding image files to 8-bit RGB, with a pixel limit checked before decoding.

use super::jpeg::{JpegOutcome, decode_jpeg};
use image::{DynamicImage, ImageReader, RgbImage};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Limits applied before an image is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest accepted width × height. Declared sizes above it are refused before any pixel
    /// is decoded (decompression bombs). Default: 100 megapixels.
    pub max_pixels: u64,
    /// Largest accepted width or height. Default: 65 535.
    pub max_side: u32,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_side: 65_535,
        }
    }
}

/// Why an image could not be turned into RGB pixels.
#[derive(Debug, thiserror::Error)]
pub enum ImageLoadError {
    /// The file could not be read.
    #[error("cannot read image {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are empty.
    #[error("the image data is empty (0 bytes)")]
    EmptyFile,
    /// The bytes are not in an image format we decode.
    #[error("not a supported image (unrecognised format; supported: JPEG, PNG, WebP, BMP, GIF, TIFF)")]
    UnknownFormat,
    /// The declared size is over the configured limits.
    #[error("image of {width}×{height} pixels is over the limit ({limit})")]
    TooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit, in words.
        limit: String,
    },
    /// The image declares a zero width or height.
    #[error("image has no pixels ({width}×{height})")]
    NoPixels {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The data is truncated or corrupt.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
}

/// Reads and decodes an image file to RGB (see [`decode_rgb`]).
pub fn load_rgb(path: &Path, limits: &ImageLimits) -> Result<RgbImage, ImageLoadError> {
    let bytes = std::fs::read(path).map_err(|source| ImageLoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_rgb(&bytes, limits)
}

/// Decodes image bytes (format detected from the content, not a file name) to 8-bit RGB.
///
/// The declared size is checked against `limits` before decoding. Every colour type becomes
/// RGB the way Pillow's `convert("RGB")` does it for the common cases: grey is replicated,
/// alpha is dropped (not composited), palettes are expanded, 16-bit samples are scaled to
/// 8 bits, CMYK JPEGs are converted by the decoder. EXIF orientation is not applied (the
/// official pipelines do not apply it either). JPEGs in YCbCr, RGB or grey are decoded by
/// libjpeg-turbo, bit-identical to Pillow; CMYK JPEGs and other formats by the `image` crate.
pub fn decode_rgb(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, ImageLoadError> {
    if bytes.is_empty() {
        return Err(ImageLoadError::EmptyFile);
    }
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ImageLoadError::Corrupt(e.to_string()))
    };
    let probe = reader()?;
    let Some(format) = probe.format() else {
        return Err(ImageLoadError::UnknownFormat);
    };
    if format == image::ImageFormat::Jpeg {
        let check = |w: u32, h: u32| check_size(w, h, limits);
        if let JpegOutcome::Rgb(rgb) = decode_jpeg(bytes, check)? {
            return Ok(rgb);
        }
    }
    let (width, height) = probe
        .into_dimensions()
        .map_err(|e| ImageLoadError::Corrupt(e.to_string()))?;
    check_size(width, height, limits)?;
    let mut decoder = reader()?;
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(width);
    image_limits.max_image_height = Some(height);
    // 16-bit RGBA is 8 bytes per pixel; leave room for the decoder's own buffers.
    image_limits.max_alloc = Some((u64::from(width) * u64::from(height) * 16).max(1 << 26));
    decoder.limits(image_limits);
    let decoded = decoder.decode().map_err(|e| match e {
        image::ImageError::Unsupported(u) => ImageLoadError::Corrupt(u.to_string()),
        image::ImageError::Limits(l) => ImageLoadError::TooLarge {
            width,
            height,
            limit: l.to_string(),
        },
        other => ImageLoadError::Corrupt(other.to_string()),
    })?;
    Ok(to_rgb8(decoded))
}

fn check_size(width: u32, height: u32, limits: &ImageLimits) -> Result<(), ImageLoadError> {
    if width == 0 || height == 0 {
        return Err(ImageLoadError::NoPixels { width, height });
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(ImageLoadError::TooLarge {
            width,
            height,
            limit: format!("at most {} pixels per side", limits.max_side),
        });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageLoadError::TooLarge {
            width,
            height,
            limit: format!("at most {} pixels", limits.max_pixels),
        });
    }
    Ok(())
}

/// Converts any decoded image to 8-bit RGB (alpha dropped, grey replicated).
pub fn to_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}
