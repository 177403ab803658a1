//! An f32 weight held transposed, `[in, out]`: the layout the `gemm` crate packs fastest, with
//! its own weight-streaming kernel for a few input rows (decoding).
//!
//! PyTorch stores a linear layer's weight `[out, in]`; `gemm` reads that as a transposed
//! right-hand side and gathers it column by column into its packed panels on every call.
//! Measured here (2 threads, 700 rows): `[in, out]` runs `gemm` at 375 vs 287 GFLOP/s for
//! `[896, 4864]` inputs to 896 outputs (Qwen2.5-0.5B's down_proj), 346 vs 248 at 128 outputs,
//! 367 vs 313 at 896 → 896, level for the widest outputs. A matrix-vector product over
//! `[in, out]` is a sum of weight rows scaled by the inputs: each thread streams its own
//! contiguous share of the rows into an `out`-long partial sum that stays in cache.

use rayon::prelude::*;

/// Batches up to this size stream the weight once through [`InOutMatrix`]'s row-sum kernel;
/// larger ones run `gemm`.
const SMALL_BATCH: usize = 8;

/// A `[in, out]` f32 matrix (a linear layer's weight, transposed at load).
#[derive(Debug, Clone)]
pub struct InOutMatrix {
    d_in: usize,
    d_out: usize,
    /// `[d_in, d_out]`, row-major.
    values: Vec<f32>,
}

impl InOutMatrix {
    /// From PyTorch's `[out, in]` order (`weight` holds at least `d_out · d_in` values; `None`
    /// if it holds fewer).
    pub fn from_out_in(weight: &[f32], d_in: usize, d_out: usize) -> Option<Self> {
        (weight.len() >= d_in * d_out).then(|| Self { d_in, d_out, values: transpose_out_in(weight, d_in, d_out) })
    }

    /// From values already in `[in, out]` order (`None` unless exactly `d_in · d_out`).
    pub fn from_in_out(values: Vec<f32>, d_in: usize, d_out: usize) -> Option<Self> {
        (values.len() == d_in * d_out).then_some(Self { d_in, d_out, values })
    }

    /// Input features (rows of the held matrix).
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Output features (columns of the held matrix).
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// The `[in, out]` values.
    pub fn values(&self) -> &[f32] {
        &self.values
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
            Ok(())
        } else if accumulate {
            crate::host_matmul::matmul_in_out_add(x, m, &self.values, k, n, y)
        } else {
            crate::host_matmul::matmul_in_out(x, m, &self.values, k, n, y)
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
                add_rows(&self.values, n, rows, x, k, &mut partial);
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

/// `partial [m, n] += Σ_{i ∈ rows} x[j, i] · w[i, :]` for each input `j` (`x [m, k]`,
/// `w [k, n]`): four rows from the four quarters of `rows` at a time — four memory streams,
/// which reach about twice the bandwidth of one here.
fn add_rows(w: &[f32], n: usize, rows: std::ops::Range<usize>, x: &[f32], k: usize, partial: &mut [f32]) {
    let m = partial.len() / n.max(1);
    let quarter = rows.len() / 4;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && quarter > 0 {
        for i in 0..quarter {
            let r = [0, 1, 2, 3].map(|q| rows.start + q * quarter + i);
            for j in 0..m {
                let scales = r.map(|r| x[j * k + r]);
                // SAFETY: the feature was just detected; the kernel checks its slice lengths.
                #[allow(unsafe_code)]
                unsafe {
                    x86::add_scaled_rows4(r.map(|r| &w[r * n..(r + 1) * n]), scales, &mut partial[j * n..(j + 1) * n]);
                }
            }
        }
        for r in rows.start + 4 * quarter..rows.end {
            add_scaled_row(&w[r * n..(r + 1) * n], x, r, k, partial, n);
        }
        return;
    }
    for r in rows {
        add_scaled_row(&w[r * n..(r + 1) * n], x, r, k, partial, n);
    }
}

/// `partial[j, :] += x[j, r] · row` for every input `j`.
fn add_scaled_row(row: &[f32], x: &[f32], r: usize, k: usize, partial: &mut [f32], n: usize) {
    for (j, out) in partial.chunks_exact_mut(n).enumerate() {
        let s = x[j * k + r];
        for (o, w) in out.iter_mut().zip(row) {
            *o += s * w;
        }
    }
}

/// `[out, in]` → `[in, out]`, in 32 × 32 tiles (a plain double loop misses the cache on every
/// write), rows of the result on all threads.
pub fn transpose_out_in(weight: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut in_out = vec![0f32; d_in * d_out];
    if weight.len() < d_in * d_out || d_out == 0 {
        return in_out;
    }
    in_out.par_chunks_mut(TILE * d_out).enumerate().for_each(|(tile, rows)| {
        let i0 = tile * TILE;
        let i1 = i0 + rows.len() / d_out;
        for o0 in (0..d_out).step_by(TILE) {
            for o in o0..(o0 + TILE).min(d_out) {
                for i in i0..i1 {
                    rows[(i - i0) * d_out + o] = weight[o * d_in + i];
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

    /// `out += Σ_q scales[q] · rows[q]`, 16 values at a time.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn add_scaled_rows4(rows: [&[f32]; 4], scales: [f32; 4], out: &mut [f32]) {
        let n = out.len();
        if rows.iter().any(|r| r.len() < n) {
            return;
        }
        let s = scales.map(|v| _mm512_set1_ps(v));
        let mut c = 0;
        // SAFETY: every row and `out` hold at least n values; each access reads or writes 16
        // values below c + 16 ≤ n.
        unsafe {
            while c + 16 <= n {
                let o = out.as_mut_ptr().add(c);
                let mut acc = _mm512_loadu_ps(o);
                for q in 0..4 {
                    let p = rows[q].as_ptr().add(c);
                    // Past the row's end this is the next row of the same stream.
                    _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>().wrapping_add(PREFETCH_BYTES));
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(p), s[q], acc);
                }
                _mm512_storeu_ps(o, acc);
                c += 16;
            }
        }
        for i in c..n {
            out[i] += scales[0] * rows[0][i] + scales[1] * rows[1][i] + scales[2] * rows[2][i] + scales[3] * rows[3][i];
        }
    }
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
    /// multiples of four per thread) and of columns (not multiples of 16) equal the f64
    /// product of the `[out, in]` weight.
    #[test]
    fn products_match_the_transposed_weight() {
        for (k, n) in [(96, 48), (133, 37), (7, 5), (1, 16)] {
            let w = values(n * k, 1);
            let matrix = InOutMatrix::from_out_in(&w, k, n).unwrap();
            for m in [1, 3, 8, 9, 40] {
                let x = values(m * k, m);
                let mut y = vec![f32::NAN; m * n];
                matrix.matmul(&x, m, &mut y).unwrap();
                let expected = reference(&w, &x, m, k, n);
                let err = crate::parity::compare(&y, &expected).rel;
                assert!(err < 1e-6, "k {k} n {n} m {m}: {err}");
                // Added to what `y` holds: the product once more.
                matrix.matmul_add(&x, m, &mut y).unwrap();
                let twice: Vec<f32> = expected.iter().map(|v| 2.0 * v).collect();
                let err = crate::parity::compare(&y, &twice).rel;
                assert!(err < 1e-6, "k {k} n {n} m {m}, added: {err}");
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let matrix = InOutMatrix::from_out_in(&values(12, 0), 4, 3).unwrap();
        assert!(matrix.matmul(&[0.0; 8], 2, &mut [0.0; 5]).is_err());
        assert!(matrix.matmul(&[0.0; 7], 2, &mut [0.0; 6]).is_err());
        assert!(InOutMatrix::from_out_in(&[0.0; 11], 4, 3).is_none());
        assert!(InOutMatrix::from_in_out(vec![0.0; 11], 4, 3).is_none());
    }
}
