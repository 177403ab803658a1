//! The decoder-only language model (Llama / Qwen2 structure, Hugging Face key names).

use crate::attention::Attention;
use crate::config::LlmConfig;
use crate::kv_cache::KvCache;
use crate::rope::Rope;
use crate::LlmError;
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use chatrex_common::layers::Linear;
use chatrex_common::weights::{WeightDType, WeightLoader};

/// RMSNorm computed in f32 (as Hugging Face does), cast back to the input dtype.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor<1>,
    eps: f64,
}

impl RmsNorm {
    /// Loads `weight` `[d]`.
    pub fn load(vb: &WeightLoader, d: usize, eps: f64) -> Self {
        Self {
            weight: vb.float("weight", [d]),
            eps,
        }
    }

    /// `[..., d]` → `[..., d]`: `weight · x / sqrt(mean(x²) + eps)`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x = x.cast(DType::F32);
        let variance = x.clone().square().mean_dim(D - 1);
        let normed = (x * (variance + self.eps).sqrt().recip()).cast(dtype);
        self.weight.clone().unsqueeze::<D>() * normed
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj
            .forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// Where the LLM's tensors sit in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmKeys {
    /// Prefix of embeddings, layers and final norm (`model`).
    pub model: String,
    /// Key of the LM head matrix (`lm_head`).
    pub lm_head: String,
}

impl Default for LlmKeys {
    fn default() -> Self {
        Self {
            model: "model".into(),
            lm_head: "lm_head".into(),
        }
    }
}

/// A causal language model: embeddings → decoder layers → norm → LM head.
#[derive(Debug, Clone)]
pub struct CausalLm {
    config: LlmConfig,
    embed_tokens: Tensor<2>,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// `[vocab, hidden]`; `None` when tied to the embeddings.
    lm_head: Option<Tensor<2>>,
    rope: Rope,
    dtype: WeightDType,
    device: Device,
}

impl CausalLm {
    /// Builds the model from a loader (the caller closes the books with `finish`).
    pub fn from_loader(vb: &WeightLoader, config: &LlmConfig, keys: &LlmKeys) -> Self {
        let c = config;
        let m = vb.pp(&keys.model);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = m.pp(format!("layers.{i}"));
                let mlp = l.pp("mlp");
                DecoderLayer {
                    input_layernorm: RmsNorm::load(&l.pp("input_layernorm"), c.hidden_size, c.rms_norm_eps),
                    self_attn: Attention::load(
                        &l.pp("self_attn"),
                        c.hidden_size,
                        c.num_attention_heads,
                        c.num_key_value_heads,
                        c.attention_bias,
                    ),
                    post_attention_layernorm: RmsNorm::load(
                        &l.pp("post_attention_layernorm"),
                        c.hidden_size,
                        c.rms_norm_eps,
                    ),
                    mlp: Mlp {
                        gate_proj: Linear::load(&mlp.pp("gate_proj"), c.hidden_size, c.intermediate_size, false),
                        up_proj: Linear::load(&mlp.pp("up_proj"), c.hidden_size, c.intermediate_size, false),
                        down_proj: Linear::load(&mlp.pp("down_proj"), c.intermediate_size, c.hidden_size, false),
                    },
                }
            })
            .collect();
        let embed_tokens = m.float("embed_tokens.weight", [c.vocab_size, c.hidden_size]);
        let lm_head_key = format!("{}.weight", keys.lm_head);
        // Tied models may still store the head (identical bytes are accepted as an alias).
        let lm_head = if c.tie_word_embeddings {
            vb.alias(&lm_head_key, &m.key("embed_tokens.weight"));
            None
        } else {
            Some(vb.float(&lm_head_key, [c.vocab_size, c.hidden_size]))
        };
        Self {
            embed_tokens,
            layers,
            norm: RmsNorm::load(&m.pp("norm"), c.hidden_size, c.rms_norm_eps),
            lm_head,
            rope: Rope::new(c.head_dim(), c.rope_theta),
            dtype: vb.dtype(),
            device: vb.device().clone(),
            config: c.clone(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weight dtype.
    pub fn dtype(&self) -> WeightDType {
        self.dtype
    }

    /// An empty KV cache for up to `capacity` positions (clamped to the model's context).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.config.num_hidden_layers, capacity.min(self.config.max_position_embeddings))
    }

    /// Token embeddings `[L, hidden]`; ids beyond the vocabulary are an error.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor<2>, LlmError> {
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.config.vocab_size) {
            return Err(LlmError::Request(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(), [ids.len()]),
            &self.device,
        );
        Ok(self.embed_tokens.clone().select(0, index))
    }

    /// Runs the decoder on `embeds [B, L, hidden]` at positions `cache.len()..+L`, appending to
    /// the cache; returns the final-normed hidden states `[B, L, hidden]`.
    pub fn forward(&self, embeds: Tensor<3>, cache: &mut KvCache) -> Result<Tensor<3>, LlmError> {
        let [_, l, h] = embeds.dims();
        if h != self.config.hidden_size {
            return Err(LlmError::Request(format!("embeddings of width {h}, model width {}", self.config.hidden_size)));
        }
        let start = cache.len();
        if start + l > cache.capacity() {
            return Err(LlmError::ContextOverflow {
                needed: start + l,
                limit: cache.capacity(),
            });
        }
        let dtype = self.dtype.dtype();
        let (cos, sin) = self.rope.tables(start, l, &self.device);
        let (cos, sin) = (cos.cast(dtype), sin.cast(dtype));
        let mut x = embeds.cast(dtype);
        for (i, layer) in self.layers.iter().enumerate() {
            let attn = layer
                .self_attn
                .forward(layer.input_layernorm.forward(x.clone()), &cos, &sin, cache, i)?;
            x = x + attn;
            x = x.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(x));
        }
        cache.advance(l);
        Ok(self.norm.forward(x))
    }

    /// LM head on hidden states `[N, hidden]` → logits `[N, vocab]` in f32.
    pub fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        hidden.matmul(head.clone().transpose()).cast(DType::F32)
    }

    /// Logits of the last position of a forward pass: `hidden [1, L, H]` → `[vocab]` on host.
    pub fn last_logits(&self, hidden: &Tensor<3>) -> Result<Vec<f32>, LlmError> {
        let [_, l, h] = hidden.dims();
        let last = hidden.clone().narrow(1, l - 1, 1).reshape([1, h]);
        self.logits(last)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| LlmError::Backend(format!("{e:?}")))
    }
}

/// Top-level prefixes of the vision side of ChatRex/RexSeek checkpoints (ignored when only
/// the language model is loaded from such a directory).
pub const MULTIMODAL_PREFIXES: &[&str] = &["vision_tower", "vision_tower_aux", "mm_projector", "mm_object_projector"];

impl CausalLm {
    /// Loads the language model of a Hugging Face model directory (`config.json`,
    /// safetensors shards or single file). `model_type` `llama`/`qwen2` load as is; a
    /// multimodal wrapper whose type names its family (e.g. `rexseek_qwen`) loads its LLM,
    /// and its vision tensors are accounted for as intentionally unused. Every other tensor
    /// must be consumed.
    pub fn load_dir(dir: &std::path::Path, device: &Device, dtype: WeightDType) -> Result<(Self, chatrex_common::weights::LoadReport), LlmError> {
        let text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| LlmError::Config(format!("cannot read {}: {e}", dir.join("config.json").display())))?;
        let model_type = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("model_type").and_then(|m| m.as_str()).map(str::to_ascii_lowercase))
            .unwrap_or_default();
        let (architecture, multimodal) = match model_type.as_str() {
            "llama" => (None, false),
            "qwen2" => (None, false),
            t if t.contains("qwen") => (Some(crate::Architecture::Qwen2), true),
            t if t.contains("llama") || t.contains("chatrex") || t.contains("vicuna") => (Some(crate::Architecture::Llama), true),
            _ => (None, false),
        };
        let config = LlmConfig::from_json(&text, architecture)?;
        let source = chatrex_common::weights::open_checkpoint(dir, None)?;
        let vb = WeightLoader::new(source, device, dtype).with_progress("loading LLM");
        if multimodal {
            for prefix in MULTIMODAL_PREFIXES {
                vb.ignore_prefix(prefix);
            }
        }
        let lm = Self::from_loader(&vb, &config, &LlmKeys::default());
        let report = vb.finish("LLM")?;
        Ok((lm, report))
    }
}
