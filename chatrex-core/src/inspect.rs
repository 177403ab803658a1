//! Checkpoint inspection: every tensor with its dtype, shape and the module that loads it, so
//! a user can diagnose a layout we have not seen.

use chatrex_common::weights::{TensorSource, WeightError, open_checkpoint};
use serde::Serialize;
use std::path::Path;

/// Which module a key belongs to: the first matching `(prefix, description)` wins. Kept as
/// data so it can be checked against real key lists.
pub const MODULE_TABLE: &[(&str, &str)] = &[
    ("backbone.model.backbone.", "UPN Swin backbone"),
    ("input_proj.", "UPN neck (input projections)"),
    ("transformer.encoder.", "UPN deformable encoder"),
    ("transformer.decoder.bbox_embed.", "UPN shared box head"),
    ("bbox_embed.", "UPN shared box head (alias)"),
    ("transformer.decoder.ref_point_head_point.", "UPN unused head (multiplied by 0)"),
    ("transformer.decoder.", "UPN decoder"),
    ("transformer.enc_", "UPN two-stage selection"),
    ("transformer.fine_grained_prompt", "UPN fine-grained prompt"),
    ("transformer.coarse_grained_prompt", "UPN coarse-grained prompt"),
    ("transformer.level_embed", "UPN level embedding"),
    ("transformer.tgt_embed", "UPN decoder targets"),
    ("model.embed_tokens.", "LLM token embeddings"),
    ("model.layers.", "LLM decoder layers"),
    ("model.norm.", "LLM final norm"),
    ("lm_head.", "LLM head"),
    ("vision_tower.vision_tower.vision_model.post_layernorm.", "CLIP post-LN (unused)"),
    ("vision_tower.vision_tower.vision_model.", "CLIP low-res tower"),
    ("vision_tower_aux.vision_stem.", "ConvNeXt stem"),
    ("vision_tower_aux.vision_stages.", "ConvNeXt stages"),
    ("mm_projector.", "image projector"),
    ("mm_object_projector.", "object projector"),
];

/// The module a key maps to, if any.
pub fn module_of(key: &str) -> Option<&'static str> {
    MODULE_TABLE.iter().find(|(p, _)| key.starts_with(p)).map(|(_, d)| *d)
}

/// One tensor of a checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct TensorEntry {
    /// Key.
    pub name: String,
    /// Stored element type.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Module it maps to (`None`: nothing of ours loads it).
    pub module: Option<&'static str>,
}

/// Lists every tensor of a checkpoint (a `.pth` is read under its `model` key if present).
pub fn inspect_checkpoint(path: &Path) -> Result<Vec<TensorEntry>, WeightError> {
    let source = open_checkpoint(path, Some("model"))?;
    Ok(entries(source.as_ref()))
}

/// Lists the tensors of an opened source.
pub fn entries(source: &dyn TensorSource) -> Vec<TensorEntry> {
    source
        .names()
        .into_iter()
        .filter_map(|name| {
            let info = source.info(&name)?;
            Some(TensorEntry {
                module: module_of(&name),
                dtype: info.dtype.to_string(),
                shape: info.shape,
                name,
            })
        })
        .collect()
}
