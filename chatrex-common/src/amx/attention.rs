//! Softmax attention (bidirectional, or causal over a KV cache with grouped queries) with
//! both products on AMX tiles, for models that run in bf16, as PyTorch's CPU attention on bf16
//! tensors: q, k, v rounded to bf16, scores summed in f32 and scaled there (not `q`), softmax
//! in f32, the numerators rounded to bf16 for the second product, the division applied to the
//! output rows.
//!
//! Per head, the keys `k_h [N, hd]` are the "weight" of `scores = q_h · k_hᵀ` and the values,
//! transposed, `v_hᵀ [hd, N]` that of `out_h = e · v_h / Σe`; both are packed into a
//! [`TileWeight`] (a few hundred KB per head) and multiplied with its kernel. The numerators
//! `e` are rounded straight into the second product's input rows. `N` is padded to a whole
//! number of 32-key blocks: padded keys and values are zero, and the padded numerator
//! columns are zero too, so they add nothing.
//!
//! Heads are split into one task per thread; each task runs its heads' products on its own
//! thread (the heads are the parallelism) with buffers reused across them.
//!
//! Two operand forms: f32 rows ([`attention_bf16`], [`causal_attention_bf16`]: q after its
//! rotary embedding, keys and values in a KV cache) rounded here, and one buffer of bf16 rows
//! holding q, k and v side by side ([`attention_bf16_fused`]: a fused q/k/v projection whose
//! epilogue added the bias and rounded), read in place — the queries as a column view, no
//! copy — with the attended rows rounded straight into the output projection's input.

use super::{BLOCK, CacheAligned, OutPtr, RoundedRows, RoundedView, TILE_K, TILE_ROWS, TILE_VALUES, TileWeight, available, round_to_bf16};
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

/// `softmax(scale · q_h · k_hᵀ) · v_h` for every head `h`, with `q`, `k`, `v`
/// `[n, heads·head_dim]` row-major f32 and head `h` in columns `h·head_dim ..`; returns
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
    attend_f32(q, n, heads, hd, (k, v, layout), None, scale)
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
    attend_f32(q, n, heads, head_dim, (keys, values, layout), Some(start), scale)
}

/// [`causal_attention_bf16`] with the attended rows rounded to bf16 (`[n, heads·head_dim]`),
/// the row operand of the output projection's tiles: the same bits as rounding the f32 result,
/// without writing it out. `None` as for [`causal_attention_bf16`].
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_bf16_rounded(
    q: &[f32],
    n: usize,
    heads: usize,
    head_dim: usize,
    keys: &[f32],
    values: &[f32],
    layout: KvLayout,
    start: usize,
    scale: f32,
) -> Option<RoundedRows> {
    f32_operands_fit(q, n, heads, head_dim, (keys, values, layout))?;
    let mut out = RoundedRows::recycled(n, heads * head_dim);
    let target = Target::Rounded(OutPtr(out.as_mut_ptr()), out.stride());
    attend(Operands::F32 { q, k: keys, v: values, layout }, n, heads, head_dim, layout.len, Some(start), scale, target)?;
    Some(out)
}

/// Bidirectional attention of the rows `qkv [n, 3·heads·head_dim]`, rounded to bf16, that
/// hold each token's q, k and v side by side (columns `0 ..`, `D ..`, `2D ..` with `D =
/// heads·head_dim`; head `h` at `h·head_dim ..` within each): `softmax(scale · q_h · k_hᵀ) ·
/// v_h` for every head, rounded to bf16 as `[n, D]` rows — the output projection's input.
/// `None` (nothing computed) when the heads do not [`fit`](attention_fits) or `qkv` is not
/// `3·heads·head_dim` wide.
pub fn attention_bf16_fused(qkv: &RoundedRows, heads: usize, scale: f32) -> Option<RoundedRows> {
    let (n, width) = (qkv.rows(), qkv.cols());
    if heads == 0 || n == 0 || !width.is_multiple_of(3 * heads) {
        return None;
    }
    let hd = width / (3 * heads);
    let d = heads * hd;
    if !attention_fits(hd) {
        return None;
    }
    let mut out = RoundedRows::recycled(n, d);
    let target = Target::Rounded(OutPtr(out.as_mut_ptr()), out.stride());
    let operands = Operands::Fused(qkv);
    attend(operands, n, heads, hd, n, None, scale, target)?;
    Some(out)
}

/// [`attention_bf16`] and [`causal_attention_bf16`]: f32 operands, f32 output.
fn attend_f32(
    q: &[f32],
    n: usize,
    heads: usize,
    hd: usize,
    (k, v, layout): (&[f32], &[f32], KvLayout),
    causal_start: Option<usize>,
    scale: f32,
) -> Option<Vec<f32>> {
    f32_operands_fit(q, n, heads, hd, (k, v, layout))?;
    let mut out = vec![0f32; n * heads * hd];
    let target = Target::F32(OutPtr(out.as_mut_ptr()));
    attend(Operands::F32 { q, k, v, layout }, n, heads, hd, layout.len, causal_start, scale, target)?;
    Some(out)
}

/// `Some` when `n` f32 queries of `heads` heads of `hd` values fit the tiles and `q`, `k`, `v`
/// hold their shapes (the keys and values as `layout`).
fn f32_operands_fit(q: &[f32], n: usize, heads: usize, hd: usize, (k, v, layout): (&[f32], &[f32], KvLayout)) -> Option<()> {
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
    Some(())
}

/// Where the heads' queries, keys and values come from.
#[derive(Clone, Copy)]
enum Operands<'a> {
    /// f32 rows: `q [n, heads·hd]`, keys and values laid out as `layout`.
    F32 { q: &'a [f32], k: &'a [f32], v: &'a [f32], layout: KvLayout },
    /// bf16 rows `[n, 3·heads·hd]`: q, k, v side by side, one key/value head per head.
    Fused(&'a RoundedRows),
}

impl Operands<'_> {
    /// Key/value rows of query head `head`: key or value `j` rounded into `dst` (`hd` values).
    fn kv_row(&self, head: usize, heads: usize, hd: usize, values: bool, j: usize, dst: &mut [bf16]) {
        match *self {
            Operands::F32 { k, v, layout, .. } => {
                let source = if values { v } else { k };
                let start = (head / (heads / layout.heads)) * layout.head_stride + j * layout.row_stride;
                round_to_bf16(&source[start..start + hd], dst);
            }
            Operands::Fused(qkv) => {
                let column = (if values { 2 } else { 1 }) * heads * hd + head * hd;
                dst.copy_from_slice(&qkv.row(j)[column..column + hd]);
            }
        }
    }
}

/// Where the attended rows go: `[n, heads·hd]` f32, or bf16 rows of `stride` values.
#[derive(Clone, Copy)]
enum Target {
    F32(OutPtr),
    Rounded(OutPtr<bf16>, usize),
}

/// One task's buffers, reused across its heads and row blocks: every value the products read
/// is written for each block (numerator columns past a row's visible keys are written as
/// zeros).
struct HeadScratch {
    /// The head's queries rounded (f32 operands only).
    query: Option<RoundedRows>,
    /// `[32, keys]` scores of one block of queries, then its numerators in f32; starts a cache
    /// line so that the tiles store into it directly.
    scores: CacheAligned<f32>,
    /// The block's numerators rounded, `[32, keys]`.
    numerators: RoundedRows,
    /// `[32, hd]` sums of the second product.
    block_out: Vec<f32>,
    /// One output row divided by its denominator, before rounding.
    divided: Vec<f32>,
}

/// The shared body: every head's attention written into `target` (tasks of whole heads, one
/// per thread). `total`: keys per head; `causal_start`: the first query's position (causal),
/// or `None` (every query sees every key).
#[allow(clippy::too_many_arguments)]
fn attend(operands: Operands<'_>, n: usize, heads: usize, hd: usize, total: usize, causal_start: Option<usize>, scale: f32, target: Target) -> Option<()> {
    let d = heads * hd;
    let keys = total.next_multiple_of(BLOCK);
    let tasks = rayon::current_num_threads().clamp(1, heads);
    let per_task = heads.div_ceil(tasks);
    (0..heads.div_ceil(per_task))
        .into_par_iter()
        .map(|task| {
            let mut scratch = HeadScratch {
                query: matches!(operands, Operands::F32 { .. }).then(|| RoundedRows::recycled(n, hd)),
                scores: CacheAligned::<f32>::recycled(BLOCK * keys),
                numerators: RoundedRows::recycled(BLOCK, keys),
                block_out: vec![0f32; BLOCK * hd],
                divided: vec![0f32; hd],
            };
            let done = (task * per_task..((task + 1) * per_task).min(heads))
                .try_for_each(|head| attend_head(operands, &mut scratch, (n, heads, hd, d), head, (total, keys), causal_start, scale, target));
            scratch.scores.recycle();
            done
        })
        .collect::<Option<()>>()
}

/// One head, 32 queries at a time (their scores and numerators stay in cache between the two
/// products): scores, softmax numerators, the second product, the division, the output rows.
#[allow(clippy::too_many_arguments)]
fn attend_head(
    operands: Operands<'_>,
    scratch: &mut HeadScratch,
    (n, heads, hd, d): (usize, usize, usize, usize),
    head: usize,
    (total, keys): (usize, usize),
    causal_start: Option<usize>,
    scale: f32,
    target: Target,
) -> Option<()> {
    let offset = head * hd;
    let queries: RoundedView<'_> = match (operands, scratch.query.as_mut()) {
        (Operands::F32 { q, .. }, Some(query)) => {
            for (i, src) in q.chunks_exact(d).take(n).enumerate() {
                round_to_bf16(&src[offset..offset + hd], query.row_mut(i));
            }
            (&*query).into()
        }
        (Operands::Fused(qkv), _) => qkv.columns(offset, hd)?,
        _ => return None,
    };
    let key_tiles = pack_keys(|j, dst| operands.kv_row(head, heads, hd, false, j, dst), total, hd, keys)?;
    let value_tiles = pack_values_transposed(|j, dst| operands.kv_row(head, heads, hd, true, j, dst), total, hd, keys)?;
    let mut sums = [0f32; BLOCK];
    let done = (0..n).step_by(BLOCK).try_for_each(|first| {
        let rows = BLOCK.min(n - first);
        // Keys any query of the block sees, in whole 32-key blocks: causal blocks skip the
        // keys past their last query in both products.
        let seen = causal_start.map_or(keys, |start| (start + first + rows).min(total).next_multiple_of(BLOCK));
        let scores = &mut scratch.scores.as_mut_slice()[..rows * keys];
        if !key_tiles.matmul_t_rounded_part(queries.rows_from(first, rows)?, scores, seen, hd) {
            return None;
        }
        for (i, (row, sum)) in scores.chunks_exact_mut(keys).zip(sums.iter_mut()).enumerate() {
            let visible = causal_start.map_or(total, |start| (start + first + i + 1).min(total));
            let row = &mut row[..visible];
            *sum = softmax_numerators(row, scale);
            let numerator_row = scratch.numerators.row_mut(i);
            round_to_bf16(row, numerator_row);
            numerator_row[visible..seen].fill(bf16::ZERO);
        }
        let block_out = &mut scratch.block_out[..rows * hd];
        if !value_tiles.matmul_t_rounded_part(scratch.numerators.rows_from(0, rows)?, block_out, hd, seen) {
            return None;
        }
        for (i, (row, sum)) in block_out.chunks_exact(hd).zip(sums.iter()).enumerate() {
            let (inv, at) = (1.0 / sum, first + i);
            match target {
                Target::F32(out) => {
                    // SAFETY: row at < n and columns offset .. +hd ≤ d lie inside the output
                    // [n, d]; each head writes only its own columns.
                    #[allow(unsafe_code)]
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(at * d + offset), hd) };
                    for (o, value) in dst.iter_mut().zip(row) {
                        *o = value * inv;
                    }
                }
                Target::Rounded(out, stride) => {
                    for (o, value) in scratch.divided.iter_mut().zip(row) {
                        *o = value * inv;
                    }
                    // SAFETY: row at < n and columns offset .. +hd ≤ d lie inside the output
                    // rows (`stride` ≥ d values each); each head writes only its own columns.
                    #[allow(unsafe_code)]
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(at * stride + offset), hd) };
                    round_to_bf16(&scratch.divided, dst);
                }
            }
        }
        Some(())
    });
    key_tiles.into_tiles().recycle();
    value_tiles.into_tiles().recycle();
    done
}

/// One head's keys (`row(j, dst)` writes key `j < len` rounded), as the tile-order weight
/// `[keys, hd]`: for key `j` (output `j % 16` of block `j / 16`), row `r` of the tile of step
/// `s` holds the pair `2r`, `2r + 1` of the step's 32 values. The tiles of padded keys (rows
/// past `len`) are left as recycled: they only reach score columns past `len`, which the
/// softmax never reads.
fn pack_keys(row: impl Fn(usize, &mut [bf16]), len: usize, hd: usize, keys: usize) -> Option<TileWeight> {
    let steps = hd / TILE_K;
    let mut data = CacheAligned::<bf16>::recycled(keys * hd);
    let tiles = data.as_mut_slice();
    let mut rounded = vec![bf16::ZERO; hd];
    for j in 0..len {
        row(j, &mut rounded);
        let (block, c) = (j / TILE_ROWS, j % TILE_ROWS);
        for (s, values) in rounded.chunks_exact(TILE_K).enumerate() {
            let tile = &mut tiles[(block * steps + s) * TILE_VALUES..][..TILE_VALUES];
            for (r, pair) in values.chunks_exact(2).enumerate() {
                tile[r * 2 * TILE_ROWS + 2 * c..][..2].copy_from_slice(pair);
            }
        }
    }
    TileWeight::from_tiles(data, keys, hd)
}

/// One head's values (`row(j, dst)` writes value row `j < len` rounded), as the tile-order
/// weight of `v_hᵀ [hd, keys]`: row `r` of the tile for outputs `c0 .. +16` and keys `j0 ..
/// +32` interleaves values `c0 .. +16` of key rows `j0 + 2r` and `j0 + 2r + 1`. Padded keys
/// (past `len`) are zero: they meet the numerators' zero columns, and a recycled NaN there
/// would poison the sums.
fn pack_values_transposed(row: impl Fn(usize, &mut [bf16]), len: usize, hd: usize, keys: usize) -> Option<TileWeight> {
    let steps = keys / TILE_K;
    let mut data = CacheAligned::<bf16>::recycled(hd * keys);
    let tiles = data.as_mut_slice();
    let mut pair_rows = [vec![bf16::ZERO; hd], vec![bf16::ZERO; hd]];
    for pair in 0..keys / 2 {
        for (e, rounded) in pair_rows.iter_mut().enumerate() {
            let j = 2 * pair + e;
            if j < len {
                row(j, rounded);
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

    /// f64 attention of the bf16-rounded q, k, v, the scale applied to the scores, the softmax
    /// numerators rounded to bf16 and the division applied last (what the tiles compute).
    fn reference(q: &[f32], k: &[f32], v: &[f32], n: usize, heads: usize, scale: f32) -> Vec<f32> {
        let d = q.len() / n;
        let hd = d / heads;
        let r = |x: f32| f64::from(bf16::from_f32(x).to_f32());
        let mut out = vec![0f32; n * d];
        for h in 0..heads {
            for i in 0..n {
                let s: Vec<f64> = (0..n)
                    .map(|j| (0..hd).map(|c| r(q[i * d + h * hd + c]) * r(k[j * d + h * hd + c])).sum::<f64>() * f64::from(scale))
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

    /// q, k, v side by side in one buffer of bf16 rows (a fused projection's output), the
    /// attended rows rounded: exactly the f32-operand path's result, rounded (the same
    /// rounded operands, products and softmax), and so within rounding of the reference.
    #[test]
    fn fused_rows_attention_is_the_f32_path_rounded() {
        let Some(mut rng) = tile_test_rng(11) else { return };
        for &(n, heads, hd) in &[(1, 1, 32), (45, 2, 64), (97, 3, 32)] {
            let d = heads * hd;
            let (q, k, v) = (uniform(&mut rng, n * d, 3.0), uniform(&mut rng, n * d, 3.0), uniform(&mut rng, n * d, 1.0));
            let qkv: Vec<f32> = (0..n).flat_map(|i| [&q, &k, &v].map(|m| m[i * d..(i + 1) * d].to_vec()).concat()).collect();
            let rows = RoundedRows::from_f32(&qkv, n, 3 * d);
            // A scale that is not a power of two: applied to the scores on both paths.
            let scale = 0.3;
            let fused = attention_bf16_fused(&rows, heads, scale).expect("heads fit");
            let split = attention_bf16(&q, &k, &v, n, heads, scale).expect("heads fit");
            let mut want = vec![bf16::ZERO; n * d];
            round_to_bf16(&split, &mut want);
            let got: Vec<bf16> = (0..n).flat_map(|i| fused.row(i).to_vec()).collect();
            assert_eq!(got, want, "n={n} heads={heads} hd={hd}");
            let got: Vec<f32> = got.iter().map(|v| v.to_f32()).collect();
            let err = crate::parity::compare(&got, &reference(&q, &k, &v, n, heads, scale)).rel;
            assert!(err < 5e-3, "n={n}: rel. error {err} (bf16 output rounding)");
        }
        let rows = RoundedRows::from_f32(&[0.0; 3 * 48], 1, 3 * 48);
        assert!(attention_bf16_fused(&rows, 2, 1.0).is_none(), "24 values per head do not fit");
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
                        .map(|j| (0..hd).map(|c| r(q[i * d + h * hd + c]) * r(k[base + j * hd + c])).sum::<f64>() * f64::from(scale))
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
            // The rounded variant (an output projection's tile rows): exactly these values, rounded.
            let rounded = causal_attention_bf16_rounded(&q, n, heads, hd, &k, &v, layout, start, scale).expect("heads fit");
            let mut want = vec![bf16::ZERO; n * d];
            round_to_bf16(&ours, &mut want);
            assert_eq!((rounded.rows(), rounded.cols()), (n, d));
            let got: Vec<bf16> = (0..n).flat_map(|i| rounded.row(i).to_vec()).collect();
            assert_eq!(got, want, "rounded: n={n} start={start} heads={heads}/{kv_heads} hd={hd}");
        }
        let layout = KvLayout { heads: 2, head_stride: 64, row_stride: 32, len: 2 };
        assert!(causal_attention_bf16(&[0.0; 96], 1, 3, 32, &[0.0; 128], &[0.0; 128], layout, 1, 1.0).is_none(), "3 heads over 2");
        assert!(causal_attention_bf16(&[0.0; 64], 1, 2, 32, &[0.0; 64], &[0.0; 128], layout, 1, 1.0).is_none(), "keys too short");
        assert!(causal_attention_bf16_rounded(&[0.0; 64], 1, 2, 32, &[0.0; 64], &[0.0; 128], layout, 1, 1.0).is_none(), "keys too short");
    }
}
