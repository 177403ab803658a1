//! RMSNorm of one row in one cube.

use super::matvec::{inverse_rms, normed_vector, vector_size};
use super::{CubeResult, empty, operand, with_float, wrap};
use burn::tensor::Tensor;
use cubecl::prelude::*;

/// Threads of the norm's cube.
const THREADS: usize = 256;

/// `out = round(weight · round(x / sqrt(mean(x²) + eps)))` for one row `x` (`width` values in
/// `vectors` vectors), the mean over f32 values (Hugging Face's `LlamaRMSNorm`; the same
/// arithmetic as the norms inside the fused projections).
#[cube(launch)]
fn rms_norm_kernel<F: Float, N: Size>(
    x: &[Vector<F, N>],
    weight: &[Vector<F, N>],
    out: &mut [Vector<F, N>],
    vectors: usize,
    width: usize,
    eps: f32,
    #[comptime] threads: usize,
) {
    let scratch = Shared::<[f32]>::new_slice(threads);
    let inverse = inverse_rms::<F, N>(x, vectors, width, eps, scratch);
    let mut i = UNIT_POS as usize;
    while i < vectors {
        out[i] = Vector::<F, N>::cast_from(normed_vector::<F, N>(x[i], weight[i], inverse));
        i += threads;
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
    let vector = vector_size(n, n, dtype.size());
    let client = xs.client.clone();
    with_float!(dtype, F => {
        rms_norm_kernel::launch::<F>(
            &client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            vector,
            xs.into_buffer_arg(),
            w.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            n / vector,
            n,
            eps as f32,
            THREADS,
        )
    });
    Ok(wrap(out))
}
