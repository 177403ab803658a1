//! Attention of one query position over the KV cache, in chunks of positions (flash-decoding):
//! each cube scores one chunk for one head and keeps its softmax numerator sum and weighted
//! values; a second kernel merges the chunks of each head.

use super::reduce::cube_sum;
use super::{CubeResult, cache_strides, empty, operand, with_float, wrap};
use burn::tensor::{DType, Tensor};
use cubecl::prelude::*;

/// Positions per cube (and threads per cube).
pub(super) const CHUNK: usize = 256;

/// Cube `(c, h)`: scores of positions `c·CHUNK ..` against query head `h` (key head
/// `h / group`), their maximum `m`, `l = Σ exp(s − m)` and `o = Σ exp(s − m)·v` →
/// `partial_out [heads, chunks, D]`, `partial_stats [heads, chunks, 2]` (`m`, `l`).
#[cube(launch)]
fn attention_chunk_kernel<F: Float>(
    q: &[F],
    k_cache: &[F],
    v_cache: &[F],
    partial_out: &mut [f32],
    partial_stats: &mut [f32],
    len: usize,
    group: usize,
    head_stride: usize,
    row_stride: usize,
    chunks: usize,
    scale: f32,
    #[comptime] head_dim: usize,
    #[comptime] chunk: usize,
) {
    let c = CUBE_POS_X as usize;
    let head = CUBE_POS_Y as usize;
    let t_local = UNIT_POS_X as usize;
    let g = head / group;
    let mut q_s = Shared::<[f32]>::new_slice(head_dim);
    let mut d0 = t_local;
    while d0 < head_dim {
        q_s[d0] = f32::cast_from(q[head * head_dim + d0]);
        d0 += chunk;
    }
    sync_cube();

    let t = c * chunk + t_local;
    // Below every real score (masked positions).
    let mut score = f32::new(-1.0e30);
    if t < len {
        let row = g * head_stride + t * row_stride;
        let mut acc = 0.0f32;
        for d in 0..head_dim {
            acc += q_s[d] * f32::cast_from(k_cache[row + d]);
        }
        score = acc * scale;
    }
    let mut weights = Shared::<[f32]>::new_slice(chunk);
    let mut reduce = Shared::<[f32]>::new_slice(chunk);
    reduce[t_local] = score;
    sync_cube();
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if t_local < stride && reduce[t_local + stride] > reduce[t_local] {
            reduce[t_local] = reduce[t_local + stride];
        }
        sync_cube();
        stride /= 2;
    }
    let m = reduce[0];
    sync_cube();
    let mut e = f32::new(0.0);
    if t < len {
        e = f32::exp(score - m);
    }
    weights[t_local] = e;
    let l = cube_sum(reduce.clone(), e);

    // Weighted values: unit (part, d) sums positions part, part + parts, … of dimension d.
    let parts = chunk / head_dim;
    let d = t_local % head_dim;
    let part = t_local / head_dim;
    let mut acc_v = 0.0f32;
    if part < parts {
        let mut tl = part;
        while tl < chunk {
            let tt = c * chunk + tl;
            if tt < len {
                acc_v += weights[tl] * f32::cast_from(v_cache[g * head_stride + tt * row_stride + d]);
            }
            tl += parts;
        }
    }
    reduce[t_local] = acc_v;
    sync_cube();
    if part == 0 {
        let mut total = 0.0f32;
        for p in 0..parts {
            total += reduce[p * head_dim + d];
        }
        partial_out[(head * chunks + c) * head_dim + d] = total;
    }
    if t_local == 0 {
        partial_stats[(head * chunks + c) * 2] = m;
        partial_stats[(head * chunks + c) * 2 + 1] = l;
    }
}

/// Cube `h`, unit `d`: `out[h, d] = Σ_c exp(m_c − M)·o_c[d] / Σ_c exp(m_c − M)·l_c`.
#[cube(launch)]
fn attention_merge_kernel<F: Float>(
    partial_out: &[f32],
    partial_stats: &[f32],
    out: &mut [F],
    chunks: usize,
    #[comptime] head_dim: usize,
) {
    let head = CUBE_POS_X as usize;
    let d = UNIT_POS_X as usize;
    let mut m = f32::new(-1.0e30);
    for c in 0..chunks {
        let mc = partial_stats[(head * chunks + c) * 2];
        if mc > m {
            m = mc;
        }
    }
    let mut l = 0.0f32;
    let mut acc = 0.0f32;
    for c in 0..chunks {
        let w = f32::exp(partial_stats[(head * chunks + c) * 2] - m);
        l += w * partial_stats[(head * chunks + c) * 2 + 1];
        acc += w * partial_out[(head * chunks + c) * head_dim + d];
    }
    out[head * head_dim + d] = F::cast_from(acc / l);
}

/// Attention of the rotated query `q [heads·D]` over positions `0..len` of the caches
/// `[1, kv, allocated, D]` (any head and row strides; query head `h` reads key/value head
/// `h / (heads / kv)`), scaled by `scale` → `[heads·D]`.
pub fn decode_attention(q: &Tensor<1>, (k_cache, v_cache): (&Tensor<4>, &Tensor<4>), len: usize, scale: f32) -> CubeResult<Tensor<1>> {
    let dtype = q.dtype();
    let [_, kv_heads, allocated, head_dim] = k_cache.dims();
    let [q_len] = q.dims();
    if v_cache.dims() != k_cache.dims() || head_dim == 0 || head_dim > CHUNK || !q_len.is_multiple_of(head_dim) || len == 0 || len > allocated {
        return Err(format!("decode_attention: q {:?}, cache {:?}, length {len}", q.dims(), k_cache.dims()));
    }
    let heads = q_len / head_dim;
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(format!("decode_attention: {heads} query heads over {kv_heads} key/value heads"));
    }
    let qs = operand(q, dtype, "attention query")?;
    let kc = operand(k_cache, dtype, "key cache")?;
    let vc = operand(v_cache, dtype, "value cache")?;
    let chunks = len.div_ceil(CHUNK);
    let partial_out = empty(&qs, &[heads, chunks, head_dim], DType::F32);
    let partial_stats = empty(&qs, &[heads, chunks, 2], DType::F32);
    let out = empty(&qs, &[q_len], dtype);
    let (head_stride, row_stride) = cache_strides(&kc, &vc)?;
    let client = qs.client.clone();
    with_float!(dtype, F => {
        attention_chunk_kernel::launch::<F>(
            &client,
            CubeCount::Static(chunks as u32, heads as u32, 1),
            CubeDim::new_1d(CHUNK as u32),
            qs.into_buffer_arg(),
            kc.into_buffer_arg(),
            vc.into_buffer_arg(),
            partial_out.clone().into_buffer_arg(),
            partial_stats.clone().into_buffer_arg(),
            len,
            heads / kv_heads,
            head_stride,
            row_stride,
            chunks,
            scale,
            head_dim,
            CHUNK,
        );
        attention_merge_kernel::launch::<F>(
            &client,
            CubeCount::Static(heads as u32, 1, 1),
            CubeDim::new_1d(head_dim as u32),
            partial_out.into_buffer_arg(),
            partial_stats.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            chunks,
            head_dim,
        )
    });
    Ok(wrap(out))
}
