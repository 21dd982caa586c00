#!/usr/bin/env bash
# Prints the trace hash and a digest of summary.json (wall-clock fields removed) of every shipped
# scenario on seed 1, plus a few chaos seeds (their `swarm trace` digest): run it before and
# after an optimisation that must not change results, and diff the two outputs
# (`benches/golden.sh > /tmp/before`). The `results` digest leaves out the trace hash and the
# event count too: it stays the same when a change only drops events that have no effect (a
# reply nobody waits for). BIN=path runs that binary instead of building this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet
  bin=target/release/firedrill
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for s in scenarios/*.toml; do
  name=$(basename "$s" .toml)
  [ "$name" = chaos ] && continue
  "$bin" run "$s" --quiet --out "$out/$name" >/dev/null 2>&1 || true
  python3 - "$out/$name/summary.json" "$name" <<'PY'
import hashlib, json, sys
s = json.load(open(sys.argv[1]))
s.pop("wall", None)
digest = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:16]
trace = s.pop("trace_hash", None)
s.pop("events", None)
results = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:16]
print(sys.argv[2], "trace", trace, "summary", digest, "results", results)
PY
done
"$bin" chaos scenarios/chaos.toml --seeds 1..6 --jobs 1 --out "$out/chaos" 2>&1 | grep -E 'trace|seed' | sed 's/[0-9.]* s wall//; s/[0-9.]*s wall//' | head -20
