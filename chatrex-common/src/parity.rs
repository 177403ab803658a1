//! Helpers for parity tests against reference fixtures (safetensors + JSON).
//!
//! Fixtures come from two places: `fixtures/` in this repository (made by the scripts in
//! `tools/reference/`) and `../shared/fixtures/` next to the checkout (made by the official
//! code). Both are opened by [`Fixture::open`]; [`compare`] measures the relative error
//! ‖a−b‖/‖b‖ and the max-abs error that the tests assert on.

use crate::weights::{SafetensorsFiles, StoredDType, TensorSource};
use burn::tensor::{Device, Tensor, TensorData};
use std::path::{Path, PathBuf};

/// The repository root (where the workspace `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    // A test binary run away from its build tree (e.g. on a GPU machine) is pointed at the
    // checkout with `CHATREX_REPO_ROOT`.
    if let Ok(root) = std::env::var("CHATREX_REPO_ROOT") {
        return PathBuf::from(root);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or_else(|| here.to_path_buf())
}

/// `fixtures/` of this repository.
pub fn repo_fixtures() -> PathBuf {
    repo_root().join("fixtures")
}

/// The shared fixtures folder: `$CHATREX_SHARED_FIXTURES`, else `../shared/fixtures` beside
/// the checkout. Errors (tests must fail, not skip) when it is not there.
pub fn shared_fixtures() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("CHATREX_SHARED_FIXTURES") {
        return Ok(PathBuf::from(dir));
    }
    let dir = repo_root()
        .parent()
        .map(|p| p.join("shared").join("fixtures"))
        .unwrap_or_default();
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "the shared fixtures are missing: expected {} (or set CHATREX_SHARED_FIXTURES)",
            dir.display()
        ))
    }
}

/// The device tests run on: `$CHATREX_TEST_BACKEND` (`cpu`, `wgpu`, `cuda`), `cpu` by default.
/// `scripts/test-wgpu.sh` runs the parity tests with `wgpu` this way.
///
/// Test helper: a misconfigured backend fails the test loudly.
#[allow(clippy::panic)]
pub fn test_device() -> Device {
    let name = std::env::var("CHATREX_TEST_BACKEND").unwrap_or_else(|_| "cpu".into());
    name.parse::<crate::Backend>()
        .and_then(|b| b.device())
        .unwrap_or_else(|e| panic!("CHATREX_TEST_BACKEND={name}: {e}"))
}

/// A safetensors file of named reference tensors.
pub struct Fixture {
    files: SafetensorsFiles,
}

impl Fixture {
    /// Opens a fixture file.
    pub fn open(path: &Path) -> Result<Self, String> {
        SafetensorsFiles::open_files(&[path.to_path_buf()])
            .map(|files| Self { files })
            .map_err(|e| format!("fixture {}: {e}", path.display()))
    }

    /// Names of all tensors.
    pub fn names(&self) -> Vec<String> {
        self.files.names()
    }

    /// Whether the fixture has `name`.
    pub fn has(&self, name: &str) -> bool {
        self.files.info(name).is_some()
    }

    /// Shape of `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, String> {
        self.files
            .info(name)
            .map(|i| i.shape)
            .ok_or_else(|| format!("fixture has no tensor `{name}`"))
    }

    /// Values of a float tensor as f32 (f64 fixtures are rounded).
    pub fn f32(&self, name: &str) -> Result<Vec<f32>, String> {
        let info = self
            .files
            .info(name)
            .ok_or_else(|| format!("fixture has no tensor `{name}`"))?;
        let bytes = self.files.read(name)?;
        match info.dtype {
            StoredDType::F32 => Ok(bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()),
            StoredDType::F64 => Ok(bytes
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect()),
            StoredDType::U8 => Ok(bytes.iter().map(|&b| f32::from(b)).collect()),
            other => Err(format!("`{name}` is {other}, not a float tensor")),
        }
    }

    /// Values of an integer tensor.
    pub fn i64(&self, name: &str) -> Result<Vec<i64>, String> {
        let info = self
            .files
            .info(name)
            .ok_or_else(|| format!("fixture has no tensor `{name}`"))?;
        let bytes = self.files.read(name)?;
        crate::weights::int_values_of(&bytes, info.dtype)
    }

    /// Raw bytes of a u8 tensor.
    pub fn u8(&self, name: &str) -> Result<Vec<u8>, String> {
        Ok(self.files.read(name)?.into_owned())
    }

    /// A float tensor on `device`, with its stored shape (`D` must match its rank).
    pub fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D>, String> {
        let shape = self.shape(name)?;
        if shape.len() != D {
            return Err(format!("`{name}` has rank {}, asked for {D}", shape.len()));
        }
        Ok(Tensor::from_data(TensorData::new(self.f32(name)?, shape), device))
    }
}

/// How far `actual` is from `expected`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// ‖a − b‖₂ / ‖b‖₂ (or ‖a − b‖₂ when ‖b‖ is 0).
    pub rel: f64,
    /// max |a − b|.
    pub max_abs: f64,
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rel {:.3e}, max abs {:.3e}", self.rel, self.max_abs)
    }
}

/// Compares two equally long slices (f64 accumulation). Lengths must match: a mismatch is
/// reported as infinite error.
pub fn compare(actual: &[f32], expected: &[f32]) -> Comparison {
    if actual.len() != expected.len() {
        return Comparison {
            rel: f64::INFINITY,
            max_abs: f64::INFINITY,
        };
    }
    let (mut diff2, mut ref2, mut max_abs) = (0f64, 0f64, 0f64);
    for (&a, &b) in actual.iter().zip(expected) {
        let d = f64::from(a) - f64::from(b);
        if d.is_nan() {
            return Comparison {
                rel: f64::NAN,
                max_abs: f64::NAN,
            };
        }
        diff2 += d * d;
        ref2 += f64::from(b) * f64::from(b);
        max_abs = max_abs.max(d.abs());
    }
    let rel = if ref2 > 0.0 {
        (diff2 / ref2).sqrt()
    } else {
        diff2.sqrt()
    };
    Comparison { rel, max_abs }
}

/// Host f32 values of any float tensor.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// Compares and returns an error message naming `what` when `rel > tol` (or NaN, or a
/// length mismatch).
pub fn check_close(what: &str, actual: &[f32], expected: &[f32], tol: f64) -> Result<Comparison, String> {
    let c = compare(actual, expected);
    if c.rel <= tol {
        Ok(c)
    } else {
        Err(format!(
            "{what}: {c} exceeds tolerance {tol:.1e} (len {} vs {})",
            actual.len(),
            expected.len()
        ))
    }
}
