//! The decoder's sizes, read from a Hugging Face `config.json`.

use crate::LlmError;
use serde::Deserialize;
use std::path::Path;

/// The decoder families we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Architecture {
    /// Llama / Llama-2 / Vicuna: no attention biases.
    Llama,
    /// Qwen2 / Qwen2.5: biases on q, k, v projections.
    Qwen2,
}

/// Decoder configuration (the fields of a HF `LlamaConfig` / `Qwen2Config` we use).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LlmConfig {
    /// Family.
    pub architecture: Architecture,
    /// Residual width.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA when fewer than query heads).
    pub num_key_value_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Vocabulary size (rows of the embedding matrix).
    pub vocab_size: usize,
    /// Whether the LM head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Longest sequence the model supports.
    pub max_position_embeddings: usize,
    /// Biases on q/k/v.
    pub attention_bias: bool,
    /// Beginning-of-sequence id from the config, if any.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids from the config.
    pub eos_token_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    intermediate_size: usize,
    rope_theta: Option<f64>,
    rms_norm_eps: Option<f64>,
    vocab_size: usize,
    tie_word_embeddings: Option<bool>,
    max_position_embeddings: Option<usize>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    rope_scaling: Option<serde_json::Value>,
    head_dim: Option<usize>,
    use_sliding_window: Option<bool>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
    pretraining_tp: Option<usize>,
}

fn ids(v: &Option<serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect(),
        _ => Vec::new(),
    }
}

impl LlmConfig {
    /// Reads `config.json`. `model_type` `llama` and `qwen2` are recognised; other types
    /// (e.g. a multimodal wrapper such as `rexseek_qwen`) need `architecture` given
    /// explicitly. Options that would change the numbers and are not implemented (rope
    /// scaling, MLP biases, activations other than SiLU, a head_dim that differs from
    /// hidden/heads, sliding windows) are errors.
    pub fn from_file(path: &Path, architecture: Option<Architecture>) -> Result<Self, LlmError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LlmError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&text, architecture).map_err(|e| match e {
            LlmError::Config(m) => LlmError::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses the JSON text of a `config.json` (see [`from_file`](Self::from_file)).
    pub fn from_json(text: &str, architecture: Option<Architecture>) -> Result<Self, LlmError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| LlmError::Config(e.to_string()))?;
        let architecture = match (architecture, raw.model_type.as_deref()) {
            (Some(a), _) => a,
            (None, Some("llama")) => Architecture::Llama,
            (None, Some("qwen2")) => Architecture::Qwen2,
            (None, other) => {
                return Err(LlmError::Config(format!(
                    "unsupported model_type {other:?}: expected \"llama\" or \"qwen2\""
                )));
            }
        };
        let unsupported = |what: String| Err(LlmError::Config(format!("unsupported option: {what}")));
        if let Some(scaling) = raw.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            return unsupported(format!("rope_scaling = {scaling}"));
        }
        if raw.mlp_bias == Some(true) {
            return unsupported("mlp_bias = true".into());
        }
        if let Some(act) = raw.hidden_act.as_deref().filter(|a| *a != "silu") {
            return unsupported(format!("hidden_act = {act} (only silu)"));
        }
        if raw.use_sliding_window == Some(true) {
            return unsupported("use_sliding_window = true".into());
        }
        if raw.pretraining_tp.is_some_and(|tp| tp > 1) {
            return unsupported("pretraining_tp > 1".into());
        }
        if raw.num_attention_heads == 0 || !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            return Err(LlmError::Config(format!(
                "hidden_size {} does not split into {} heads",
                raw.hidden_size, raw.num_attention_heads
            )));
        }
        let head_dim = raw.hidden_size / raw.num_attention_heads;
        if raw.head_dim.is_some_and(|h| h != head_dim) {
            return unsupported(format!("head_dim {:?} ≠ hidden_size / heads = {head_dim}", raw.head_dim));
        }
        let kv = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if kv == 0 || !raw.num_attention_heads.is_multiple_of(kv) {
            return Err(LlmError::Config(format!(
                "{} query heads cannot be grouped over {kv} key/value heads",
                raw.num_attention_heads
            )));
        }
        if !head_dim.is_multiple_of(2) {
            return Err(LlmError::Config(format!("head dim {head_dim} must be even for rotary embeddings")));
        }
        let (default_theta, default_eps, default_bias) = match architecture {
            Architecture::Llama => (10000.0, 1e-6, false),
            Architecture::Qwen2 => (10000.0, 1e-6, true),
        };
        Ok(Self {
            architecture,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: kv,
            intermediate_size: raw.intermediate_size,
            rope_theta: raw.rope_theta.unwrap_or(default_theta),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(default_eps),
            vocab_size: raw.vocab_size,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            attention_bias: match architecture {
                Architecture::Llama => raw.attention_bias.unwrap_or(default_bias),
                Architecture::Qwen2 => true,
            },
            bos_token_id: ids(&raw.bos_token_id).first().copied(),
            eos_token_ids: ids(&raw.eos_token_id),
        })
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Vicuna-7B-v1.5 / Llama-2-7B with ChatRex's 104 added tokens (vocab 32104).
    pub fn vicuna_7b() -> Self {
        Self {
            architecture: Architecture::Llama,
            hidden_size: 4096,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 32,
            intermediate_size: 11008,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            vocab_size: 32104,
            tie_word_embeddings: false,
            max_position_embeddings: 4096,
            attention_bias: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }

    /// Qwen2.5-0.5B shapes (benchmarks).
    pub fn qwen25_0_5b() -> Self {
        Self {
            architecture: Architecture::Qwen2,
            hidden_size: 896,
            num_hidden_layers: 24,
            num_attention_heads: 14,
            num_key_value_heads: 2,
            intermediate_size: 4864,
            rope_theta: 1_000_000.0,
            rms_norm_eps: 1e-6,
            vocab_size: 151936,
            tie_word_embeddings: true,
            max_position_embeddings: 32768,
            attention_bias: true,
            bos_token_id: None,
            eos_token_ids: vec![151645],
        }
    }

    /// Qwen2.5-3B with ChatRex tokens (RexSeek-3B).
    pub fn qwen25_3b() -> Self {
        Self {
            architecture: Architecture::Qwen2,
            hidden_size: 2048,
            num_hidden_layers: 36,
            num_attention_heads: 16,
            num_key_value_heads: 2,
            intermediate_size: 11008,
            rope_theta: 1_000_000.0,
            rms_norm_eps: 1e-6,
            vocab_size: 151769,
            tie_word_embeddings: true,
            max_position_embeddings: 32768,
            attention_bias: true,
            bos_token_id: None,
            eos_token_ids: vec![151645],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_qwen_and_llama_and_rejects_unsupported() {
        let q = r#"{"model_type":"qwen2","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,"rope_theta":1e6,"rms_norm_eps":1e-6,"vocab_size":100,"tie_word_embeddings":true,"rope_scaling":null,"eos_token_id":[5,6]}"#;
        let c = LlmConfig::from_json(q, None).unwrap();
        assert_eq!((c.architecture, c.head_dim(), c.num_key_value_heads), (Architecture::Qwen2, 16, 2));
        assert!(c.attention_bias && c.tie_word_embeddings);
        assert_eq!(c.eos_token_ids, vec![5, 6]);
        let scaled = q.replace("\"rope_scaling\":null", "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}");
        assert!(LlmConfig::from_json(&scaled, None).is_err());
        let unknown = q.replace("qwen2", "mistral");
        assert!(matches!(LlmConfig::from_json(&unknown, None), Err(LlmError::Config(m)) if m.contains("mistral")));
        assert!(LlmConfig::from_json(&unknown, Some(Architecture::Llama)).is_ok());
    }
}
