//! Broken checkpoints are clear errors that name the problem: truncated files, lying or
//! oversized safetensors headers, pickles that try to call code, missing shards,
//! missing/extra/mis-shaped tensors and unexpected dtypes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use burn::tensor::Device;
use chatrex_common::parity::repo_fixtures;
use chatrex_common::weights::{TensorSource, WeightDType, WeightError, WeightLoader, WeightProblem, open_checkpoint};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatrex-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A valid safetensors file with `a` [2, 3] f32 and `b` [4] i64.
fn valid_file() -> Vec<u8> {
    let header = r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"I64","shape":[4],"data_offsets":[24,56]},"__metadata__":{"k":"v"}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend((0..6).flat_map(|i| (i as f32).to_le_bytes()));
    out.extend((0..4).flat_map(|i| (i as i64).to_le_bytes()));
    out
}

fn with_header(header: &str, data: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data));
    out
}

fn open(bytes: &[u8], name: &str) -> Result<Box<dyn TensorSource>, WeightError> {
    let p = tmp(name);
    std::fs::write(&p, bytes).unwrap();
    open_checkpoint(&p, None)
}

#[test]
fn safetensors_headers_are_validated() {
    assert!(open(&valid_file(), "ok.safetensors").is_ok());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", valid_file()[..40].to_vec()),
        ("shorter than the length field", vec![1, 2, 3]),
        ("header length beyond the file", { let mut v = valid_file(); v[..8].copy_from_slice(&10_000u64.to_le_bytes()); v }),
        ("oversized header length", { let mut v = valid_file(); v[..8].copy_from_slice(&u64::MAX.to_le_bytes()); v }),
        ("invalid JSON", with_header("{not json", 0)),
        ("offsets past the data", with_header(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4)),
        ("shape and bytes disagree", with_header(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8)),
        ("reversed offsets", with_header(r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, 8)),
        ("overflowing shape", with_header(r#"{"a":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,8]}}"#, 8)),
    ];
    for (what, bytes) in cases {
        let r = open(&bytes, "bad.safetensors");
        assert!(matches!(r, Err(WeightError::Corrupt { .. })), "{what}: {:?}", r.err());
    }
}

#[test]
fn sharded_index_problems() {
    let dir = tmp("sharded");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model-1.safetensors"), valid_file()).unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"weight_map":{"a":"model-1.safetensors","b":"model-1.safetensors","c":"model-2.safetensors"}}"#,
    )
    .unwrap();
    assert!(matches!(open_checkpoint(&dir, None), Err(WeightError::MissingShard { .. })));
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"model-1.safetensors","zz":"model-1.safetensors"}}"#).unwrap();
    assert!(matches!(open_checkpoint(&dir, None), Err(WeightError::Corrupt { .. })), "a tensor the shard does not hold");
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"../escape.safetensors"}}"#).unwrap();
    assert!(matches!(open_checkpoint(&dir, None), Err(WeightError::Corrupt { .. })), "shard path leaving the directory");
    assert!(matches!(open_checkpoint(Path::new("/nonexistent/model"), None), Err(WeightError::NotFound(_))));
}

#[test]
fn pickles_that_call_code_are_never_run() {
    let images = repo_fixtures().join("images");
    let marker = Path::new("/tmp/chatrex-pickle-was-executed");
    // Only a refused object: nothing to load, and an error that says why.
    let r = open_checkpoint(&images.join("evil_only.pth"), Some("model"));
    assert!(matches!(r, Err(WeightError::Empty { .. }) | Err(WeightError::Corrupt { .. })), "{:?}", r.err().map(|e| e.to_string()));
    // A real state dict next to the refused object: the tensors load, the object is ignored.
    if let Ok(source) = open_checkpoint(&images.join("evil.pth"), Some("model")) {
        assert_eq!(source.names(), vec!["w".to_string()]);
    }
    assert!(!marker.exists(), "the pickle's code ran");
}

#[test]
fn missing_extra_misshaped_and_wrong_dtype_are_all_reported() {
    let device = Device::flex();
    let source = open(&valid_file(), "report.safetensors").unwrap();
    let vb = WeightLoader::new(source, &device, WeightDType::F32);
    let _ = vb.float::<2>("a", [3, 2]); // wrong shape
    let _ = vb.float::<1>("b", [4]); // integer tensor where a float is expected
    let _ = vb.float::<1>("c", [1]); // missing
    let err = vb.finish("test model").unwrap_err();
    let WeightError::Mismatch { problems, .. } = &err else { panic!("{err}") };
    assert!(problems.iter().any(|p| matches!(p, WeightProblem::ShapeMismatch { key, .. } if key == "a")));
    assert!(problems.iter().any(|p| matches!(p, WeightProblem::BadDType { key, .. } if key == "b")));
    assert!(problems.iter().any(|p| matches!(p, WeightProblem::Missing { key, .. } if key == "c")));
    let text = err.to_string();
    assert!(text.contains("`a`") && text.contains("`b`") && text.contains("`c`"), "{text}");
    // A key nothing consumed is unexpected.
    let source = open(&valid_file(), "extra.safetensors").unwrap();
    let vb = WeightLoader::new(source, &device, WeightDType::F16);
    let _ = vb.float::<2>("a", [2, 3]);
    let err = vb.finish("test model").unwrap_err().to_string();
    assert!(err.contains("unexpected key `b`"), "{err}");
}
