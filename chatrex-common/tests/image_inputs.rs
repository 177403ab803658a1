//! Every kind of image input gets pixels or a clear error (fixtures from
//! tools/reference/bad_inputs.py; PIL's RGB conversions in `pil.json`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::image::{ImageLimits, ImageLoadError, decode_rgb, load_rgb};
use chatrex_common::parity::repo_fixtures;
use serde_json::Value;

fn path(name: &str) -> std::path::PathBuf {
    repo_fixtures().join("images").join(name)
}

fn pil(name: &str) -> Value {
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path("pil.json")).unwrap()).unwrap();
    all[name].clone()
}

fn sum(img: &image::RgbImage) -> i64 {
    img.as_raw().iter().map(|&v| i64::from(v)).sum()
}

#[test]
fn colour_types_convert_like_pillow() {
    // Exactly as PIL's convert("RGB") for these.
    for name in ["gray.jpg", "rgba.png", "palette.png", "rgb.png", "png_named.jpg", "one_pixel.png"] {
        let img = load_rgb(&path(name), &ImageLimits::default()).unwrap();
        let p = pil(name);
        assert_eq!([img.width() as u64, img.height() as u64], [p["size"][0].as_u64().unwrap(), p["size"][1].as_u64().unwrap()], "{name}");
        assert_eq!(sum(&img), p["rgb_sum"].as_i64().unwrap(), "{name}: pixel sum differs from PIL");
    }
    // CMYK JPEG: decoded by the `image` crate; close to PIL (not bit-exact: another CMYK path).
    let img = load_rgb(&path("cmyk.jpg"), &ImageLimits::default()).unwrap();
    let mean_diff = (sum(&img) - pil("cmyk.jpg")["rgb_sum"].as_i64().unwrap()).abs() as f64 / img.as_raw().len() as f64;
    assert!(mean_diff < 8.0, "CMYK mean difference {mean_diff}");
    // 16-bit grey is scaled to 8 bits (PIL clips it to 255 instead: a documented difference).
    let img = load_rgb(&path("gray16.png"), &ImageLimits::default()).unwrap();
    assert_eq!((img.width(), img.height()), (32, 24));
    assert!(img.as_raw().iter().any(|&v| v < 128), "16-bit values must be scaled, not clipped");
}

#[test]
fn extreme_sizes_decode() {
    let img = load_rgb(&path("one_pixel.png"), &ImageLimits::default()).unwrap();
    assert_eq!(img.get_pixel(0, 0).0, [10, 200, 30]);
    let img = load_rgb(&path("tall_3x2000.png"), &ImageLimits::default()).unwrap();
    assert_eq!((img.width(), img.height()), (3, 2000));
}

#[test]
fn bad_files_are_clear_errors() {
    let limits = ImageLimits::default();
    assert!(matches!(load_rgb(&path("empty.jpg"), &limits), Err(ImageLoadError::EmptyFile)));
    assert!(matches!(load_rgb(&path("not_an_image.jpg"), &limits), Err(ImageLoadError::UnknownFormat)));
    let truncated = load_rgb(&path("truncated.jpg"), &limits);
    assert!(matches!(truncated, Err(ImageLoadError::Corrupt(_))), "{truncated:?}");
    let bomb = load_rgb(&path("bomb.png"), &limits);
    assert!(matches!(bomb, Err(ImageLoadError::TooLarge { width: 100_000, height: 100_000, .. })), "{bomb:?}");
    let missing = load_rgb(&path("does_not_exist.png"), &limits);
    assert!(matches!(missing, Err(ImageLoadError::Io { .. })));
    // A configurable pixel limit is applied before decoding.
    let tight = ImageLimits { max_pixels: 100, max_side: 65_535 };
    assert!(matches!(load_rgb(&path("rgb.png"), &tight), Err(ImageLoadError::TooLarge { .. })));
    // Truncating a valid JPEG anywhere never panics.
    let bytes = std::fs::read(path("gray.jpg")).unwrap();
    for cut in (0..bytes.len()).step_by(7) {
        let _ = decode_rgb(&bytes[..cut], &limits);
    }
}
