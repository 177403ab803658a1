//! Fetching a model from the Hugging Face hub into the standard cache (feature `hub`).

use crate::ChatRexError;
use std::path::{Path, PathBuf};

/// The files of a ChatRex / RexSeek model repository, besides the weight shards.
pub const MODEL_FILES: &[&str] = &["config.json", "tokenizer.json", "tokenizer_config.json"];

/// Whether `spec` looks like a hub id (`org/name`) rather than a local path.
pub fn looks_like_hub_id(spec: &str) -> bool {
    let p = Path::new(spec);
    !p.exists() && spec.split('/').count() == 2 && !spec.starts_with('.') && !spec.contains('\\')
}

/// What to do without the network: where each file must go.
pub fn offline_instructions(repo: &str) -> String {
    format!(
        "cannot download {repo}. Without network access, put the files of https://huggingface.co/{repo} \
         ({}, model.safetensors.index.json and every model-*-of-*.safetensors shard it names, or a single \
         model.safetensors) into one directory and pass that directory as --model",
        MODEL_FILES.join(", ")
    )
}

/// Downloads `repo` (with progress bars) into the hub cache and returns its snapshot
/// directory. Files already cached are not downloaded again.
#[cfg(feature = "hub")]
pub fn download_model(repo: &str) -> Result<PathBuf, ChatRexError> {
    use hf_hub::api::sync::ApiBuilder;
    let fail = |e: &dyn std::fmt::Display| ChatRexError::Hub(format!("{e}\n{}", offline_instructions(repo)));
    let api = ApiBuilder::new().with_progress(true).build().map_err(|e| fail(&e))?;
    let model = api.model(repo.to_string());
    let mut snapshot = None;
    for file in MODEL_FILES {
        let path = model.get(file).map_err(|e| fail(&e))?;
        snapshot = path.parent().map(Path::to_path_buf);
    }
    let index = model.get("model.safetensors.index.json");
    let shards: Vec<String> = match index {
        Ok(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| fail(&e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(&e))?;
            let mut names: Vec<String> = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .map(|m| m.values().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            names.sort();
            names.dedup();
            names
        }
        Err(_) => vec!["model.safetensors".to_string()],
    };
    for shard in &shards {
        model.get(shard).map_err(|e| fail(&e))?;
    }
    snapshot.ok_or_else(|| ChatRexError::Hub(offline_instructions(repo)))
}

/// Without the `hub` feature, a hub id is an error that says what to do instead.
#[cfg(not(feature = "hub"))]
pub fn download_model(repo: &str) -> Result<PathBuf, ChatRexError> {
    Err(ChatRexError::Hub(format!(
        "built without the `hub` feature. {}",
        offline_instructions(repo)
    )))
}
