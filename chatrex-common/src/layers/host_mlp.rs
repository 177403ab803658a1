//! A residual two-layer MLP over host rows, run over blocks of tokens in parallel.

use crate::host_ops::{Activation, add_scaled_residual, add_scaled_residual_row, bias_activation, bias_activation_row};
use crate::amx::RoundedRows;
use crate::layers::HostLinear;
use rayon::prelude::*;

/// The largest hidden activation of one block, in values (4 MB): measured on ConvNeXt-L at
/// 768 px, 64 Ki values per block took 8.1 s, 1 Mi 3.6–3.8 s, one parallel `gemm` per layer
/// over all tokens 4.1–4.2 s.
const HIDDEN_VALUES_PER_BLOCK: usize = 1 << 20;
/// The largest hidden activation with 16-bit weights, whose products run over all tokens of a
/// block on all threads (32 MB: ≈ 11 Ki tokens at hidden width 768, 4 Ki at width 2048).
const LARGE_HIDDEN_VALUES: usize = 8 << 20;

/// `x ← x + scale · fc2(activation(fc1(input)))` for rows `input, x [N, d]` (`scale`: a
/// layer scale `[d]`, or 1). Blocks of tokens run in parallel, each block's
/// fc1 → activation → fc2 → residual on one thread, so that its hidden activation stays in
/// that core's cache instead of making a round trip to memory between the two products.
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
    if let (Some(tiles1), Some(tiles2)) = (fc1.tile_weight(), fc2.tile_weight())
        && fc1.bias.len() == hidden_width
        && fc2.d_in() == hidden_width
    {
        // bf16 weights on AMX tiles: fc1's bias, activation and rounding run on its blocks of
        // sums, so the hidden activation exists only as fc2's bf16 input rows. (Neither
        // product can refuse its operands after the width checks above.)
        let block = (LARGE_HIDDEN_VALUES / hidden_width).max(1);
        for (x, input) in x.chunks_mut(block * d).zip(input.chunks(block * d)) {
            let n = input.len() / d;
            let rows = RoundedRows::from_f32(input, n, d);
            let Some(hidden) = tiles1.matmul_t_activated(&rows, &fc1.bias, activation) else {
                continue;
            };
            drop(rows);
            let mut out = vec![0f32; n * d];
            if tiles2.matmul_t_rounded(&hidden, &mut out) {
                add_scaled_residual(x, &out, &fc2.bias, scale);
            }
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
    // At least two blocks per thread, so that few tokens (576 at ConvNeXt's last stage)
    // still keep every core busy.
    let per_thread = tokens.div_ceil(2 * rayon::current_num_threads().max(1));
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
