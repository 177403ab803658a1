//! Retrieval decoding: the LLM answers with `<objN>` tokens that index the K proposals it
//! was shown; indices N ≥ K point to no box and are masked out of the logits.

use crate::tokenizer::ChatRexTokens;

/// Sets the logits of `<objN>` for every `N ≥ num_boxes` to −∞.
pub fn mask_out_of_range_objects(logits: &mut [f32], tokens: &ChatRexTokens, num_boxes: usize) {
    for &id in tokens.objects.iter().skip(num_boxes) {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
}
