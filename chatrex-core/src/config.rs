//! Reading a ChatRex / RexSeek model directory's `config.json` into the configurations of the
//! encoder and the LLM, reporting what is unknown or unverified instead of guessing silently.

use crate::template::ChatTemplate;
use crate::ChatRexError;
use chatrex_encoder::{ClipVisionConfig, ConvNextConfig, DualEncoderConfig, SelectFeature};
use chatrex_llm::{Architecture, LlmConfig};
use serde_json::Value;
use std::path::Path;

/// The hub id of the CLIP tower ChatRex and RexSeek use.
pub const CLIP_L_336: &str = "openai/clip-vit-large-patch14-336";

/// Everything derived from a model directory's `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The decoder.
    pub llm: LlmConfig,
    /// Both vision towers and the projectors.
    pub encoder: DualEncoderConfig,
    /// How prompts are wrapped.
    pub template: ChatTemplate,
    /// `tokenizer_model_max_length`: the multimodal sequence limit, if set.
    pub max_length: Option<usize>,
    /// What the loader noticed (unknown fields, assumptions, unverified conventions).
    pub notes: Vec<String>,
}

/// Fields of the config that are understood (anything else is reported in `notes`).
const KNOWN_FIELDS: &[&str] = &[
    "architectures", "attention_dropout", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id",
    "hidden_act", "hidden_size", "initializer_range", "intermediate_size", "max_position_embeddings",
    "max_window_layers", "model_type", "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
    "rms_norm_eps", "rope_scaling", "rope_theta", "sliding_window", "tie_word_embeddings", "torch_dtype",
    "transformers_version", "use_cache", "use_sliding_window", "vocab_size", "attention_bias", "mlp_bias",
    "pretraining_tp", "head_dim", "mm_hidden_size", "object_hidden_size", "mm_projector_type",
    "mm_vision_select_feature", "mm_vision_select_layer", "mm_vision_tower", "mm_patch_merge_type",
    "image_aspect_ratio", "tokenizer_model_max_length", "tokenizer_padding_side", "use_mm_proj",
    "freeze_mm_mlp_adapter", "mm_projector_lr", "vis_during_training_prob", "vision_tower_aux_depths",
    "vision_tower_aux_dims", "tune_mm_mlp_adapter", "mm_use_im_start_end", "mm_use_im_patch_token",
    "unfreeze_mm_vision_tower", "tokenizer_model_max_length",
];

fn usize_list(v: &Value) -> Option<Vec<usize>> {
    v.as_array()?.iter().map(|x| x.as_u64().map(|n| n as usize)).collect()
}

impl ModelConfig {
    /// The released ChatRex-7B's sizes without reading a directory (Vicuna-7B decoder with
    /// the 104 ChatRex tokens, CLIP-L/14-336 + ConvNeXt-L towers, Vicuna template, 4096-token
    /// limit): for random-weight models in benchmarks and tests.
    pub fn chatrex_7b() -> Self {
        let llm = LlmConfig::vicuna_7b();
        Self {
            encoder: DualEncoderConfig::chatrex(llm.hidden_size),
            llm,
            template: ChatTemplate::Vicuna { system: None },
            max_length: Some(4096),
            notes: vec![],
        }
    }

    /// Reads `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ChatRexError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ChatRexError::MissingFiles(format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_json(&text, dir)
    }

    /// Parses the config text; `dir` resolves a vision tower given as a relative folder.
    pub fn from_json(text: &str, dir: &Path) -> Result<Self, ChatRexError> {
        let v: Value = serde_json::from_str(text).map_err(|e| ChatRexError::Config(e.to_string()))?;
        let mut notes = Vec::new();
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("").to_string();
        let lower = model_type.to_ascii_lowercase();
        let (architecture, template) = if lower.contains("qwen") {
            (Architecture::Qwen2, ChatTemplate::Qwen)
        } else if lower.contains("llama") || lower.contains("vicuna") || lower.contains("chatrex") {
            notes.push(format!(
                "model_type `{model_type}`: Llama decoder with the Vicuna template `USER: {{input}} ASSISTANT:` (ChatRex-7B's exact template is unverified)"
            ));
            (Architecture::Llama, ChatTemplate::Vicuna { system: None })
        } else {
            return Err(ChatRexError::Config(format!(
                "unknown model_type `{model_type}`: expected a Qwen2 (e.g. rexseek_qwen) or Llama (e.g. ChatRex-7B) based model"
            )));
        };
        let llm = LlmConfig::from_json(text, Some(architecture))?;

        let clip = match v.get("mm_vision_tower").and_then(Value::as_str) {
            None => {
                notes.push(format!("no mm_vision_tower: assuming {CLIP_L_336}"));
                ClipVisionConfig::vit_large_patch14_336()
            }
            Some(name) if name.trim_end_matches('/') == CLIP_L_336 => ClipVisionConfig::vit_large_patch14_336(),
            Some(name) => {
                let folder = dir.join(name);
                let config = folder.join("config.json");
                if config.is_file() {
                    ClipVisionConfig::from_file(&config)?
                } else {
                    return Err(ChatRexError::Config(format!(
                        "mm_vision_tower `{name}` is neither {CLIP_L_336} nor a folder with a CLIP config.json (looked for {})",
                        config.display()
                    )));
                }
            }
        };
        let convnext = match (v.get("vision_tower_aux_depths"), v.get("vision_tower_aux_dims")) {
            (Some(d), Some(c)) => ConvNextConfig {
                depths: usize_list(d).ok_or_else(|| ChatRexError::Config("vision_tower_aux_depths must be a list of integers".into()))?,
                dims: usize_list(c).ok_or_else(|| ChatRexError::Config("vision_tower_aux_dims must be a list of integers".into()))?,
            },
            (None, None) => ConvNextConfig::large(),
            _ => return Err(ChatRexError::Config("give both vision_tower_aux_depths and vision_tower_aux_dims or neither".into())),
        };
        let select_layer = v.get("mm_vision_select_layer").and_then(Value::as_i64).unwrap_or(-2);
        let select_feature = match v.get("mm_vision_select_feature").and_then(Value::as_str).unwrap_or("patch") {
            "patch" => SelectFeature::Patch,
            "cls_patch" => SelectFeature::ClsPatch,
            other => return Err(ChatRexError::Config(format!("unknown mm_vision_select_feature `{other}`"))),
        };
        if let Some(p) = v.get("mm_projector_type").and_then(Value::as_str).filter(|p| *p != "mlp2x_gelu") {
            notes.push(format!("mm_projector_type `{p}` ignored: the official builder always builds mlp2x_gelu"));
        }
        let encoder = DualEncoderConfig {
            clip,
            convnext,
            select_layer,
            select_feature,
            llm_hidden_size: llm.hidden_size,
            high_res: 768,
            roi_output_size: 7,
            max_objects: 100,
        };
        encoder.validate()?;
        for (field, derived) in [("mm_hidden_size", encoder.mm_hidden_size()), ("object_hidden_size", encoder.object_hidden_size())] {
            if let Some(given) = v.get(field).and_then(Value::as_u64)
                && given as usize != derived {
                    return Err(ChatRexError::Config(format!(
                        "{field} is {given} but the towers give {derived}"
                    )));
                }
        }
        if let Some(obj) = v.as_object() {
            for key in obj.keys().filter(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
                notes.push(format!("config field `{key}` is not used"));
            }
        }
        Ok(Self {
            llm,
            encoder,
            template,
            max_length: v.get("tokenizer_model_max_length").and_then(Value::as_u64).map(|n| n as usize),
            notes,
        })
    }
}
