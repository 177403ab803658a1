//! JPEG decoding with libjpeg-turbo's decoder (ISLOW IDCT, fancy upsampling): the same
//! pixels Pillow gives, which the official preprocessing starts from.

use super::decode::ImageLoadError;
use image::RgbImage;
use mozjpeg_sys as ffi;
use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    /// libjpeg warnings (e.g. premature end of data) seen by the decode on this thread.
    static WARNINGS: Cell<u32> = const { Cell::new(0) };
}

extern "C-unwind" fn record_warning(_cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    if level < 0 {
        WARNINGS.with(|w| w.set(w.get() + 1));
    }
}

extern "C-unwind" fn fatal_error(cinfo: &mut ffi::jpeg_common_struct) {
    // SAFETY: libjpeg calls error_exit with a valid cinfo whose `err` is our manager.
    #[allow(unsafe_code)]
    let code = unsafe { cinfo.err.as_ref().map(|e| e.msg_code).unwrap_or(-1) };
    std::panic::resume_unwind(Box::new(format!("libjpeg error code {code}")));
}

fn error_manager() -> ffi::jpeg_error_mgr {
    // SAFETY: jpeg_std_error initialises every field of a zeroed manager.
    #[allow(unsafe_code)]
    let mut err: ffi::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    #[allow(unsafe_code)]
    unsafe {
        ffi::jpeg_std_error(&mut err);
    }
    err.error_exit = Some(fatal_error);
    err.emit_message = Some(record_warning);
    err
}

/// What [`decode_jpeg`] found.
pub enum JpegOutcome {
    /// Decoded RGB pixels.
    Rgb(RgbImage),
    /// A colour space libjpeg does not convert to RGB (CMYK, YCCK): decode elsewhere.
    Unsupported,
}

/// Decodes a baseline or progressive JPEG to RGB after checking its declared size with
/// `check_size(width, height)`. Truncated or corrupt data is an error, never grey padding.
pub fn decode_jpeg(
    bytes: &[u8],
    check_size: impl Fn(u32, u32) -> Result<(), ImageLoadError>,
) -> Result<JpegOutcome, ImageLoadError> {
    WARNINGS.with(|w| w.set(0));
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<JpegOutcome, ImageLoadError> {
        let corrupt = |e: std::io::Error| ImageLoadError::Corrupt(e.to_string());
        let decompress = mozjpeg::Decompress::builder()
            .with_err(error_manager())
            .from_mem(bytes)
            .map_err(corrupt)?;
        let (w, h) = decompress.size();
        check_size(w as u32, h as u32)?;
        use mozjpeg::ColorSpace::{JCS_GRAYSCALE, JCS_RGB, JCS_YCbCr};
        if !matches!(decompress.color_space(), JCS_GRAYSCALE | JCS_RGB | JCS_YCbCr) {
            return Ok(JpegOutcome::Unsupported);
        }
        let mut started = decompress.rgb().map_err(corrupt)?;
        let pixels = started.read_scanlines::<u8>().map_err(corrupt)?;
        started.finish().map_err(corrupt)?;
        if pixels.len() != w * h * 3 {
            return Err(ImageLoadError::Corrupt(format!(
                "decoded {} of {} bytes",
                pixels.len(),
                w * h * 3
            )));
        }
        RgbImage::from_raw(w as u32, h as u32, pixels)
            .map(JpegOutcome::Rgb)
            .ok_or_else(|| ImageLoadError::Corrupt("pixel buffer size".into()))
    }));
    let outcome = match result {
        Ok(r) => r?,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".to_string());
            return Err(ImageLoadError::Corrupt(msg));
        }
    };
    let warnings = WARNINGS.with(|w| w.get());
    if warnings > 0 {
        return Err(ImageLoadError::Corrupt(format!(
            "JPEG data is truncated or damaged ({warnings} decoder warnings)"
        )));
    }
    Ok(outcome)
}
