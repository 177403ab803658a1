//! One decode position through the fused kernels of [`crate::cube`]: the same layers as
//! [`CausalLm::forward`] with seven launches per layer instead of Burn's op-by-op chain.

use crate::cube;
use crate::kv_cache::KvCache;
use crate::linear::LlmLinear;
use crate::model::CausalLm;
use crate::LlmError;
use burn::tensor::{Tensor, TensorData};

/// The weight `[out, in]` and bias `[out]` of a device linear layer.
fn device_parts(linear: &LlmLinear) -> Result<(&Tensor<2>, Option<&Tensor<1>>), LlmError> {
    match linear {
        LlmLinear::Tensor(l) => Ok((&l.weight, l.bias.as_ref())),
        LlmLinear::Host { .. } => Err(LlmError::Backend("fused decode step with host weights".into())),
    }
}

fn kernel_error(e: String) -> LlmError {
    LlmError::Backend(format!("fused decode kernel: {e}"))
}

impl CausalLm {
    /// [`forward`](CausalLm::forward) of one position `embeds [1, 1, hidden]` at `cache.len()`
    /// on the fused kernels; returns the final-normed hidden state `[1, 1, hidden]`.
    pub(crate) fn forward_fused_step(&self, embeds: Tensor<3>, cache: &mut KvCache) -> Result<Tensor<3>, LlmError> {
        let hidden = self.config().hidden_size;
        let dtype = self.activation_dtype();
        let position = cache.len();
        let (cos, sin) = self.rope.host_tables(position, 1);
        let cos_sin = Tensor::<1>::from_data(TensorData::new([cos, sin].concat(), [self.config().head_dim()]), self.device());
        let mut x: Tensor<1> = embeds.cast(dtype).reshape([hidden]);
        for (i, layer) in self.layers.iter().enumerate() {
            let attn = &layer.self_attn;
            let (kv_heads, head_dim) = (attn.kv_heads, attn.head_dim);
            let (wq, bq) = device_parts(&attn.q_proj)?;
            let (wk, bk) = device_parts(&attn.k_proj)?;
            let (wv, bv) = device_parts(&attn.v_proj)?;
            let biases = match (bq, bk, bv) {
                (Some(bq), Some(bk), Some(bv)) => Some((bq, bk, bv)),
                (None, None, None) => None,
                _ => return Err(LlmError::Backend("fused decode step: q/k/v with and without biases".into())),
            };
            let norm = &layer.input_layernorm;
            let (q, k, v) = cube::normed_qkv(&x, &norm.weight, norm.eps, (wq, wk, wv), biases).map_err(kernel_error)?;
            let (k_cache, v_cache) = cache
                .device_buffers(i, [1, kv_heads, head_dim], 1, (self.device(), dtype))
                .map_err(LlmError::Request)?;
            let q = cube::rope_append((&q, &k, &v), &cos_sin, (&k_cache, &v_cache), position).map_err(kernel_error)?;
            let scale = 1.0 / (head_dim as f32).sqrt();
            let attended = cube::decode_attention(&q, (&k_cache, &v_cache), position + 1, scale).map_err(kernel_error)?;
            let (o, _) = device_parts(&attn.o_proj)?;
            x = cube::matvec(o, &attended, None, Some(&x)).map_err(kernel_error)?;
            let norm = &layer.post_attention_layernorm;
            let (gate, _) = device_parts(&layer.mlp.gate_proj)?;
            let (up, _) = device_parts(&layer.mlp.up_proj)?;
            let (down, _) = device_parts(&layer.mlp.down_proj)?;
            let activated = cube::normed_gated_matvec(&x, &norm.weight, norm.eps, gate, up).map_err(kernel_error)?;
            x = cube::matvec(down, &activated, None, Some(&x)).map_err(kernel_error)?;
        }
        cache.advance(1);
        let normed = cube::rms_norm(&x, &self.norm.weight, self.norm.eps).map_err(kernel_error)?;
        Ok(normed.reshape([1, 1, hidden]))
    }

    /// The LM head on one hidden row `[hidden]` with the fused matrix-vector kernel → host
    /// logits `[vocab]`.
    pub(crate) fn fused_logits(&self, row: Tensor<1>) -> Result<Vec<f32>, LlmError> {
        let (w, b) = device_parts(&self.lm_head)?;
        let logits = cube::matvec(w, &row, b, None).map_err(kernel_error)?;
        chatrex_common::device::read_f32(logits.unsqueeze::<2>()).map_err(LlmError::Backend)
    }
}
