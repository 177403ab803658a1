//! A residual two-layer MLP over host rows, run over blocks of tokens in parallel.

use crate::host_ops::{Activation, add_scaled_residual, add_scaled_residual_row, bias_activation, bias_activation_row};
use crate::amx::{RoundedRows, RoundedView, TileWeight};
use crate::layers::HostLinear;
use rayon::prelude::*;

/// The largest hidden activation of one block (f32 weights), in values (16 MB): every block
/// packs both weights again, so blocks are as large as this allows. Measured with the runs
/// interleaved (2 threads, f32): 4 Mi values and one block per thread against 1 Mi and two
/// per thread: ConvNeXt-L@768 1.13×, CLIP-L 1.08×, UPN-L unchanged; 8 Mi and 16 Mi level with
/// 4 Mi, 2 Mi 0.91×. (Earlier, on ConvNeXt-L: 64 Ki values per block 8.1 s, 1 Mi 3.6–3.8 s,
/// one parallel `gemm` per layer over all tokens 4.1–4.2 s.)
const HIDDEN_VALUES_PER_BLOCK: usize = 4 << 20;
/// The largest hidden activation with 16-bit weights, whose products run over all tokens of a
/// block on all threads (32 MB: ≈ 11 Ki tokens at hidden width 768, 4 Ki at width 2048).
const LARGE_HIDDEN_VALUES: usize = 8 << 20;

/// `x ← x + scale · fc2(activation(fc1(input)))` for rows `input, x [N, d]` (`scale`: a
/// layer scale `[d]`, or 1). With f32 weights, blocks of tokens (as large as
/// 4 Mi hidden values allow, one per thread at least) run in parallel, each
/// block's fc1 → activation → fc2 → residual on one thread, its hidden activation in that
/// thread's own buffer; 16-bit weights run each product on all threads.
pub fn residual_mlp(
    x: &mut [f32],
    input: &[f32],
    fc1: &HostLinear,
    activation: Activation,
    fc2: &HostLinear,
    scale: Option<&[f32]>,
) {
    let (d, hidden_width) = (fc1.d_in(), fc1.d_out());
    if d == 0 || hidden_width == 0 || x.len() != input.len() || fc2.d_out() != d {
        return;
    }
    let tokens = input.len() / d;
    if let Some((tiles1, tiles2)) = tile_weights(d, fc1, fc2, scale) {
        // bf16 weights on AMX tiles: fc1's bias, activation and rounding run on its blocks of
        // sums, so the hidden activation exists only as fc2's bf16 input rows, and fc2's
        // sums go straight into `x`. (Neither product can refuse its operands after the
        // width checks of `tile_weights`.)
        let block = tile_block(hidden_width);
        for (x, input) in x.chunks_mut(block * d).zip(input.chunks(block * d)) {
            let rows = RoundedRows::from_f32(input, input.len() / d, d);
            tile_mlp(x, (&rows).into(), (tiles1, tiles2), fc1, activation, fc2, scale);
        }
        return;
    }
    if !(fc1.is_f32() && fc2.is_f32()) {
        // 16-bit weights: each product runs on all threads (converting the weight, or on AMX
        // tiles), over large blocks of tokens so that the hidden activation stays bounded.
        let block = (LARGE_HIDDEN_VALUES / hidden_width).max(1);
        for (x, input) in x.chunks_mut(block * d).zip(input.chunks(block * d)) {
            let n = input.len() / d;
            let mut hidden = fc1.matmul(input, n);
            bias_activation(&mut hidden, &fc1.bias, activation);
            let out = fc2.matmul(&hidden, n);
            add_scaled_residual(x, &out, &fc2.bias, scale);
        }
        return;
    }
    // One block per thread at least: each block's products pack the whole weight again
    // (the `gemm` crate has no pre-packed operand), so fewer, larger blocks pack less.
    let per_thread = tokens.div_ceil(rayon::current_num_threads().max(1));
    let block = (HIDDEN_VALUES_PER_BLOCK / hidden_width).min(per_thread).max(1);
    x.par_chunks_mut(block * d).zip(input.par_chunks(block * d)).for_each_init(
        || (vec![0f32; block * hidden_width], vec![0f32; block * d]),
        |(hidden, out), (x, input)| {
            let n = input.len() / d;
            let hidden = &mut hidden[..n * hidden_width];
            let out = &mut out[..n * d];
            fc1.matmul_into_serial(input, n, hidden);
            for row in hidden.chunks_mut(hidden_width) {
                bias_activation_row(row, &fc1.bias, activation);
            }
            fc2.matmul_into_serial(hidden, n, out);
            for (x, y) in x.chunks_mut(d).zip(out.chunks(d)) {
                add_scaled_residual_row(x, y, &fc2.bias, scale);
            }
        },
    );
}

/// [`residual_mlp`] of inputs already rounded to bf16 (e.g. normalised straight into
/// [`RoundedRows`]): `x ← x + scale · fc2(activation(fc1(rows)))` for `x [N, d]`, over blocks
/// of tokens on AMX tiles. Returns `false`, computing nothing, unless both weights are held in
/// tile order (bf16 on a CPU with tiles) and every width matches.
pub fn residual_mlp_rounded(
    x: &mut [f32],
    rows: &RoundedRows,
    fc1: &HostLinear,
    activation: Activation,
    fc2: &HostLinear,
    scale: Option<&[f32]>,
) -> bool {
    let d = fc1.d_in();
    let Some(tiles) = tile_weights(d, fc1, fc2, scale) else {
        return false;
    };
    if rows.cols() != d || x.len() != rows.rows() * d {
        return false;
    }
    residual_mlp_rounded_in_blocks(x, rows, tiles, fc1, activation, fc2, scale, tile_block(fc1.d_out()));
    true
}

/// [`residual_mlp_rounded`] over blocks of `block` tokens (a multiple of 32).
#[allow(clippy::too_many_arguments)]
fn residual_mlp_rounded_in_blocks(
    x: &mut [f32],
    rows: &RoundedRows,
    tiles: (&TileWeight, &TileWeight),
    fc1: &HostLinear,
    activation: Activation,
    fc2: &HostLinear,
    scale: Option<&[f32]>,
    block: usize,
) {
    let d = fc1.d_in();
    for (b, x) in x.chunks_mut(block * d).enumerate() {
        // Blocks start at multiples of 32 rows (`tile_block`), so every run exists.
        if let Some(view) = rows.rows_from(b * block, x.len() / d) {
            tile_mlp(x, view, tiles, fc1, activation, fc2, scale);
        }
    }
}

/// Both weights in tile order, when they are and the widths (`d`, fc1's output = fc2's input,
/// biases, layer scale) match.
fn tile_weights<'a>(d: usize, fc1: &'a HostLinear, fc2: &'a HostLinear, scale: Option<&[f32]>) -> Option<(&'a TileWeight, &'a TileWeight)> {
    let hidden_width = fc1.d_out();
    let widths_match = fc1.d_in() == d
        && fc1.bias.len() == hidden_width
        && fc2.d_in() == hidden_width
        && fc2.d_out() == d
        && fc2.bias.len() == d
        && scale.is_none_or(|s| s.len() >= d);
    widths_match.then_some((fc1.tile_weight()?, fc2.tile_weight()?))
}

/// Tokens per block of a tile MLP: a hidden activation of at most [`LARGE_HIDDEN_VALUES`],
/// in whole 32-row blocks.
fn tile_block(hidden_width: usize) -> usize {
    (LARGE_HIDDEN_VALUES / hidden_width.max(1) / 32).max(1) * 32
}

/// One block of tokens of a tile MLP: `x [n, d] += scale · fc2(activation(fc1(rows)))`.
fn tile_mlp(
    x: &mut [f32],
    rows: RoundedView<'_>,
    (tiles1, tiles2): (&TileWeight, &TileWeight),
    fc1: &HostLinear,
    activation: Activation,
    fc2: &HostLinear,
    scale: Option<&[f32]>,
) {
    if let Some(hidden) = tiles1.matmul_t_activated(rows, &fc1.bias, activation) {
        // fc2's bias, the layer scale and the residual sum run on its blocks of sums.
        let _ = tiles2.matmul_t_residual(&hidden, x, Some(&fc2.bias), scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::WeightDType;

    /// The MLP of pre-rounded rows, over blocks of 32 tokens, adds exactly what the MLP of the
    /// f32 rows adds (the same bf16 roundings, products and epilogues).
    #[test]
    fn rounded_rows_in_blocks_equal_the_f32_rows() {
        if !crate::amx::available() {
            return;
        }
        let (d, hidden, tokens) = (64, 128, 150);
        let weights = |seed: u64, d_in: usize, d_out: usize| {
            let w: Vec<f32> = (0..d_in * d_out).map(|i| ((i as u64 * 7919 + seed) % 1000) as f32 / 8000.0 - 0.06).collect();
            let b: Vec<f32> = (0..d_out).map(|i| ((i as u64 * 104_729 + seed) % 100) as f32 / 500.0 - 0.1).collect();
            HostLinear::from_out_in(&w, d_in, d_out, b, WeightDType::BF16)
        };
        let (fc1, fc2) = (weights(1, d, hidden), weights(2, hidden, d));
        let input: Vec<f32> = (0..tokens * d).map(|i| (i * 31 % 997) as f32 / 500.0 - 1.0).collect();
        let start: Vec<f32> = (0..tokens * d).map(|i| (i * 17 % 101) as f32 / 50.0 - 1.0).collect();
        let scale: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 / 64.0).collect();
        let mut want = start.clone();
        residual_mlp(&mut want, &input, &fc1, Activation::Gelu, &fc2, Some(&scale));
        let rows = RoundedRows::from_f32(&input, tokens, d);
        let tiles = tile_weights(d, &fc1, &fc2, Some(&scale)).expect("bf16 weights of whole tiles");
        let mut got = start.clone();
        residual_mlp_rounded_in_blocks(&mut got, &rows, tiles, &fc1, Activation::Gelu, &fc2, Some(&scale), 32);
        assert_eq!(got, want);
        assert_ne!(got, start);
        let mut short = start.clone();
        assert!(!residual_mlp_rounded(&mut short[..d * 10], &rows, &fc1, Activation::Gelu, &fc2, Some(&scale)), "10 rows ≠ 150");
    }
}
