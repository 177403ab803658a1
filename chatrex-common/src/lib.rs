//! Shared foundation of chatrex-rs.
//!
//! - [`device`]: run-time backend choice (`cpu`/`wgpu`/`cuda`) with clear errors.
//! - [`weights`]: strict checkpoint loading from safetensors (memory-mapped, sharded) and
//!   PyTorch pickles, with dtype conversion.
//! - [`image`]: decoding with limits, RGB conversion, Pillow-exact resizing.
//! - [`sine`]: the sine-cosine position embedding used by UPN and the object tokenizer.
//! - [`layers`]: inference layers with PyTorch parameter names.
//! - [`host_matmul`], [`in_out_matrix`], [`host_ops`]: matrix products and fused element-wise
//!   kernels on host memory, the CPU backend's fast paths.
//! - [`parity`]: fixture access and error measures for parity tests.

pub mod allocator;
pub mod amx;
pub mod device;
pub mod host_matmul;
pub mod host_ops;
pub mod image;
pub mod in_out_matrix;
pub mod layers;
pub mod parity;
pub mod sine;
pub mod weights;

pub use device::{Backend, BackendError};
