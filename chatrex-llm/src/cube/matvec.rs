//! Matrix-vector products for one decode position: `LANES` units per output row, eight rows
//! per cube, the lanes' shares added in shared memory (no plane operations needed).

use super::{CubeResult, empty, operand, with_float, wrap};
use burn::tensor::Tensor;
use cubecl::prelude::*;

/// Output rows per cube.
const ROWS_PER_CUBE: u32 = 8;

/// `f32` value rounded to `F` and back: what PyTorch stores between two ops.
#[cube]
pub(super) fn round_to<F: Float>(v: f32) -> f32 {
    f32::cast_from(F::cast_from(v))
}

/// Threads that share one output row (a warp's width on CUDA).
const LANES: u32 = 32;

/// This unit's share of `Σ_k W[row, k]·x[k]`: every `LANES`-th vector of the row from its
/// lane on, four loads in flight (0 for rows past the end).
#[cube]
fn lane_dot<F: Float, N: Size>(weight: &[Vector<F, N>], x: &[Vector<F, N>], row: usize, rows: usize, vectors: usize, row_stride: usize) -> f32 {
    let lanes = CUBE_DIM_X as usize;
    let base = row * row_stride;
    let mut acc = Vector::<f32, N>::new(0.0f32);
    let mut i = UNIT_POS_X as usize;
    if row >= rows {
        i = vectors;
    }
    while i + 3 * lanes < vectors {
        let w0 = weight[base + i];
        let w1 = weight[base + i + lanes];
        let w2 = weight[base + i + 2 * lanes];
        let w3 = weight[base + i + 3 * lanes];
        acc += Vector::<f32, N>::cast_from(w0) * Vector::<f32, N>::cast_from(x[i]);
        acc += Vector::<f32, N>::cast_from(w1) * Vector::<f32, N>::cast_from(x[i + lanes]);
        acc += Vector::<f32, N>::cast_from(w2) * Vector::<f32, N>::cast_from(x[i + 2 * lanes]);
        acc += Vector::<f32, N>::cast_from(w3) * Vector::<f32, N>::cast_from(x[i + 3 * lanes]);
        i += 4 * lanes;
    }
    while i < vectors {
        acc += Vector::<f32, N>::cast_from(weight[base + i]) * Vector::<f32, N>::cast_from(x[i]);
        i += lanes;
    }
    let mut sum = 0.0f32;
    #[unroll]
    for j in 0..N::value() {
        sum += acc.extract(j);
    }
    sum
}

/// Adds the lanes' shares of each row in shared memory (a tree over the `LANES` units of a
/// row; every unit of the cube takes part); lane 0 of each row then holds its sum in
/// `sums[row_in_cube · LANES]`.
#[cube]
fn reduce_lanes(mut sums: Shared<[f32]>, share: f32) {
    let lanes = CUBE_DIM_X as usize;
    let lane = UNIT_POS_X as usize;
    let slot = UNIT_POS_Y as usize * lanes + lane;
    sums[slot] = share;
    sync_cube();
    let mut stride = lanes / 2;
    while stride > 0 {
        if lane < stride {
            sums[slot] += sums[slot + stride];
        }
        sync_cube();
        stride /= 2;
    }
}

/// `out[row] = round(round(W[row]·x) + bias[row]) + residual[row]` (each addition rounded).
#[cube(launch)]
fn matvec_kernel<F: Float, N: Size>(
    weight: &[Vector<F, N>],
    x: &[Vector<F, N>],
    bias: &[F],
    residual: &[F],
    out: &mut [F],
    rows: usize,
    vectors: usize,
    row_stride: usize,
    #[comptime] has_bias: bool,
    #[comptime] has_residual: bool,
    #[comptime] threads: usize,
) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let sums = Shared::<[f32]>::new_slice(threads);
    let share = lane_dot::<F, N>(weight, x, row, rows, vectors, row_stride);
    reduce_lanes(sums.clone(), share);
    if UNIT_POS_X == 0 && row < rows {
        let mut y = round_to::<F>(sums[UNIT_POS_Y as usize * CUBE_DIM_X as usize]);
        if has_bias {
            y = round_to::<F>(y + f32::cast_from(bias[row]));
        }
        if has_residual {
            y += f32::cast_from(residual[row]);
        }
        out[row] = F::cast_from(y);
    }
}

/// `out[row] = silu(round(W_gate[row]·x)) · round(W_up[row]·x)`, each step rounded.
#[cube(launch)]
fn gated_matvec_kernel<F: Float, N: Size>(
    gate: &[Vector<F, N>],
    up: &[Vector<F, N>],
    x: &[Vector<F, N>],
    out: &mut [F],
    rows: usize,
    vectors: usize,
    row_stride: usize,
    #[comptime] threads: usize,
) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let gate_sums = Shared::<[f32]>::new_slice(threads);
    let up_sums = Shared::<[f32]>::new_slice(threads);
    let g = lane_dot::<F, N>(gate, x, row, rows, vectors, row_stride);
    let u = lane_dot::<F, N>(up, x, row, rows, vectors, row_stride);
    reduce_lanes(gate_sums.clone(), g);
    reduce_lanes(up_sums.clone(), u);
    if UNIT_POS_X == 0 && row < rows {
        let slot = UNIT_POS_Y as usize * CUBE_DIM_X as usize;
        let g = round_to::<F>(gate_sums[slot]);
        let activated = round_to::<F>(g / (1.0f32 + f32::exp(-g)));
        out[row] = F::cast_from(activated * round_to::<F>(up_sums[slot]));
    }
}

/// Elements per vector load: 16 bytes where the row width and the row pitch allow it.
fn vector_size(cols: usize, row_stride: usize, elem_bytes: usize) -> usize {
    let mut n = (16 / elem_bytes.max(1)).max(1);
    while n > 1 && !(cols.is_multiple_of(n) && row_stride.is_multiple_of(n)) {
        n /= 2;
    }
    n
}

/// The row pitch (elements) of a matrix primitive.
fn row_stride(t: &burn_cubecl::tensor::CubeTensor, cols: usize) -> usize {
    super::strides(t).first().copied().unwrap_or(cols)
}

/// Launch geometry: `ROWS_PER_CUBE` rows per cube, `LANES` units each.
fn geometry(rows: usize) -> (CubeCount, CubeDim) {
    let cubes = rows.div_ceil(ROWS_PER_CUBE as usize) as u32;
    (CubeCount::Static(cubes, 1, 1), CubeDim::new_2d(LANES, ROWS_PER_CUBE))
}

/// Units per cube.
const THREADS: usize = (LANES * ROWS_PER_CUBE) as usize;

/// `W [rows, cols] · x [cols]` (+ `bias [rows]`, + `residual [rows]`) → `[rows]`, all in the
/// weight's dtype.
pub fn matvec(weight: &Tensor<2>, x: &Tensor<1>, bias: Option<&Tensor<1>>, residual: Option<&Tensor<1>>) -> CubeResult<Tensor<1>> {
    let dtype = weight.dtype();
    let [rows, cols] = weight.dims();
    if x.dims() != [cols] {
        return Err(format!("matvec: input {:?} for a weight {:?}", x.dims(), [rows, cols]));
    }
    for (what, t) in [("bias", bias), ("residual", residual)] {
        if let Some(t) = t
            && t.dims() != [rows]
        {
            return Err(format!("matvec: {what} {:?} for {rows} rows", t.dims()));
        }
    }
    let w = operand(weight, dtype, "matvec weight")?;
    let xs = operand(x, dtype, "matvec input")?;
    let b = bias.map(|b| operand(b, dtype, "matvec bias")).transpose()?;
    let r = residual.map(|r| operand(r, dtype, "matvec residual")).transpose()?;
    let out = empty(&w, &[rows], dtype);
    let pitch = row_stride(&w, cols);
    let n = vector_size(cols, pitch, dtype.size());
    let (count, dim) = geometry(rows);
    let client = w.client.clone();
    let (has_bias, has_residual) = (b.is_some(), r.is_some());
    let b = b.unwrap_or_else(|| out.clone());
    let r = r.unwrap_or_else(|| out.clone());
    with_float!(dtype, F => {
        matvec_kernel::launch::<F>(
            &client,
            count,
            dim,
            n,
            w.into_buffer_arg(),
            xs.into_buffer_arg(),
            b.into_buffer_arg(),
            r.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            rows,
            cols / n,
            pitch / n,
            has_bias,
            has_residual,
            THREADS,
        )
    });
    Ok(wrap(out))
}

/// `silu(W_gate · x) · (W_up · x)` for `W_gate, W_up [rows, cols]`, `x [cols]` → `[rows]`.
pub fn gated_matvec(gate: &Tensor<2>, up: &Tensor<2>, x: &Tensor<1>) -> CubeResult<Tensor<1>> {
    let dtype = gate.dtype();
    let [rows, cols] = gate.dims();
    if up.dims() != [rows, cols] || x.dims() != [cols] {
        return Err(format!("gated_matvec: gate {:?}, up {:?}, input {:?}", gate.dims(), up.dims(), x.dims()));
    }
    let g = operand(gate, dtype, "gate weight")?;
    let u = operand(up, dtype, "up weight")?;
    let xs = operand(x, dtype, "gated input")?;
    let out = empty(&g, &[rows], dtype);
    let pitch = row_stride(&g, cols);
    if row_stride(&u, cols) != pitch {
        return Err(format!("gated_matvec: gate and up rows of different pitch ({pitch}, {})", row_stride(&u, cols)));
    }
    let n = vector_size(cols, pitch, dtype.size());
    let (count, dim) = geometry(rows);
    let client = g.client.clone();
    with_float!(dtype, F => {
        gated_matvec_kernel::launch::<F>(
            &client,
            count,
            dim,
            n,
            g.into_buffer_arg(),
            u.into_buffer_arg(),
            xs.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            rows,
            cols / n,
            pitch / n,
            THREADS,
        )
    });
    Ok(wrap(out))
}
