//! A weight held transposed, `[in, out]`, in f32 or f16: the layout the `gemm` crate packs
//! fastest, with its own weight-streaming kernel for a few input rows (decoding).
//!
//! PyTorch stores a linear layer's weight `[out, in]`; `gemm` reads that as a transposed
//! right-hand side and gathers it column by column into its packed panels on every call.
//! Measured here (2 threads, 700 rows): `[in, out]` runs `gemm` at 375 vs 287 GFLOP/s for
//! `[896, 4864]` inputs to 896 outputs (Qwen2.5-0.5B's down_proj), 346 vs 248 at 128 outputs,
//! 367 vs 313 at 896 → 896, level for the widest outputs. A matrix-vector product over
//! `[in, out]` is a sum of weight rows scaled by the inputs: each thread streams its own
//! contiguous share of the rows into an `out`-long partial sum that stays in cache. f16 values
//! are converted in registers there, and for larger batches a block of whole rows at a time
//! (contiguous in this layout) is converted into a kept f32 buffer for `gemm`, which adds
//! block by block into the output.
//!
//! Against the `[out, in]` layout with its four-row dot-product kernel (interleaved A/B, 2
//! threads, Qwen2.5-0.5B / Llama-7B layers): f32 prefill 1.06× / 1.07×, f32 decode 1.15× /
//! 1.13×; f16 prefill 1.16× / 1.21×, f16 decode 1.06× / 0.91–0.95× (Llama's decode loses a
//! little; variants tried: 4, 8 or 16 rows per pass, 1–8 streams, more partials per thread,
//! other prefetch distances and hints, column blocks per thread — none better).

use half::f16;
use rayon::prelude::*;
use std::cell::RefCell;

/// Batches up to this size stream the weight once through [`InOutMatrix`]'s row-sum kernel;
/// larger ones run `gemm`, or for f16 weights on a CPU with AMX tiles
/// [`crate::amx::matmul_f16_split`] (inputs and weights split in two bf16 parts each).
/// Measured for an f16 4096 × 4096 weight, 2 threads: row sums 0.8 / 1.6 / 2.8 ms for 1 / 4 /
/// 8 rows, split tiles 3.4–3.6 ms for 1–16 rows, 4.9 ms for 32; `gemm` 5.7–6.5 ms from 9 rows.
const SMALL_BATCH: usize = 8;
/// f16 values converted per block for `gemm` (16 MB of f32): whole rows, at least a few
/// hundred of them for the LLM's widths, so that `gemm` runs each block at full speed.
/// Measured on Llama-7B layers' f16 prefill (interleaved): 1, 2, 4 and 16 Mi values 3.46,
/// 3.35, 3.24 and 3.30 s; blocks of whole columns instead (every `gemm` over all of `k`, no
/// sums added back) 3.25–3.36 s against 3.14 s.
const BLOCK_VALUES: usize = 4 << 20;

thread_local! {
    /// The f32 block of an f16 product, kept between calls (refilled, never zeroed).
    static BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The held values, `[d_in, d_out]` row-major.
#[derive(Debug, Clone)]
enum Values {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

/// A `[in, out]` matrix (a linear layer's weight, transposed at load) in f32 or f16.
#[derive(Debug, Clone)]
pub struct InOutMatrix {
    d_in: usize,
    d_out: usize,
    values: Values,
    /// f32 values multiplied on split bf16 tiles ([`with_split_products`](Self::with_split_products)).
    split: bool,
}

impl InOutMatrix {
    /// From PyTorch's `[out, in]` order (`weight` holds at least `d_out · d_in` values; `None`
    /// if it holds fewer).
    pub fn from_out_in(weight: &[f32], d_in: usize, d_out: usize) -> Option<Self> {
        (weight.len() >= d_in * d_out).then(|| Self { d_in, d_out, values: Values::F32(transpose_out_in(weight, d_in, d_out)), split: false })
    }

    /// From f16 values in PyTorch's `[out, in]` order, kept in f16.
    pub fn from_out_in_f16(weight: &[f16], d_in: usize, d_out: usize) -> Option<Self> {
        (weight.len() >= d_in * d_out).then(|| Self { d_in, d_out, values: Values::F16(transpose_out_in(weight, d_in, d_out)), split: false })
    }

    /// From f32 values already in `[in, out]` order (exactly `d_in · d_out` of them: fewer
    /// are padded with zeros, more cut).
    pub fn from_in_out_f32(mut values: Vec<f32>, d_in: usize, d_out: usize) -> Self {
        values.resize(d_in * d_out, 0.0);
        Self { d_in, d_out, values: Values::F32(values), split: false }
    }

    /// The same f32 matrix multiplying batches above a few rows on AMX tiles with inputs and
    /// weights split in two bf16 parts each ([`crate::amx::matmul_split`]: 16 significant bits
    /// of each operand, about 1e-6 of the exact product) where the CPU has tiles and the
    /// widths are multiples of 32; exact f32 products elsewhere. f16 matrices split anyway.
    pub fn with_split_products(mut self) -> Self {
        self.split = matches!(self.values, Values::F32(_));
        self
    }

    /// Whether f32 values multiply on split bf16 tiles ([`with_split_products`](Self::with_split_products)).
    pub fn split_products(&self) -> bool {
        self.split
    }

    /// The values when held in f32 (`[in, out]`) for exact products, for callers that run
    /// their own (`None` for f16 values and for [split products](Self::with_split_products)).
    pub fn values_f32(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) if !self.split => Some(v),
            _ => None,
        }
    }

    /// Input features (rows of the held matrix).
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Output features (columns of the held matrix).
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match &self.values {
            Values::F32(v) => v.len() * 4,
            Values::F16(v) => v.len() * 2,
        }
    }

    /// `y [m, out] = x [m, in] · W` on all rayon threads (every value of `y` overwritten).
    /// Errors, computing nothing, unless `x` and `y` hold exactly `m · in` and `m · out`.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), String> {
        self.product(x, m, y, false)
    }

    /// `y [m, out] += x [m, in] · W` on all rayon threads (e.g. a projection added straight
    /// into the residual stream: no product written and read back). Errors as
    /// [`matmul`](Self::matmul).
    pub fn matmul_add(&self, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), String> {
        self.product(x, m, y, true)
    }

    fn product(&self, x: &[f32], m: usize, y: &mut [f32], accumulate: bool) -> Result<(), String> {
        let (k, n) = (self.d_in, self.d_out);
        if x.len() != m * k || y.len() != m * n {
            return Err(format!("[{m}, {k}] × [{k}, {n}] on inputs of {} and outputs of {}", x.len(), y.len()));
        }
        if m <= SMALL_BATCH {
            self.product_rows_summed(x, m, y, accumulate);
            return Ok(());
        }
        let split = match &self.values {
            Values::F16(w) => crate::amx::matmul_split(w, k, n, x, m, y, accumulate),
            Values::F32(w) if self.split => crate::amx::matmul_split(w, k, n, x, m, y, accumulate),
            Values::F32(_) => false,
        };
        if split {
            return Ok(());
        }
        match &self.values {
            Values::F32(w) => crate::host_matmul::matmul_in_out_strided(x, k, m, w, k, n, y, accumulate),
            // The kept block, or a fresh one where this thread is already inside a product
            // (a task it picked up while waiting in one of rayon's joins).
            Values::F16(w) => BLOCK.with(|cell| match cell.try_borrow_mut() {
                Ok(mut block) => product_f16_blocks(w, x, m, k, n, y, accumulate, &mut block),
                Err(_) => product_f16_blocks(w, x, m, k, n, y, accumulate, &mut Vec::new()),
            }),
        }
    }

    /// A few inputs: the weight's rows split into one contiguous share per thread, each share
    /// summed (`Σ_i x[j, i] · W[i, :]`) into its own `[m, out]` partial, the partials added.
    fn product_rows_summed(&self, x: &[f32], m: usize, y: &mut [f32], accumulate: bool) {
        let (k, n) = (self.d_in, self.d_out);
        let parts = rayon::current_num_threads().clamp(1, k.max(1));
        let share = k.div_ceil(parts);
        let partials: Vec<Vec<f32>> = (0..parts)
            .into_par_iter()
            .map(|p| {
                let rows = p * share..((p + 1) * share).min(k);
                let mut partial = vec![0f32; m * n];
                match &self.values {
                    Values::F32(w) => add_rows(w, n, rows, x, k, &mut partial),
                    Values::F16(w) => add_rows(w, n, rows, x, k, &mut partial),
                }
                partial
            })
            .collect();
        if !accumulate {
            y.fill(0.0);
        }
        for partial in &partials {
            crate::host_ops::add_assign(y, partial);
        }
    }
}

/// `y [m, n] (+)= x [m, k] · w` for f16 `w [k, n]`: blocks of whole rows of `w` converted into
/// `block` (grown to [`BLOCK_VALUES`] at most, refilled, never zeroed) and handed to `gemm`,
/// each block's product added from the second on.
#[allow(clippy::too_many_arguments)]
fn product_f16_blocks(
    w: &[f16],
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    y: &mut [f32],
    accumulate: bool,
    block: &mut Vec<f32>,
) -> Result<(), String> {
    let rows = (BLOCK_VALUES / n.max(1)).clamp(1, k.max(1));
    if block.len() < rows * n {
        block.resize(rows * n, 0.0);
    }
    let mut p0 = 0;
    while p0 < k {
        let p1 = (p0 + rows).min(k);
        let converted = &mut block[..(p1 - p0) * n];
        converted
            .par_chunks_mut(n)
            .zip(w[p0 * n..p1 * n].par_chunks(n))
            .for_each(|(dst, src)| crate::host_matmul::convert_f16(src, dst));
        // x[:, p0..p1] (row stride k) · W[p0..p1, :], added from the second block on.
        crate::host_matmul::matmul_in_out_strided(&x[p0..], k, m, converted, p1 - p0, n, y, accumulate || p0 > 0)?;
        p0 = p1;
    }
    if k == 0 && !accumulate {
        y.fill(0.0);
    }
    Ok(())
}

/// A weight value the row-sum kernel reads: f32 as is, f16 converted in registers.
trait WeightValue: Copy + Send + Sync {
    /// The value in f32.
    fn to_f32(self) -> f32;
    /// `out += Σ_q scales[q] · rows[q]` with AVX-512 where the CPU has it; `false` if it
    /// did not run.
    fn add_scaled_rows8(rows: [&[Self]; 8], scales: [f32; 8], out: &mut [f32]) -> bool;
}

impl WeightValue for f32 {
    fn to_f32(self) -> f32 {
        self
    }

    fn add_scaled_rows8(rows: [&[f32]; 8], scales: [f32; 8], out: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected; the kernel checks its slice lengths.
            #[allow(unsafe_code)]
            unsafe {
                x86::add_scaled_rows8_f32(rows, scales, out)
            };
            return true;
        }
        let _ = (rows, scales, out);
        false
    }
}

impl WeightValue for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    fn add_scaled_rows8(rows: [&[f16]; 8], scales: [f32; 8], out: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected; the kernel checks its slice lengths.
            #[allow(unsafe_code)]
            unsafe {
                x86::add_scaled_rows8_f16(rows, scales, out)
            };
            return true;
        }
        let _ = (rows, scales, out);
        false
    }
}

/// `partial [m, n] += Σ_{i ∈ rows} x[j, i] · w[i, :]` for each input `j` (`x [m, k]`,
/// `w [k, n]`): `rows` split into four quarters — four memory streams, which reach about
/// twice the bandwidth of one here — and two consecutive rows of each quarter at a time, so
/// that each load and store of the partial sums serves eight weight rows.
fn add_rows<T: WeightValue>(w: &[T], n: usize, rows: std::ops::Range<usize>, x: &[f32], k: usize, partial: &mut [f32]) {
    let m = partial.len() / n.max(1);
    let pairs = rows.len() / 8;
    let quarter = 2 * pairs;
    let mut done = rows.start;
    'pairs: for i in 0..pairs {
        let r: [usize; 8] = std::array::from_fn(|e| rows.start + (e / 2) * quarter + 2 * i + e % 2);
        for j in 0..m {
            let scales = r.map(|r| x[j * k + r]);
            if !T::add_scaled_rows8(r.map(|r| &w[r * n..(r + 1) * n]), scales, &mut partial[j * n..(j + 1) * n]) {
                break 'pairs;
            }
        }
        done = rows.start + 4 * quarter;
    }
    // The rows left: all of them where the kernel did not run, else the last few.
    let left = if done == rows.start { rows } else { done..rows.end };
    for r in left {
        for (j, out) in partial.chunks_exact_mut(n).enumerate() {
            let s = x[j * k + r];
            for (o, w) in out.iter_mut().zip(&w[r * n..(r + 1) * n]) {
                *o += s * w.to_f32();
            }
        }
    }
}

/// `[out, in]` → `[in, out]`, in 64 × 64 tiles, each output row's part of a tile written in
/// order (its 64 reads from 64 input rows stay in L1 for the tile's other rows), tiles of
/// output rows on all threads. Measured on a 4096 × 11008 weight, 2 threads: 87–90 ms in f16
/// and 75 ms in f32, against 117–122 and 113–121 ms for 32 × 32 tiles written column by
/// column: the load-time cost of holding weights `[in, out]` is about 1 s per GB of f16 (13 s
/// for a 7B model) and 0.4 s per GB of f32.
pub fn transpose_out_in<T: Copy + Default + Send + Sync>(weight: &[T], d_in: usize, d_out: usize) -> Vec<T> {
    const TILE: usize = 64;
    let mut in_out = vec![T::default(); d_in * d_out];
    crate::allocator::advise_huge_pages(&mut in_out);
    if weight.len() < d_in * d_out || d_out == 0 {
        return in_out;
    }
    in_out.par_chunks_mut(TILE * d_out).enumerate().for_each(|(tile, rows)| {
        let i0 = tile * TILE;
        let i1 = i0 + rows.len() / d_out;
        for o0 in (0..d_out).step_by(TILE) {
            for i in i0..i1 {
                let row = &mut rows[(i - i0) * d_out..];
                for o in o0..(o0 + TILE).min(d_out) {
                    row[o] = weight[o * d_in + i];
                }
            }
        }
    });
    in_out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// How far ahead of its reads each of the four weight streams prefetches (as the
    /// `[out, in]` decode kernels of `host_matmul`).
    const PREFETCH_BYTES: usize = 2048;

    /// Generates `$name(rows, scales, out)`: `out += Σ_q scales[q] · rows[q]` over eight rows
    /// (pairs of consecutive rows from four streams), 16 values at a time, each row prefetched.
    macro_rules! add_scaled_rows8_kernel {
        ($name:ident, $t:ty, $load:expr) => {
            /// # Safety
            /// The CPU must support AVX-512F.
            #[target_feature(enable = "avx512f")]
            pub unsafe fn $name(rows: [&[$t]; 8], scales: [f32; 8], out: &mut [f32]) {
                let n = out.len();
                if rows.iter().any(|r| r.len() < n) {
                    return;
                }
                let load = $load;
                let s = scales.map(|v| _mm512_set1_ps(v));
                let mut c = 0;
                // SAFETY: every row and `out` hold at least n values; each access reads or
                // writes 16 values below c + 16 ≤ n.
                unsafe {
                    while c + 16 <= n {
                        let o = out.as_mut_ptr().add(c);
                        let mut acc = _mm512_loadu_ps(o);
                        for q in 0..8 {
                            let p = rows[q].as_ptr().add(c);
                            // Past the row's end this is the next row of the same stream.
                            _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>().wrapping_add(PREFETCH_BYTES));
                            acc = _mm512_fmadd_ps(load(p), s[q], acc);
                        }
                        _mm512_storeu_ps(o, acc);
                        c += 16;
                    }
                }
                for i in c..n {
                    for q in 0..8 {
                        out[i] += scales[q] * super::WeightValue::to_f32(rows[q][i]);
                    }
                }
            }
        };
    }

    add_scaled_rows8_kernel!(
        add_scaled_rows8_f32,
        f32,
        // SAFETY (of the closure's callers): `p` points at 16 readable values.
        |p: *const f32| unsafe { _mm512_loadu_ps(p) }
    );
    add_scaled_rows8_kernel!(
        add_scaled_rows8_f16,
        half::f16,
        |p: *const half::f16| unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0).collect()
    }

    /// `x · Wᵀ` in f64 from the `[out, in]` weight.
    fn reference(w: &[f32], x: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for j in 0..m {
            for o in 0..n {
                y[j * n + o] = (0..k).map(|i| x[j * k + i] as f64 * w[o * k + i] as f64).sum::<f64>() as f32;
            }
        }
        y
    }

    /// Every path (one input, a few, `gemm`'s batch) and widths that leave tails of rows (not
    /// multiples of eight per thread) and of columns (not multiples of 16) equal the f64
    /// product of the `[out, in]` weight, in f32 and in f16 (the f16 values' own product);
    /// f16 blocks of [`BLOCK_VALUES`] split the widest one into several added blocks.
    #[test]
    fn products_match_the_transposed_weight() {
        for (k, n) in [(96, 48), (133, 37), (7, 5), (1, 16), (2100, 2048)] {
            let w = values(n * k, 1);
            let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let w16_f32: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
            let matrices = [
                (InOutMatrix::from_out_in(&w, k, n).unwrap(), &w),
                (InOutMatrix::from_out_in_f16(&w16, k, n).unwrap(), &w16_f32),
            ];
            for (matrix, w) in matrices {
                for m in [1, 3, 8, 9, 40] {
                    let x = values(m * k, m);
                    let mut y = vec![f32::NAN; m * n];
                    matrix.matmul(&x, m, &mut y).unwrap();
                    let expected = reference(w, &x, m, k, n);
                    let err = crate::parity::compare(&y, &expected).rel;
                    assert!(err < 1e-6, "k {k} n {n} m {m}, {} bytes: {err}", matrix.bytes());
                    // Added to what `y` holds: the product once more.
                    matrix.matmul_add(&x, m, &mut y).unwrap();
                    let twice: Vec<f32> = expected.iter().map(|v| 2.0 * v).collect();
                    let err = crate::parity::compare(&y, &twice).rel;
                    assert!(err < 1e-6, "k {k} n {n} m {m}, added: {err}");
                }
            }
        }
    }

    /// f16 weights whose widths are multiples of 32: above [`SMALL_BATCH`] rows the product
    /// runs on AMX tiles where the CPU has them, inputs and weights split in two bf16 parts
    /// (within 1e-5 of the exact product; `amx::split_f16`), else on `gemm` or the row-sum
    /// kernel (1e-6), overwriting and adding.
    #[test]
    fn f16_products_of_tile_widths_match_the_exact_product() {
        let (k, n) = (128, 96);
        let w16: Vec<f16> = values(n * k, 4).iter().map(|&v| f16::from_f32(v)).collect();
        let w16_f32: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
        let matrix = InOutMatrix::from_out_in_f16(&w16, k, n).unwrap();
        for m in [8, 9, 31, 32, 75] {
            let split = m > SMALL_BATCH && crate::amx::split_f16_fits(k, n);
            let bound = if split { 1e-5 } else { 1e-6 };
            let x = values(m * k, m + 5);
            let (err, added) = product_errors(&matrix, &x, m, &reference(&w16_f32, &x, m, k, n));
            assert!(err < bound, "m {m} (split: {split}): {err}");
            assert!(added < bound, "m {m} (split: {split}), added: {added}");
        }
    }

    /// The relative errors of `x · W` (into a buffer of NaN) and of adding it once more, against
    /// `expected`, the exact product.
    fn product_errors(matrix: &InOutMatrix, x: &[f32], m: usize, expected: &[f32]) -> (f64, f64) {
        let mut y = vec![f32::NAN; expected.len()];
        matrix.matmul(x, m, &mut y).unwrap();
        let err = crate::parity::compare(&y, expected).rel;
        matrix.matmul_add(x, m, &mut y).unwrap();
        let twice: Vec<f32> = expected.iter().map(|v| 2.0 * v).collect();
        (err, crate::parity::compare(&y, &twice).rel)
    }

    /// f32 weights with split products: above [`SMALL_BATCH`] rows, on a CPU with tiles, the
    /// product keeps 16 significant bits of each operand (measured 1.2e-6 of the exact
    /// product here, against 1.3e-7 for `gemm`; bound 1e-5), exact f32 otherwise;
    /// overwriting and adding; the values are then not offered for the caller's own exact
    /// products.
    #[test]
    fn f32_split_products_stay_close_to_the_exact_product() {
        let (k, n) = (256, 96);
        let w = values(n * k, 6);
        let matrix = InOutMatrix::from_out_in(&w, k, n).unwrap().with_split_products();
        assert!(matrix.split_products() && matrix.values_f32().is_none());
        for m in [8, 9, 33, 75] {
            let split = m > SMALL_BATCH && crate::amx::split_f16_fits(k, n);
            let bound = if split { 1e-5 } else { 1e-6 };
            let x = values(m * k, m + 7);
            let (err, added) = product_errors(&matrix, &x, m, &reference(&w, &x, m, k, n));
            assert!(err < bound, "m {m} (split: {split}): {err}");
            if split {
                // Not the exact f32 product: the split path ran.
                assert!(err > 1e-7, "m {m}: {err}");
            }
            assert!(added < bound, "m {m} (split: {split}), added: {added}");
        }
        // f16 matrices are not changed by it.
        let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        assert!(!InOutMatrix::from_out_in_f16(&w16, k, n).unwrap().with_split_products().split_products());
    }

    /// An f16 product started while this thread's kept block is in use (as when a thread
    /// waiting in one product's rayon join picks up a task that runs another) works on a
    /// fresh block and gives the same values.
    #[test]
    fn f16_product_inside_another_uses_a_fresh_block() {
        let (k, n, m) = (300, 200, 24);
        let w16: Vec<f16> = values(n * k, 2).iter().map(|&v| f16::from_f32(v)).collect();
        let matrix = InOutMatrix::from_out_in_f16(&w16, k, n).unwrap();
        let x = values(m * k, 3);
        let mut alone = vec![0f32; m * n];
        matrix.matmul(&x, m, &mut alone).unwrap();
        let mut inside = vec![0f32; m * n];
        BLOCK.with(|cell| {
            let _in_use = cell.borrow_mut();
            matrix.matmul(&x, m, &mut inside).unwrap();
        });
        assert_eq!(inside, alone);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let matrix = InOutMatrix::from_out_in(&values(12, 0), 4, 3).unwrap();
        assert!(matrix.matmul(&[0.0; 8], 2, &mut [0.0; 5]).is_err());
        assert!(matrix.matmul(&[0.0; 7], 2, &mut [0.0; 6]).is_err());
        assert!(InOutMatrix::from_out_in(&[0.0; 11], 4, 3).is_none());
        assert_eq!(InOutMatrix::from_in_out_f32(vec![1.0; 11], 4, 3).values_f32().map(|v| v.len()), Some(12));
    }
}
