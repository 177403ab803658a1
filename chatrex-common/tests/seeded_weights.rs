//! The Python twin of `RandomWeights` (tools/reference/common.py) draws the same numbers,
//! which is what lets the full-width parity fixtures omit their weights.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chatrex_common::parity::{Fixture, compare, repo_fixtures};
use chatrex_common::weights::RandomWeights;

#[test]
fn python_and_rust_generators_agree() {
    let fx = Fixture::open(&repo_fixtures().join("seeded/draws.safetensors")).unwrap();
    for (seed, key, shape) in [
        (7, "a.weight", vec![4, 6]),
        (7, "layer_norm1.weight", vec![5]),
        (7, "fc.bias", vec![9]),
        (3, "big.weight", vec![257, 3]),
    ] {
        let ours = RandomWeights::new(seed).values(key, &shape);
        let c = compare(&ours, &fx.f32(key).unwrap());
        assert!(c.rel < 1e-6, "{key}: {c}");
    }
}
