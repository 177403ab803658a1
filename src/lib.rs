//! # chatrex — ChatRex in Rust on Burn
//!
//! A thin facade over the workspace crates:
//!
//! | module | crate | what |
//! | --- | --- | --- |
//! | [`upn`] | `chatrex-upn` | the Universal Proposal Network (usable alone) |
//! | [`encoder`] | `chatrex-encoder` | CLIP + ConvNeXt dual encoder, object tokenizer |
//! | [`llm`] | `chatrex-llm` | Llama/Qwen2 decoder, retrieval decoding, output grammar |
//! | [`common`] | `chatrex-common` | backends, strict weight loading, image I/O |
//! | (root) | `chatrex-core` | [`ChatRex`]: every task behind one API |
//!
//! ```no_run
//! use chatrex::{Backend, ChatRex, LoadOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Backend::Cpu.device()?;
//! let options = LoadOptions { upn: Some("upn_large.pth".into()), ..Default::default() };
//! let model = ChatRex::load("ChatRex-7B".as_ref(), &options, &device)?;
//! let image = chatrex::load_rgb("photo.jpg".as_ref(), &Default::default())?;
//! println!("{}", model.detect(&image, &["person", "pigeon"])?.text);
//! # Ok(()) }
//! ```

pub use chatrex_common as common;
pub use chatrex_core::*;
pub use chatrex_encoder as encoder;
pub use chatrex_llm as llm;
pub use chatrex_upn as upn;

pub use chatrex_common::image::{ImageLimits, load_rgb};
pub use chatrex_common::weights::WeightDType;
pub use chatrex_common::{Backend, BackendError};

/// The device of `backend` for a command-line program, with the name the device gives itself
/// logged at `info` level (when that level is on: naming it opens the device).
pub fn cli_device(backend: Backend) -> Result<burn::tensor::Device, BackendError> {
    let device = backend.device()?;
    if tracing::enabled!(tracing::Level::INFO)
        && let Some(name) = chatrex_common::device::device_name(&device)
    {
        tracing::info!("{backend} device: {name}");
    }
    Ok(device)
}

/// Logging for command-line programs: `tracing` events to stderr, filtered by `RUST_LOG`
/// (default `warn`), so stdout stays free for JSON output.
pub fn init_cli_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
}
