//! # chatrex-core — ChatRex behind one API
//!
//! [`ChatRex::load`] reads a model directory in the Hugging Face layout of
//! `IDEA-Research/ChatRex-7B` (Llama/Vicuna) or `IDEA-Research/RexSeek-3B` (Qwen2.5) and,
//! optionally, the UPN checkpoint. Requests go image → proposals (UPN or the caller's boxes)
//! → dual encoder (image tokens + one object token per box) → prompt with `<objN><objfeat>`
//! pairs → LLM → grounded answer whose `<objN>` tokens are resolved to the proposal boxes.
//!
//! ```no_run
//! use chatrex_core::{ChatRex, LoadOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = chatrex_common::Backend::Cpu.device()?;
//! let options = LoadOptions { upn: Some("upn_large.pth".into()), ..Default::default() };
//! let model = ChatRex::load("ChatRex-7B".as_ref(), &options, &device)?;
//! let image = chatrex_common::image::load_rgb("photo.jpg".as_ref(), &Default::default())?;
//! let answer = model.detect(&image, &["person", "pigeon"])?;
//! for g in &answer.groundings {
//!     println!("{}: {:?}", g.phrase, g.boxes);
//! }
//! # Ok(()) }
//! ```

pub mod answer;
pub mod chatrex;
pub mod config;
pub mod dump;
mod error;
pub mod hub;
pub mod inspect;
pub mod processor;
pub mod tasks;
pub mod template;

pub use answer::{Answer, GroundedObject, ProposalBox};
pub use chatrex::{AnswerOptions, ChatRex, Conversation, LoadOptions, ProposalOptions, Task};
pub use config::ModelConfig;
pub use error::ChatRexError;
pub use template::{ChatTemplate, Turn};
