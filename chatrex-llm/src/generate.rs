//! The decoding loop: prefill from embeddings, then one token at a time with the KV cache,
//! logits filters (retrieval mask, grammar), repetition penalty, sampling, stop conditions
//! and streaming.

use crate::model::CausalLm;
use crate::sampling::{Sampler, Sampling, apply_repetition_penalty};
use crate::tokenizer::{ChatTokenizer, TextStream};
use crate::LlmError;
use burn::tensor::Tensor;

/// Generation settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerationOptions {
    /// Most tokens to generate (EOS included). 0 returns an empty answer without running.
    pub max_new_tokens: usize,
    /// Greedy or sampled.
    pub sampling: Sampling,
    /// Hugging Face repetition penalty over the generated tokens (> 0; 1.0 = none).
    pub repetition_penalty: Option<f32>,
    /// Stop once the decoded answer contains one of these (kept in the text).
    pub stop_strings: Vec<String>,
    /// Tokens that end generation (excluded from the returned ids).
    pub eos_token_ids: Vec<u32>,
}

impl Default for GenerationOptions {
    /// Greedy, 512 new tokens, no penalty, no stop strings, EOS from the model.
    fn default() -> Self {
        Self {
            max_new_tokens: 512,
            sampling: Sampling::Greedy,
            repetition_penalty: None,
            stop_strings: Vec::new(),
            eos_token_ids: Vec::new(),
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StopReason {
    /// An EOS token was generated.
    Eos,
    /// A stop string appeared.
    StopString,
    /// `max_new_tokens` reached.
    MaxTokens,
    /// The filters left no token allowed.
    NoAllowedToken,
}

/// The result of a generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Generation {
    /// New tokens, EOS excluded.
    pub ids: Vec<u32>,
    /// The EOS token that ended generation, if any.
    pub eos: Option<u32>,
    /// Decoding of `ids` with special tokens kept.
    pub text: String,
    /// Why it stopped.
    pub stop: StopReason,
    /// Logits at the last prompt position (before any filter).
    #[serde(skip)]
    pub first_step_logits: Vec<f32>,
}

impl Generation {
    /// The new tokens as the official `generate` returns them (EOS included when generated).
    pub fn all_ids(&self) -> Vec<u32> {
        self.ids.iter().copied().chain(self.eos).collect()
    }
}

/// Something that restricts the next token (e.g. the `<objN>` range mask, the grammar).
pub trait LogitsFilter {
    /// Sets disallowed logits to −∞.
    fn apply(&mut self, logits: &mut [f32]);
    /// Observes the chosen token.
    fn advance(&mut self, _id: u32) {}
}

impl LogitsFilter for crate::grammar::GroundingGrammar {
    fn apply(&mut self, logits: &mut [f32]) {
        self.mask(logits);
    }
    fn advance(&mut self, id: u32) {
        crate::grammar::GroundingGrammar::advance(self, id);
    }
}

/// A filter from a closure.
pub struct FnFilter<F: FnMut(&mut [f32])>(pub F);

impl<F: FnMut(&mut [f32])> LogitsFilter for FnFilter<F> {
    fn apply(&mut self, logits: &mut [f32]) {
        (self.0)(logits);
    }
}

/// Generates from prompt embeddings `[1, L, hidden]`.
///
/// `on_text` receives decoded text as it becomes available (streaming); the concatenation of
/// everything it receives equals the returned `text`.
pub fn generate(
    lm: &CausalLm,
    tokenizer: &ChatTokenizer,
    prompt: Tensor<3>,
    options: &GenerationOptions,
    filters: &mut [&mut dyn LogitsFilter],
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation, LlmError> {
    options.sampling.validate().map_err(LlmError::Request)?;
    if let Some(p) = options.repetition_penalty
        && !(p.is_finite() && p > 0.0) {
            return Err(LlmError::Request(format!("repetition_penalty must be > 0, got {p}")));
        }
    let [batch, len, _] = prompt.dims();
    if batch != 1 || len == 0 {
        return Err(LlmError::Request(format!("one non-empty prompt expected, got [{batch}, {len}]")));
    }
    let needed = len + options.max_new_tokens;
    let limit = lm.config().max_position_embeddings;
    if needed > limit {
        return Err(LlmError::ContextOverflow { needed, limit });
    }
    let mut eos = options.eos_token_ids.clone();
    if eos.is_empty() {
        eos.extend_from_slice(&lm.config().eos_token_ids);
        eos.extend_from_slice(tokenizer.eos());
    }
    let mut result = Generation {
        ids: Vec::new(),
        eos: None,
        text: String::new(),
        stop: StopReason::MaxTokens,
        first_step_logits: Vec::new(),
    };
    if options.max_new_tokens == 0 {
        return Ok(result);
    }
    let mut cache = lm.new_cache(needed);
    let mut sampler = Sampler::new(options.sampling.clone());
    let mut stream = TextStream::new();
    let hidden = lm.forward(prompt, &mut cache)?;
    let mut logits = lm.last_logits(&hidden)?;
    result.first_step_logits = logits.clone();
    for step in 0..options.max_new_tokens {
        for filter in filters.iter_mut() {
            filter.apply(&mut logits);
        }
        if let Some(p) = options.repetition_penalty {
            apply_repetition_penalty(&mut logits, &result.ids, p);
        }
        let Some(id) = sampler.pick(&logits) else {
            result.stop = StopReason::NoAllowedToken;
            break;
        };
        if eos.contains(&id) {
            result.eos = Some(id);
            result.stop = StopReason::Eos;
            break;
        }
        for filter in filters.iter_mut() {
            filter.advance(id);
        }
        result.ids.push(id);
        if let Some(delta) = stream.push(tokenizer, id)? {
            on_text(&delta);
            result.text.push_str(&delta);
        }
        if options.stop_strings.iter().any(|s| !s.is_empty() && result.text.contains(s.as_str())) {
            result.stop = StopReason::StopString;
            break;
        }
        if step + 1 == options.max_new_tokens {
            break;
        }
        let embeds = lm.embed(&[id])?.unsqueeze::<3>();
        let hidden = lm.forward(embeds, &mut cache)?;
        logits = lm.last_logits(&hidden)?;
    }
    if let Some(delta) = stream.finish(tokenizer)? {
        on_text(&delta);
        result.text.push_str(&delta);
    }
    Ok(result)
}
