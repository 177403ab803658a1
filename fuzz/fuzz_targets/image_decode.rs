//! Image decoding and both preprocessing chains on arbitrary bytes.
#![no_main]
use chatrex_common::image::{ImageLimits, ResampleFilter, decode_rgb, resize_rgb8};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ImageLimits { max_pixels: 1 << 20, max_side: 4096 };
    if let Ok(img) = decode_rgb(data, &limits) {
        let (w, h) = chatrex_upn::preprocess::resized_size(img.width() as usize, img.height() as usize);
        // Small targets keep iterations fast; the code paths are the same.
        let _ = resize_rgb8(&img, (w / 16).max(1) as u32, (h / 16).max(1) as u32, ResampleFilter::Bilinear);
        let inputs = chatrex_encoder::preprocess::tower_inputs(&img, 64, 28);
        assert_eq!(inputs.low_res.len(), 3 * 28 * 28);
        let b = inputs.frame.map_box([0.0, 0.0, img.width() as f32, img.height() as f32]);
        assert!(b.iter().all(|v| v.is_finite()));
    }
});
