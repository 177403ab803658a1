//! Strict checkpoint loading.
//!
//! A [`TensorSource`] lists the tensors of a checkpoint (safetensors files, sharded or not, or a
//! PyTorch `.pth` pickle) and reads one at a time. A [`WeightLoader`] hands tensors to model
//! constructors by name, converts them to the requested dtype on the way to the device, and
//! records every problem (missing key, wrong shape, unreadable data) instead of stopping at the
//! first, so that [`WeightLoader::finish`] can report them all by name together with the keys
//! that nothing consumed.

mod convert;
mod error;
mod loader;
mod pytorch;
mod random;
mod safetensors_files;
mod source;

pub use convert::{StoredDType, WeightDType, float_data, int_values as int_values_of};
pub use error::{WeightError, WeightProblem};
pub use loader::{LoadReport, WeightLoader};
pub use pytorch::PytorchCheckpoint;
pub use random::RandomWeights;
pub use safetensors_files::SafetensorsFiles;
pub use source::{TensorInfo, TensorSource, open_checkpoint};
