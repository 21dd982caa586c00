#!/usr/bin/env bash
# Builds a profile-guided `firedrill` into target/pgo/firedrill: the same code and the same
# results (trace hashes and summaries are identical), about 7% faster on the full core
# (results/baselines/speed.md). Optional, for long sweeps and capacity studies; the default
# `cargo build --release` stays the supported build.
#
#   benches/pgo.sh            # build, train on shipped scenarios, rebuild with the profile
#   BIN=target/pgo/firedrill benches/golden.sh   # check: same output as the plain build's
#
# Needs rustup's LLVM tools for `llvm-profdata` (`rustup component add llvm-tools`); it exits 2
# with that hint when they are missing. Everything it writes stays under target/pgo/, in target
# folders of its own, so the plain build is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  echo "llvm-profdata not found at $profdata: run 'rustup component add llvm-tools'" >&2
  exit 2
fi
dir=$PWD/target/pgo
rm -rf "$dir/profiles" "$dir/train"
mkdir -p "$dir/profiles" "$dir/train"

echo "== 1/3 instrumented build"
RUSTFLAGS="-Cprofile-generate=$dir/profiles" \
  cargo build --release --quiet --bin firedrill --target-dir "$dir/gen"

echo "== 2/3 training runs (shipped scenarios, one simulated minute each)"
# The full core's paths: cache and ClientTokens (steady-day), workflows and cleanup
# (db-growth), a game day's alerts and runbook, and a chaos seed's faults and invariants.
for s in steady-day db-growth gameday-cache-loss chaos; do
  # Exit 1 is an SLO missed: still a valid training run.
  "$dir/gen/release/firedrill" run "scenarios/$s.toml" --set duration=60s --quiet \
    --out "$dir/train/$s" >/dev/null || [ $? -eq 1 ]
done
"$profdata" merge -o "$dir/merged.profdata" "$dir/profiles"

echo "== 3/3 optimised build"
RUSTFLAGS="-Cprofile-use=$dir/merged.profdata" \
  cargo build --release --quiet --bin firedrill --target-dir "$dir/use"
cp "$dir/use/release/firedrill" "$dir/firedrill"
echo "built $dir/firedrill"
