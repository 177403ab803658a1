//! The safetensors and PyTorch-pickle readers on arbitrary files.
#![no_main]
use chatrex_common::weights::{PytorchCheckpoint, SafetensorsFiles, TensorSource};
use libfuzzer_sys::fuzz_target;

fn read_all(source: &dyn TensorSource) {
    for name in source.names() {
        let _ = source.info(&name);
        let _ = source.read(&name);
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("chatrex-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.bin");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(s) = SafetensorsFiles::open_files(&[path.clone()]) {
        read_all(&s);
    }
    if let Ok(p) = PytorchCheckpoint::open(&path, Some("model")) {
        read_all(&p);
    }
});
