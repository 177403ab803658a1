//! The decoder-only language model (Llama / Qwen2 structure, Hugging Face key names).

use crate::attention::{Attention, AttentionScratch};
use crate::config::LlmConfig;
use crate::kv_cache::KvCache;
use crate::rope::Rope;
use crate::LlmError;
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use crate::linear::{LlmLinear, host_weights};
use chatrex_common::device::read_f32;
use chatrex_common::host_matmul::HostMatrix;
use chatrex_common::amx::{RoundedRows, round_to_bf16};
use chatrex_common::host_ops::{rms_norm, silu_mul, silu_mul_chunk};
use rayon::prelude::*;
use std::sync::Arc;
use chatrex_common::weights::{WeightDType, WeightLoader};

/// RMSNorm computed in f32 (as Hugging Face does), cast back to the input dtype.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub(crate) weight: Tensor<1>,
    /// The weight in host memory (CPU backend's host path).
    host_weight: Option<Vec<f32>>,
    pub(crate) eps: f64,
}

impl RmsNorm {
    /// Loads `weight` `[d]` in `dtype` (the activation dtype).
    pub fn load(vb: &WeightLoader, d: usize, eps: f64, dtype: WeightDType) -> Self {
        let weight = vb.float_as("weight", [d], dtype);
        let host_weight = host_weights(vb.device())
            .then(|| {
                read_f32(weight.clone()).ok()
            })
            .flatten();
        Self { weight, host_weight, eps }
    }

    /// Host rows `x [rows, d]` → `out [rows, d]` (the CPU backend's host path).
    pub fn forward_rows(&self, x: &[f32], out: &mut [f32]) -> Result<(), LlmError> {
        match &self.host_weight {
            Some(w) if !w.is_empty() && x.len() == out.len() && x.len().is_multiple_of(w.len()) => {
                rms_norm(x, w, self.eps as f32, out);
                Ok(())
            }
            _ => Err(LlmError::Backend("RMSNorm: no host weight for these rows".into())),
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

/// Rows per parallel task of the tile MLP's gated activation.
const MLP_ROWS_PER_TASK: usize = 16;

/// The gate and up products of [`Mlp::add_forward_rows`], kept across layers.
#[derive(Debug, Default)]
struct MlpScratch {
    gate: Vec<f32>,
    up: Vec<f32>,
}

#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub(crate) gate_proj: LlmLinear,
    pub(crate) up_proj: LlmLinear,
    pub(crate) down_proj: LlmLinear,
}

impl Mlp {
    /// `residual += down(silu(gate(x)) · up(x))` for host rows `x [L, hidden]`. With all three
    /// weights in tile order and more than one row, `x` is rounded once for both products,
    /// the gated activation is rounded straight into the rows `down` reads, and `down`'s sums
    /// are added into `residual` from its blocks (the same numbers as the separate steps);
    /// otherwise the separate steps: gate and up products, the gated activation in place,
    /// and down's product added into `residual`.
    ///
    /// `scratch` holds the two `[L, intermediate]` products between calls (every value is
    /// overwritten), so that a prefill does not zero and fault in fresh pages for them in
    /// every layer.
    fn add_forward_rows(&self, x: &[f32], l: usize, residual: &mut [f32], scratch: &mut MlpScratch) -> Result<(), LlmError> {
        let tiles = (self.gate_proj.tile_weight(), self.up_proj.tile_weight(), self.down_proj.tile_weight());
        if let (Some(gate_w), Some(up_w), Some(down_w)) = tiles
            && l > 1
            && gate_w.rows() == up_w.rows()
            && down_w.cols() == gate_w.rows()
            && x.len() == l * gate_w.cols()
            && residual.len() == l * down_w.rows()
        {
            let width = gate_w.rows();
            let rows = RoundedRows::from_f32(x, l, gate_w.cols());
            let MlpScratch { gate, up } = scratch;
            for buffer in [&mut *gate, &mut *up] {
                buffer.resize(l * width, 0.0);
            }
            let (gate, up) = (&mut gate[..l * width], &mut up[..l * width]);
            let products = gate_w.matmul_t_rounded(&rows, gate) && up_w.matmul_t_rounded(&rows, up);
            drop(rows);
            let mut activated = RoundedRows::recycled(l, width);
            activated
                .par_groups_mut(MLP_ROWS_PER_TASK)
                .zip(gate.par_chunks_mut(MLP_ROWS_PER_TASK * width).zip(up.par_chunks(MLP_ROWS_PER_TASK * width)))
                .for_each(|((_, mut group), (gate, up))| {
                    for (i, (g, u)) in gate.chunks_exact_mut(width).zip(up.chunks_exact(width)).enumerate() {
                        silu_mul_chunk(g, u);
                        round_to_bf16(g, group.row_mut(i));
                    }
                });
            if products && down_w.matmul_t_residual(&activated, residual, None, None) {
                return Ok(());
            }
            return Err(LlmError::Backend("tile MLP: operand shapes".into()));
        }
        // Other weights: the separate steps, the two products in the scratch buffers and
        // `down` adding into the residual where its weight allows.
        let missing = || LlmError::Backend("host MLP with device weights".into());
        let width = self.gate_proj.host_out_features().ok_or_else(missing)?;
        let MlpScratch { gate, up } = scratch;
        for buffer in [&mut *gate, &mut *up] {
            buffer.resize(l * width, 0.0);
        }
        let (gate, up) = (&mut gate[..l * width], &mut up[..l * width]);
        self.gate_proj.forward_rows_into(x, l, gate).ok_or_else(missing)?;
        self.up_proj.forward_rows_into(x, l, up).ok_or_else(missing)?;
        silu_mul(gate, up);
        self.down_proj.add_forward_rows(gate, l, residual).ok_or_else(missing)
    }

    fn is_host(&self) -> bool {
        self.gate_proj.is_host() && self.up_proj.is_host() && self.down_proj.is_host()
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj
            .forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DecoderLayer {
    pub(crate) input_layernorm: RmsNorm,
    pub(crate) self_attn: Attention,
    pub(crate) post_attention_layernorm: RmsNorm,
    pub(crate) mlp: Mlp,
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

/// The token embedding matrix `[vocab, hidden]`.
#[derive(Debug, Clone)]
enum Embedding {
    Tensor(Box<Tensor<2>>),
    Host(Arc<HostMatrix>),
}

/// A causal language model: embeddings → decoder layers → norm → LM head.
#[derive(Debug, Clone)]
pub struct CausalLm {
    config: LlmConfig,
    embed_tokens: Embedding,
    pub(crate) layers: Vec<DecoderLayer>,
    pub(crate) norm: RmsNorm,
    /// The LM head (the embedding matrix when tied).
    pub(crate) lm_head: LlmLinear,
    pub(crate) rope: Rope,
    dtype: WeightDType,
    /// Activation dtype: the weight dtype on devices, f32 with host weights.
    act_dtype: DType,
    device: Device,
    /// Whether one-position steps run the fused decode kernels (CubeCL devices, see
    /// [`fused_decode`](crate::fused_decode)).
    fused_decode: bool,
}

impl CausalLm {
    /// Builds the model from a loader (the caller closes the books with `finish`).
    pub fn from_loader(vb: &WeightLoader, config: &LlmConfig, keys: &LlmKeys) -> Self {
        let c = config;
        let m = vb.pp(&keys.model);
        let host = host_weights(vb.device());
        let norm_dtype = if host { WeightDType::F32 } else { vb.dtype() };
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = m.pp(format!("layers.{i}"));
                let mlp = l.pp("mlp");
                DecoderLayer {
                    input_layernorm: RmsNorm::load(&l.pp("input_layernorm"), c.hidden_size, c.rms_norm_eps, norm_dtype),
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
                        norm_dtype,
                    ),
                    mlp: Mlp {
                        gate_proj: LlmLinear::load(&mlp.pp("gate_proj"), c.hidden_size, c.intermediate_size, false),
                        up_proj: LlmLinear::load(&mlp.pp("up_proj"), c.hidden_size, c.intermediate_size, false),
                        down_proj: LlmLinear::load(&mlp.pp("down_proj"), c.intermediate_size, c.hidden_size, false),
                    },
                }
            })
            .collect();
        let lm_head_key = format!("{}.weight", keys.lm_head);
        let (embed_tokens, lm_head) = if host {
            let table = Arc::new(m.host_matrix("embed_tokens.weight", c.vocab_size, c.hidden_size, vb.dtype()));
            let head = if c.tie_word_embeddings {
                // Tied models may still store the head (identical bytes are accepted as an alias).
                vb.alias(&lm_head_key, &m.key("embed_tokens.weight"));
                LlmLinear::shared(table.clone())
            } else {
                LlmLinear::load(&vb.pp(&keys.lm_head), c.hidden_size, c.vocab_size, false)
            };
            (Embedding::Host(table), head)
        } else {
            let table = m.float("embed_tokens.weight", [c.vocab_size, c.hidden_size]);
            let head = if c.tie_word_embeddings {
                vb.alias(&lm_head_key, &m.key("embed_tokens.weight"));
                LlmLinear::Tensor(Box::new(chatrex_common::layers::Linear { weight: table.clone(), bias: None }))
            } else {
                LlmLinear::load(&vb.pp(&keys.lm_head), c.hidden_size, c.vocab_size, false)
            };
            (Embedding::Tensor(Box::new(table)), head)
        };
        Self {
            embed_tokens,
            layers,
            norm: RmsNorm::load(&m.pp("norm"), c.hidden_size, c.rms_norm_eps, norm_dtype),
            lm_head,
            rope: Rope::new(c.head_dim(), c.rope_theta),
            dtype: vb.dtype(),
            act_dtype: if host { DType::F32 } else { vb.dtype().dtype() },
            device: vb.device().clone(),
            config: c.clone(),
            fused_decode: false,
        }
        .with_default_decode()
    }

    /// Turns the fused decode step on where it is supported, unless `CHATREX_FUSED_DECODE=0`.
    fn with_default_decode(mut self) -> Self {
        let wanted = std::env::var("CHATREX_FUSED_DECODE").map(|v| v != "0").unwrap_or(true);
        self.fused_decode = wanted && self.fused_decode_supported();
        self
    }

    /// Whether the fused decode kernels can run this model on its device (a CubeCL backend
    /// whose cubes hold 256 units, weights on the device in f32, f16 or bf16).
    pub fn fused_decode_supported(&self) -> bool {
        #[cfg(feature = "cube")]
        {
            !self.host_path() && crate::cube::supported(&self.device, self.act_dtype, self.config.head_dim())
        }
        #[cfg(not(feature = "cube"))]
        {
            false
        }
    }

    /// Whether one-position steps run the fused decode kernels.
    pub fn fused_decode(&self) -> bool {
        self.fused_decode
    }

    /// Chooses between the fused decode kernels (where supported; on by default) and Burn's
    /// tensor ops for one-position steps; returns whether the fused step is now on.
    pub fn set_fused_decode(&mut self, on: bool) -> bool {
        self.fused_decode = on && self.fused_decode_supported();
        self.fused_decode
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

    /// The dtype activations run in (f32 when weights live in host memory).
    pub fn activation_dtype(&self) -> DType {
        self.act_dtype
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
        match &self.embed_tokens {
            Embedding::Tensor(table) => {
                let index = Tensor::<1, Int>::from_data(
                    TensorData::new(ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(), [ids.len()]),
                    &self.device,
                );
                Ok(table.as_ref().clone().select(0, index))
            }
            Embedding::Host(table) => {
                let h = table.cols;
                let mut rows = vec![0f32; ids.len() * h];
                for (i, &id) in ids.iter().enumerate() {
                    table.row_f32(id as usize, &mut rows[i * h..(i + 1) * h]);
                }
                Ok(Tensor::from_data(TensorData::new(rows, [ids.len(), h]), &self.device))
            }
        }
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
        if embeds.dims()[0] == 1 && self.host_path() {
            return self.forward_host(embeds, cache);
        }
        #[cfg(feature = "cube")]
        if self.fused_decode && l == 1 && embeds.dims()[0] == 1 {
            return self.forward_fused_step(embeds, cache);
        }
        let dtype = self.act_dtype;
        let (cos, sin) = self.rope.tables(start, l, &self.device);
        let (cos, sin) = (cos.cast(dtype), sin.cast(dtype));
        let mut x = embeds.cast(dtype);
        // One causal mask for all layers (they share the head layout).
        let mask = match self.layers.first() {
            Some(layer) if l > 1 => Some(layer.self_attn.causal_mask(l, start, &self.device)),
            _ => None,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let attn = layer
                .self_attn
                .forward(layer.input_layernorm.forward(x.clone()), (&cos, &sin), mask.as_ref(), cache, i)?;
            x = x + attn;
            x = x.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(x));
        }
        cache.advance(l);
        Ok(self.norm.forward(x))
    }

    /// Whether every layer's weights live in host memory (CPU backend): one sequence then
    /// runs through [`forward_host`](Self::forward_host).
    fn host_path(&self) -> bool {
        self.norm.host_weight.is_some()
            && self.layers.iter().all(|layer| {
                layer.self_attn.is_host()
                    && layer.mlp.is_host()
                    && layer.input_layernorm.host_weight.is_some()
                    && layer.post_attention_layernorm.host_weight.is_some()
            })
    }

    /// [`forward`](Self::forward) for one sequence on the CPU backend: activations stay in
    /// host memory from the embeddings to the final norm; every projection is a host matrix
    /// product, norms, rotary embedding, attention and the gated activation are fused host
    /// passes, and the keys and values go to the cache's host buffers.
    fn forward_host(&self, embeds: Tensor<3>, cache: &mut KvCache) -> Result<Tensor<3>, LlmError> {
        let [_, l, hidden] = embeds.dims();
        let start = cache.len();
        let mut x = read_f32(embeds).map_err(LlmError::Backend)?;
        let (cos, sin) = self.rope.host_tables(start, l);
        let mut h = vec![0f32; l * hidden];
        let (mut attention_scratch, mut mlp_scratch) = (AttentionScratch::default(), MlpScratch::default());
        let mut layers = || -> Result<(), LlmError> {
            for (i, layer) in self.layers.iter().enumerate() {
                layer.input_layernorm.forward_rows(&x, &mut h)?;
                layer.self_attn.add_forward_host(&h, l, (&cos, &sin), cache, i, &mut x, &mut attention_scratch)?;
                layer.post_attention_layernorm.forward_rows(&x, &mut h)?;
                layer.mlp.add_forward_rows(&h, l, &mut x, &mut mlp_scratch)?;
            }
            Ok(())
        };
        // A decode step runs on one of rayon's workers: each small product's tasks then reach
        // the other workers through the pool's own queues; called from outside the pool,
        // every parallel loop is handed over to a worker and the caller put to sleep until it
        // ends (two thread switches per loop, ~8 loops per layer). Measured (2 threads, one
        // binary toggling it): Qwen2.5-0.5B decode bf16 1.17–1.19×, f16 1.16×, f32
        // 1.02–1.10× (the two start orders); Llama-7B layers' decode level. Prefills stay on
        // the caller's thread: level in bf16, f32 Llama layers 0.97×. (Large buffers allocated
        // on a worker come from glibc's per-thread arenas, capped at 64 MB, hence from `mmap`
        // and fresh page faults every time: the UPN run inside the pool took 20% longer, level
        // with `MALLOC_ARENA_MAX=1`.)
        if l == 1 {
            rayon::scope(|_| layers())?;
        } else {
            layers()?;
        }
        cache.advance(l);
        self.norm.forward_rows(&x, &mut h)?;
        Ok(Tensor::from_data(TensorData::new(h, [1, l, hidden]), &self.device))
    }

    /// LM head on hidden states `[N, hidden]` → logits `[N, vocab]` in f32.
    pub fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        let [n, _] = hidden.dims();
        let values = self.lm_head.forward_host(hidden);
        Tensor::from_data(TensorData::new(values, [n, self.config.vocab_size]), &self.device)
    }

    /// Logits of the last position of a forward pass: `hidden [1, L, H]` → `[vocab]` on host.
    pub fn last_logits(&self, hidden: &Tensor<3>) -> Result<Vec<f32>, LlmError> {
        let [_, l, h] = hidden.dims();
        let last = hidden.clone().narrow(1, l - 1, 1).reshape([1, h]);
        #[cfg(feature = "cube")]
        let values = if self.fused_decode {
            self.fused_logits(last.reshape([h]))?
        } else {
            self.lm_head.forward_host(last)
        };
        #[cfg(not(feature = "cube"))]
        let values = self.lm_head.forward_host(last);
        if values.len() != self.config.vocab_size {
            return Err(LlmError::Backend("LM head returned an unexpected number of logits".into()));
        }
        Ok(values)
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
