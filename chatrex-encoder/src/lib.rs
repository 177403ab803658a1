//! # chatrex-encoder — ChatRex's dual vision encoder and object tokenizer
//!
//! - [`preprocess`]: pad to a centred square (CLIP-mean fill), Pillow bicubic to 768, CLIP
//!   normalisation; 336 low-res input by bilinear downsampling of the normalised tensor; boxes
//!   mapped into the padded frame.
//! - [`clip`]: CLIP ViT-L/14-336 (Hugging Face names), penultimate layer, CLS dropped →
//!   `[576, 1024]`.
//! - [`convnext`]: ConvNeXt-L trunk (timm names; layer scale `gamma` or `ramma`) → four
//!   stage maps.
//! - [`clip_host`], [`convnext_host`]: the towers' layers on the CPU backend, in host memory
//!   with `gemm` and fused kernels ([`Kernels`] picks them at load time).
//! - [`dual_encoder`]: fusion `[576, 1024 + 1536]` → `mm_projector` → image tokens, and the
//!   object tokens of [`object_tokenizer`] ([`roi_align`] semantics, memory-lean).
//!
//! ```no_run
//! # use chatrex_encoder::{DualEncoder, DualEncoderConfig, EncoderKeys};
//! # use chatrex_common::weights::{WeightLoader, WeightDType, open_checkpoint};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = chatrex_common::Backend::Cpu.device()?;
//! let vb = WeightLoader::new(open_checkpoint("model_dir".as_ref(), None)?, &device, WeightDType::F32);
//! let encoder = DualEncoder::from_loader(&vb, &DualEncoderConfig::chatrex(4096), &EncoderKeys::default())?;
//! let image = chatrex_common::image::load_rgb("photo.jpg".as_ref(), &Default::default())?;
//! let features = encoder.encode_image(&image)?;
//! let image_tokens = encoder.image_tokens(&features); // [576, 4096]
//! let object_tokens = encoder.object_tokens(&features, &[[10.0, 20.0, 200.0, 180.0]])?; // [1, 4096]
//! # Ok(()) }
//! ```

pub mod clip;
pub mod clip_host;
pub mod config;
pub mod convnext;
pub mod convnext_host;
pub mod dual_encoder;
mod error;
pub mod interpolate;
pub mod kernels;
pub mod object_tokenizer;
pub mod preprocess;
pub mod roi_align;

pub use config::{ClipVisionConfig, ConvNextConfig, DualEncoderConfig, SelectFeature};
pub use dual_encoder::{BoxXyxy, DualEncoder, EncoderKeys, ImageFeatures};
pub use error::EncoderError;
pub use kernels::Kernels;
