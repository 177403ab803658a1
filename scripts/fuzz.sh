#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) and reports executions and
# crashes. Not part of CI. Needs cargo-fuzz (installed if missing); works on the stable
# toolchain via RUSTC_BOOTSTRAP (libFuzzer coverage flags), without sanitizers.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"; shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(parse_answer image_decode checkpoint_reader prompt_builder)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
status=0
for t in "${targets[@]}"; do
  mkdir -p corpus/$t
  log=$(mktemp)
  cargo fuzz run "$t" -s none --release -- -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(grep -Eo "stat::number_of_executed_units: *[0-9]+" "$log" | awk '{print $NF}' | tail -1)
  cov=$(grep -Eo "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*" "$log" | tail -1)
  crashes=$(ls artifacts/$t 2>/dev/null | grep -c crash || true)
  echo "$t: ${execs:-?} executions in ${secs}s ($cov), exit $rc, crash files: $crashes"
  [ $rc -ne 0 ] && { tail -30 "$log"; status=1; }
done
exit $status
