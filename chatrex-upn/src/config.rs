//! UPN sizes: [`UpnConfig`] with the official Swin-L values in [`UpnConfig::large`].

use crate::UpnError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Swin Transformer backbone sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwinConfig {
    /// Channels of stage 0 (doubled at each later stage).
    pub embed_dim: usize,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Attention heads per stage.
    pub num_heads: Vec<usize>,
    /// Side of the square attention windows (shift = half of it).
    pub window_size: usize,
    /// Side of the patch-embedding convolution.
    pub patch_size: usize,
    /// MLP hidden width / channels.
    pub mlp_ratio: f64,
}

/// Sizes of the whole UPN. The JSON schema is this struct's fields (see the crate docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpnConfig {
    /// Backbone sizes.
    pub backbone: SwinConfig,
    /// Transformer width.
    pub d_model: usize,
    /// Attention heads in the encoder and decoder.
    pub n_heads: usize,
    /// Feature levels (backbone stages plus extra stride-2 levels).
    pub n_levels: usize,
    /// Deformable sampling points per head and level.
    pub n_points: usize,
    /// Feed-forward width.
    pub d_ffn: usize,
    /// Deformable encoder layers.
    pub enc_layers: usize,
    /// Decoder layers.
    pub dec_layers: usize,
    /// Queries (proposals per image).
    pub num_queries: usize,
    /// Temperature of the image sine position embedding (20 in UPN, not 10000).
    pub pos_temperature: f64,
}

impl UpnConfig {
    /// The released `upn_large.pth`: Swin-L (192, \[2,2,18,2\], \[6,12,24,48\], window 12),
    /// d_model 256, 8 heads, 5 levels, 4 points, FFN 2048, 6+6 layers, 900 queries.
    pub fn large() -> Self {
        Self {
            backbone: SwinConfig {
                embed_dim: 192,
                depths: vec![2, 2, 18, 2],
                num_heads: vec![6, 12, 24, 48],
                window_size: 12,
                patch_size: 4,
                mlp_ratio: 4.0,
            },
            d_model: 256,
            n_heads: 8,
            n_levels: 5,
            n_points: 4,
            d_ffn: 2048,
            enc_layers: 6,
            dec_layers: 6,
            num_queries: 900,
            pos_temperature: 20.0,
        }
    }

    /// Reads a config JSON file and validates it.
    pub fn from_file(path: &Path) -> Result<Self, UpnError> {
        let text = std::fs::read_to_string(path).map_err(|e| UpnError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        )))?;
        let config: Self = serde_json::from_str(&text)
            .map_err(|e| UpnError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Number of backbone stages.
    pub fn num_stages(&self) -> usize {
        self.backbone.depths.len()
    }

    /// Channels of each backbone stage.
    pub fn stage_dims(&self) -> Vec<usize> {
        (0..self.num_stages())
            .map(|i| self.backbone.embed_dim << i)
            .collect()
    }

    /// Checks that the sizes are consistent.
    pub fn validate(&self) -> Result<(), UpnError> {
        let bad = |msg: String| Err(UpnError::Config(msg));
        let b = &self.backbone;
        if b.depths.is_empty() || b.depths.len() != b.num_heads.len() {
            return bad(format!(
                "backbone.depths ({}) and backbone.num_heads ({}) must be non-empty and equally long",
                b.depths.len(),
                b.num_heads.len()
            ));
        }
        for (i, (&dim, &heads)) in self.stage_dims().iter().zip(&b.num_heads).enumerate() {
            if heads == 0 || dim % heads != 0 {
                return bad(format!("stage {i}: {dim} channels do not split into {heads} heads"));
            }
        }
        if b.window_size < 2 || b.patch_size == 0 || b.embed_dim == 0 || b.mlp_ratio <= 0.0 {
            return bad("backbone window_size ≥ 2, patch_size, embed_dim and mlp_ratio > 0 are required".into());
        }
        if self.n_levels < self.num_stages() {
            return bad(format!(
                "n_levels ({}) must be at least the number of backbone stages ({})",
                self.n_levels,
                self.num_stages()
            ));
        }
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return bad(format!("d_model {} does not split into {} heads", self.d_model, self.n_heads));
        }
        if !self.d_model.is_multiple_of(32) {
            return bad(format!("d_model {} must be a multiple of 32 (GroupNorm(32) in the neck)", self.d_model));
        }
        if self.n_points == 0 || self.num_queries == 0 || self.d_ffn == 0 || self.dec_layers == 0 {
            return bad("n_points, num_queries, d_ffn and dec_layers must be positive".into());
        }
        if !self.pos_temperature.is_finite() || self.pos_temperature <= 0.0 {
            return bad("pos_temperature must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_matches_the_documented_json() {
        let json = r#"{"backbone": {"embed_dim": 192, "depths": [2,2,18,2], "num_heads": [6,12,24,48], "window_size": 12, "patch_size": 4, "mlp_ratio": 4.0}, "d_model": 256, "n_heads": 8, "n_levels": 5, "n_points": 4, "d_ffn": 2048, "enc_layers": 6, "dec_layers": 6, "num_queries": 900, "pos_temperature": 20.0}"#;
        let parsed: UpnConfig = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, UpnConfig::large());
        assert!(parsed.validate().is_ok());
    }

    #[test]
    fn inconsistent_sizes_are_rejected() {
        let mut c = UpnConfig::large();
        c.d_model = 250;
        assert!(c.validate().is_err());
        let mut c = UpnConfig::large();
        c.backbone.num_heads = vec![6, 12, 24];
        assert!(c.validate().is_err());
        let unknown = r#"{"backbone": {"embed_dim": 1, "depths": [], "num_heads": [], "window_size": 1, "patch_size": 1, "mlp_ratio": 1.0, "extra": 1}}"#;
        assert!(serde_json::from_str::<UpnConfig>(unknown).is_err());
    }
}
