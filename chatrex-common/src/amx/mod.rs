//! bf16 matrix products on Intel AMX tiles (Sapphire Rapids and later), for prefill with
//! bf16 weights on the CPU backend.
//!
//! One `TDPBF16PS` multiplies a 16×32 bf16 tile by a 32×16 one into 16×16 f32 sums: 8192
//! multiply-adds, against 16 for an AVX-512 f32 FMA. The weight stays as stored, `[out, in]`
//! row-major bf16 (the checkpoint's layout, also read by the decode GEMV): 16 of its rows
//! × 32 inputs are one tile loaded in place. The activations, `x [m, in]` f32, are rounded
//! to bf16 (nearest even, like PyTorch's bf16 matmul inputs) and packed in the pair-
//! interleaved ("VNNI") tile layout, so the tiles compute `yᵀ = W · xᵀ`; the 16×16 output
//! tiles are written transposed into `y [m, out]`. Sums are f32 throughout.
//!
//! Blocking: each task takes 32 weight rows (two tiles high, ≤ 704 KB for 11008 inputs: the
//! block stays in L2) and runs every 32-row block of inputs against it with four
//! accumulator tiles (2×2), all 8 tile registers in use.
//!
//! Weights whose widths are multiples of 32 (the vision towers' and the LLM's) are held in
//! tile order instead ([`TileWeight`], rearranged once at load): the inputs are then the row
//! operand, loaded as plain rounded rows, and the sums are stored straight into `y`, with no
//! interleaving of the inputs and no transposition of the outputs; the in-place layout
//! serves the rest (e.g. an LM head over a vocabulary of 32 104).
//!
//! Tiles need the kernel's permission (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), asked once;
//! `CHATREX_NO_AMX=1` turns the path off (tests use it to compare with the fallback).

use half::bf16;
use rayon::prelude::*;
use std::sync::OnceLock;

mod aligned;
mod attention;
mod rounding;
mod split_f16;
mod tile_matvec;
mod tile_weight;
mod tiles;

use aligned::CacheAligned;
pub use rounding::round_to_bf16;
pub use split_f16::{SplitWeight, matmul_f16_split, matmul_split, split_f16_fits};

pub use attention::{KvLayout, attention_bf16, attention_bf16_fused, attention_fits, causal_attention_bf16, causal_attention_bf16_rounded};
pub use tile_weight::{RoundedRows, RoundedView, RowGroupMut, TileWeight};

/// Rows (outputs or inputs) per tile.
const TILE_ROWS: usize = 16;
/// bf16 values along the reduction per tile (64 bytes).
const TILE_K: usize = 32;
/// Outputs per task and inputs per inner block: two tiles.
const BLOCK: usize = 2 * TILE_ROWS;
/// Values in one input tile (bf16) and in one sum tile (f32): 16 × 32 and 16 × 16.
const TILE_VALUES: usize = TILE_ROWS * TILE_K;
const SUM_TILE_VALUES: usize = TILE_ROWS * TILE_ROWS;
/// f32 sums of one 32×32 block: four sum tiles.
const BLOCK_SUMS: usize = 4 * SUM_TILE_VALUES;

/// Whether AMX bf16 tiles can be used by this process: the CPU has them, Linux granted the
/// tile state, and `CHATREX_NO_AMX` is not set. Checked once.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var_os("CHATREX_NO_AMX").is_some_and(|v| v != "0") {
            return false;
        }
        let ok = detect_and_enable();
        tracing::debug!(amx = ok, "AMX bf16 tiles");
        ok
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[allow(unsafe_code)]
fn detect_and_enable() -> bool {
    use std::arch::x86_64::__cpuid_count;
    // CPUID exists on every x86-64 CPU.
    let leaf0 = __cpuid_count(0, 0);
    if leaf0.eax < 7 {
        return false;
    }
    let leaf7 = __cpuid_count(7, 0);
    let amx_bf16 = leaf7.edx & (1 << 22) != 0;
    let amx_tile = leaf7.edx & (1 << 24) != 0;
    if !(amx_bf16 && amx_tile) {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain syscall with integer arguments; it only changes this process's
    // permitted extended-state components.
    let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
    rc == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect_and_enable() -> bool {
    false
}

/// Whether [`matmul_t_bf16`] handles these shapes (the reduction a whole number of tiles,
/// at least one full block of outputs).
pub fn supports(n: usize, k: usize) -> bool {
    k > 0 && k.is_multiple_of(TILE_K) && n >= BLOCK
}

/// `x [m, k]` f32 rounded to bf16 and packed for the tiles: blocks of 16 rows; in each, per
/// 32-value step of `k`, a 16×64-byte tile whose row `r` holds, for each of the 16 rows `i`,
/// the pair `x[i][2r]`, `x[i][2r+1]` of that step. Rows past `m` (up to a multiple of 32)
/// hold unspecified values (recycled scratch): they only reach the sums of those rows,
/// which are never written out.
struct PackedInputs {
    data: CacheAligned<bf16>,
    /// Row blocks of 32.
    blocks: usize,
    /// 32-value steps along `k`.
    steps: usize,
}

impl PackedInputs {
    fn pack(x: &[f32], m: usize, k: usize) -> Self {
        let blocks = m.div_ceil(BLOCK);
        let steps = k / TILE_K;
        let tile = TILE_VALUES;
        let mut data = CacheAligned::recycled(blocks * 2 * steps * tile);
        data.as_mut_slice().par_chunks_mut(steps * tile).enumerate().for_each_init(
            || vec![bf16::ZERO; k],
            |rounded, (half_block, out)| {
                let i0 = half_block * TILE_ROWS;
                for i in 0..TILE_ROWS.min(m.saturating_sub(i0)) {
                    // Round the row in one vectorised pass, then scatter its pairs.
                    round_to_bf16(&x[(i0 + i) * k..(i0 + i + 1) * k], rounded);
                    for (s, tile_out) in out.chunks_exact_mut(tile).enumerate() {
                        let src = &rounded[s * TILE_K..(s + 1) * TILE_K];
                        for (r, pair) in src.chunks_exact(2).enumerate() {
                            tile_out[r * 2 * TILE_ROWS + 2 * i..][..2].copy_from_slice(pair);
                        }
                    }
                }
            },
        );
        Self { data, blocks, steps }
    }

    /// The packed tiles of the 16-row half block `h`.
    fn half_block(&self, h: usize) -> &[bf16] {
        let len = self.steps * TILE_VALUES;
        &self.data.as_slice()[h * len..(h + 1) * len]
    }
}

/// A raw output pointer shared by tasks that write disjoint columns.
struct OutPtr<T = f32>(*mut T);

impl<T> Clone for OutPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for OutPtr<T> {}

impl<T> OutPtr<T> {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not its field).
    fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: tasks write disjoint column ranges of the output (their own blocks of outputs).
#[allow(unsafe_code)]
unsafe impl<T> Send for OutPtr<T> {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl<T> Sync for OutPtr<T> {}

/// 32-value steps of the reduction per chunk: the packed inputs of one 32-row block for a
/// chunk (32 KB) stay in L1 while every weight block of the task runs against them.
const CHUNK_STEPS: usize = 16;
/// 32-row weight blocks per task (at most): their chunk, packed (128 KB), stays in L2.
const BLOCKS_PER_TASK: usize = 4;

/// `y[m, n] = x[m, k] · Wᵀ` with `w [n, k]` bf16 row-major, on AMX tiles and all rayon
/// threads. Returns `false` (computing nothing) when AMX is not [`available`], the shapes are
/// not [`supports`]ed or a slice is shorter than its shape; the caller then takes another
/// path. The last `n % 32` outputs are computed from f32 conversions of their rows.
///
/// Loop nest per task (a group of up to four 32-row weight blocks): for each chunk of 512
/// inputs along `k`, the group's weight chunk is copied into contiguous tiles; then for each
/// 32-row input block, each weight block runs 16 steps of 2×2 tiles, the f32 sums carried
/// between chunks in a task buffer (loaded into and stored from the tiles).
pub fn matmul_t_bf16(w: &[bf16], n: usize, k: usize, x: &[f32], m: usize, y: &mut [f32]) -> bool {
    if !available() || !supports(n, k) || w.len() < n * k || x.len() < m * k || y.len() < m * n || m == 0 {
        return false;
    }
    let packed = PackedInputs::pack(x, m, k);
    let out = OutPtr(y.as_mut_ptr());
    let full_blocks = n / BLOCK;
    // Enough tasks for every thread to get several, at most 4 blocks each.
    let per_task = (full_blocks / (4 * rayon::current_num_threads()).max(1)).clamp(1, BLOCKS_PER_TASK);
    let tasks = full_blocks.div_ceil(per_task);
    (0..tasks).into_par_iter().for_each(|task| {
        let nb0 = task * per_task;
        let blocks = per_task.min(full_blocks - nb0);
        // Weight chunk: [block][half][step][16 rows × 32], contiguous tiles.
        // Both scratch buffers are written before they are read (the first chunk's sums
        // start from zero in the tiles).
        let mut weight_buffer = CacheAligned::<bf16>::recycled(blocks * 2 * CHUNK_STEPS * TILE_VALUES);
        let weight_chunk = weight_buffer.as_mut_slice();
        // f32 sums: [input block][weight block][4 tiles].
        let mut sum_buffer = CacheAligned::<f32>::recycled(packed.blocks * blocks * BLOCK_SUMS);
        let sums = sum_buffer.as_mut_slice();
        let configured = tiles::Configured::new();
        let mut s0 = 0;
        while s0 < packed.steps {
            let steps = CHUNK_STEPS.min(packed.steps - s0);
            for b in 0..blocks {
                for h in 0..2 {
                    for r in 0..TILE_ROWS {
                        let row = (nb0 + b) * BLOCK + h * TILE_ROWS + r;
                        let src = &w[row * k + s0 * TILE_K..row * k + (s0 + steps) * TILE_K];
                        for s in 0..steps {
                            let dst = ((b * 2 + h) * CHUNK_STEPS + s) * TILE_VALUES + r * TILE_K;
                            weight_chunk[dst..dst + TILE_K].copy_from_slice(&src[s * TILE_K..(s + 1) * TILE_K]);
                        }
                    }
                }
            }
            for mb in 0..packed.blocks {
                let b0 = &packed.half_block(2 * mb)[s0 * TILE_VALUES..];
                let b1 = &packed.half_block(2 * mb + 1)[s0 * TILE_VALUES..];
                for b in 0..blocks {
                    let a = &weight_chunk[b * 2 * CHUNK_STEPS * TILE_VALUES..];
                    let c = &mut sums[(mb * blocks + b) * BLOCK_SUMS..][..BLOCK_SUMS];
                    // SAFETY: `a` holds two runs of CHUNK_STEPS weight tiles from its start,
                    // `b0`/`b1` at least `steps` input tiles, `c` four 16×16 f32 tiles; the
                    // tiles are configured on this thread.
                    #[allow(unsafe_code)]
                    unsafe {
                        tiles::block_2x2(
                            a.as_ptr(),
                            a.as_ptr().add(CHUNK_STEPS * TILE_VALUES),
                            b0.as_ptr(),
                            b1.as_ptr(),
                            steps,
                            c.as_mut_ptr(),
                            s0 > 0,
                        );
                    }
                }
            }
            s0 += steps;
        }
        drop(configured);
        // Tile t = 2·(weight half) + (input half), each [16 outputs][16 inputs], written
        // transposed into y.
        for mb in 0..packed.blocks {
            for b in 0..blocks {
                let c = &sums[(mb * blocks + b) * BLOCK_SUMS..][..BLOCK_SUMS];
                for t in 0..4 {
                    let (wh, ih) = (t / 2, t % 2);
                    let tile = &c[t * SUM_TILE_VALUES..(t + 1) * SUM_TILE_VALUES];
                    let col0 = (nb0 + b) * BLOCK + wh * TILE_ROWS;
                    for i in 0..TILE_ROWS {
                        let row = mb * BLOCK + ih * TILE_ROWS + i;
                        if row >= m {
                            break;
                        }
                        // SAFETY: row < m and col0 + 16 ≤ n, so the 16 values lie inside
                        // y [m, n]; no other task writes these columns.
                        #[allow(unsafe_code)]
                        unsafe {
                            let dst = out.get().add(row * n + col0);
                            for o in 0..TILE_ROWS {
                                *dst.add(o) = tile[o * TILE_ROWS + i];
                            }
                        }
                    }
                }
            }
        }
        weight_buffer.recycle();
        sum_buffer.recycle();
    });
    packed.data.recycle();
    // Remaining outputs (fewer than 32): f32 dot products of converted rows with the same
    // bf16-rounded inputs.
    let tail = full_blocks * BLOCK;
    if tail < n {
        let rounded: Vec<f32> = x[..m * k].iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
        let mut row = vec![0f32; k];
        for o in tail..n {
            crate::host_matmul::convert_bf16(&w[o * k..(o + 1) * k], &mut row);
            for i in 0..m {
                y[i * n + o] = crate::host_matmul::dot(&row, &rounded[i * k..(i + 1) * k]);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// The seeded generator of a tile test, or `None` (saying so) where the CPU has no AMX and
    /// there is nothing to test.
    pub(super) fn tile_test_rng(seed: u64) -> Option<StdRng> {
        if !available() {
            eprintln!("AMX not available on this CPU: nothing to test here");
            return None;
        }
        Some(StdRng::seed_from_u64(seed))
    }

    /// `len` values drawn uniformly from (−amp, amp).
    pub(super) fn uniform(rng: &mut StdRng, len: usize, amp: f32) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-amp..amp)).collect()
    }

    /// `len` bf16 values drawn uniformly from (−1, 1).
    pub(super) fn uniform_bf16(rng: &mut StdRng, len: usize) -> Vec<bf16> {
        uniform(rng, len, 1.0).into_iter().map(bf16::from_f32).collect()
    }

    /// f64 product of the bf16-rounded inputs: what the tiles compute, up to f32 summation.
    pub(super) fn reference(w: &[bf16], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for o in 0..n {
                let mut s = 0f64;
                for j in 0..k {
                    s += f64::from(w[o * k + j].to_f32()) * f64::from(bf16::from_f32(x[i * k + j]).to_f32());
                }
                y[i * n + o] = s as f32;
            }
        }
        y
    }

    #[test]
    fn tiles_match_the_rounded_product_on_ragged_shapes() {
        let Some(mut rng) = tile_test_rng(7) else { return };
        for &(m, n, k) in &[(1, 32, 32), (17, 45, 64), (33, 64, 96), (70, 100, 160), (40, 64, 1056), (32, 32, 4096)] {
            let w = uniform_bf16(&mut rng, n * k);
            let x = uniform(&mut rng, m * k, 1.0);
            let mut y = vec![f32::NAN; m * n];
            assert!(matmul_t_bf16(&w, n, k, &x, m, &mut y));
            let r = reference(&w, n, k, &x, m);
            let err = crate::parity::compare(&y, &r).rel;
            assert!(err < 1e-6, "m={m} n={n} k={k}: rel. error {err}");
        }
    }
}

