//! One row of inputs against a [`TileWeight`] (a decode step): `VDPBF16PS` (AVX-512 BF16)
//! straight on the tile-ordered weight, instead of the tiles, whose 32-row products would
//! waste 31 rows and, measured on decode (Qwen2.5-0.5B and Llama-7B layers, 2 threads),
//! reached only 46–54% of the memory-bandwidth limit.
//!
//! Row `r` of a weight tile holds, for each of its 16 outputs `c`, the pair `W[c][2r]`,
//! `W[c][2r+1]` of its 32-value step: one `VDPBF16PS` with the input pair `x[2r]`, `x[2r+1]`
//! broadcast adds both products into the 16 outputs' sums. Each task reads four 16-output
//! blocks side by side (four memory streams, as the stored-layout GEMV), two sums per block
//! (even and odd rows) to shorten the dependency chains.

use super::{TILE_K, TILE_ROWS, TILE_VALUES, TileWeight, round_to_bf16};
use half::bf16;
use rayon::prelude::*;

/// 16-output blocks read side by side by one task.
const STREAMS: usize = 4;

/// Whether this CPU has the instruction (every CPU with AMX does; checked all the same).
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16") && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl TileWeight {
    /// `y [n] = x [k] · Wᵀ` for one row of inputs, rounded to bf16 (as the tile products
    /// round them), sums in f32, on all rayon threads. Returns `false`, computing nothing,
    /// when a slice is shorter than its shape or the CPU lacks AVX-512 BF16.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) -> bool {
        let (n, k) = (self.rows(), self.cols());
        if x.len() < k || y.len() < n || !available() {
            return false;
        }
        // The inputs as bf16 pairs, one 32-bit value per pair (the first in the low half).
        let mut rounded = vec![bf16::ZERO; k];
        round_to_bf16(&x[..k], &mut rounded);
        let pairs: Vec<u32> = rounded.chunks_exact(2).map(|p| u32::from(p[0].to_bits()) | u32::from(p[1].to_bits()) << 16).collect();
        let steps = k / TILE_K;
        let tiles = self.tiles();
        y[..n].par_chunks_mut(STREAMS * TILE_ROWS).enumerate().for_each(|(task, out)| {
            let first = task * STREAMS;
            let blocks = out.len() / TILE_ROWS;
            let block_tiles = |b: usize| &tiles[(first + b) * steps * TILE_VALUES..(first + b + 1) * steps * TILE_VALUES];
            if blocks == STREAMS {
                // SAFETY: the CPU has AVX-512 F and BF16 (checked above); each block holds
                // `steps` tiles and `pairs` k/2 values.
                #[allow(unsafe_code)]
                unsafe {
                    x86::blocks::<STREAMS>(std::array::from_fn(&block_tiles), &pairs, steps, out);
                }
            } else {
                for (b, out) in out.chunks_exact_mut(TILE_ROWS).enumerate() {
                    // SAFETY: as above, one block.
                    #[allow(unsafe_code)]
                    unsafe {
                        x86::blocks::<1>([block_tiles(b)], &pairs, steps, out);
                    }
                }
            }
        });
        true
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use super::{TILE_ROWS, TILE_VALUES};
    use half::bf16;
    use std::arch::x86_64::*;

    /// The 16 sums of each of `N` output blocks into `out [N·16]`: `tiles[b]` holds block
    /// `b`'s `steps` tiles, `pairs` the `16·steps` input pairs.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BF16; every `tiles[b]` holds `steps · 512` values, `pairs`
    /// `steps · 16`, `out` `N · 16`.
    /// Steps (1 KB of tiles per block) ahead that the weight is prefetched into L1, two lines
    /// per two loaded. Measured on decode (32 steps, 2 threads, one binary with the prefetch
    /// toggled, both orders): Llama-7B layers 1.11× / 1.04×, Qwen2.5-0.5B 1.13× / 1.00×;
    /// 4 steps ahead against 8: 1.01× / 1.03× (within the harness's order effect), 32: level.
    const PREFETCH_STEPS: usize = 8;

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn blocks<const N: usize>(tiles: [&[bf16]; N], pairs: &[u32], steps: usize, out: &mut [f32]) {
        let mut even = [_mm512_setzero_ps(); N];
        let mut odd = [_mm512_setzero_ps(); N];
        // SAFETY: every load reads tile row r of step s (< steps) of a block, 32 values at
        // s·512 + r·32 < steps·512; pairs[s·16 + r] < steps·16; 16 sums per block stored.
        unsafe {
            for s in 0..steps {
                for r in (0..TILE_ROWS).step_by(2) {
                    let x0 = _mm512_set1_epi32(*pairs.get_unchecked(s * TILE_ROWS + r) as i32);
                    let x1 = _mm512_set1_epi32(*pairs.get_unchecked(s * TILE_ROWS + r + 1) as i32);
                    for b in 0..N {
                        let row = tiles[b].as_ptr().add(s * TILE_VALUES + r * 2 * TILE_ROWS);
                        // The same two lines PREFETCH_STEPS steps ahead (past a block's end:
                        // the next block's tiles or nothing; a prefetch never faults).
                        let ahead = row.wrapping_add(PREFETCH_STEPS * TILE_VALUES).cast::<i8>();
                        _mm_prefetch::<_MM_HINT_T0>(ahead);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                        let w0 = _mm512_loadu_si512(row.cast());
                        let w1 = _mm512_loadu_si512(row.add(2 * TILE_ROWS).cast());
                        even[b] = _mm512_dpbf16_ps(even[b], std::mem::transmute::<__m512i, __m512bh>(w0), std::mem::transmute::<__m512i, __m512bh>(x0));
                        odd[b] = _mm512_dpbf16_ps(odd[b], std::mem::transmute::<__m512i, __m512bh>(w1), std::mem::transmute::<__m512i, __m512bh>(x1));
                    }
                }
            }
            for b in 0..N {
                _mm512_storeu_ps(out.as_mut_ptr().add(b * TILE_ROWS), _mm512_add_ps(even[b], odd[b]));
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    //! Stub: `available()` is false off x86-64, so this is never called.
    #[allow(clippy::missing_safety_doc)]
    pub unsafe fn blocks<const N: usize>(_: [&[half::bf16]; N], _: &[u32], _: usize, _: &mut [f32]) {}
}

#[cfg(test)]
mod tests {
    use super::super::tests::{reference, tile_test_rng, uniform, uniform_bf16};
    use super::*;

    /// The one-row product equals the rounded-input reference, for block counts that fill
    /// whole four-block tasks and that leave a remainder.
    #[test]
    fn matvec_matches_the_rounded_product() {
        let Some(mut rng) = tile_test_rng(14) else { return };
        if !available() {
            return;
        }
        for &(n, k) in &[(32, 32), (96, 64), (128, 896), (4864, 896), (160, 4096)] {
            let w = uniform_bf16(&mut rng, n * k);
            let x = uniform(&mut rng, k, 1.0);
            let packed = TileWeight::pack(&w, n, k).expect("shapes fit");
            let mut y = vec![f32::NAN; n];
            assert!(packed.matvec(&x, &mut y));
            let want = reference(&w, n, k, &x, 1);
            let err = crate::parity::compare(&y, &want).rel;
            assert!(err < 1e-6, "n={n} k={k}: rel. error {err}");
        }
        let packed = TileWeight::pack(&[bf16::ZERO; 32 * 32], 32, 32).expect("shapes fit");
        assert!(!packed.matvec(&[0.0; 31], &mut [0.0; 32]), "short input");
        assert!(!packed.matvec(&[0.0; 32], &mut [0.0; 31]), "short output");
    }
}
