//! The module table maps every key of the real official checkpoints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::parity::shared_fixtures;
use chatrex_core::inspect::inspect_checkpoint;

#[test]
fn every_official_key_maps_to_a_module() {
    let shared = shared_fixtures().unwrap();
    for path in [shared.join("upn/upn_tiny.pth"), shared.join("mllm/tiny/model.safetensors")] {
        let entries = inspect_checkpoint(&path).unwrap();
        assert!(!entries.is_empty());
        let unmapped: Vec<_> = entries.iter().filter(|e| e.module.is_none()).map(|e| e.name.clone()).collect();
        assert!(unmapped.is_empty(), "{}: unmapped keys {unmapped:?}", path.display());
    }
}
