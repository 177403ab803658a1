//! # chatrex-llm — the language model side of ChatRex
//!
//! - [`config`]: Llama (Vicuna, ChatRex-7B) and Qwen2 (RexSeek, the paper's ChatRex) from a
//!   Hugging Face `config.json`; unsupported options are errors.
//! - [`model`]: the decoder ([`rope`] split-half rotary embeddings, [`attention`] with
//!   grouped KV heads, [`kv_cache`] updated in place), prefill from token ids or embeddings;
//!   on CubeCL devices (features `wgpu`, `cuda`) one-position steps run the fused kernels of
//!   `cube` (see `fused_decode`).
//! - [`tokenizer`]: `tokenizer.json` via the `tokenizers` crate, chunk-wise multimodal
//!   encoding with the `-200`/`-300` placeholders, ChatRex tokens looked up by string.
//! - [`generate`](mod@generate): greedy or sampled decoding ([`sampling`]), stop conditions, streaming,
//!   with [`retrieval`]'s `<objN>` range mask and the optional [`grammar`] constraint.
//! - [`grounding`]: parser of `<ground>…</ground><objects>…</objects>` answers.

pub mod attention;
pub mod config;
#[cfg(feature = "cube")]
pub mod cube;
#[cfg(feature = "cube")]
pub mod fused_decode;
mod error;
pub mod generate;
pub mod grammar;
pub mod grounding;
pub mod kv_cache;
pub mod linear;
pub mod model;
pub mod multimodal;
pub mod retrieval;
pub mod rope;
pub mod sampling;
pub mod tokenizer;

pub use config::{Architecture, LlmConfig};
pub use error::LlmError;
pub use generate::{GenerationOptions, Generation, LogitsFilter, StopReason, generate};
pub use model::{CausalLm, LlmKeys};
pub use sampling::Sampling;
pub use tokenizer::{ChatRexTokens, ChatTokenizer, IMAGE_PLACEHOLDER, OBJECT_PLACEHOLDER};
