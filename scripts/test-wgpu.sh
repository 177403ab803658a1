#!/usr/bin/env bash
# Runs the parity tests on Burn's wgpu backend. On a machine without a GPU this uses Mesa's
# lavapipe (software Vulkan): slow but correct, which proves the backend claim.
#   scripts/test-wgpu.sh [cargo test args...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "installing Mesa's Vulkan drivers (lavapipe)"
  (sudo -n true 2>/dev/null && SUDO=sudo || SUDO=) ; ${SUDO:-} apt-get update -qq && ${SUDO:-} apt-get install -y -qq mesa-vulkan-drivers
fi
export CHATREX_TEST_BACKEND=wgpu
# A target folder of its own: switching Burn's backend features would otherwise rebuild the
# default (flex) build in target/ each time.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/wgpu}"
# The parity suites (not the pure-host unit tests, which do not touch a device).
cargo test --release --workspace --no-default-features --features wgpu \
  --test official_parity --test reference_modules --test reference_models --test reference_towers \
  --test llama_family --test fused_decode "$@"
