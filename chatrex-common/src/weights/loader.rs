//! [`WeightLoader`]: hands checkpoint tensors to model constructors and keeps the books.

use super::convert::{float_data, WeightDType};
use super::{RandomWeights, TensorSource, WeightError, WeightProblem};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

enum Origin {
    Checkpoint(Box<dyn TensorSource>),
    Random(RandomWeights),
}

#[derive(Default)]
struct Books {
    used: BTreeSet<String>,
    problems: Vec<WeightProblem>,
    loaded_bytes: usize,
    /// The dtypes of the tensors placed on the device (host matrices are not counted).
    device_dtypes: Vec<WeightDType>,
}

struct State {
    origin: Origin,
    device: Device,
    books: Mutex<Books>,
    progress: Option<indicatif::ProgressBar>,
}

/// What a successful load did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadReport {
    /// Where the weights came from.
    pub source: String,
    /// Number of checkpoint tensors consumed.
    pub tensors: usize,
    /// Bytes placed on the device.
    pub bytes: usize,
}

/// Reads named tensors for model constructors, scoped by a key prefix.
///
/// Constructors ask for `loader.pp("layers").pp(3).float("qkv.weight", [3 * c, c])`. Every
/// problem (missing key, wrong shape, unreadable bytes) is recorded and an uninitialised
/// placeholder of the requested shape is returned, so that construction continues and
/// [`finish`](Self::finish) can list all problems at once, together with the checkpoint keys
/// that nothing consumed. A model is only handed to the caller after `finish` succeeded.
///
/// Clones share the same books; [`pp`](Self::pp) makes a scoped view.
#[derive(Clone)]
pub struct WeightLoader {
    state: Arc<State>,
    prefix: String,
    dtype: WeightDType,
    /// Whether host linear layers with f32 weights multiply on split bf16 tiles
    /// ([`with_split_f32_products`](Self::with_split_f32_products)).
    split_f32_products: bool,
}

fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}

impl WeightLoader {
    /// A loader over a checkpoint; float weights are converted to `dtype` on `device`.
    pub fn new(source: Box<dyn TensorSource>, device: &Device, dtype: WeightDType) -> Self {
        Self::with_origin(Origin::Checkpoint(source), device, dtype)
    }

    /// A loader that makes up deterministic random weights for every request (benchmarks,
    /// shape tests); `finish` then reports no unexpected keys.
    pub fn random(seed: u64, device: &Device, dtype: WeightDType) -> Self {
        Self::with_origin(Origin::Random(RandomWeights::new(seed)), device, dtype)
    }

    fn with_origin(origin: Origin, device: &Device, dtype: WeightDType) -> Self {
        Self {
            state: Arc::new(State {
                origin,
                device: device.clone(),
                books: Mutex::new(Books::default()),
                progress: None,
            }),
            prefix: String::new(),
            dtype,
            split_f32_products: false,
        }
    }

    /// Shows a progress bar on stderr (counted in checkpoint tensors) while loading.
    /// Call before the first `pp`.
    pub fn with_progress(mut self, message: &str) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            let total = match &state.origin {
                Origin::Checkpoint(source) => source.names().len() as u64,
                Origin::Random(_) => 0,
            };
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} tensors ({elapsed})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(message.to_string());
            state.progress = Some(bar);
        }
        self
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        // A poisoned lock only means another constructor thread panicked; the books stay valid.
        self.state
            .books
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The device tensors are created on.
    pub fn device(&self) -> &Device {
        &self.state.device
    }

    /// The float dtype weights are converted to.
    pub fn dtype(&self) -> WeightDType {
        self.dtype
    }

    /// The same view converting float weights to `dtype` instead (e.g. vision towers in f32
    /// next to an f16 language model in one checkpoint); the books are shared.
    pub fn with_dtype(&self, dtype: WeightDType) -> Self {
        Self {
            state: self.state.clone(),
            prefix: self.prefix.clone(),
            dtype,
            split_f32_products: self.split_f32_products,
        }
    }

    /// The same view, with host linear layers of f32 weights (the CPU backend's) multiplying
    /// on AMX tiles with inputs and weights split in two bf16 parts each (16 significant bits
    /// of each, about 1e-6 of the f32 product; `amx::matmul_split`) where the CPU has tiles —
    /// an opt-in speed for precision trade; without it they run exact f32 products. A view
    /// sharing this loader's books: call [`with_progress`](Self::with_progress) before it.
    pub fn with_split_f32_products(&self, on: bool) -> Self {
        Self { split_f32_products: on, ..self.clone() }
    }

    /// Whether host linear layers with f32 weights loaded through this view multiply on split
    /// bf16 tiles ([`with_split_f32_products`](Self::with_split_f32_products)).
    pub fn split_f32_products(&self) -> bool {
        self.split_f32_products
    }

    /// Whether this loader invents random weights.
    pub fn is_random(&self) -> bool {
        matches!(self.state.origin, Origin::Random(_))
    }

    /// A view whose keys start with `prefix.` (appended to this view's prefix).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        Self {
            state: self.state.clone(),
            prefix: join(&self.prefix, &name.to_string()),
            dtype: self.dtype,
            split_f32_products: self.split_f32_products,
        }
    }

    /// The full key of `name` under this view.
    pub fn key(&self, name: &str) -> String {
        join(&self.prefix, name)
    }

    /// Whether the checkpoint has `name` under this view (always true for random weights).
    pub fn contains(&self, name: &str) -> bool {
        match &self.state.origin {
            Origin::Checkpoint(source) => source.info(&self.key(name)).is_some(),
            Origin::Random(_) => true,
        }
    }

    /// Shape of `name` in the checkpoint, if present.
    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        match &self.state.origin {
            Origin::Checkpoint(source) => source.info(&self.key(name)).map(|i| i.shape),
            Origin::Random(_) => None,
        }
    }

    /// Marks `name` as known and intentionally unused (a buffer, a dead head), if present.
    pub fn ignore(&self, name: &str) {
        let key = self.key(name);
        if self.contains(name) {
            self.books().used.insert(key);
            if let Some(bar) = &self.state.progress {
                bar.inc(1);
            }
        }
    }

    /// Marks every checkpoint key under `prefix` (of this view) as intentionally unused,
    /// returning how many there were (e.g. the vision towers when only the LLM is loaded).
    pub fn ignore_prefix(&self, prefix: &str) -> usize {
        let Origin::Checkpoint(source) = &self.state.origin else {
            return 0;
        };
        let full = self.key(prefix);
        let keys: Vec<String> = source
            .names()
            .into_iter()
            .filter(|k| k == &full || k.starts_with(&format!("{full}.")))
            .collect();
        let n = keys.len();
        self.books().used.extend(keys);
        n
    }

    fn problem(&self, problem: WeightProblem) {
        self.books().problems.push(problem);
    }

    /// Reads the f32 values of `name` with the expected shape (recording any problem).
    fn read_values(&self, name: &str, shape: &[usize], target: WeightDType) -> Option<TensorData> {
        let key = self.key(name);
        match &self.state.origin {
            Origin::Random(random) => {
                let values = random.values(&key, shape);
                let data = TensorData::new(values, shape.to_vec());
                Some(match target {
                    WeightDType::F32 => data,
                    other => data.convert_dtype(other.dtype()),
                })
            }
            Origin::Checkpoint(source) => {
                let Some(info) = source.info(&key) else {
                    self.problem(WeightProblem::Missing {
                        key,
                        expected: shape.to_vec(),
                    });
                    return None;
                };
                if info.shape != shape {
                    self.problem(WeightProblem::ShapeMismatch {
                        key,
                        expected: shape.to_vec(),
                        found: info.shape,
                    });
                    return None;
                }
                if !info.dtype.is_float() {
                    self.problem(WeightProblem::BadDType {
                        key,
                        found: info.dtype.to_string(),
                    });
                    return None;
                }
                let result = source
                    .read(&key)
                    .and_then(|bytes| float_data(&bytes, info.dtype, shape, target));
                match result {
                    Ok(data) => {
                        let mut books = self.books();
                        books.used.insert(key);
                        books.loaded_bytes += data.num_elements() * target.size();
                        drop(books);
                        if let Some(bar) = &self.state.progress {
                            bar.inc(1);
                        }
                        Some(data)
                    }
                    Err(reason) => {
                        self.problem(WeightProblem::Unreadable { key, reason });
                        None
                    }
                }
            }
        }
    }

    /// A float tensor in the model dtype. On a problem, records it and returns an
    /// uninitialised placeholder of the requested shape.
    pub fn float<const D: usize>(&self, name: &str, shape: [usize; D]) -> Tensor<D> {
        self.float_as(name, shape, self.dtype)
    }

    /// A float tensor converted to `dtype` whatever the model dtype (e.g. f32 for parts that
    /// always run in f32).
    pub fn float_as<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        dtype: WeightDType,
    ) -> Tensor<D> {
        let options = (&self.state.device, dtype.dtype());
        {
            let mut books = self.books();
            if !books.device_dtypes.contains(&dtype) {
                books.device_dtypes.push(dtype);
            }
        }
        match self.read_values(name, &shape, dtype) {
            Some(data) => Tensor::from_data(data, options),
            None => Tensor::empty(shape, options),
        }
    }

    /// A `[rows, cols]` matrix kept in host memory in `dtype` (for the CPU backend's
    /// weight-stationary kernels). On a problem, records it and returns zeros.
    pub fn host_matrix(&self, name: &str, rows: usize, cols: usize, dtype: WeightDType) -> crate::host_matmul::HostMatrix {
        use crate::host_matmul::{HostData, HostMatrix};
        let data = self.read_values(name, &[rows, cols], dtype);
        let data = match (dtype, data) {
            (WeightDType::F32, Some(d)) => d.try_into_vec::<f32>().ok().map(HostData::F32),
            (WeightDType::F16, Some(d)) => d.try_into_vec::<half::f16>().ok().map(HostData::F16),
            (WeightDType::BF16, Some(d)) => d.try_into_vec::<half::bf16>().ok().map(HostData::BF16),
            (_, None) => None,
        };
        HostMatrix {
            rows,
            cols,
            data: data.unwrap_or_else(|| HostData::F32(vec![0.0; rows * cols])),
        }
    }

    /// The first of several accepted names that the checkpoint has (e.g. a layer-scale vector
    /// stored as `gamma` or `ramma`); if none is present, the first name is reported missing.
    pub fn float_any<const D: usize>(&self, names: &[&str], shape: [usize; D]) -> Tensor<D> {
        let found = names.iter().find(|n| self.contains(n));
        self.float(found.or(names.first()).copied().unwrap_or(""), shape)
    }

    /// Host f32 values of a tensor (for small tensors that are processed on the host).
    pub fn host_f32(&self, name: &str, shape: &[usize]) -> Vec<f32> {
        let len = shape.iter().product();
        self.read_values(name, shape, WeightDType::F32)
            .and_then(|d| d.try_to_vec::<f32>().ok())
            .unwrap_or_else(|| vec![0.0; len])
    }

    /// Accepts `alias` (under this view) as another name of the full key `canonical`
    /// (weight sharing). When the checkpoint stores the alias, its bytes must equal the
    /// canonical tensor's, otherwise the model would silently differ from the checkpoint.
    pub fn alias(&self, alias: &str, canonical: &str) {
        let Origin::Checkpoint(source) = &self.state.origin else {
            return;
        };
        let key = self.key(alias);
        let (Some(a), Some(c)) = (source.info(&key), source.info(canonical)) else {
            return;
        };
        let same = a == c
            && matches!((source.read(&key), source.read(canonical)), (Ok(x), Ok(y)) if x == y);
        if same {
            self.books().used.insert(key);
            if let Some(bar) = &self.state.progress {
                bar.inc(1);
            }
        } else {
            self.problem(WeightProblem::AliasMismatch {
                key,
                canonical: canonical.to_string(),
            });
        }
    }

    /// Closes the books: `Ok` only if no problem was recorded, every checkpoint tensor
    /// was consumed, ignored or accepted as an alias, and the device computes in every dtype
    /// the tensors were placed in (e.g. bf16 on a Vulkan driver without bf16 products is an
    /// [`WeightError::UnsupportedDType`], not a panic at the first matmul). `model` names the
    /// model in the error.
    pub fn finish(&self, model: &str) -> Result<LoadReport, WeightError> {
        if let Some(bar) = &self.state.progress {
            bar.finish_and_clear();
        }
        let books = self.books();
        if let Some(&dtype) = books
            .device_dtypes
            .iter()
            .find(|d| !self.state.device.supports_dtype(d.float_dtype()))
        {
            return Err(WeightError::UnsupportedDType {
                model: model.to_string(),
                dtype,
                device: format!("{:?}", self.state.device),
            });
        }
        let mut problems = books.problems.clone();
        let (source_name, tensors) = match &self.state.origin {
            Origin::Checkpoint(source) => {
                for name in source.names() {
                    if !books.used.contains(&name) {
                        let shape = source.info(&name).map(|i| i.shape).unwrap_or_default();
                        problems.push(WeightProblem::Unexpected { key: name, shape });
                    }
                }
                (source.describe(), books.used.len())
            }
            Origin::Random(r) => (format!("random weights (seed {})", r.seed), 0),
        };
        if problems.is_empty() {
            Ok(LoadReport {
                source: source_name,
                tensors,
                bytes: books.loaded_bytes,
            })
        } else {
            Err(WeightError::Mismatch {
                model: model.to_string(),
                source_name,
                problems,
            })
        }
    }
}
