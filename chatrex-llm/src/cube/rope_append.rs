//! Rotary embedding of one position's heads, with the key and value rows written into the cache.

use super::matvec::round_to;
use super::{CubeResult, cache_strides, empty, operand, with_float, wrap};
use burn::tensor::{DType, Tensor};
use cubecl::prelude::*;

/// Cube `h < heads` rotates query head `h` into `q_out`; cube `heads + g` rotates key head `g`
/// and copies value head `g` into row `position` of the caches (`[kv_heads, allocated, D]` at
/// element strides `head_stride`, `row_stride`, 1).
/// Unit `j < D/2` handles the pair `(j, j + D/2)` (the split-half convention):
/// `[x₁·cos − x₂·sin, x₂·cos + x₁·sin]`, every product and sum rounded to `F`.
#[cube(launch)]
fn rope_append_kernel<F: Float>(
    q: &[F],
    k: &[F],
    v: &[F],
    cos_sin: &[f32],
    q_out: &mut [F],
    k_cache: &mut [F],
    v_cache: &mut [F],
    heads: usize,
    head_dim: usize,
    head_stride: usize,
    row_stride: usize,
    position: usize,
) {
    let head = CUBE_POS_X as usize;
    let j = UNIT_POS_X as usize;
    let half = head_dim / 2;
    let c = round_to::<F>(cos_sin[j]);
    let s = round_to::<F>(cos_sin[half + j]);
    if head < heads {
        let base = head * head_dim;
        let x1 = f32::cast_from(q[base + j]);
        let x2 = f32::cast_from(q[base + half + j]);
        q_out[base + j] = F::cast_from(round_to::<F>(x1 * c) - round_to::<F>(x2 * s));
        q_out[base + half + j] = F::cast_from(round_to::<F>(x2 * c) + round_to::<F>(x1 * s));
    } else {
        let g = head - heads;
        let src = g * head_dim;
        let dst = g * head_stride + position * row_stride;
        let x1 = f32::cast_from(k[src + j]);
        let x2 = f32::cast_from(k[src + half + j]);
        k_cache[dst + j] = F::cast_from(round_to::<F>(x1 * c) - round_to::<F>(x2 * s));
        k_cache[dst + half + j] = F::cast_from(round_to::<F>(x2 * c) + round_to::<F>(x1 * s));
        v_cache[dst + j] = v[src + j];
        v_cache[dst + half + j] = v[src + half + j];
    }
}

/// Rotates `q [heads·D]` and `k [kv·D]` by the f32 tables `cos_sin [D]` (cosines of the
/// `D/2` frequencies, then their sines) and writes the rotated key and `v [kv·D]` into row
/// `position` of `k_cache, v_cache [1, kv, allocated, D]` in place. Returns the rotated query.
pub fn rope_append(
    (q, k, v): (&Tensor<1>, &Tensor<1>, &Tensor<1>),
    cos_sin: &Tensor<1>,
    (k_cache, v_cache): (&Tensor<4>, &Tensor<4>),
    position: usize,
) -> CubeResult<Tensor<1>> {
    let dtype = q.dtype();
    let [_, kv_heads, allocated, head_dim] = k_cache.dims();
    let [q_len] = q.dims();
    if v_cache.dims() != k_cache.dims()
        || head_dim == 0
        || !q_len.is_multiple_of(head_dim)
        || k.dims() != [kv_heads * head_dim]
        || v.dims() != [kv_heads * head_dim]
        || cos_sin.dims() != [head_dim]
        || position >= allocated
    {
        return Err(format!(
            "rope_append: q {:?}, k {:?}, v {:?}, tables {:?}, cache {:?}, position {position}",
            q.dims(),
            k.dims(),
            v.dims(),
            cos_sin.dims(),
            k_cache.dims()
        ));
    }
    let heads = q_len / head_dim;
    let qs = operand(q, dtype, "rope query")?;
    let ks = operand(k, dtype, "rope key")?;
    let vs = operand(v, dtype, "rope value")?;
    let tables = operand(cos_sin, DType::F32, "rope tables")?;
    let kc = operand(k_cache, dtype, "key cache")?;
    let vc = operand(v_cache, dtype, "value cache")?;
    let out = empty(&qs, &[q_len], dtype);
    let (head_stride, row_stride) = cache_strides(&kc, &vc)?;
    let client = qs.client.clone();
    with_float!(dtype, F => {
        rope_append_kernel::launch::<F>(
            &client,
            CubeCount::Static((heads + kv_heads) as u32, 1, 1),
            CubeDim::new_1d((head_dim / 2) as u32),
            qs.into_buffer_arg(),
            ks.into_buffer_arg(),
            vs.into_buffer_arg(),
            tables.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            kc.into_buffer_arg(),
            vc.into_buffer_arg(),
            heads,
            head_dim,
            head_stride,
            row_stride,
            position,
        )
    });
    Ok(wrap(out))
}
