//! f32 → bf16 rounding of the tiles' inputs: nearest, ties to even, as PyTorch's bf16
//! conversion — one `VCVTNEPS2BF16` per 16 values where the CPU has AVX-512 BF16 (every CPU
//! with AMX does), integer operations elsewhere.

use half::bf16;

/// `src` rounded to bf16 into `dst` (as many values as the shorter holds). Subnormal inputs
/// become zero on the AVX-512 BF16 path (the instruction flushes them), which the tiles
/// would do anyway: `TDPBF16PS` treats subnormal inputs as zero.
pub fn round_to_bf16(src: &[f32], dst: &mut [bf16]) {
    let len = src.len().min(dst.len());
    let (src, dst) = (&src[..len], &mut dst[..len]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the CPU has AVX-512 BF16 (and so AVX-512 F), checked just above.
        #[allow(unsafe_code)]
        unsafe {
            round_avx512_bf16(src, dst)
        };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = bf16::from_bits(round_to_bf16_bits(s.to_bits()));
    }
}

/// [`round_to_bf16`] 16 values at a time; `src` and `dst` have the same length.
///
/// # Safety
/// The CPU has AVX-512 F and BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(unsafe_code)]
unsafe fn round_avx512_bf16(src: &[f32], dst: &mut [bf16]) {
    use std::arch::x86_64::{__m256bh, __m256i, _mm256_storeu_si256, _mm512_cvtneps_pbh, _mm512_loadu_ps};
    let mut chunks = dst.chunks_exact_mut(16);
    let mut sources = src.chunks_exact(16);
    for (d, s) in (&mut chunks).zip(&mut sources) {
        // SAFETY: both chunks hold 16 values (64 and 32 bytes); unaligned loads and stores.
        unsafe {
            let rounded = _mm512_cvtneps_pbh(_mm512_loadu_ps(s.as_ptr()));
            _mm256_storeu_si256(d.as_mut_ptr().cast::<__m256i>(), std::mem::transmute::<__m256bh, __m256i>(rounded));
        }
    }
    for (d, &s) in chunks.into_remainder().iter_mut().zip(sources.remainder()) {
        *d = bf16::from_bits(round_to_bf16_bits(s.to_bits()));
    }
}

/// The bits of the bf16 nearest to the f32 with bits `bits` (ties to even; NaN stays a
/// quiet NaN; subnormals kept), in integer operations.
#[inline(always)]
pub(super) fn round_to_bf16_bits(bits: u32) -> u16 {
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    let nan = (bits & 0x7fff_ffff) > 0x7f80_0000;
    (if nan { (bits >> 16) | 0x40 } else { rounded }) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ties (1 + 2⁻⁸ rounds down to even, 1 + 3·2⁻⁸ up), subnormals, huge and infinite
    /// values, and a spread of bit patterns.
    fn edge_values() -> Vec<f32> {
        let values = [
            0.0f32, -0.0, 1.0, f32::from_bits(0x3f80_8000), f32::from_bits(0x3f81_8000), -2.5e-39, 3.0e38, f32::MAX, f32::MIN_POSITIVE,
            f32::INFINITY, f32::NEG_INFINITY, 1.0 + f32::EPSILON, 0.1, -7.3,
        ];
        values.into_iter().chain((0..10_000).map(|i| f32::from_bits(i * 429_497 + 12_345))).collect()
    }

    #[test]
    fn rounding_matches_half_on_edge_values() {
        for v in edge_values() {
            let ours = round_to_bf16_bits(v.to_bits());
            let theirs = bf16::from_f32(v);
            if v.is_nan() {
                assert!(bf16::from_bits(ours).is_nan(), "{v:e}");
            } else {
                assert_eq!(ours, theirs.to_bits(), "{v:e}");
            }
        }
    }

    #[test]
    fn slice_rounding_matches_half_except_for_flushed_subnormals() {
        // 10_014 values: whole 16-value chunks and a remainder.
        let src = edge_values();
        let mut dst = vec![bf16::ZERO; src.len()];
        round_to_bf16(&src, &mut dst);
        for (&v, &ours) in src.iter().zip(&dst) {
            let theirs = bf16::from_f32(v);
            if v.is_nan() {
                assert!(ours.is_nan(), "{v:e}");
            } else if v.is_subnormal() {
                assert!(ours == theirs || ours.to_f32() == 0.0, "{v:e}: {ours} vs {theirs}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{v:e}");
            }
        }
    }
}
