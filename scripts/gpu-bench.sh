#!/usr/bin/env bash
# GPU benchmarks and CPU-parity checks, in two steps because the GPU machine has no Rust
# toolchain and no network:
#
#   scripts/gpu-bench.sh build          # here: builds examples/backend_check with CUDA (NVRTC)
#                                       # and, separately, twice with wgpu (WGSL kernels, and
#                                       # SPIR-V ones as an experiment) into gpu-bench/
#                                       # (binaries, Llama-2 tokenizer, Vulkan loader packages)
#   scripts/gpu-bench.sh run [OUTDIR]   # on the GPU machine, from the repository root:
#                                       # nvidia-smi, then every stage on `cuda` (the fused
#                                       # decode kernels against Burn's tensor ops first), each
#                                       # timed and compared with the CPU backend on the same
#                                       # weights; then the same on `wgpu`, with WGSL kernels
#                                       # and with SPIR-V ones (Burn's feature `vulkan`)
#                                       # (CHATREX_GPU_WGPU=0 skips both, CHATREX_GPU_VULKAN=0
#                                       # the second, CHATREX_GPU_CUDA=0 skips `cuda`)
#
# The CUDA build compiles kernels with NVRTC (`cuda-nvrtc` feature) because cubecl's default
# LLVM/NVPTX compiler needs an LLVM bundle that its build script downloads. With DOCS_RS=1 that
# download is skipped and the (never called) LLVM entry points stay unresolved, hence the
# linker flag and a stub library (every unresolved symbol aborts if ever called), preloaded
# at run time because Rust binaries bind all symbols at start; the NVRTC path never calls them.
# The binaries travel xz-compressed (the device tool carries at most 64 MiB).
# Results: OUTDIR/backend_check_{cuda,wgpu,vulkan}.json and .log, wgpu_nvidia_smi.csv (copy
# the table into BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
step="${1:-run}"
case "$step" in
build)
  export DOCS_RS=1 CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
  export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,--unresolved-symbols=ignore-all"
  cargo build --release --no-default-features --features flex,cuda-nvrtc --example backend_check \
    --target-dir target/gpu
  mkdir -p gpu-bench/llama2
  cp target/gpu/release/examples/backend_check gpu-bench/
  strip gpu-bench/backend_check
  nm -D --undefined-only gpu-bench/backend_check | awk '$1 == "U" && $2 !~ /@/ {print $2}' |
    while read -r sym; do echo "void $sym(void) { __builtin_trap(); }"; done > gpu-bench/unresolved_stubs.c
  cc -shared -fPIC -o gpu-bench/libunresolved_stubs.so gpu-bench/unresolved_stubs.c
  xz -T2 -6 -f gpu-bench/backend_check
  # The same example for `wgpu` (Vulkan through the GPU's driver), built on its own: a binary
  # with both backends reaches the stubbed LLVM entry points on `wgpu` and traps.
  # Twice: WGSL kernels (feature `wgpu`) and, as an experiment, SPIR-V kernels (Burn's own
  # `vulkan` feature, which can reach the tensor cores through cooperative-matrix instructions;
  # not offered as a feature of ours: every parity suite crashed with it on Mesa 22.3's lavapipe,
  # BENCHMARKS.md). CHATREX_GPU_VULKAN=0 skips the second.
  for feature in wgpu vulkan; do
    if [ "$feature" = vulkan ] && [ "${CHATREX_GPU_VULKAN:-1}" = 0 ]; then continue; fi
    features="flex,wgpu"
    if [ "$feature" = vulkan ]; then features="flex,wgpu,burn/vulkan"; fi
    env -u RUSTFLAGS -u DOCS_RS -u CUDARC_CUDA_VERSION \
      cargo build --release --no-default-features --features "$features" --example backend_check \
      --target-dir "target/gpu-$feature"
    cp "target/gpu-$feature/release/examples/backend_check" "gpu-bench/backend_check_$feature"
    strip "gpu-bench/backend_check_$feature"
    xz -T2 -6 -f "gpu-bench/backend_check_$feature"
  done
  # GPU images often lack the Vulkan loader and the GL dispatch libraries that NVIDIA's Vulkan
  # driver (libGLX_nvidia) links against: their Debian packages travel in gpu-bench/vulkan-debs
  # and `run` unpacks them (without them wgpu found no adapter on the H100 machine).
  mkdir -p gpu-bench/vulkan-debs /tmp/gpu-bench-apt/partial
  apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/gpu-bench-apt)
  if apt-get "${apt_opts[@]}" update >/dev/null && (cd gpu-bench/vulkan-debs &&
    apt-get "${apt_opts[@]}" download libvulkan1 libglvnd0 libglx0 libgl1 libegl1 libopengl0 libgles2); then
    ls gpu-bench/vulkan-debs
  else
    echo "warning: could not download the Vulkan loader packages; wgpu may find no adapter there" >&2
  fi
  tok="${CHATREX_SHARED_FIXTURES:-../shared/fixtures}/tokenizers/llama2"
  cp "$tok/tokenizer.json" "$tok/tokenizer_config.json" gpu-bench/llama2/
  ls -la gpu-bench gpu-bench/llama2
  ;;
run)
  out="${2:-${OUT:-gpu-bench/out}}"
  mkdir -p "$out"
  if [ -z "${CUDA_PATH:-}" ]; then
    if [ -d /usr/local/cuda ]; then CUDA_PATH=/usr/local/cuda
    elif command -v nvcc >/dev/null; then CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")"); fi
  fi
  export CUDA_PATH="${CUDA_PATH:-}"
  nvrtc=$(find "${CUDA_PATH:-/usr/local/cuda}" /usr/lib /usr/local /opt -name 'libnvrtc.so*' 2>/dev/null | head -1 || true)
  libcuda=$(find /usr/lib /usr/local/nvidia /usr/lib64 -name 'libcuda.so*' 2>/dev/null | head -1 || true)
  for lib in "$nvrtc" "$libcuda"; do
    if [ -n "$lib" ]; then export LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}"; fi
  done
  echo "CUDA_PATH=$CUDA_PATH nvrtc=$nvrtc libcuda=$libcuda"
  if [ -f gpu-bench/backend_check.xz ]; then xz -dkf gpu-bench/backend_check.xz; fi
  export LD_PRELOAD="$PWD/gpu-bench/libunresolved_stubs.so"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  nproc | sed 's/^/cpu threads: /' | tee -a "$out/gpu.txt"
  # The `fused` stage reads the small reference models of fixtures/llm in this checkout.
  export CHATREX_REPO_ROOT="$PWD"
  if [ "${CHATREX_GPU_CUDA:-1}" != 0 ]; then
    ./gpu-bench/backend_check --backend cuda --tokenizer gpu-bench/llama2 ${CHATREX_GPU_STAGES:+--stages "$CHATREX_GPU_STAGES"} \
      --json "$out/backend_check_cuda.json" 2>&1 | tee "$out/backend_check_cuda.log"
  fi
  # Then `wgpu`, unless CHATREX_GPU_WGPU=0; a machine without a Vulkan driver reports the error
  # in the log and the script still succeeds. The Vulkan loader and GL dispatch packages of
  # `build` are unpacked where libraries are missing (with the loader alone NVIDIA's ICD,
  # libGLX_nvidia, did not load on the H100 machine: "no adapter found"), and the NVIDIA
  # driver's ICD is named. nvidia-smi is
  # sampled every 2 s meanwhile, which shows whether the run is on the GPU (wgpu falls back to
  # a software adapter where one exists).
  if [ "${CHATREX_GPU_WGPU:-1}" != 0 ] && [ -f gpu-bench/backend_check_wgpu.xz ]; then
    missing_libs=$(for lib in libvulkan.so.1 libGLdispatch.so.0 libGLX.so.0; do
      ldconfig -p | grep -q "$lib" || echo "$lib"; done)
    if [ -n "$missing_libs" ] && compgen -G "gpu-bench/vulkan-debs/*.deb" >/dev/null; then
      echo "unpacking the Vulkan loader packages (missing: $(echo $missing_libs))"
      for f in gpu-bench/vulkan-debs/*.deb; do dpkg -x "$f" /; done
      ldconfig
    fi
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
    echo "libvulkan: $(ldconfig -p | grep -c libvulkan.so.1) entries; VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 2 \
      > "$out/wgpu_nvidia_smi.csv" 2>&1 &
    smi=$!
    # One process per stage (a stage that fails on this backend, or runs past
    # CHATREX_GPU_STAGE_TIMEOUT seconds, leaves the others measured); the per-stage JSON lists
    # are merged into one file after every stage, so that a run cut short keeps what it
    # measured. Each decompressed binary is removed after its run (the binaries are far larger
    # than what the device tool carries back and forth).
    stages="${CHATREX_GPU_STAGES:-fused,llm,detect,upn,clip,convnext,objects}"
    for feature in wgpu vulkan; do
      bin="gpu-bench/backend_check_$feature"
      if [ ! -f "$bin.xz" ] || { [ "$feature" = vulkan ] && [ "${CHATREX_GPU_VULKAN:-1}" = 0 ]; }; then
        continue
      fi
      xz -dkf "$bin.xz"
      parts=$(mktemp -d)
      log="$out/backend_check_$feature.log"
      : > "$log"
      for stage in ${stages//,/ }; do
        # `objects` runs (and reports) `convnext` too.
        if [ "$stage" = convnext ] && [[ ",$stages," == *,objects,* ]]; then continue; fi
        env -u LD_PRELOAD timeout "${CHATREX_GPU_STAGE_TIMEOUT:-600}" "./$bin" \
          --backend wgpu --tokenizer gpu-bench/llama2 --stages "$stage" --json "$parts/$stage.json" 2>&1 |
          tee -a "$log" || echo "$feature stage $stage failed or timed out (exit $?)" | tee -a "$log"
        python3 -c 'import json, sys; print(json.dumps([r for f in sys.argv[1:] for r in json.load(open(f))], indent=2))' \
          $(for s in ${stages//,/ }; do [ -f "$parts/$s.json" ] && echo "$parts/$s.json"; done) \
          > "$out/backend_check_$feature.json" || true
      done
      rm -f "$bin"
    done
    kill "$smi" 2>/dev/null || true
  fi
  ;;
*)
  echo "usage: $0 build | run [OUTDIR]" >&2
  exit 2
  ;;
esac
