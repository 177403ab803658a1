//! [`TileWeight`]: a bf16 weight rearranged once, at load, into AMX tile order — every bf16
//! weight whose widths are multiples of 32: each `HostLinear` (the vision towers, the UPN's
//! feed-forward blocks when it runs in bf16) and each of the LLM's layers.
//!
//! With the weight as the column operand, the activations are the row operand: their tiles
//! are 16 rows of plain row-major bf16, loaded in place from the rounded inputs (no
//! interleaving), and the 16×16 sums land in `y [m, out]` in its own layout (stored straight
//! from the tiles, no transposition). The weight is held in this order only (the LLM drops
//! the stored copy at load, one tensor at a time, so a 7B model is never held twice); one row
//! of inputs (a decode step) reads the same tiles with `VDPBF16PS` (`tile_matvec.rs`).
//! Weights of other widths stay as stored and use [`super::matmul_t_bf16`].

use super::{BLOCK, CacheAligned, OutPtr, TILE_K, TILE_ROWS, TILE_VALUES, available, round_to_bf16, tiles};
use crate::host_ops::{Activation, add_scaled_residual_row, bias_activation_row};
use half::bf16;
use rayon::prelude::*;

/// Column blocks of 32 outputs per task (at most): their tiles stay in L2 while every
/// 32-row block of activations runs against them.
const PAIRS_PER_TASK: usize = 4;
/// Tile bytes per task (at most, ≥ one block of 32 outputs). Measured on a 704-row prefill,
/// 2 threads: Llama-7B's down_proj (11 008 inputs, 704 KB per block) at 1.0 TMAC/s with one
/// block per task against 0.57–0.76 with four (2.8 MB: out of L2); its o_proj (4096 inputs)
/// at 1.3 TMAC/s with four blocks (1 MB), 1.18 with two, 0.78 with one.
const TASK_WEIGHT_BYTES: usize = 1 << 20;
/// The largest weight whose products run as tasks over row blocks (each against the whole
/// weight, which stays in L2). Measured on ConvNeXt-L's first two stages, 2 threads (the
/// weights 288 KB and 1.2 MB): 920–1150 vs 570–780 GMAC/s for tasks over output blocks; at
/// 2 MB (CLIP-L's 1024×1024) the two orders are within noise of each other.
const ROW_TASK_WEIGHT_BYTES: usize = 3 << 19;

/// A `[n, k]` (PyTorch `[out, in]`) bf16 weight in tile order: for each block of 16
/// outputs, for each 32-value step of `k`, one 16×16-pair tile whose row `r` holds, for
/// each output `c`, the pair `W[c][2r]`, `W[c][2r+1]` of that step.
#[derive(Debug, Clone)]
pub struct TileWeight {
    n: usize,
    k: usize,
    data: CacheAligned<bf16>,
}

impl TileWeight {
    /// Whether a `[n, k]` weight can be held in tile order: AMX is [`available`], `k` is a
    /// whole number of 32-value steps and `n` of 32-output blocks.
    pub fn fits(n: usize, k: usize) -> bool {
        available() && n > 0 && k > 0 && n.is_multiple_of(BLOCK) && k.is_multiple_of(TILE_K)
    }

    /// Rearranges `w [n, k]` row-major; `None` when the shapes do not [`fit`](Self::fits)
    /// or `w` is shorter than `n · k`.
    pub fn pack(w: &[bf16], n: usize, k: usize) -> Option<Self> {
        if !Self::fits(n, k) || w.len() < n * k {
            return None;
        }
        let steps = k / TILE_K;
        let mut data = CacheAligned::zeroed(n * k);
        data.as_mut_slice().par_chunks_mut(steps * TILE_VALUES).enumerate().for_each(|(block, tiles)| {
            for (s, tile) in tiles.chunks_exact_mut(TILE_VALUES).enumerate() {
                for c in 0..TILE_ROWS {
                    let row = &w[(block * TILE_ROWS + c) * k + s * TILE_K..][..TILE_K];
                    for r in 0..TILE_K / 2 {
                        tile[r * 2 * TILE_ROWS + 2 * c] = row[2 * r];
                        tile[r * 2 * TILE_ROWS + 2 * c + 1] = row[2 * r + 1];
                    }
                }
            }
        });
        Some(Self { n, k, data })
    }

    /// A weight `[n, k]` from tiles the caller laid out in this order (`n · k` values;
    /// `None` when the shapes do not [`fit`](Self::fits) or the length differs).
    pub(super) fn from_tiles(data: CacheAligned<bf16>, n: usize, k: usize) -> Option<Self> {
        (Self::fits(n, k) && data.as_slice().len() == n * k).then_some(Self { n, k, data })
    }

    /// The weights `parts` (each `[n_i, k]`, one `k`) stacked along their outputs into one
    /// `[Σ n_i, k]` weight, e.g. q, k and v projections run as one product. Tile order is
    /// output-block-major, so this is their tiles one after the other. `None` when `parts` is
    /// empty or the input widths differ.
    pub fn concat_outputs(parts: &[&TileWeight]) -> Option<Self> {
        let k = parts.first()?.k;
        if parts.iter().any(|p| p.k != k) {
            return None;
        }
        let n = parts.iter().map(|p| p.n).sum();
        let mut data = CacheAligned::zeroed(n * k);
        let mut filled = 0;
        for part in parts {
            let tiles = part.data.as_slice();
            data.as_mut_slice()[filled..filled + tiles.len()].copy_from_slice(tiles);
            filled += tiles.len();
        }
        Some(Self { n, k, data })
    }

    /// The tiles, handed back (e.g. to [`CacheAligned::recycle`] a per-call weight).
    pub(super) fn into_tiles(self) -> CacheAligned<bf16> {
        self.data
    }

    /// Outputs.
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Inputs.
    pub fn cols(&self) -> usize {
        self.k
    }

    /// The tiles, in order.
    pub(super) fn tiles(&self) -> &[bf16] {
        self.data.as_slice()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.as_slice().len() * 2
    }

    /// `y[m, n] = x[m, k] · Wᵀ` on all rayon threads, the inputs rounded to bf16 (nearest
    /// even, as PyTorch's bf16 products) and the sums in f32. Returns `false`, computing
    /// nothing, when a slice is shorter than its shape.
    pub fn matmul_t(&self, x: &[f32], m: usize, y: &mut [f32]) -> bool {
        if x.len() < m * self.k {
            return false;
        }
        // One row (a decode step): read the weight once with `VDPBF16PS`, not 32-row tiles.
        if m == 1 && self.matvec(x, y) {
            return true;
        }
        self.matmul_t_rounded(&RoundedRows::from_f32(x, m, self.k), y)
    }

    /// [`matmul_t`](Self::matmul_t) of inputs already rounded: `y [m, n]` for the `m` rows of
    /// `x`. Returns `false`, computing nothing, when `x` has another width than the weight or
    /// `y` is shorter than `m · n`.
    pub fn matmul_t_rounded<'a>(&self, x: impl Into<RoundedView<'a>>, y: &mut [f32]) -> bool {
        self.matmul_t_rounded_with(x.into(), y, true, (self.n, self.k))
    }

    /// [`matmul_t_rounded`](Self::matmul_t_rounded) on the calling thread only, for callers
    /// that already run one product per thread (attention: one head per task).
    pub fn matmul_t_rounded_serial<'a>(&self, x: impl Into<RoundedView<'a>>, y: &mut [f32]) -> bool {
        self.matmul_t_rounded_part(x.into(), y, self.n, self.k)
    }

    /// [`matmul_t_rounded_serial`](Self::matmul_t_rounded_serial) of a leading part of the
    /// weight: only outputs `0 .. outputs` are computed (the rest of `y`'s `[m, n]` rows left
    /// as they are) and the sums run over inputs `0 .. reduction` only — e.g. causal attention,
    /// where a block of queries sees a prefix of the keys. Returns `false`, computing nothing,
    /// unless `outputs` is a whole number of 32-output blocks and `reduction` of 32-value steps
    /// within the weight, and the shapes fit as for the whole product.
    pub(super) fn matmul_t_rounded_part(&self, x: RoundedView<'_>, y: &mut [f32], outputs: usize, reduction: usize) -> bool {
        let whole = outputs.is_multiple_of(BLOCK) && outputs <= self.n && reduction.is_multiple_of(TILE_K) && reduction > 0 && reduction <= self.k;
        whole && self.matmul_t_rounded_with(x, y, false, (outputs, reduction))
    }

    fn matmul_t_rounded_with(&self, x: RoundedView<'_>, y: &mut [f32], parallel: bool, (outputs, reduction): (usize, usize)) -> bool {
        let (n, m) = (self.n, x.m);
        if x.k != self.k || y.len() < m * n {
            return false;
        }
        let out = OutPtr(y.as_mut_ptr());
        let finish = |rb: usize, p: usize, rows: usize, sums: &mut [f32]| {
            for (i, row) in sums.chunks_exact(BLOCK).take(rows).enumerate() {
                // SAFETY: row rb·32 + i < m and columns p·32 .. +32 ≤ n lie inside y [m, n];
                // no other task writes these columns.
                #[allow(unsafe_code)]
                unsafe {
                    std::ptr::copy_nonoverlapping(row.as_ptr(), out.get().add((rb * BLOCK + i) * n + p * BLOCK), BLOCK);
                }
            }
        };
        // The tiles store their sums straight into `y`, lines straddled or not (measured: faster
        // than storing into an aligned local block and copying), except for a last, partial
        // block of rows, which is copied from the local block.
        if parallel {
            self.for_each_block(x, Some((out, n)), finish);
        } else {
            let (mut local, _configured) = (BlockSums([0f32; BLOCK * BLOCK]), tiles::Configured::new());
            for rb in 0..m.div_ceil(BLOCK) {
                for p in 0..outputs / BLOCK {
                    self.block(x, (rb, p), reduction / TILE_K, Some((out, n)), &mut local, &finish);
                }
            }
        }
        true
    }

    /// `activation(x · Wᵀ + bias)` rounded to bf16, as the row operand of the next tile
    /// product (`[m, n]`): the bias, the activation and the rounding run on each 32×32 block
    /// of sums while it is in L1, so the f32 product is never written out (for an MLP's first
    /// layer, whose output is the widest tensor of the block). `None` when `x` has another
    /// width than the weight or `bias` fewer than `n` values.
    pub fn matmul_t_activated<'a>(&self, x: impl Into<RoundedView<'a>>, bias: &[f32], activation: Activation) -> Option<RoundedRows> {
        let x = x.into();
        let (n, m) = (self.n, x.m);
        if x.k != self.k || bias.len() < n {
            return None;
        }
        let mut hidden = RoundedRows::recycled(m, n);
        let (stride, out) = (hidden.stride, OutPtr(hidden.data.as_mut_slice().as_mut_ptr()));
        self.for_each_block(x, None, |rb, p, rows, sums| {
            let bias = &bias[p * BLOCK..(p + 1) * BLOCK];
            for (i, row) in sums.chunks_exact_mut(BLOCK).take(rows).enumerate() {
                bias_activation_row(row, bias, activation);
                // SAFETY: row rb·32 + i < m and columns p·32 .. +32 ≤ n lie inside `hidden`
                // (rows of `stride` ≥ n values); no other task writes these columns.
                #[allow(unsafe_code)]
                let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add((rb * BLOCK + i) * stride + p * BLOCK), BLOCK) };
                round_to_bf16(row, dst);
            }
        });
        Some(hidden)
    }

    /// `residual += (x · Wᵀ + bias) · scale` for `residual [m, n]` (`bias [n]`, `scale [n]`;
    /// `None`: 0 and 1): the bias, scale and sum run on each 32×32 block of sums while it is
    /// in L1, so the product is never written out (an MLP's second layer or an attention's
    /// output projection adding into the residual stream). Returns `false`, computing
    /// nothing, when `x` has another width than the weight, `residual` fewer than `m · n`
    /// values or `bias` (or `scale`) fewer than `n`.
    pub fn matmul_t_residual<'a>(
        &self,
        x: impl Into<RoundedView<'a>>,
        residual: &mut [f32],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
    ) -> bool {
        let x = x.into();
        let (n, m) = (self.n, x.m);
        let short = |v: Option<&[f32]>| v.is_some_and(|v| v.len() < n);
        if x.k != self.k || residual.len() < m * n || short(bias) || short(scale) {
            return false;
        }
        let out = OutPtr(residual.as_mut_ptr());
        let no_bias = [0f32; BLOCK];
        self.for_each_block(x, None, |rb, p, rows, sums| {
            let columns = p * BLOCK..(p + 1) * BLOCK;
            let (bias, scale) = (bias.map_or(&no_bias[..], |b| &b[columns.clone()]), scale.map(|s| &s[columns]));
            for (i, row) in sums.chunks_exact(BLOCK).take(rows).enumerate() {
                // SAFETY: row rb·32 + i < m and columns p·32 .. +32 ≤ n lie inside
                // `residual [m, n]`; no other task touches these rows and columns.
                #[allow(unsafe_code)]
                let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add((rb * BLOCK + i) * n + p * BLOCK), BLOCK) };
                add_scaled_residual_row(dst, row, bias, scale);
            }
        });
        true
    }

    /// Runs the 2×2 tile product of `x` against every 32-output block of the weight on all
    /// rayon threads and hands each 32×32 block of sums to `finish(row block, output block,
    /// rows, sums)` — except full blocks of rows when `direct` names an output `[m, n]` f32,
    /// into which their sums are stored by the tiles.
    ///
    /// Two task orders. A weight of at most [`ROW_TASK_WEIGHT_BYTES`] stays whole in L2, so
    /// tasks are 32-row blocks of `x`, each run against every output block while its rows
    /// stay in L1 (`x` is read once: ConvNeXt's first two stages, thousands of tokens against
    /// ≤ 1.2 MB weights). A larger weight is split into groups of output blocks that each stay
    /// in L2 while every row block of `x` runs against them.
    fn for_each_block<F>(&self, x: RoundedView<'_>, direct: Option<(OutPtr, usize)>, finish: F)
    where
        F: Fn(usize, usize, usize, &mut [f32]) + Sync,
    {
        let m = x.m;
        if m == 0 {
            return;
        }
        let row_blocks = m.div_ceil(BLOCK);
        let pairs = self.n / BLOCK;
        let threads = rayon::current_num_threads();
        let steps = self.k / TILE_K;
        let run = |local: &mut BlockSums, rb: usize, p: usize| self.block(x, (rb, p), steps, direct, local, &finish);
        if self.bytes() <= ROW_TASK_WEIGHT_BYTES && row_blocks >= 2 * threads {
            (0..row_blocks).into_par_iter().for_each_init(
                || (BlockSums([0f32; BLOCK * BLOCK]), tiles::Configured::new()),
                |(local, _), rb| (0..pairs).for_each(|p| run(local, rb, p)),
            );
            return;
        }
        let fit = (TASK_WEIGHT_BYTES / (BLOCK * self.k * 2).max(1)).clamp(1, PAIRS_PER_TASK);
        let per_task = (pairs / (4 * threads).max(1)).clamp(1, fit);
        (0..pairs.div_ceil(per_task)).into_par_iter().for_each_init(
            || (BlockSums([0f32; BLOCK * BLOCK]), tiles::Configured::new()),
            |(local, _), task| {
                let outputs = task * per_task..((task + 1) * per_task).min(pairs);
                for rb in 0..row_blocks {
                    outputs.clone().for_each(|p| run(local, rb, p));
                }
            },
        );
    }

    /// The 32×32 block of sums of row block `rb` of `x` and output block `p` over the first
    /// `steps_used` 32-value steps of the inputs (all of them: `k / 32`): stored into `direct`
    /// when it names an output and the block has 32 rows, else computed into `local` and
    /// handed to `finish`. The tiles must be configured on this thread.
    fn block<F>(&self, x: RoundedView<'_>, (rb, p): (usize, usize), steps_used: usize, direct: Option<(OutPtr, usize)>, local: &mut BlockSums, finish: &F)
    where
        F: Fn(usize, usize, usize, &mut [f32]),
    {
        let steps = self.k / TILE_K;
        let steps_used = steps_used.min(steps);
        let stride = x.stride;
        let rounded = x.data;
        let pair_tiles = |half: usize| &self.data.as_slice()[(2 * p + half) * steps * TILE_VALUES..];
        let (a0, a1) = (&rounded[rb * BLOCK * stride..], &rounded[(rb * BLOCK + TILE_ROWS) * stride..]);
        let (b0, b1) = (pair_tiles(0), pair_tiles(1));
        let rows = BLOCK.min(x.m - rb * BLOCK);
        let target = direct.filter(|_| rows == BLOCK);
        let (c, c_stride) = match target {
            // SAFETY (of the offset): rows rb·32 .. +32 ≤ m and columns p·32 .. +32 ≤ n lie
            // inside the direct output [m, n].
            #[allow(unsafe_code)]
            Some((out, n)) => (unsafe { out.get().add(rb * BLOCK * n + p * BLOCK) }, n * 4),
            None => (local.0.as_mut_ptr(), BLOCK * 4),
        };
        // SAFETY: `rounded` holds 32 rows of `stride` ≥ k values from `a0` (rows padded to a
        // multiple of 32), `b0`/`b1` `steps` tiles each, `c` 32 rows of 32 f32 at `c_stride`
        // (inside the direct output, or the local block); the caller configured the tiles on
        // this thread; no other task writes these rows and columns.
        #[allow(unsafe_code)]
        unsafe {
            if rows <= TILE_ROWS {
                // The second row tile would be padding only: half the products.
                tiles::block_1x2_rows(a0.as_ptr(), stride * 2, b0.as_ptr(), b1.as_ptr(), steps_used, c, c_stride);
            } else {
                tiles::block_2x2_rows(a0.as_ptr(), a1.as_ptr(), stride * 2, b0.as_ptr(), b1.as_ptr(), steps_used, c, c_stride);
            }
        }
        if target.is_none() {
            finish(rb, p, rows, &mut local.0);
        }
    }
}

/// The f32 sums of one 32×32 block, on a cache line (a task's local block, also of the
/// split f16 products).
#[repr(C, align(64))]
pub(super) struct BlockSums(pub(super) [f32; BLOCK * BLOCK]);

/// Activations rounded to bf16, laid out as the row operand of [`TileWeight`]'s tiles: `m`
/// rows of `k` values, each row starting a cache line and one line longer than `k` values (so
/// that the 16 rows of a tile fall in different L1 sets; at a power-of-two stride they would
/// all compete for the same few), rows appended up to a multiple of 32 (zero from
/// [`zeros`](Self::zeros), unspecified from [`from_f32`](Self::from_f32): the tiles read them,
/// but the sums of those rows are never stored).
#[derive(Debug, Clone)]
pub struct RoundedRows {
    data: CacheAligned<bf16>,
    m: usize,
    k: usize,
    stride: usize,
}

impl RoundedRows {
    /// `m` rows of `k` zeros.
    pub fn zeros(m: usize, k: usize) -> Self {
        let stride = k + TILE_K;
        Self { data: CacheAligned::zeroed(m.div_ceil(BLOCK) * BLOCK * stride), m, k, stride }
    }

    /// `x [m, k]` rounded (rows in parallel), in a buffer recycled from this thread's last
    /// one where possible. Values past row `m` are unspecified: the tiles read them, but the
    /// sums of those rows are never stored. `x` must hold `m · k` values (fewer rows are
    /// rounded if it is shorter, the rest unspecified).
    pub fn from_f32(x: &[f32], m: usize, k: usize) -> Self {
        let mut rows = Self::recycled(m, k);
        let stride = rows.stride;
        let rows_per_task = (16 * 1024 / k.max(1)).max(1);
        rows.data.as_mut_slice()[..m * stride]
            .par_chunks_mut(rows_per_task * stride)
            .zip(x[..(m * k).min(x.len())].par_chunks(rows_per_task * k.max(1)))
            .for_each(|(dst, src)| {
                for (d, s) in dst.chunks_exact_mut(stride).zip(src.chunks_exact(k.max(1))) {
                    round_to_bf16(s, d);
                }
            });
        rows
    }

    /// `m` rows of `k` unspecified values, recycled from this thread's spare where possible,
    /// for a caller that fills every row (e.g. through [`par_groups_mut`](Self::par_groups_mut)).
    pub fn recycled(m: usize, k: usize) -> Self {
        let stride = k + TILE_K;
        Self { data: CacheAligned::recycled(m.div_ceil(BLOCK) * BLOCK * stride), m, k, stride }
    }

    /// Row `i < m` (`k` values; empty past `m`).
    pub fn row(&self, i: usize) -> &[bf16] {
        let start = i.min(self.m) * self.stride;
        &self.data.as_slice()[start..start + if i < self.m { self.k } else { 0 }]
    }

    /// Row `i < m` (`k` values) for the caller to fill, e.g. with [`round_to_bf16`].
    pub fn row_mut(&mut self, i: usize) -> &mut [bf16] {
        let start = i.min(self.m) * self.stride;
        &mut self.data.as_mut_slice()[start..start + if i < self.m { self.k } else { 0 }]
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Values between the starts of consecutive rows (`k` and a line of padding).
    pub(super) fn stride(&self) -> usize {
        self.stride
    }

    /// The first row's first value, for writers of disjoint parts of the rows in parallel.
    pub(super) fn as_mut_ptr(&mut self) -> *mut bf16 {
        self.data.as_mut_slice().as_mut_ptr()
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.k
    }
}

/// Rows of a [`RoundedRows`] (all of them, or a run starting at a multiple of 32 rows), as
/// the row operand of [`TileWeight`]'s products.
#[derive(Debug, Clone, Copy)]
pub struct RoundedView<'a> {
    /// From the first row to the end of the buffer (the tiles of the last block read rows up
    /// to the next multiple of 32).
    data: &'a [bf16],
    m: usize,
    k: usize,
    stride: usize,
}

impl<'a> From<&'a RoundedRows> for RoundedView<'a> {
    fn from(rows: &'a RoundedRows) -> Self {
        Self { data: rows.data.as_slice(), m: rows.m, k: rows.k, stride: rows.stride }
    }
}

impl<'a> RoundedView<'a> {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Rows `first .. first + count` of the view; `None` unless `first` is a multiple of 32
    /// and the run ends by the view's last row (see [`RoundedRows::rows_from`]).
    pub fn rows_from(&self, first: usize, count: usize) -> Option<RoundedView<'a>> {
        if !first.is_multiple_of(BLOCK) || first + count > self.m {
            return None;
        }
        Some(RoundedView { data: self.data.get(first * self.stride..)?, m: count, k: self.k, stride: self.stride })
    }
}

impl RoundedRows {
    /// Rows `first .. first + count`, for products over blocks of tokens; `None` unless
    /// `first` is a multiple of 32 (so that every tile of the run stays inside the buffer)
    /// and the run ends by row `m`.
    pub fn rows_from(&self, first: usize, count: usize) -> Option<RoundedView<'_>> {
        RoundedView::from(self).rows_from(first, count)
    }

    /// Columns `first .. first + count` of every row, as a row operand of their own (e.g. one
    /// attention head's queries inside a fused q/k/v projection's output); `None` unless
    /// `first` and `count` are whole 32-value steps (so that each row of the view starts a
    /// cache line) inside the rows.
    pub fn columns(&self, first: usize, count: usize) -> Option<RoundedView<'_>> {
        (first.is_multiple_of(TILE_K) && count.is_multiple_of(TILE_K) && count > 0 && first + count <= self.k).then(|| RoundedView {
            data: &self.data.as_slice()[first..],
            m: self.m,
            k: count,
            stride: self.stride,
        })
    }

    /// The rows in groups of `group` (the last may be shorter), on all rayon threads, for
    /// callers that fill them (e.g. one image row of tokens per group): items are the index
    /// of the group's first row and its rows.
    pub fn par_groups_mut(&mut self, group: usize) -> impl IndexedParallelIterator<Item = (usize, RowGroupMut<'_>)> {
        let (m, k, stride, group) = (self.m, self.k, self.stride, group.max(1));
        self.data.as_mut_slice()[..m * stride]
            .par_chunks_mut(group * stride)
            .enumerate()
            .map(move |(g, data)| (g * group, RowGroupMut { data, k, stride }))
    }
}

/// Consecutive rows of a [`RoundedRows`], to fill (see [`RoundedRows::par_groups_mut`]).
#[derive(Debug)]
pub struct RowGroupMut<'a> {
    data: &'a mut [bf16],
    k: usize,
    stride: usize,
}

impl RowGroupMut<'_> {
    /// Rows in the group.
    pub fn rows(&self) -> usize {
        self.data.len() / self.stride.max(1)
    }

    /// Row `i` of the group (`k` values; empty past the group).
    pub fn row_mut(&mut self, i: usize) -> &mut [bf16] {
        let start = (i * self.stride).min(self.data.len());
        let len = if i < self.rows() { self.k } else { 0 };
        &mut self.data[start..start + len]
    }
}

impl Drop for RoundedRows {
    fn drop(&mut self) {
        std::mem::replace(&mut self.data, CacheAligned::empty()).recycle();
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{tile_test_rng, uniform, uniform_bf16};
    use super::*;

    #[test]
    fn tile_order_matches_the_rounded_product() {
        let Some(mut rng) = tile_test_rng(11) else { return };
        for &(m, n, k) in &[(1, 32, 32), (17, 64, 64), (32, 32, 96), (70, 96, 160), (577, 128, 1024), (40, 64, 4096)] {
            let w = uniform_bf16(&mut rng, n * k);
            let x = uniform(&mut rng, m * k, 1.0);
            let packed = TileWeight::pack(&w, n, k).expect("shapes fit");
            let mut y = vec![f32::NAN; m * n];
            assert!(packed.matmul_t(&x, m, &mut y));
            let r = super::super::tests::reference(&w, n, k, &x, m);
            let err = crate::parity::compare(&y, &r).rel;
            assert!(err < 1e-6, "m={m} n={n} k={k}: rel. error {err}");
        }
        assert!(TileWeight::pack(&[bf16::ZERO; 48 * 32], 48, 32).is_none(), "48 outputs are not whole 32-blocks");
        assert!(TileWeight::pack(&[bf16::ZERO; 32 * 48], 32, 48).is_none(), "48 inputs are not whole steps");
    }

    /// The fused epilogue computes exactly what the product, the bias and activation pass and
    /// the rounding compute one after the other.
    #[test]
    fn activated_product_equals_its_unfused_steps() {
        let Some(mut rng) = tile_test_rng(12) else { return };
        for &(m, n, k) in &[(1, 32, 32), (45, 64, 96), (70, 128, 64)] {
            let w = uniform_bf16(&mut rng, n * k);
            let x = uniform(&mut rng, m * k, 1.0);
            let bias = uniform(&mut rng, n, 0.5);
            let packed = TileWeight::pack(&w, n, k).expect("shapes fit");
            for activation in [Activation::Gelu, Activation::QuickGelu, Activation::Identity] {
                let rows = RoundedRows::from_f32(&x, m, k);
                let hidden = packed.matmul_t_activated(&rows, &bias, activation).expect("widths match");
                let mut y = vec![0f32; m * n];
                assert!(packed.matmul_t_rounded(&rows, &mut y));
                for (i, row) in y.chunks_exact_mut(n).enumerate() {
                    bias_activation_row(row, &bias, activation);
                    let mut want = vec![bf16::ZERO; n];
                    round_to_bf16(row, &mut want);
                    assert_eq!(hidden.row(i), &want[..], "m={m} n={n} k={k} {activation:?}: row {i}");
                }
                assert_eq!((hidden.rows(), hidden.cols()), (m, n));
            }
        }
        let packed = TileWeight::pack(&[bf16::ZERO; 32 * 32], 32, 32).expect("shapes fit");
        assert!(packed.matmul_t_activated(&RoundedRows::zeros(3, 64), &[0.0; 32], Activation::Gelu).is_none(), "width 64 ≠ 32");
        assert!(packed.matmul_t_activated(&RoundedRows::zeros(3, 32), &[0.0; 16], Activation::Gelu).is_none(), "short bias");
    }
    /// The residual epilogue adds exactly what the product followed by the bias, scale and
    /// residual pass adds, in either task order (a small weight runs as row tasks).
    #[test]
    fn residual_product_equals_its_unfused_steps() {
        let Some(mut rng) = tile_test_rng(13) else { return };
        for &(m, n, k) in &[(1, 32, 32), (45, 64, 96), (300, 128, 64), (100, 1024, 1024)] {
            let w = uniform_bf16(&mut rng, n * k);
            let x = uniform(&mut rng, m * k, 1.0);
            let bias = uniform(&mut rng, n, 0.5);
            let scale = uniform(&mut rng, n, 1.0);
            let start = uniform(&mut rng, m * n, 1.0);
            let packed = TileWeight::pack(&w, n, k).expect("shapes fit");
            let rows = RoundedRows::from_f32(&x, m, k);
            let mut y = vec![0f32; m * n];
            assert!(packed.matmul_t_rounded(&rows, &mut y));
            for scale in [Some(&scale[..]), None] {
                let mut want = start.clone();
                for (r, y) in want.chunks_exact_mut(n).zip(y.chunks_exact(n)) {
                    add_scaled_residual_row(r, y, &bias, scale);
                }
                let mut got = start.clone();
                assert!(packed.matmul_t_residual(&rows, &mut got, Some(&bias), scale));
                assert_eq!(got, want, "m={m} n={n} k={k} scale={}", scale.is_some());
            }
        }
        let packed = TileWeight::pack(&[bf16::ZERO; 32 * 32], 32, 32).expect("shapes fit");
        let rows = RoundedRows::zeros(3, 32);
        assert!(!packed.matmul_t_residual(&rows, &mut [0.0; 95], Some(&[0.0; 32]), None), "short residual");
        assert!(!packed.matmul_t_residual(&rows, &mut [0.0; 96], Some(&[0.0; 32]), Some(&[1.0; 31])), "short scale");
        assert!(!packed.matmul_t_residual(&RoundedRows::zeros(3, 64), &mut [0.0; 96], Some(&[0.0; 32]), None), "width 64 ≠ 32");
    }
}
