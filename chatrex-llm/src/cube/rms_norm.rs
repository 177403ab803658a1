//! RMSNorm of one row in one cube.

use super::{CubeResult, empty, operand, with_float, wrap};
use burn::tensor::Tensor;
use cubecl::prelude::*;

/// Threads of the norm's cube.
const THREADS: usize = 256;

/// `out = weight · round(x / sqrt(mean(x²) + eps))` for one row `x [n]`, the mean over f32
/// values and every stored value rounded to the row's dtype (Hugging Face's `LlamaRMSNorm`).
#[cube(launch)]
fn rms_norm_kernel<F: Float>(x: &[F], weight: &[F], out: &mut [F], n: usize, eps: f32, #[comptime] threads: usize) {
    let t = UNIT_POS as usize;
    let mut sum = 0.0f32;
    let mut i = t;
    while i < n {
        let v = f32::cast_from(x[i]);
        sum += v * v;
        i += threads;
    }
    let mut partial = Shared::<[f32]>::new_slice(threads);
    partial[t] = sum;
    sync_cube();
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if t < stride {
            partial[t] += partial[t + stride];
        }
        sync_cube();
        stride /= 2;
    }
    let inverse = 1.0f32 / f32::sqrt(partial[0] / f32::cast_from(n) + eps);
    let mut j = t;
    while j < n {
        let normed = F::cast_from(f32::cast_from(x[j]) * inverse);
        out[j] = F::cast_from(f32::cast_from(weight[j]) * f32::cast_from(normed));
        j += threads;
    }
}

/// RMSNorm of `x [n]` with `weight [n]` (same dtype) → `[n]`.
pub fn rms_norm(x: &Tensor<1>, weight: &Tensor<1>, eps: f64) -> CubeResult<Tensor<1>> {
    let dtype = x.dtype();
    let [n] = x.dims();
    if weight.dims() != [n] {
        return Err(format!("rms_norm: weight {:?} for a row of {n}", weight.dims()));
    }
    let xs = operand(x, dtype, "rms_norm input")?;
    let w = operand(weight, dtype, "rms_norm weight")?;
    let out = empty(&xs, &[n], dtype);
    let client = xs.client.clone();
    with_float!(dtype, F => {
        rms_norm_kernel::launch::<F>(
            &client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            xs.into_buffer_arg(),
            w.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            n,
            eps as f32,
            THREADS,
        )
    });
    Ok(wrap(out))
}
