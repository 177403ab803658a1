//! Products of f32 inputs and f16 weights on bf16 AMX tiles, each operand split in two bf16
//! parts (prefill with f16 weights on a CPU with tiles).
//!
//! An f16 value has 11 significant bits: rounded to 8 it is a bf16 `w_hi`, and the rest,
//! `w − w_hi` (at most 4 significant bits), is a bf16 `w_lo` exactly, so `w = w_hi + w_lo`
//! with no rounding. An f32 input is rounded to a bf16 `x_hi` and its remainder to a bf16
//! `x_lo`, `x_hi + x_lo` within 2⁻¹⁶ of `x`. The tiles sum `x_hi·w_hi + x_lo·w_hi + x_hi·w_lo`
//! in f32 — three tile products per step where a bf16 weight takes one — and drop `x_lo·w_lo`
//! (at most 2⁻¹⁶ of the term): every term within 2⁻¹⁵ of the exact product of the f32 input
//! and the f16 weight, 16× finer than rounding the inputs to f16 (unit roundoff 2⁻¹¹) as
//! PyTorch's f16 products do. One tile product does 8192 multiply-adds against 16 for an
//! AVX-512 FMA, so three of them still run far faster than `gemm`'s f32 kernel on converted
//! weights: measured against that (interleaved, 2 threads), Llama-7B layers' prefill 1.50×,
//! Qwen2.5-0.5B's 1.92×, CLIP-L 1.65×, ConvNeXt-L 1.62×.
//!
//! The weight stays `[in, out]` f16 as [`crate::in_out_matrix::InOutMatrix`] holds it (2 bytes
//! a value, read as is by the decode kernel): each task converts its block of outputs into
//! split tiles (4 bytes a value, ≤ 1 MB, kept in L2) and runs every 32-row block of inputs
//! against them. Two rows of `[in, out]` give one tile row: for each of 16 outputs, the pair
//! of consecutive inputs the tiles multiply together — one 32-bit lane holding both halves.

use super::rounding::round_to_bf16_bits;
use super::tile_weight::BlockSums;
use super::{BLOCK, CacheAligned, OutPtr, TILE_K, TILE_ROWS, TILE_VALUES, available, tiles};
use half::{bf16, f16};
use rayon::prelude::*;

/// A weight value the split products read: f16 (split exactly) or f32 (its 16 leading
/// significant bits kept: the low part rounded to nearest, within 2⁻¹⁷ of the value).
pub trait SplitWeight: Copy + Send + Sync + sealed::Sealed {
    /// The value in f32.
    fn to_f32(self) -> f32;
    /// Splits `count` blocks of 32 outputs from `c0` (see [`split_pairs`]) with AVX-512.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; the caller checked the extents.
    #[cfg(target_arch = "x86_64")]
    #[doc(hidden)]
    unsafe fn split_pairs_avx512(w: &[Self], k: usize, n: usize, c0: usize, count: usize, tiles: &mut [bf16]);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for half::f16 {}
    impl Sealed for f32 {}
}

impl SplitWeight for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn split_pairs_avx512(w: &[Self], k: usize, n: usize, c0: usize, count: usize, tiles: &mut [bf16]) {
        // SAFETY: forwarded from the caller.
        #[allow(unsafe_code)]
        unsafe {
            x86::split_pairs_f16(w, k, n, c0, count, tiles)
        }
    }
}

impl SplitWeight for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn split_pairs_avx512(w: &[Self], k: usize, n: usize, c0: usize, count: usize, tiles: &mut [bf16]) {
        // SAFETY: forwarded from the caller.
        #[allow(unsafe_code)]
        unsafe {
            x86::split_pairs_f32(w, k, n, c0, count, tiles)
        }
    }
}

/// Split tiles of one 16-output block: one part (hi or lo) is `16 · k` values.
const fn part_values(k: usize) -> usize {
    TILE_ROWS * k
}

/// Values of one 32-output block's split tiles: `[hi₀][lo₀][hi₁][lo₁]`, each `16 · k`.
const fn pair_values(k: usize) -> usize {
    4 * part_values(k)
}

/// The largest split weight (4 bytes a value) converted whole, then run as tasks over row
/// blocks, each against the whole weight, which stays in L2 (ConvNeXt-L's first stages).
const ROW_TASK_SPLIT_BYTES: usize = 3 << 19;
/// Split tiles per task in the output-block order (at most; ≥ one 32-output block): they
/// stay in L2 while every row block of inputs runs against them. Measured on Llama-7B layers'
/// f16 prefill (2 threads, interleaved): 0.5 MB 0.92×, 1.5 MB 0.98× the speed at 1 MB.
const TASK_SPLIT_BYTES: usize = 1 << 20;
/// 32-output blocks per task (at most).
const PAIRS_PER_TASK: usize = 4;

/// Whether [`matmul_split`] runs `[k, n]` weights here: AMX is [`available`] and both
/// widths are whole numbers of 32.
pub fn split_f16_fits(k: usize, n: usize) -> bool {
    available() && k > 0 && n > 0 && k.is_multiple_of(TILE_K) && n.is_multiple_of(BLOCK)
}

/// `y [m, n] = x [m, k] · w` (or `+=` when `accumulate`) for an f16 weight `w [k, n]`
/// (`[in, out]` row-major) on bf16 tiles with both operands split (see the module docs), on
/// all rayon threads. Returns `false`, computing nothing, unless the shapes
/// [fit](split_f16_fits) and the slices hold `k · n`, `m · k` and `m · n` values.
pub fn matmul_f16_split(w: &[f16], k: usize, n: usize, x: &[f32], m: usize, y: &mut [f32], accumulate: bool) -> bool {
    matmul_split(w, k, n, x, m, y, accumulate)
}

/// [`matmul_f16_split`] for f16 or f32 weights ([`SplitWeight`]): an f32 weight keeps its 16
/// leading significant bits (two bf16 parts), so each product term is within about 2⁻¹⁶ of
/// the exact one.
pub fn matmul_split<W: SplitWeight>(w: &[W], k: usize, n: usize, x: &[f32], m: usize, y: &mut [f32], accumulate: bool) -> bool {
    if !split_f16_fits(k, n) || w.len() != k * n || x.len() != m * k || y.len() != m * n {
        return false;
    }
    if m == 0 {
        return true;
    }
    let inputs = SplitRows::from_f32(x, m, k);
    let out = OutPtr(y.as_mut_ptr());
    let run = |tiles: &[bf16], rb: usize, p: usize, local: &mut BlockSums| inputs.block(tiles, (rb, p), (out, n), accumulate, local);
    let (row_blocks, pairs, pair_len) = (m.div_ceil(BLOCK), n / BLOCK, pair_values(k));
    let threads = rayon::current_num_threads();
    if pairs * pair_len * 2 <= ROW_TASK_SPLIT_BYTES && row_blocks >= 2 * threads {
        let mut split = CacheAligned::<bf16>::recycled(pairs * pair_len);
        split.as_mut_slice().par_chunks_mut(pair_len).enumerate().for_each(|(p, tiles)| split_pairs(w, k, n, p..p + 1, tiles));
        let all = split.as_slice();
        (0..row_blocks).into_par_iter().for_each_init(
            || (BlockSums([0f32; BLOCK * BLOCK]), tiles::Configured::new()),
            |(local, _), rb| (0..pairs).for_each(|p| run(&all[p * pair_len..(p + 1) * pair_len], rb, p, local)),
        );
        split.recycle();
        return true;
    }
    let per_task = (pairs / (4 * threads).max(1)).clamp(1, (TASK_SPLIT_BYTES / (2 * pair_len)).clamp(1, PAIRS_PER_TASK));
    (0..pairs.div_ceil(per_task)).into_par_iter().for_each_init(
        || (BlockSums([0f32; BLOCK * BLOCK]), tiles::Configured::new()),
        |(local, _), task| {
            let outputs = task * per_task..((task + 1) * per_task).min(pairs);
            let mut split = CacheAligned::<bf16>::recycled(outputs.len() * pair_len);
            split_pairs(w, k, n, outputs.clone(), split.as_mut_slice());
            for rb in 0..row_blocks {
                for (tiles, p) in split.as_slice().chunks_exact(pair_len).zip(outputs.clone()) {
                    run(tiles, rb, p, local);
                }
            }
            split.recycle();
        },
    );
    true
}

/// Inputs split into bf16 parts, the row operand of the split tiles: each of `m` rows holds
/// `k` high parts then `k` low parts (both starting a cache line, `k` being a multiple of 32),
/// then a line of padding (so that the 16 rows of a tile fall in different L1 sets); rows
/// appended up to a multiple of 32 hold unspecified values (their sums are never stored).
struct SplitRows {
    data: CacheAligned<bf16>,
    m: usize,
    k: usize,
    stride: usize,
}

impl SplitRows {
    /// `x [m, k]` split (rows in parallel), in a buffer recycled from this thread's spares.
    fn from_f32(x: &[f32], m: usize, k: usize) -> Self {
        let stride = 2 * k + TILE_K;
        let mut data = CacheAligned::recycled(m.div_ceil(BLOCK) * BLOCK * stride);
        let rows_per_task = (16 * 1024 / k.max(1)).max(1);
        data.as_mut_slice()[..m * stride]
            .par_chunks_mut(rows_per_task * stride)
            .zip(x.par_chunks(rows_per_task * k))
            .for_each(|(dst, src)| {
                for (d, s) in dst.chunks_exact_mut(stride).zip(src.chunks_exact(k)) {
                    let (hi, lo) = d[..2 * k].split_at_mut(k);
                    split_to_bf16(s, hi, lo);
                }
            });
        Self { data, m, k, stride }
    }

    /// The 32×32 block of sums of row block `rb` against the 32 outputs of `tiles` (block `p`
    /// of the weight's, `[hi₀][lo₀][hi₁][lo₁]`), stored into (or added to, when `accumulate`)
    /// `y [m, n]`: straight from the tiles for a full block of rows, through `local` for a
    /// last, partial one. The tiles must be configured on this thread.
    fn block(&self, tiles: &[bf16], (rb, p): (usize, usize), (out, n): (OutPtr, usize), accumulate: bool, local: &mut BlockSums) {
        let (k, stride) = (self.k, self.stride);
        let part = part_values(k);
        if tiles.len() < 4 * part {
            return;
        }
        let rows = BLOCK.min(self.m - rb * BLOCK);
        let first = &self.data.as_slice()[rb * BLOCK * stride..];
        let a_hi = [first.as_ptr(), first[TILE_ROWS * stride..].as_ptr()];
        let a_lo = a_hi.map(|a| a.wrapping_add(k));
        let b_hi = [tiles.as_ptr(), tiles[2 * part..].as_ptr()];
        let b_lo = [tiles[part..].as_ptr(), tiles[3 * part..].as_ptr()];
        let steps = k / TILE_K;
        // SAFETY (of the offset): rows rb·32 .. +rows ≤ m and columns p·32 .. +32 ≤ n lie
        // inside y [m, n].
        #[allow(unsafe_code)]
        let target = unsafe { out.get().add(rb * BLOCK * n + p * BLOCK) };
        if rows == BLOCK {
            // SAFETY: `first` holds 32 rows of `stride` values (hi at 0, lo at k, each k long);
            // each `b` pointer `steps` tiles; `target` 32 rows of 32 f32 at n·4 bytes inside y;
            // the tiles are configured; no other task writes these rows and columns.
            #[allow(unsafe_code)]
            unsafe {
                tiles::block_2x2_split_rows(a_hi, a_lo, stride * 2, b_hi, b_lo, steps, target, n * 4, accumulate);
            }
            return;
        }
        let sums = &mut local.0;
        for i in 0..rows {
            // SAFETY: row rb·32 + i < m, 32 columns from p·32 ≤ n − 32: inside y.
            #[allow(unsafe_code)]
            let row = unsafe { std::slice::from_raw_parts_mut(target.add(i * n), BLOCK) };
            if accumulate {
                sums[i * BLOCK..(i + 1) * BLOCK].copy_from_slice(row);
            }
        }
        // SAFETY: as above, into the local 32×32 block (rows of 128 bytes); the padded rows of
        // `first` are inside the buffer (rows up to a multiple of 32).
        #[allow(unsafe_code)]
        unsafe {
            if rows <= TILE_ROWS {
                tiles::block_1x2_split_rows(a_hi[0], a_lo[0], stride * 2, b_hi, b_lo, steps, sums.as_mut_ptr(), BLOCK * 4, accumulate);
            } else {
                tiles::block_2x2_split_rows(a_hi, a_lo, stride * 2, b_hi, b_lo, steps, sums.as_mut_ptr(), BLOCK * 4, accumulate);
            }
        }
        for i in 0..rows {
            // SAFETY: as above.
            #[allow(unsafe_code)]
            let row = unsafe { std::slice::from_raw_parts_mut(target.add(i * n), BLOCK) };
            row.copy_from_slice(&sums[i * BLOCK..(i + 1) * BLOCK]);
        }
    }
}

impl Drop for SplitRows {
    fn drop(&mut self) {
        std::mem::replace(&mut self.data, CacheAligned::empty()).recycle();
    }
}

/// The split tiles of the 32-output blocks `pairs` of `w [k, n]` into `tiles`, one after the
/// other, [`pair_values`] each (`[hi₀][lo₀][hi₁][lo₁]`): for each 16-output half and each
/// 32-value step `s` of the inputs, a tile in `hi` and one in `lo` (512 values each) whose row
/// `r` holds, for each output `c`, the pair of inputs `32s + 2r`, `32s + 2r + 1`; `hi` rounded
/// to nearest (ties to even), `lo` the exact rest. The blocks are converted together, row by
/// row (each row's part of them is contiguous). Writes nothing unless `k` is a multiple of 32,
/// the blocks lie inside `n`, `w` holds `k · n` values and `tiles` [`pair_values`] per block.
fn split_pairs<W: SplitWeight>(w: &[W], k: usize, n: usize, pairs: std::ops::Range<usize>, tiles: &mut [bf16]) {
    if !k.is_multiple_of(TILE_K) || pairs.end * BLOCK > n || w.len() < k * n || tiles.len() < pairs.len() * pair_values(k) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512 F was just detected; the extents were checked above.
        #[allow(unsafe_code)]
        unsafe {
            W::split_pairs_avx512(w, k, n, pairs.start * BLOCK, pairs.len(), tiles)
        };
        return;
    }
    for (p, tiles) in pairs.zip(tiles.chunks_exact_mut(pair_values(k))) {
        split_pair_integer(w, k, n, p, tiles);
    }
}

/// One block of [`split_pairs`] in integer operations (the caller checked the extents).
fn split_pair_integer<W: SplitWeight>(w: &[W], k: usize, n: usize, p: usize, tiles: &mut [bf16]) {
    let part = part_values(k);
    for (half, block) in tiles.chunks_exact_mut(2 * part).take(2).enumerate() {
        let (hi, lo) = block.split_at_mut(part);
        let c0 = p * BLOCK + half * TILE_ROWS;
        for pair in 0..k / 2 {
            let at = tile_row_start(pair);
            for c in 0..TILE_ROWS {
                for e in 0..2 {
                    // Both parts nearest, ties to even (±inf and NaN keep their high half);
                    // an f16 value's rest has at most 4 significant bits (exact in bf16).
                    (hi[at + 2 * c + e], lo[at + 2 * c + e]) = split_value(w[(2 * pair + e) * n + c0 + c].to_f32());
                }
            }
        }
    }
}

/// Where the tile row of inputs `2·pair`, `2·pair + 1` starts in a 16-output block's tiles.
fn tile_row_start(pair: usize) -> usize {
    (pair / TILE_ROWS) * TILE_VALUES + (pair % TILE_ROWS) * 2 * TILE_ROWS
}

/// `src` split into `hi` (rounded to bf16, nearest even) and `lo` (the remainder rounded),
/// as many values as the shortest holds. Subnormal values become zero on the AVX-512 BF16
/// path, which the tiles would do anyway.
pub(super) fn split_to_bf16(src: &[f32], hi: &mut [bf16], lo: &mut [bf16]) {
    let len = src.len().min(hi.len()).min(lo.len());
    let (src, hi, lo) = (&src[..len], &mut hi[..len], &mut lo[..len]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the CPU has AVX-512 BF16 (and so F), checked just above; equal lengths.
        #[allow(unsafe_code)]
        unsafe {
            x86::split_to_bf16(src, hi, lo)
        };
        return;
    }
    for ((h, l), &v) in hi.iter_mut().zip(lo.iter_mut()).zip(src) {
        (*h, *l) = split_value(v);
    }
}

/// One value's high and low bf16 parts (integer rounding, as [`super::round_to_bf16`]).
fn split_value(v: f32) -> (bf16, bf16) {
    let high = round_to_bf16_bits(v.to_bits());
    let rest = v - f32::from_bits(u32::from(high) << 16);
    (bf16::from_bits(high), bf16::from_bits(round_to_bf16_bits(rest.to_bits())))
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use super::split_value;
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    /// Rows ahead of the conversion that [`split_pairs`] prefetches: the rows of `[in, out]`
    /// are far apart (8–22 KB for the LLMs), beyond the hardware prefetchers' reach. Measured
    /// on Llama-7B layers' f16 prefill against none: 8, 16, 32, 64, 128 rows 1.10, 1.11, 1.12,
    /// 1.15, 1.07×.
    const PREFETCH_ROWS: usize = 32;

    /// [`super::split_pairs`] with AVX-512 for f16 weights, `count` blocks from output `c0`:
    /// two input rows of each block's 32 outputs (a cache line each) converted to f32 and
    /// split ([`split_rows`]); the rows [`PREFETCH_ROWS`] ahead prefetched.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; the caller checked the extents (see the safe wrapper).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn split_pairs_f16(w: &[f16], k: usize, n: usize, c0: usize, count: usize, tiles: &mut [bf16]) {
        // SAFETY: the caller checked the extents: rows < k, columns c0 .. c0 + 32·count ≤ n.
        unsafe {
            split_rows::<_, false>(w.as_ptr(), k, n, c0, count, tiles, |row| _mm512_cvtph_ps(_mm256_loadu_si256(row.cast())))
        }
    }

    /// [`split_pairs_f16`] for f32 weights (16 values a load).
    ///
    /// # Safety
    /// As [`split_pairs_f16`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn split_pairs_f32(w: &[f32], k: usize, n: usize, c0: usize, count: usize, tiles: &mut [bf16]) {
        // SAFETY: as above.
        unsafe { split_rows::<_, true>(w.as_ptr(), k, n, c0, count, tiles, |row| _mm512_loadu_ps(row)) }
    }

    /// The split of [`super::split_pairs`]: for each pair of input rows and each 16-output
    /// half-block, 16 values of each row (`load` reads them as f32 from a row pointer) rounded
    /// to bf16 in integer operations (nearest, ties to even), the high halves interleaved in
    /// vectors of 16 pairs, the remainders in others: rounded the same way with `ROUND_LOW`
    /// (f32 values), else truncated (an f16 value's remainder is exact in bf16; skipping the
    /// rounding keeps the f16 conversion as fast as before f32 weights shared this loop).
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `w` holds `k` rows of `n` values and the blocks lie inside `n`
    /// and `tiles`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn split_rows<T, const ROUND_LOW: bool>(w: *const T, k: usize, n: usize, c0: usize, count: usize, tiles: &mut [bf16], load: impl Fn(*const T) -> __m512) {
        let (part, pair_len) = (super::part_values(k), super::pair_values(k));
        let line = 64 / size_of::<T>();
        for pair in 0..k / 2 {
            let at = super::tile_row_start(pair);
            let row = |i: usize| w.wrapping_add(i * n + c0);
            let next = 2 * pair + PREFETCH_ROWS;
            if next + 1 < k {
                for r in [row(next), row(next + 1)] {
                    for l in 0..=(32 * count).div_ceil(line) {
                        _mm_prefetch::<_MM_HINT_T0>(r.wrapping_add(line * l).cast());
                    }
                }
            }
            for block in 0..2 * count {
                let (q, half) = (block / 2, block % 2);
                // SAFETY: rows 2·pair, 2·pair + 1 < k and columns c0 + 16·block .. +16 ≤ n lie
                // inside w; 32 values from `at` of each part of block q lie inside `tiles`
                // (count blocks of 4 parts of 16·k).
                unsafe {
                    let even = load(row(2 * pair).add(16 * block));
                    let odd = load(row(2 * pair + 1).add(16 * block));
                    let (even_high, odd_high) = (round_high(_mm512_castps_si512(even)), round_high(_mm512_castps_si512(odd)));
                    let hi_pairs = _mm512_or_si512(_mm512_srli_epi32::<16>(even_high), odd_high);
                    let even_low = _mm512_castps_si512(_mm512_sub_ps(even, _mm512_castsi512_ps(even_high)));
                    let odd_low = _mm512_castps_si512(_mm512_sub_ps(odd, _mm512_castsi512_ps(odd_high)));
                    let (even_low, odd_low) = if ROUND_LOW {
                        (round_high(even_low), round_high(odd_low))
                    } else {
                        (even_low, _mm512_and_si512(odd_low, _mm512_set1_epi32(0xffff_0000_u32 as i32)))
                    };
                    let lo_pairs = _mm512_or_si512(_mm512_srli_epi32::<16>(even_low), odd_low);
                    let hi = tiles.as_mut_ptr().add(q * pair_len + 2 * half * part + at);
                    _mm512_storeu_si512(hi.cast(), hi_pairs);
                    _mm512_storeu_si512(hi.add(part).cast(), lo_pairs);
                }
            }
        }
    }

    /// The f32 values of `bits` rounded to bf16 (nearest, ties to even), as f32 bits (the low
    /// half zero): finite values below the largest bf16 (weights are far from it; an f16
    /// always is); ±inf and NaN keep their high half.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn round_high(bits: __m512i) -> __m512i {
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        let biased = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
        _mm512_and_si512(biased, _mm512_set1_epi32(0xffff_0000_u32 as i32))
    }

    /// [`super::split_to_bf16`] 16 values at a time; the slices have one length.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn split_to_bf16(src: &[f32], hi: &mut [bf16], lo: &mut [bf16]) {
        let whole = src.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            // SAFETY: 16 values from i < whole ≤ len in each slice; unaligned loads and stores.
            unsafe {
                let v = _mm512_loadu_ps(src.as_ptr().add(i));
                let high: __m256i = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
                let high_f32 = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(high)));
                let low: __m256i = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(v, high_f32)));
                _mm256_storeu_si256(hi.as_mut_ptr().add(i).cast(), high);
                _mm256_storeu_si256(lo.as_mut_ptr().add(i).cast(), low);
            }
        }
        for i in whole..src.len() {
            (hi[i], lo[i]) = split_value(src[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{tile_test_rng, uniform};
    use super::*;

    /// f64 product of the f32 inputs and the f16 weights, nothing rounded.
    fn exact(w: &[f16], k: usize, n: usize, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for o in 0..n {
                let s: f64 = (0..k).map(|j| f64::from(x[i * k + j]) * f64::from(w[j * n + o].to_f32())).sum();
                y[i * n + o] = s as f32;
            }
        }
        y
    }

    /// Within 10⁻⁵ of the exact product on every path (measured 3.3e-6): full and partial row blocks (1–16
    /// and 17–31 rows), long reductions, the row-task order (a small weight) and the
    /// output-block order, overwriting and adding. A weight's low part left out would be off
    /// by ≈ 2⁻⁹, an input's by ≈ 2⁻⁹ as well.
    #[test]
    fn split_product_matches_the_exact_product() {
        let Some(mut rng) = tile_test_rng(21) else { return };
        for &(m, k, n) in &[(32, 32, 32), (33, 64, 64), (47, 96, 96), (50, 64, 64), (100, 4096, 64), (300, 128, 1024), (70, 1024, 2048)] {
            // Weights of an LLM's scale (|w| < 0.1), some tiny (f16 subnormals).
            let mut w: Vec<f16> = uniform(&mut rng, k * n, 0.1).into_iter().map(f16::from_f32).collect();
            w[1] = f16::from_f32(3e-7);
            let x = uniform(&mut rng, m * k, 2.0);
            let want = exact(&w, k, n, &x, m);
            let mut y = vec![f32::NAN; m * n];
            assert!(matmul_f16_split(&w, k, n, &x, m, &mut y, false));
            let err = crate::parity::compare(&y, &want).rel;
            assert!(err < 1e-5, "m={m} k={k} n={n}: rel. error {err}");

            let start = uniform(&mut rng, m * n, 1.0);
            let mut y = start.clone();
            assert!(matmul_f16_split(&w, k, n, &x, m, &mut y, true));
            let want: Vec<f32> = want.iter().zip(&start).map(|(p, s)| p + s).collect();
            let err = crate::parity::compare(&y, &want).rel;
            assert!(err < 1e-5, "m={m} k={k} n={n}, added: rel. error {err}");
        }
    }

    #[test]
    fn shapes_that_do_not_fit_compute_nothing() {
        if !available() {
            return;
        }
        let w = vec![f16::ONE; 64 * 48];
        let mut y = vec![7.0f32; 2 * 48];
        assert!(!matmul_f16_split(&w, 64, 48, &[1.0; 128], 2, &mut y, false), "48 outputs are not whole 32-blocks");
        assert!(!matmul_f16_split(&w[..64 * 32], 64, 32, &[1.0; 127], 2, &mut y[..64], false), "short input");
        assert!(y.iter().all(|&v| v == 7.0));
    }

    /// Both ways of splitting (AVX-512 and integer) give the same parts, and the parts add up
    /// to within 2⁻¹⁶ of every normal value; f16 weights split exactly, the same way by the
    /// AVX-512 and the integer code, with `hi` the nearest bf16.
    #[test]
    fn splits_add_up() {
        let values: Vec<f32> = (0..1000u32).map(|i| f32::from_bits(0x3f80_0000 ^ (i.wrapping_mul(2_654_435_761u32) >> 9)) * if i % 2 == 0 { 1.0 } else { -3.0 }).collect();
        let (mut hi, mut lo) = (vec![bf16::ZERO; values.len()], vec![bf16::ZERO; values.len()]);
        split_to_bf16(&values, &mut hi, &mut lo);
        for ((&v, h), l) in values.iter().zip(&hi).zip(&lo) {
            assert_eq!((*h, *l), split_value(v), "{v:e}");
            let sum = f64::from(h.to_f32()) + f64::from(l.to_f32());
            assert!(((sum - f64::from(v)) / f64::from(v)).abs() <= 2f64.powi(-16), "{v:e}: {sum:e}");
        }
        let (k, n) = (64, 96);
        let w: Vec<f16> = (0..k * n).map(|i| f16::from_bits((i as u16).wrapping_mul(40_503) & 0x7bff)).collect();
        let mut both = vec![bf16::ZERO; 2 * pair_values(k)];
        split_pairs(&w, k, n, 1..3, &mut both);
        let mut integer = vec![bf16::ZERO; 2 * pair_values(k)];
        for (p, tiles) in (1..3).zip(integer.chunks_exact_mut(pair_values(k))) {
            split_pair_integer(&w, k, n, p, tiles);
        }
        assert!(both == integer, "AVX-512 and integer splits differ");
        let tiles = &both[..pair_values(k)];
        let part = part_values(k);
        for j in 0..k {
            for c in 0..32 {
                let at = 2 * (c / 16) * part + tile_row_start(j / 2) + 2 * (c % 16) + j % 2;
                let v = w[j * n + 32 + c].to_f32();
                assert_eq!(tiles[at].to_f32() + tiles[at + part].to_f32(), v, "input {j}, output {c}");
                assert_eq!(tiles[at], bf16::from_f32(v), "input {j}, output {c}");
            }
        }
    }
}
