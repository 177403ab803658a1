//! Causal self-attention with grouped key/value heads and rotary embeddings.

use crate::kv_cache::KvCache;
use crate::rope::apply_rope;
use crate::LlmError;
use burn::tensor::activation::softmax;
use burn::tensor::{DType, Tensor, TensorData};
use crate::linear::LlmLinear;
use chatrex_common::weights::WeightLoader;

/// `self_attn.{q,k,v,o}_proj`.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: LlmLinear,
    k_proj: LlmLinear,
    v_proj: LlmLinear,
    o_proj: LlmLinear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
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
    /// step's keys and values to layer `layer` of the cache.
    ///
    /// The `heads / kv_heads` query heads sharing a key/value head are stacked along the
    /// query axis (`[B, kv, group·L, D]`), so keys and values are never repeated in memory.
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
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
        let total = start + l;

        // [B, H, L, D] → [B, kv, group·L, D] (query heads of one group are consecutive).
        let q = q.reshape([b, kvh, group * l, d]);
        let scores = q.matmul(keys.transpose()).cast(DType::F32) / (d as f64).sqrt();
        let scores = if l > 1 {
            scores + causal_bias(group, l, start, total, &values.device())
        } else {
            scores
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
