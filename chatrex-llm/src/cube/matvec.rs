//! Matrix-vector products for one decode position: `LANES` units per output row, eight rows
//! per cube, the lanes' shares added in shared memory (no plane operations needed).

use super::reduce::cube_sum;
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

/// `x` normed as [`rms_norm`](super::rms_norm) writes it: `round(γ · round(x · inverse))`.
#[cube]
pub(super) fn normed_vector<F: Float, N: Size>(x: Vector<F, N>, gamma: Vector<F, N>, inverse: f32) -> Vector<f32, N> {
    let scaled = Vector::<F, N>::cast_from(Vector::<f32, N>::cast_from(x) * Vector::<f32, N>::new(inverse));
    let weighted = Vector::<f32, N>::cast_from(gamma) * Vector::<f32, N>::cast_from(scaled);
    Vector::<f32, N>::cast_from(Vector::<F, N>::cast_from(weighted))
}

/// This unit's share of `Σ_k W[row, k]·x̂[k]`, with `x̂ = x` or, when `normed`, `x` RMS-normed
/// by `gamma` and `inverse` on the fly: every `LANES`-th vector of the row from its lane on,
/// four loads in flight (0 when not `active`).
#[cube]
#[allow(clippy::too_many_arguments)]
fn lane_dot<F: Float, N: Size>(
    weight: &[Vector<F, N>],
    x: &[Vector<F, N>],
    gamma: &[Vector<F, N>],
    inverse: f32,
    base: usize,
    active: bool,
    vectors: usize,
    #[comptime] normed: bool,
) -> f32 {
    let lanes = CUBE_DIM_X as usize;
    let mut acc = Vector::<f32, N>::new(0.0f32);
    let mut i = UNIT_POS_X as usize;
    if !active {
        i = vectors;
    }
    while i + 3 * lanes < vectors {
        let w0 = weight[base + i];
        let w1 = weight[base + i + lanes];
        let w2 = weight[base + i + 2 * lanes];
        let w3 = weight[base + i + 3 * lanes];
        let mut x0 = Vector::<f32, N>::cast_from(x[i]);
        let mut x1 = Vector::<f32, N>::cast_from(x[i + lanes]);
        let mut x2 = Vector::<f32, N>::cast_from(x[i + 2 * lanes]);
        let mut x3 = Vector::<f32, N>::cast_from(x[i + 3 * lanes]);
        if normed {
            x0 = normed_vector::<F, N>(x[i], gamma[i], inverse);
            x1 = normed_vector::<F, N>(x[i + lanes], gamma[i + lanes], inverse);
            x2 = normed_vector::<F, N>(x[i + 2 * lanes], gamma[i + 2 * lanes], inverse);
            x3 = normed_vector::<F, N>(x[i + 3 * lanes], gamma[i + 3 * lanes], inverse);
        }
        acc += Vector::<f32, N>::cast_from(w0) * x0;
        acc += Vector::<f32, N>::cast_from(w1) * x1;
        acc += Vector::<f32, N>::cast_from(w2) * x2;
        acc += Vector::<f32, N>::cast_from(w3) * x3;
        i += 4 * lanes;
    }
    while i < vectors {
        let mut xi = Vector::<f32, N>::cast_from(x[i]);
        if normed {
            xi = normed_vector::<F, N>(x[i], gamma[i], inverse);
        }
        acc += Vector::<f32, N>::cast_from(weight[base + i]) * xi;
        i += lanes;
    }
    let mut sum = 0.0f32;
    #[unroll]
    for j in 0..N::value() {
        sum += acc.extract(j);
    }
    sum
}

/// `1 / sqrt(mean(x²) + eps)` of the row `x` (`width` values in `vectors` vectors), reduced in
/// `scratch` by every unit of the cube (which all get the value).
#[cube]
pub(super) fn inverse_rms<F: Float, N: Size>(x: &[Vector<F, N>], vectors: usize, width: usize, eps: f32, scratch: Shared<[f32]>) -> f32 {
    let threads = CUBE_DIM as usize;
    let t = UNIT_POS as usize;
    let mut sum = 0.0f32;
    let mut i = t;
    while i < vectors {
        let v = Vector::<f32, N>::cast_from(x[i]);
        let squares = v * v;
        #[unroll]
        for j in 0..N::value() {
            sum += squares.extract(j);
        }
        i += threads;
    }
    let total = cube_sum(scratch, sum);
    1.0f32 / f32::sqrt(total / f32::cast_from(width) + eps)
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
    let share = lane_dot::<F, N>(weight, x, x, 0.0f32, row * row_stride, row < rows, vectors, false);
    reduce_lanes(sums.clone(), share);
    if UNIT_POS_X == 0 && row < rows {
        let mut y = plus_bias::<F>(round_to::<F>(sums[UNIT_POS_Y as usize * CUBE_DIM_X as usize]), bias, row, has_bias);
        if has_residual {
            y += f32::cast_from(residual[row]);
        }
        out[row] = F::cast_from(y);
    }
}

/// `out[row] = silu(round(W_gate[row]·x̂)) · round(W_up[row]·x̂)`, each step rounded, with `x̂`
/// the RMS norm of `x` by `gamma` (computed by every cube: the row is a few kB, read from cache).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn normed_gated_matvec_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    gamma: &[Vector<F, N>],
    gate: &[Vector<F, N>],
    up: &[Vector<F, N>],
    out: &mut [F],
    rows: usize,
    vectors: usize,
    row_stride: usize,
    width: usize,
    eps: f32,
    #[comptime] threads: usize,
) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let scratch = Shared::<[f32]>::new_slice(threads);
    let gate_sums = Shared::<[f32]>::new_slice(threads);
    let up_sums = Shared::<[f32]>::new_slice(threads);
    let inverse = inverse_rms::<F, N>(x, vectors, width, eps, scratch.clone());
    let active = row < rows;
    let g = lane_dot::<F, N>(gate, x, gamma, inverse, row * row_stride, active, vectors, true);
    let u = lane_dot::<F, N>(up, x, gamma, inverse, row * row_stride, active, vectors, true);
    reduce_lanes(gate_sums.clone(), g);
    reduce_lanes(up_sums.clone(), u);
    if UNIT_POS_X == 0 && active {
        let slot = UNIT_POS_Y as usize * CUBE_DIM_X as usize;
        let g = round_to::<F>(gate_sums[slot]);
        let activated = round_to::<F>(g / (1.0f32 + f32::exp(-g)));
        out[row] = F::cast_from(activated * round_to::<F>(up_sums[slot]));
    }
}

/// The query, key and value projections of the RMS-normed `x` in one launch: rows
/// `0..rows_q` of the output space read `W_q`, the next `rows_k` read `W_k`, the last `rows_k`
/// read `W_v`; each output `round(round(W·x̂) + bias)`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn normed_qkv_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    gamma: &[Vector<F, N>],
    wq: &[Vector<F, N>],
    wk: &[Vector<F, N>],
    wv: &[Vector<F, N>],
    bq: &[F],
    bk: &[F],
    bv: &[F],
    q: &mut [F],
    k: &mut [F],
    v: &mut [F],
    rows_q: usize,
    rows_k: usize,
    vectors: usize,
    stride_q: usize,
    stride_k: usize,
    stride_v: usize,
    width: usize,
    eps: f32,
    #[comptime] has_bias: bool,
    #[comptime] threads: usize,
) {
    let row = CUBE_POS_X as usize * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let scratch = Shared::<[f32]>::new_slice(threads);
    let sums = Shared::<[f32]>::new_slice(threads);
    let inverse = inverse_rms::<F, N>(x, vectors, width, eps, scratch.clone());
    let mut share = f32::new(0.0);
    if row < rows_q {
        share = lane_dot::<F, N>(wq, x, gamma, inverse, row * stride_q, true, vectors, true);
    } else if row < rows_q + rows_k {
        share = lane_dot::<F, N>(wk, x, gamma, inverse, (row - rows_q) * stride_k, true, vectors, true);
    } else if row < rows_q + 2 * rows_k {
        share = lane_dot::<F, N>(wv, x, gamma, inverse, (row - rows_q - rows_k) * stride_v, true, vectors, true);
    }
    reduce_lanes(sums.clone(), share);
    if UNIT_POS_X == 0 {
        let y = round_to::<F>(sums[UNIT_POS_Y as usize * CUBE_DIM_X as usize]);
        if row < rows_q {
            q[row] = F::cast_from(plus_bias::<F>(y, bq, row, has_bias));
        } else if row < rows_q + rows_k {
            let r = row - rows_q;
            k[r] = F::cast_from(plus_bias::<F>(y, bk, r, has_bias));
        } else if row < rows_q + 2 * rows_k {
            let r = row - rows_q - rows_k;
            v[r] = F::cast_from(plus_bias::<F>(y, bv, r, has_bias));
        }
    }
}

/// `round(y + bias[row])` when `has_bias`, else `y` (the bias step of a projection's epilogue).
#[cube]
fn plus_bias<F: Float>(y: f32, bias: &[F], row: usize, #[comptime] has_bias: bool) -> f32 {
    let mut out = y;
    if has_bias {
        out = round_to::<F>(y + f32::cast_from(bias[row]));
    }
    out
}

/// Elements per vector load: 16 bytes where the row width and the row pitch allow it.
pub(super) fn vector_size(cols: usize, row_stride: usize, elem_bytes: usize) -> usize {
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

/// The RMS norm of `x [cols]` by `gamma [cols]` (as [`rms_norm`](super::rms_norm)) followed by
/// `silu(W_gate · x̂) · (W_up · x̂)` for `W_gate, W_up [rows, cols]` → `[rows]`, in one launch.
pub fn normed_gated_matvec(x: &Tensor<1>, gamma: &Tensor<1>, eps: f64, gate: &Tensor<2>, up: &Tensor<2>) -> CubeResult<Tensor<1>> {
    let dtype = gate.dtype();
    let [rows, cols] = gate.dims();
    if up.dims() != [rows, cols] || x.dims() != [cols] || gamma.dims() != [cols] {
        return Err(format!(
            "normed_gated_matvec: gate {:?}, up {:?}, input {:?}, norm {:?}",
            gate.dims(),
            up.dims(),
            x.dims(),
            gamma.dims()
        ));
    }
    let g = operand(gate, dtype, "gate weight")?;
    let u = operand(up, dtype, "up weight")?;
    let xs = operand(x, dtype, "gated input")?;
    let gs = operand(gamma, dtype, "norm weight")?;
    let out = empty(&g, &[rows], dtype);
    let pitch = row_stride(&g, cols);
    if row_stride(&u, cols) != pitch {
        return Err(format!("normed_gated_matvec: gate and up rows of different pitch ({pitch}, {})", row_stride(&u, cols)));
    }
    let n = vector_size(cols, pitch, dtype.size());
    let (count, dim) = geometry(rows);
    let client = g.client.clone();
    with_float!(dtype, F => {
        normed_gated_matvec_kernel::launch::<F>(
            &client,
            count,
            dim,
            n,
            xs.into_buffer_arg(),
            gs.into_buffer_arg(),
            g.into_buffer_arg(),
            u.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            rows,
            cols / n,
            pitch / n,
            cols,
            eps as f32,
            THREADS,
        )
    });
    Ok(wrap(out))
}

/// The RMS norm of `x [cols]` by `gamma [cols]` followed by the three projections
/// `W_q [rq, cols]`, `W_k, W_v [rk, cols]` (+ their biases) in one launch → `(q [rq], k [rk],
/// v [rk])`.
pub fn normed_qkv(
    x: &Tensor<1>,
    gamma: &Tensor<1>,
    eps: f64,
    (wq, wk, wv): (&Tensor<2>, &Tensor<2>, &Tensor<2>),
    biases: Option<(&Tensor<1>, &Tensor<1>, &Tensor<1>)>,
) -> CubeResult<(Tensor<1>, Tensor<1>, Tensor<1>)> {
    let dtype = wq.dtype();
    let [rows_q, cols] = wq.dims();
    let [rows_k, _] = wk.dims();
    if wk.dims() != [rows_k, cols] || wv.dims() != [rows_k, cols] || x.dims() != [cols] || gamma.dims() != [cols] {
        return Err(format!(
            "normed_qkv: q {:?}, k {:?}, v {:?}, input {:?}, norm {:?}",
            wq.dims(),
            wk.dims(),
            wv.dims(),
            x.dims(),
            gamma.dims()
        ));
    }
    if let Some((bq, bk, bv)) = biases
        && (bq.dims() != [rows_q] || bk.dims() != [rows_k] || bv.dims() != [rows_k])
    {
        return Err(format!("normed_qkv: biases {:?}, {:?}, {:?}", bq.dims(), bk.dims(), bv.dims()));
    }
    let xs = operand(x, dtype, "qkv input")?;
    let gs = operand(gamma, dtype, "norm weight")?;
    let weights = [operand(wq, dtype, "q weight")?, operand(wk, dtype, "k weight")?, operand(wv, dtype, "v weight")?];
    let pitches = [row_stride(&weights[0], cols), row_stride(&weights[1], cols), row_stride(&weights[2], cols)];
    let q = empty(&xs, &[rows_q], dtype);
    let k = empty(&xs, &[rows_k], dtype);
    let v = empty(&xs, &[rows_k], dtype);
    let bias_args = match biases {
        Some((bq, bk, bv)) => [operand(bq, dtype, "q bias")?, operand(bk, dtype, "k bias")?, operand(bv, dtype, "v bias")?],
        None => [q.clone(), k.clone(), v.clone()],
    };
    // One vector width that divides the row and every pitch.
    let n = pitches.iter().fold(vector_size(cols, cols, dtype.size()), |n, &p| n.min(vector_size(cols, p, dtype.size())));
    let (count, dim) = geometry(rows_q + 2 * rows_k);
    let client = xs.client.clone();
    let [wq, wk, wv] = weights;
    let [bq, bk, bv] = bias_args;
    with_float!(dtype, F => {
        normed_qkv_kernel::launch::<F>(
            &client,
            count,
            dim,
            n,
            xs.into_buffer_arg(),
            gs.into_buffer_arg(),
            wq.into_buffer_arg(),
            wk.into_buffer_arg(),
            wv.into_buffer_arg(),
            bq.into_buffer_arg(),
            bk.into_buffer_arg(),
            bv.into_buffer_arg(),
            q.clone().into_buffer_arg(),
            k.clone().into_buffer_arg(),
            v.clone().into_buffer_arg(),
            rows_q,
            rows_k,
            cols / n,
            pitches[0] / n,
            pitches[1] / n,
            pitches[2] / n,
            cols,
            eps as f32,
            biases.is_some(),
            THREADS,
        )
    });
    Ok((wrap(q), wrap(k), wrap(v)))
}
