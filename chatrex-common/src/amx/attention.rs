//! Softmax attention (bidirectional, or causal over a KV cache with grouped queries) with
//! both products on AMX tiles, for models that run in bf16 (as PyTorch's bf16 attention: q, k, v and the softmax numerators rounded to bf16,
//! sums and softmax in f32, the division applied to the output rows).
//!
//! Per head, the keys `k_h [N, hd]` are the "weight" of `scores = q_h · k_hᵀ` and the values,
//! transposed, `v_hᵀ [hd, N]` that of `out_h = e · v_h / Σe`; both are packed into a
//! [`TileWeight`] (a few hundred KB per head) and multiplied with its kernel. The numerators
//! `e` are rounded straight into the second product's input rows. `N` is padded to a whole
//! number of 32-key blocks: padded keys and values are zero, and the padded numerator
//! columns are never written, so they add nothing.

use super::{BLOCK, CacheAligned, OutPtr, RoundedRows, TILE_K, TILE_ROWS, TILE_VALUES, TileWeight, available, round_to_bf16};
use crate::host_ops::softmax_numerators;
use half::bf16;
use rayon::prelude::*;

/// Whether [`attention_bf16`] runs for heads of `head_dim` values: AMX is [`available`] and
/// the head is a whole number of 32-value steps.
pub fn attention_fits(head_dim: usize) -> bool {
    available() && head_dim > 0 && head_dim.is_multiple_of(TILE_K)
}

/// Where the keys and values of each key/value head lie in their buffers: row `j` (`j <
/// len`) of head `g` starts at `g · head_stride + j · row_stride` and holds the head's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    /// Key/value heads (query head `h` reads head `h / (heads / kv heads)`: grouped queries).
    pub heads: usize,
    /// Values between the first rows of consecutive heads.
    pub head_stride: usize,
    /// Values between consecutive rows of a head.
    pub row_stride: usize,
    /// Rows (keys) per head.
    pub len: usize,
}

/// `softmax(scale · q_h · k_hᵀ) · v_h` for every head `h` (heads in parallel), with `q`, `k`,
/// `v` `[n, heads·head_dim]` row-major f32 and head `h` in columns `h·head_dim ..`; returns
/// `[n, heads·head_dim]`. `None` (nothing computed) when the heads do not
/// [`fit`](attention_fits) or a slice is shorter than its shape.
pub fn attention_bf16(q: &[f32], k: &[f32], v: &[f32], n: usize, heads: usize, scale: f32) -> Option<Vec<f32>> {
    if heads == 0 || n == 0 || !q.len().is_multiple_of(n) {
        return None;
    }
    let d = q.len() / n;
    let hd = d / heads;
    if d != heads * hd {
        return None;
    }
    let layout = KvLayout { heads, head_stride: hd, row_stride: d, len: n };
    attend(q, n, heads, hd, (k, v, layout), None, scale)
}

/// Causal attention of `n` queries at positions `start ..` (`q [n, heads·head_dim]`) over the
/// keys and values laid out as `layout` (positions `0 .. layout.len`, e.g. a KV cache that
/// already holds these queries' own keys): query `i` sees keys `0 ..= start + i`. Grouped
/// queries when `layout.heads < heads`. Returns `[n, heads·head_dim]`; `None` (nothing
/// computed) when the heads do not [`fit`](attention_fits), the head counts do not divide, or
/// a slice is shorter than its layout.
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_bf16(
    q: &[f32],
    n: usize,
    heads: usize,
    head_dim: usize,
    keys: &[f32],
    values: &[f32],
    layout: KvLayout,
    start: usize,
    scale: f32,
) -> Option<Vec<f32>> {
    attend(q, n, heads, head_dim, (keys, values, layout), Some(start), scale)
}

/// The shared body of [`attention_bf16`] and [`causal_attention_bf16`].
fn attend(
    q: &[f32],
    n: usize,
    heads: usize,
    hd: usize,
    (k, v, layout): (&[f32], &[f32], KvLayout),
    causal_start: Option<usize>,
    scale: f32,
) -> Option<Vec<f32>> {
    let d = heads * hd;
    let total = layout.len;
    let kv_extent = |buffer: &[f32]| {
        let last = (layout.heads.checked_sub(1)?).checked_mul(layout.head_stride)?.checked_add((total.checked_sub(1)?).checked_mul(layout.row_stride)?)?;
        (last.checked_add(hd)? <= buffer.len()).then_some(())
    };
    if !attention_fits(hd)
        || n == 0
        || heads == 0
        || layout.heads == 0
        || !heads.is_multiple_of(layout.heads)
        || q.len() < n * d
        || kv_extent(k).is_none()
        || kv_extent(v).is_none()
    {
        return None;
    }
    let group = heads / layout.heads;
    let keys = total.next_multiple_of(BLOCK);
    let mut out = vec![0f32; n * d];
    let target = OutPtr(out.as_mut_ptr());
    (0..heads)
        .into_par_iter()
        .map_init(
            // Buffers per rayon job, reused across its heads: every value the products read
            // is overwritten for each head (numerator columns past a row's visible keys are
            // written as zeros). The scores start a cache line, so that the tiles store into
            // them directly.
            || {
                let scores = CacheAligned::<f32>::zeroed(n * keys);
                (vec![0f32; n * hd], scores, RoundedRows::zeros(n, keys), vec![0f32; n], vec![0f32; n * hd])
            },
            |(query, scores, numerators, sums, head_out), head| {
                let offset = head * hd;
                for (dst, src) in query.chunks_exact_mut(hd).zip(q.chunks_exact(d)) {
                    for (a, b) in dst.iter_mut().zip(&src[offset..offset + hd]) {
                        *a = b * scale;
                    }
                }
                let kv_head = (head / group) * layout.head_stride;
                let scores = scores.as_mut_slice();
                let key_tiles = pack_keys(&k[kv_head..], layout, hd, keys)?;
                let scored = key_tiles.matmul_t(query, n, scores);
                key_tiles.into_tiles().recycle();
                if !scored {
                    return None;
                }
                for (i, (row, sum)) in scores.chunks_exact_mut(keys).zip(sums.iter_mut()).enumerate() {
                    let visible = causal_start.map_or(total, |start| (start + i + 1).min(total));
                    let row = &mut row[..visible];
                    *sum = softmax_numerators(row);
                    let numerator_row = numerators.row_mut(i);
                    round_to_bf16(row, numerator_row);
                    numerator_row[visible..total].fill(bf16::ZERO);
                }
                let value_tiles = pack_values_transposed(&v[kv_head..], layout, hd, keys)?;
                let done = value_tiles.matmul_t_rounded(&*numerators, head_out);
                value_tiles.into_tiles().recycle();
                if !done {
                    return None;
                }
                for (i, (row, sum)) in head_out.chunks_exact(hd).zip(sums.iter()).enumerate() {
                    let inv = 1.0 / sum;
                    // SAFETY: row i < n and columns offset .. +hd ≤ d lie inside `out`
                    // [n, d]; each head writes only its own columns.
                    #[allow(unsafe_code)]
                    let dst = unsafe { std::slice::from_raw_parts_mut(target.get().add(i * d + offset), hd) };
                    for (o, value) in dst.iter_mut().zip(row) {
                        *o = value * inv;
                    }
                }
                Some(())
            },
        )
        .collect::<Option<()>>()?;
    Some(out)
}

/// One head's keys (`k` from the head's first row; rows `layout.row_stride` apart,
/// `layout.len` of them), rounded to bf16, as the tile-order weight `[keys, hd]`, written
/// straight from the rows: for key `j` (output `j % 16` of block `j / 16`), row `r` of the
/// tile of step `s` holds the pair `2r`, `2r + 1` of the step's 32 values. The tiles of padded
/// keys (rows past `len`) are left as recycled: they only reach score columns past `len`,
/// which the softmax never reads.
fn pack_keys(k: &[f32], layout: KvLayout, hd: usize, keys: usize) -> Option<TileWeight> {
    let steps = hd / TILE_K;
    let mut data = CacheAligned::<bf16>::recycled(keys * hd);
    let tiles = data.as_mut_slice();
    let mut rounded = [bf16::ZERO; TILE_K];
    for j in 0..layout.len {
        let row = &k[j * layout.row_stride..j * layout.row_stride + hd];
        let (block, c) = (j / TILE_ROWS, j % TILE_ROWS);
        for (s, values) in row.chunks_exact(TILE_K).enumerate() {
            round_to_bf16(values, &mut rounded);
            let tile = &mut tiles[(block * steps + s) * TILE_VALUES..][..TILE_VALUES];
            for (r, pair) in rounded.chunks_exact(2).enumerate() {
                tile[r * 2 * TILE_ROWS + 2 * c..][..2].copy_from_slice(pair);
            }
        }
    }
    TileWeight::from_tiles(data, keys, hd)
}

/// One head's values (laid out as [`pack_keys`] reads keys), rounded to bf16, as the
/// tile-order weight of `v_hᵀ [hd, keys]`, written straight from the rows: row `r` of the tile
/// for outputs `c0 .. +16` and keys `j0 .. +32` interleaves values `c0 .. +16` of key rows
/// `j0 + 2r` and `j0 + 2r + 1`. Padded keys (past `len`) are zero: they meet the numerators'
/// zero columns, and a recycled NaN there would poison the sums.
fn pack_values_transposed(v: &[f32], layout: KvLayout, hd: usize, keys: usize) -> Option<TileWeight> {
    let steps = keys / TILE_K;
    let mut data = CacheAligned::<bf16>::recycled(hd * keys);
    let tiles = data.as_mut_slice();
    let mut pair_rows = [vec![bf16::ZERO; hd], vec![bf16::ZERO; hd]];
    for pair in 0..keys / 2 {
        for (e, rounded) in pair_rows.iter_mut().enumerate() {
            let j = 2 * pair + e;
            if j < layout.len {
                round_to_bf16(&v[j * layout.row_stride..j * layout.row_stride + hd], rounded);
            } else {
                rounded.fill(bf16::ZERO);
            }
        }
        let (step, r) = (2 * pair / TILE_K, pair % (TILE_K / 2));
        for block in 0..hd / TILE_ROWS {
            let tile = &mut tiles[(block * steps + step) * TILE_VALUES + r * 2 * TILE_ROWS..][..2 * TILE_ROWS];
            let (first, second) = (&pair_rows[0][block * TILE_ROWS..], &pair_rows[1][block * TILE_ROWS..]);
            for c in 0..TILE_ROWS {
                tile[2 * c] = first[c];
                tile[2 * c + 1] = second[c];
            }
        }
    }
    TileWeight::from_tiles(data, hd, keys)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{tile_test_rng, uniform};
    use super::*;

    /// f64 attention of the bf16-rounded q (scaled), k, v, with the softmax numerators
    /// rounded to bf16 and the division applied last (what the tiles compute).
    fn reference(q: &[f32], k: &[f32], v: &[f32], n: usize, heads: usize, scale: f32) -> Vec<f32> {
        let d = q.len() / n;
        let hd = d / heads;
        let r = |x: f32| f64::from(bf16::from_f32(x).to_f32());
        let mut out = vec![0f32; n * d];
        for h in 0..heads {
            for i in 0..n {
                let s: Vec<f64> = (0..n)
                    .map(|j| (0..hd).map(|c| r(q[i * d + h * hd + c] * scale) * r(k[j * d + h * hd + c])).sum())
                    .collect();
                let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for c in 0..hd {
                    let o: f64 = (0..n).map(|j| r(e[j] as f32) * r(v[j * d + h * hd + c])).sum();
                    out[i * d + h * hd + c] = (o / total) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn tile_attention_matches_the_rounded_reference() {
        let Some(mut rng) = tile_test_rng(5) else { return };
        // Token counts below, at and past whole 32-key blocks (odd ones: a last key pair
        // with one row); one and several heads; 32 and 64 values per head.
        for &(n, heads, hd) in &[(1, 1, 32), (31, 2, 32), (32, 1, 64), (77, 3, 64), (130, 2, 32)] {
            let d = heads * hd;
            let (q, k, v) = (uniform(&mut rng, n * d, 3.0), uniform(&mut rng, n * d, 3.0), uniform(&mut rng, n * d, 1.0));
            let scale = (hd as f32).powf(-0.5);
            // Every thread's spare buffers hold NaN: values the packing leaves unwritten
            // must never reach a result.
            rayon::broadcast(|_| {
                let mut poison = CacheAligned::<bf16>::zeroed(1 << 20);
                poison.as_mut_slice().fill(bf16::NAN);
                poison.recycle();
            });
            let ours = attention_bf16(&q, &k, &v, n, heads, scale).expect("heads fit");
            let want = reference(&q, &k, &v, n, heads, scale);
            // The numerators are f32 here and f64 there, so one may round to the neighbouring
            // bf16 value (measured: ≤ 2e-6 overall).
            let err = crate::parity::compare(&ours, &want).rel;
            assert!(err < 1e-5, "n={n} heads={heads} hd={hd}: rel. error {err}");
        }
        assert!(attention_bf16(&[0.0; 48], &[0.0; 48], &[0.0; 48], 1, 2, 1.0).is_none(), "24 values per head do not fit");
        assert!(!attention_fits(48));
    }

    /// Causal, grouped-query attention over a cache-like layout: `heads / kv_heads` query
    /// heads per key/value head, each key/value head `allocated` rows long with the first
    /// `len` in use, queries at positions `start ..` (the cache already holds their keys).
    #[test]
    fn causal_grouped_attention_matches_the_rounded_reference() {
        let Some(mut rng) = tile_test_rng(9) else { return };
        // (queries, cached before them, heads, kv heads, head dim): a fresh prefill, a prefill
        // after cached tokens, one query (decode), grouped and plain heads.
        for &(n, start, heads, kv_heads, hd) in &[(40, 0, 4, 2, 32), (17, 30, 2, 1, 64), (1, 50, 2, 2, 32), (33, 0, 3, 3, 32)] {
            let len = start + n;
            let allocated = len + 7;
            let q = uniform(&mut rng, n * heads * hd, 3.0);
            let (k, v) = (uniform(&mut rng, kv_heads * allocated * hd, 3.0), uniform(&mut rng, kv_heads * allocated * hd, 1.0));
            let layout = KvLayout { heads: kv_heads, head_stride: allocated * hd, row_stride: hd, len };
            let scale = (hd as f32).powf(-0.5);
            let ours = causal_attention_bf16(&q, n, heads, hd, &k, &v, layout, start, scale).expect("heads fit");
            let r = |x: f32| f64::from(bf16::from_f32(x).to_f32());
            let d = heads * hd;
            let mut want = vec![0f32; n * d];
            for h in 0..heads {
                let base = (h / (heads / kv_heads)) * allocated * hd;
                for i in 0..n {
                    let visible = start + i + 1;
                    let s: Vec<f64> = (0..visible)
                        .map(|j| (0..hd).map(|c| r(q[i * d + h * hd + c] * scale) * r(k[base + j * hd + c])).sum())
                        .collect();
                    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for c in 0..hd {
                        let o: f64 = (0..visible).map(|j| r(e[j] as f32) * r(v[base + j * hd + c])).sum();
                        want[i * d + h * hd + c] = (o / total) as f32;
                    }
                }
            }
            let err = crate::parity::compare(&ours, &want).rel;
            assert!(err < 1e-5, "n={n} start={start} heads={heads}/{kv_heads} hd={hd}: rel. error {err}");
        }
        let layout = KvLayout { heads: 2, head_stride: 64, row_stride: 32, len: 2 };
        assert!(causal_attention_bf16(&[0.0; 96], 1, 3, 32, &[0.0; 128], &[0.0; 128], layout, 1, 1.0).is_none(), "3 heads over 2");
        assert!(causal_attention_bf16(&[0.0; 64], 1, 2, 32, &[0.0; 64], &[0.0; 128], layout, 1, 1.0).is_none(), "keys too short");
    }
}
