//! Multimodal prefill: the prompt's token embeddings with the image and object placeholders
//! replaced by their embeddings (RexSeek's `prepare_inputs_labels_for_multimodal`).

use crate::model::CausalLm;
use crate::tokenizer::{IMAGE_PLACEHOLDER, OBJECT_PLACEHOLDER};
use crate::LlmError;
use burn::tensor::Tensor;

/// Builds the prefill embeddings `[L', hidden]` from `ids` (with placeholders): text spans go
/// through the embedding table, [`IMAGE_PLACEHOLDER`] becomes all rows of `image`
/// (`[N_img, hidden]`), and the k-th [`OBJECT_PLACEHOLDER`] becomes row k of `objects`
/// (`[K, hidden]`). Positions are contiguous; nothing else is inserted.
///
/// Errors when the number of placeholders does not match the embeddings given, or an id is
/// negative but not a placeholder.
pub fn splice_embeddings(
    lm: &CausalLm,
    ids: &[i64],
    image: Option<&Tensor<2>>,
    objects: Option<&Tensor<2>>,
) -> Result<Tensor<2>, LlmError> {
    let images = ids.iter().filter(|&&i| i == IMAGE_PLACEHOLDER).count();
    let object_slots = ids.iter().filter(|&&i| i == OBJECT_PLACEHOLDER).count();
    let given_objects = objects.map(|o| o.dims()[0]).unwrap_or(0);
    if images != usize::from(image.is_some()) {
        return Err(LlmError::Request(format!(
            "the prompt has {images} image placeholders but {} image embeddings were given",
            usize::from(image.is_some())
        )));
    }
    if object_slots != given_objects {
        return Err(LlmError::Request(format!(
            "the prompt has {object_slots} object placeholders but {given_objects} object embeddings were given"
        )));
    }
    if let Some(bad) = ids.iter().find(|&&i| i < 0 && i != IMAGE_PLACEHOLDER && i != OBJECT_PLACEHOLDER) {
        return Err(LlmError::Request(format!("unknown placeholder id {bad}")));
    }
    let dtype = lm.activation_dtype();
    let mut parts: Vec<Tensor<2>> = Vec::new();
    let mut text: Vec<u32> = Vec::new();
    let mut object = 0;
    let flush = |text: &mut Vec<u32>, parts: &mut Vec<Tensor<2>>| -> Result<(), LlmError> {
        if !text.is_empty() {
            parts.push(lm.embed(text)?);
            text.clear();
        }
        Ok(())
    };
    for &id in ids {
        if id == IMAGE_PLACEHOLDER {
            flush(&mut text, &mut parts)?;
            if let Some(img) = image {
                parts.push(img.clone().cast(dtype));
            }
        } else if id == OBJECT_PLACEHOLDER {
            flush(&mut text, &mut parts)?;
            if let Some(obj) = objects {
                parts.push(obj.clone().narrow(0, object, 1).cast(dtype));
            }
            object += 1;
        } else {
            text.push(id as u32);
        }
    }
    flush(&mut text, &mut parts)?;
    if parts.is_empty() {
        return Err(LlmError::Request("empty prompt".into()));
    }
    Ok(Tensor::cat(parts, 0))
}
