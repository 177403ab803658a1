//! Decoding and resampling parity with Pillow (libjpeg-turbo 3.2 decode, Pillow 13 resize),
//! against the official-code fixtures in `../shared/fixtures`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::image::{ImageLimits, ResampleFilter, decode_rgb, load_rgb, resize_rgb8};
use chatrex_common::parity::{Fixture, shared_fixtures};
use image::RgbImage;

#[test]
fn bicubic_resize_matches_pillow_on_mllm_fixture() {
    let dir = shared_fixtures().unwrap().join("mllm");
    let fx = Fixture::open(&dir.join("ref/intermediates_test_chatrex_install.safetensors")).unwrap();
    let decoded = fx.u8("decoded_rgb_uint8_hwc").unwrap();
    let src = RgbImage::from_raw(640, 426, decoded).unwrap();
    // expand2square with the CLIP-mean fill, image pasted at (0, 107).
    let mut square = RgbImage::from_pixel(640, 640, image::Rgb([122, 116, 104]));
    image::imageops::replace(&mut square, &src, 0, 107);
    let out = resize_rgb8(&square, 768, 768, ResampleFilter::Bicubic);
    let expected = fx.u8("resized768_uint8_hwc").unwrap();
    let diff = out.as_raw().iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "{diff} of {} resized values differ from Pillow", expected.len());
}

#[test]
fn jpeg_decode_of_mllm_photo() {
    let dir = shared_fixtures().unwrap().join("mllm");
    let fx = Fixture::open(&dir.join("ref/intermediates_test_chatrex_install.safetensors")).unwrap();
    let expected = fx.u8("decoded_rgb_uint8_hwc").unwrap();
    let ours = load_rgb(&dir.join("test_chatrex_install.jpg"), &ImageLimits::default()).unwrap();
    let diffs: Vec<i32> = ours.as_raw().iter().zip(&expected).map(|(&a, &b)| a as i32 - b as i32).collect();
    let n = diffs.iter().filter(|d| **d != 0).count();
    let max = diffs.iter().map(|d| d.abs()).max().unwrap_or(0);
    println!("mllm jpeg: {n} of {} values differ, max {max}", expected.len());
    assert_eq!(n, 0);
}

#[test]
fn jpeg_decode_and_bilinear_resize_of_upn_photo() {
    let dir = shared_fixtures().unwrap().join("upn");
    let fx = Fixture::open(&dir.join("intermediates_test_upn_fine.safetensors")).unwrap();
    let bytes = std::fs::read(dir.join("test_upn.jpeg")).unwrap();
    let ours = decode_rgb(&bytes, &ImageLimits::default()).unwrap();
    assert_eq!((ours.width(), ours.height()), (2246, 1590));
    let row_sum = fx.i64("input.decoded_rgb_u8.row_sum").unwrap();
    let ours_rows: Vec<i64> = ours.rows().map(|r| r.map(|p| p.0.iter().map(|&v| v as i64).sum::<i64>()).sum()).collect();
    let bad_rows = ours_rows.iter().zip(&row_sum).filter(|(a, b)| a != b).count();
    let total: i64 = ours_rows.iter().zip(&row_sum).map(|(a, b)| (a - b).abs()).sum();
    println!("upn jpeg: {bad_rows} rows differ in sum, total abs row diff {total}");
    let resized = resize_rgb8(&ours, 1130, 800, ResampleFilter::Bilinear);
    let expected = fx.u8("input.resized_rgb_u8").unwrap();
    let diffs: Vec<i32> = resized.as_raw().iter().zip(&expected).map(|(&a, &b)| a as i32 - b as i32).collect();
    let n = diffs.iter().filter(|d| **d != 0).count();
    let max = diffs.iter().map(|d| d.abs()).max().unwrap_or(0);
    println!("upn resized: {n} of {} values differ, max {max}", expected.len());
    assert_eq!(bad_rows, 0);
    assert_eq!(n, 0);
}
