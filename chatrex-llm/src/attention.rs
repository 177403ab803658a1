//! Causal self-attention with grouped key/value heads and rotary embeddings.

use crate::kv_cache::{HostKv, KvCache};
use crate::rope::{apply_rope, apply_rope_rows};
use chatrex_common::amx::{KvLayout, RoundedRows, causal_attention_bf16, causal_attention_bf16_rounded};
use chatrex_common::host_matmul::{StridedMatrix, matmul_strided};
use chatrex_common::host_ops::{attend_one_position_span, merge_attention_spans, one_position_kernel_available, softmax_row};
use rayon::prelude::*;
use crate::LlmError;
use burn::tensor::activation::softmax;
use burn::tensor::{DType, Tensor, TensorData};
use crate::linear::LlmLinear;
use chatrex_common::weights::WeightLoader;

/// Queries per block of the f32 host attention: each block's scores cover only the keys its
/// last query sees.
const QUERY_BLOCK: usize = 64;

/// Cached positions per task of a decode step's attention ([`Attention::attend_one`]).
const DECODE_SPAN: usize = 128;

/// `self_attn.{q,k,v,o}_proj`.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) q_proj: LlmLinear,
    pub(crate) k_proj: LlmLinear,
    pub(crate) v_proj: LlmLinear,
    pub(crate) o_proj: LlmLinear,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl Attention {
    /// Loads the projections (`bias` on q/k/v for Qwen2).
    pub fn load(vb: &WeightLoader, hidden: usize, heads: usize, kv_heads: usize, bias: bool) -> Self {
        let head_dim = hidden / heads;
        vb.ignore("rotary_emb.inv_freq");
        Self {
            q_proj: LlmLinear::load(&vb.pp("q_proj"), hidden, heads * head_dim, bias),
            k_proj: LlmLinear::load(&vb.pp("k_proj"), hidden, kv_heads * head_dim, bias),
            v_proj: LlmLinear::load(&vb.pp("v_proj"), hidden, kv_heads * head_dim, bias),
            o_proj: LlmLinear::load(&vb.pp("o_proj"), heads * head_dim, hidden, false),
            heads,
            kv_heads,
            head_dim,
        }
    }

    /// `x [B, L, hidden]` at positions `cache.len()..+L` → `[B, L, hidden]`, appending this
    /// step's keys and values to layer `layer` of the cache. `mask` is the additive causal mask
    /// of [`causal_mask`](Self::causal_mask) for these positions (built once per forward pass,
    /// shared by all layers; `None` for a single position, which sees every cached one).
    ///
    /// The `heads / kv_heads` query heads sharing a key/value head are stacked along the
    /// query axis (`[B, kv, group·L, D]`), so keys and values are never repeated in memory.
    pub fn forward(
        &self,
        x: Tensor<3>,
        (cos, sin): (&Tensor<4>, &Tensor<4>),
        mask: Option<&Tensor<4>>,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor<3>, LlmError> {
        let [b, l, _] = x.dims();
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let group = h / kvh;
        let start = cache.len();
        let q = self.q_proj.forward(x.clone()).reshape([b, l, h, d]).swap_dims(1, 2);
        let k = self.k_proj.forward(x.clone()).reshape([b, l, kvh, d]).swap_dims(1, 2);
        let v = self.v_proj.forward(x).reshape([b, l, kvh, d]).swap_dims(1, 2);
        let q = apply_rope(q, cos, sin);
        let k = apply_rope(k, cos, sin);
        let (keys, values) = cache.append(layer, k, v).map_err(LlmError::Request)?;

        // [B, H, L, D] → [B, kv, group·L, D] (query heads of one group are consecutive).
        let q = q.reshape([b, kvh, group * l, d]);
        let scores = q.matmul(keys.transpose()).cast(DType::F32) / (d as f64).sqrt();
        let scores = match mask {
            Some(mask) if l > 1 => scores + mask.clone(),
            None if l > 1 => scores + self.causal_mask(l, start, &values.device()),
            _ => scores,
        };
        let probs = softmax(scores, 3).cast(values.dtype());
        let out = probs
            .matmul(values)
            .reshape([b, h, l, d])
            .swap_dims(1, 2)
            .reshape([b, l, h * d]);
        Ok(self.o_proj.forward(out))
    }
}

/// The q, k and v products of [`Attention::add_forward_host`], kept across layers (every value
/// is overwritten before it is read).
#[derive(Debug, Default)]
pub(crate) struct AttentionScratch {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Attention {
    /// Host path of [`forward`](Self::forward) for one sequence on the CPU backend, added into
    /// the residual stream: `residual [L, hidden] += attention(x)` for rows `x [L, hidden]` at
    /// positions `cache.len()..+L`, with `cos, sin [L, D/2]` rotary tables. Heads run in
    /// parallel; each reads its key/value head from the host cache without copying it. With
    /// the weights in tile order and more than one row, `x` is rounded once for the q, k and
    /// v products, and the attended rows are rounded straight into the rows `o_proj` reads.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_forward_host(
        &self,
        x: &[f32],
        l: usize,
        (cos, sin): (&[f32], &[f32]),
        cache: &mut KvCache,
        layer: usize,
        residual: &mut [f32],
        scratch: &mut AttentionScratch,
    ) -> Result<(), LlmError> {
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        let not_host = || LlmError::Backend("host attention with device weights or mismatched rows".into());
        let AttentionScratch { q, k, v } = scratch;
        for (buffer, width) in [(&mut *q, h * d), (&mut *k, kvh * d), (&mut *v, kvh * d)] {
            buffer.resize(l * width, 0.0);
        }
        let projections = [&self.q_proj, &self.k_proj, &self.v_proj];
        if l > 1 && projections.iter().all(|p| p.in_tile_order()) {
            let rows = RoundedRows::from_f32(x, l, x.len() / l);
            self.q_proj.forward_rounded_into(&rows, q).ok_or_else(not_host)?;
            self.k_proj.forward_rounded_into(&rows, k).ok_or_else(not_host)?;
            self.v_proj.forward_rounded_into(&rows, v).ok_or_else(not_host)?;
        } else {
            self.q_proj.forward_rows_into(x, l, q).ok_or_else(not_host)?;
            self.k_proj.forward_rows_into(x, l, k).ok_or_else(not_host)?;
            self.v_proj.forward_rows_into(x, l, v).ok_or_else(not_host)?;
        }
        apply_rope_rows(q, d, cos, sin);
        apply_rope_rows(k, d, cos, sin);
        let start = cache.len();
        let kv = cache.append_host(layer, k, v, (l, kvh, d)).map_err(LlmError::Request)?;
        let scale = 1.0 / (d as f32).sqrt();
        let layout = KvLayout { heads: kvh, head_stride: kv.allocated * d, row_stride: d, len: kv.len };
        if self.tile_attention(l) {
            if self.o_proj.in_tile_order()
                && let Some(attended) = causal_attention_bf16_rounded(q, l, h, d, kv.keys, kv.values, layout, start, scale)
            {
                return self.o_proj.add_forward_rounded(&attended, residual).ok_or_else(not_host);
            }
            if let Some(attended) = causal_attention_bf16(q, l, h, d, kv.keys, kv.values, layout, start, scale) {
                return self.o_proj.add_forward_rows(&attended, l, residual).ok_or_else(not_host);
            }
        }
        let attended = if l == 1 && one_position_kernel_available(d) {
            self.attend_one(q, &kv, scale)
        } else {
            self.attend_f32(q, l, &kv, start, scale)?
        };
        self.o_proj.add_forward_rows(&attended, l, residual).ok_or_else(not_host)
    }

    /// Attention of one new position (a decode step) in f32: `q [heads·D]` over the host
    /// cache `kv` (which already holds this position) → `[heads·D]`. The cached positions
    /// are split into spans of [`DECODE_SPAN`]; one task per key/value head and span reads
    /// those keys and values once for all the query heads that share them
    /// ([`attend_one_position_span`]), and the spans are merged per head
    /// ([`merge_attention_spans`]): every thread has work even with two key/value heads.
    /// Taken where its AVX-512 scores kernel runs (measured there: 84 → 57 ms of attention in
    /// 32 Qwen2.5-0.5B steps over 700 positions); other CPUs keep [`attend_f32`](Self::attend_f32).
    fn attend_one(&self, q: &[f32], kv: &HostKv, scale: f32) -> Vec<f32> {
        let (d, total, head_stride) = (self.head_dim, kv.len, kv.allocated * self.head_dim);
        let group = self.heads / self.kv_heads;
        let spans = total.div_ceil(DECODE_SPAN);
        // Per key/value head and span: the group's maxima, sums and undivided outputs.
        let mut stats = vec![0f32; 2 * self.kv_heads * spans * group];
        let mut partial = vec![0f32; self.kv_heads * spans * group * d];
        let (maxima, sums) = stats.split_at_mut(self.kv_heads * spans * group);
        partial
            .par_chunks_mut(group * d)
            .zip(maxima.par_chunks_mut(group).zip(sums.par_chunks_mut(group)))
            .enumerate()
            .for_each(|(task, (out, stats))| {
                let (g, span) = (task / spans, task % spans);
                let positions = span * DECODE_SPAN..((span + 1) * DECODE_SPAN).min(total);
                let rows = g * head_stride + positions.start * d..g * head_stride + positions.end * d;
                let mut scores = vec![0f32; group * positions.len()];
                let q = &q[g * group * d..(g + 1) * group * d];
                attend_one_position_span(q, &kv.keys[rows.clone()], &kv.values[rows], d, scale, &mut scores, out, stats);
            });
        let mut attended = vec![0f32; self.heads * d];
        for (g, out) in attended.chunks_exact_mut(group * d).enumerate() {
            let span_of = |s: usize| {
                let at = g * spans + s;
                (&maxima[at * group..(at + 1) * group], &sums[at * group..(at + 1) * group], &partial[at * group * d..(at + 1) * group * d])
            };
            merge_attention_spans((0..spans).map(span_of), d, out);
        }
        attended
    }

    /// Causal attention in f32 of `q [L, heads·D]` (positions `start ..`) over the host cache
    /// `kv` → `[L, heads·D]`, heads in parallel, each reading its key/value head in place.
    /// Queries go in blocks of [`QUERY_BLOCK`], each against only the keys its last query
    /// sees (a prefill computes about half the scores of the full square).
    fn attend_f32(&self, q: &[f32], l: usize, kv: &HostKv, start: usize, scale: f32) -> Result<Vec<f32>, LlmError> {
        let (h, d) = (self.heads, self.head_dim);
        let group = h / self.kv_heads;
        let (total, head_stride) = (kv.len, kv.allocated * d);
        let per_head: Vec<Vec<f32>> = (0..h)
            .into_par_iter()
            .map(|head| {
                let g = head / group;
                let keys = &kv.keys[g * head_stride..];
                let values = &kv.values[g * head_stride..];
                let view = StridedMatrix::new;
                let mut block_scores = vec![0f32; QUERY_BLOCK.min(l) * total];
                let mut out = vec![0f32; l * d];
                for b0 in (0..l).step_by(QUERY_BLOCK) {
                    let rows = QUERY_BLOCK.min(l - b0);
                    // Causal: query i (position start + i) sees keys 0..=start + i.
                    let seen = (start + b0 + rows).min(total);
                    let scores = &mut block_scores[..rows * seen];
                    matmul_strided(
                        view(&q[(b0 * h + head) * d..], rows, d, h * d, 1),
                        view(keys, d, seen, 1, d),
                        scale,
                        scores,
                        seen,
                    )?;
                    for (i, row) in scores.chunks_mut(seen).enumerate() {
                        let visible = (start + b0 + i + 1).min(seen);
                        softmax_row(&mut row[..visible]);
                        row[visible..].fill(0.0);
                    }
                    matmul_strided(StridedMatrix::new(scores, rows, seen, seen, 1), view(values, seen, d, d, 1), 1.0, &mut out[b0 * d..], d)?;
                }
                Ok(out)
            })
            .collect::<Result<_, String>>()
            .map_err(LlmError::Backend)?;
        let mut attended = vec![0f32; l * h * d];
        for (head, values) in per_head.iter().enumerate() {
            for (row, src) in attended.chunks_mut(h * d).zip(values.chunks(d)) {
                row[head * d..(head + 1) * d].copy_from_slice(src);
            }
        }
        Ok(attended)
    }

    /// Whether `l` new positions attend on AMX tiles: a bf16 model (its operands rounded to
    /// bf16, as PyTorch's bf16 attention) on a CPU with tiles, heads whose width the tiles
    /// fit, and at least one whole block of 32 queries (a prefill; decoding one position at a
    /// time stays in f32, where a tile would be 31/32 padding).
    fn tile_attention(&self, l: usize) -> bool {
        l >= 32 && self.q_proj.is_host_bf16() && chatrex_common::amx::attention_fits(self.head_dim)
    }

    /// Whether every projection lives in host memory (the host path can run).
    pub fn is_host(&self) -> bool {
        [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj].iter().all(|p| p.is_host())
    }
}

impl Attention {
    /// The additive causal mask `[1, 1, group·L, start + L]` of [`forward`](Self::forward) for
    /// `l` positions after `start` cached ones.
    pub fn causal_mask(&self, l: usize, start: usize, device: &burn::tensor::Device) -> Tensor<4> {
        causal_bias(self.heads / self.kv_heads.max(1), l, start, start + l, device)
    }
}

/// Additive causal mask `[1, 1, group·L, total]`: row `g·L + i` (query at position
/// `start + i`) may attend keys `0..=start+i`.
fn causal_bias(group: usize, l: usize, start: usize, total: usize, device: &burn::tensor::Device) -> Tensor<4> {
    let mut bias = vec![0f32; group * l * total];
    for g in 0..group {
        for i in 0..l {
            let row = &mut bias[(g * l + i) * total..(g * l + i + 1) * total];
            for v in row.iter_mut().skip(start + i + 1) {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_data(TensorData::new(bias, [1, 1, group * l, total]), device)
}
