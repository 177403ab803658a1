//! # chatrex-upn — the Universal Proposal Network of ChatRex
//!
//! UPN proposes object boxes for ChatRex to retrieve by index. It is a two-stage deformable
//! DETR on a Swin-L backbone whose "class" head is a dot product with one of two learned
//! prompts ([`PromptType::Fine`] for part-level boxes, [`PromptType::Coarse`] for objects).
//! The official implementation needs a CUDA extension; this one runs on every Burn backend
//! with the same numbers (checked against the official code's outputs).
//!
//! ```no_run
//! use chatrex_upn::{PromptType, Upn, UpnConfig};
//! use chatrex_common::image::{ImageLimits, load_rgb};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = chatrex_common::Backend::Cpu.device()?;
//! let upn = Upn::load("upn_large.pth".as_ref(), &UpnConfig::large(), &device)?;
//! let image = load_rgb("photo.jpg".as_ref(), &ImageLimits::default())?;
//! let proposals = upn.propose(&[image], PromptType::Fine)?.remove(0).filter(0.3, 0.8);
//! for p in &proposals.proposals {
//!     println!("{:?} {:.2}", p.bbox, p.score);
//! }
//! # Ok(()) }
//! ```
//!
//! Pipeline (one file per part): [`preprocess`] → [`swin`] → [`neck`] (+ [`position`]) →
//! [`encoder`] ([`msda`]) → [`two_stage`] → [`decoder`] → heads in [`model`] →
//! [`proposals`] ([`nms`]). Images of different sizes share one [`padding`]-masked batch.

pub mod config;
pub mod decoder;
pub mod encoder;
mod error;
pub mod model;
pub mod msda;
#[cfg(feature = "flex")]
mod msda_cpu;
pub mod neck;
pub mod nms;
pub mod padding;
pub mod position;
pub mod preprocess;
pub mod prompt;
pub mod proposals;
pub mod swin;
mod swin_host;
pub mod two_stage;

pub use config::{SwinConfig, UpnConfig};
pub use error::UpnError;
pub use model::{Upn, UpnOutput, UpnTrace};
pub use prompt::PromptType;
pub use proposals::{ImageSize, Proposal, Proposals};
