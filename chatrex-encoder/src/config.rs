//! Sizes of the two towers and the projectors.

use crate::EncoderError;
use serde::{Deserialize, Serialize};
use std::path::Path;

fn default_ln_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "quick_gelu".into()
}
fn default_channels() -> usize {
    3
}

/// A Hugging Face `CLIPVisionConfig` (the fields the vision tower needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipVisionConfig {
    /// Token width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// MLP activation (`quick_gelu` or `gelu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Input channels.
    #[serde(default = "default_channels")]
    pub num_channels: usize,
}

impl ClipVisionConfig {
    /// `openai/clip-vit-large-patch14-336`: hidden 1024, MLP 4096, 24 layers, 16 heads, 336 px,
    /// patch 14, quick-GELU, LayerNorm eps 1e-5.
    pub fn vit_large_patch14_336() -> Self {
        Self {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            image_size: 336,
            patch_size: 14,
            layer_norm_eps: 1e-5,
            hidden_act: "quick_gelu".into(),
            num_channels: 3,
        }
    }

    /// Reads a CLIP `config.json`: either a vision config (`clip_vision_model`) or a full CLIP
    /// config with a `vision_config` section.
    pub fn from_file(path: &Path) -> Result<Self, EncoderError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EncoderError::Config(format!("cannot read {}: {e}", path.display())))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| EncoderError::Config(format!("{}: {e}", path.display())))?;
        let section = value.get("vision_config").cloned().unwrap_or(value);
        let config: Self = serde_json::from_value(section)
            .map_err(|e| EncoderError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<(), EncoderError> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(EncoderError::Config(format!(
                "CLIP image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            )));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(EncoderError::Config(format!(
                "CLIP hidden_size {} does not split into {} heads",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if !matches!(self.hidden_act.as_str(), "quick_gelu" | "gelu") {
            return Err(EncoderError::Config(format!(
                "unsupported CLIP hidden_act `{}` (quick_gelu or gelu)",
                self.hidden_act
            )));
        }
        if self.num_channels != 3 {
            return Err(EncoderError::Config("CLIP num_channels must be 3".into()));
        }
        Ok(())
    }
}

/// timm ConvNeXt trunk sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvNextConfig {
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Channels per stage.
    pub dims: Vec<usize>,
}

impl ConvNextConfig {
    /// ConvNeXt-Large (LAION `convnext_large_d_320` trunk): depths \[3,3,27,3\],
    /// dims \[192,384,768,1536\].
    pub fn large() -> Self {
        Self {
            depths: vec![3, 3, 27, 3],
            dims: vec![192, 384, 768, 1536],
        }
    }
}

/// Which CLIP tokens are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectFeature {
    /// Drop the CLS token (`"patch"`, ChatRex/RexSeek).
    Patch,
    /// Keep it (`"cls_patch"`).
    ClsPatch,
}

/// Everything the dual encoder needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DualEncoderConfig {
    /// Low-resolution tower.
    pub clip: ClipVisionConfig,
    /// High-resolution tower.
    pub convnext: ConvNextConfig,
    /// Index into CLIP's hidden states (`-2` = penultimate layer).
    pub select_layer: i64,
    /// Which CLIP tokens are kept.
    pub select_feature: SelectFeature,
    /// Width of the LLM the projectors feed.
    pub llm_hidden_size: usize,
    /// Side of the padded square the high-resolution tower sees (768).
    pub high_res: usize,
    /// RoIAlign output side (7).
    pub roi_output_size: usize,
    /// Most boxes per image (100: the `<obj0>`..`<obj99>` tokens).
    pub max_objects: usize,
}

impl DualEncoderConfig {
    /// ChatRex-7B / RexSeek: CLIP-L/14-336, ConvNeXt-L at 768, select layer −2, patch
    /// tokens, RoI 7, at most 100 objects, projecting to `llm_hidden_size`.
    pub fn chatrex(llm_hidden_size: usize) -> Self {
        Self {
            clip: ClipVisionConfig::vit_large_patch14_336(),
            convnext: ConvNextConfig::large(),
            select_layer: -2,
            select_feature: SelectFeature::Patch,
            llm_hidden_size,
            high_res: 768,
            roi_output_size: 7,
            max_objects: 100,
        }
    }

    /// Input width of `mm_projector`: CLIP hidden + last ConvNeXt stage.
    pub fn mm_hidden_size(&self) -> usize {
        self.clip.hidden_size + self.convnext.dims.last().copied().unwrap_or(0)
    }

    /// Input width of `mm_object_projector` (= RoI feature width): sum of ConvNeXt stages.
    pub fn object_hidden_size(&self) -> usize {
        self.convnext.dims.iter().sum()
    }

    /// Number of CLIP encoder layers actually run (`hidden_states[select_layer]`).
    pub fn clip_layers_used(&self) -> usize {
        let n = self.clip.num_hidden_layers as i64;
        let idx = if self.select_layer < 0 { n + 1 + self.select_layer } else { self.select_layer };
        idx.clamp(0, n) as usize
    }

    /// Image tokens per image.
    pub fn num_image_tokens(&self) -> usize {
        let g = self.clip.grid();
        g * g + usize::from(self.select_feature == SelectFeature::ClsPatch)
    }

    /// Checks that the two towers' token grids line up and the sizes are usable.
    pub fn validate(&self) -> Result<(), EncoderError> {
        self.clip.validate()?;
        let c = &self.convnext;
        if c.depths.len() != 4 || c.dims.len() != 4 {
            return Err(EncoderError::Config("ConvNeXt needs 4 stages".into()));
        }
        if !self.high_res.is_multiple_of(32) {
            return Err(EncoderError::Config(format!("high_res {} must be a multiple of 32", self.high_res)));
        }
        let (g_low, g_high) = (self.clip.grid(), self.high_res / 32);
        if g_low != g_high {
            return Err(EncoderError::Config(format!(
                "CLIP grid {g_low}×{g_low} and ConvNeXt grid {g_high}×{g_high} must match to be concatenated"
            )));
        }
        if self.select_feature == SelectFeature::ClsPatch {
            return Err(EncoderError::Config(
                "select_feature cls_patch cannot be fused with the ConvNeXt grid (577 vs 576 tokens)".into(),
            ));
        }
        let n = self.clip.num_hidden_layers as i64;
        if self.select_layer < -(n + 1) || self.select_layer > n {
            return Err(EncoderError::Config(format!(
                "select_layer {} out of range for {n} CLIP layers",
                self.select_layer
            )));
        }
        if !self.object_hidden_size().is_multiple_of(4) {
            return Err(EncoderError::Config(format!(
                "the ConvNeXt channels sum to {}, which must be divisible by 4 (box position embedding)",
                self.object_hidden_size()
            )));
        }
        if self.roi_output_size == 0 || self.max_objects == 0 || self.llm_hidden_size == 0 {
            return Err(EncoderError::Config("roi_output_size, max_objects and llm_hidden_size must be positive".into()));
        }
        Ok(())
    }
}
