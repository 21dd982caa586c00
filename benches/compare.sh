#!/usr/bin/env bash
# Side-by-side speed and memory of `firedrill queue` against the peers in the reference directory:
# SimPy 4.1.2 (reference/simpy_mmc.py) and the lean hand-written Rust loop (reference/des_limit.rs).
#
# Case: M/M/c with c = 8, λ = 7.2, μ = 1 (ρ = 0.9), 10⁶ customers, seed 1.
# Each tool reports its own wall time around the simulation loop only (process start-up, argument
# parsing and result printing are excluded for all three), and customers/s = customers / that time.
# The runs are interleaved (rep 1 of every tool, then rep 2, ...) so machine noise hits all alike;
# the table shows the median of the reps. Quote the ratios, not the absolute figures.
#
# Then peak RSS of `firedrill queue` at 10⁵, 10⁶ and 10⁷ customers: it should stay flat.
#
# Usage, from the repository root:
#   benches/compare.sh
# Environment:
#   FIREDRILL_REFERENCE  reference directory (default ../shared/reference, relative to the repo root)
#   REPS                 repetitions per tool (default 5)
#   CUSTOMERS            customers per speed run (default 1000000)
#   RSS_SIZES            customer counts for the memory table (default "100000 1000000 10000000")
#   WORKDIR              scratch directory for the reference build (default: a new mktemp -d in /tmp)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
REF=${FIREDRILL_REFERENCE:-../shared/reference}
REF=$(cd "$REF" && pwd)
REPS=${REPS:-5}
N=${CUSTOMERS:-1000000}
RSS_SIZES=${RSS_SIZES:-"100000 1000000 10000000"}
WORKDIR=${WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/firedrill-compare.XXXXXX")}
case "$WORKDIR" in
"$ROOT"/*) echo "WORKDIR must be outside the repository" >&2; exit 2 ;;
esac
mkdir -p "$WORKDIR"

LAM=7.2 MU=1.0 C=8 SEED=1
FD="$ROOT/target/release/firedrill"
LEAN="$WORKDIR/des_limit/target/release/des_limit"

say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- (i) firedrill, release
say "== building firedrill (release)"
cargo build --release --quiet --bin firedrill

# ---------------------------------------------------------------- (ii) the lean reference loop
say "== building the lean reference loop in $WORKDIR/des_limit"
mkdir -p "$WORKDIR/des_limit/src"
cp "$REF/des_limit.rs" "$WORKDIR/des_limit/src/main.rs"
cat >"$WORKDIR/des_limit/Cargo.toml" <<'EOF'
[package]
name = "des_limit"
version = "0.1.0"
edition = "2021"

[dependencies]
hdrhistogram = { version = "7.5", default-features = false, optional = true }

[features]
hdr = ["dep:hdrhistogram"]

[profile.release]
codegen-units = 1

[workspace]
EOF
(cd "$WORKDIR/des_limit" && CARGO_TARGET_DIR="$WORKDIR/des_limit/target" \
    cargo build --release --quiet --features hdr)

# ---------------------------------------------------------------- (iii) SimPy
if ! python3 -c 'import simpy' 2>/dev/null; then
    say "== installing simpy 4.1.2"
    python3 -m pip install --quiet simpy==4.1.2
fi
SIMPY_VERSION=$(python3 -c 'import simpy; print(simpy.__version__)')

# Reads one JSON document on stdin and prints the field at a dotted path.
field() {
    python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"
}

OUT="$WORKDIR/runs"
mkdir -p "$OUT"
run_simpy() { python3 "$REF/simpy_mmc.py" --lam $LAM --mu $MU -c $C -n "$N" --seed $SEED; }
run_lean() { "$LEAN" --engine enum --rec "$1" --lam $LAM --mu $MU -c $C -n "$N" --seed $SEED; }
run_fd() {
    "$FD" queue --arrival-rate $LAM --service exp:1 --servers $C --customers "$N" --seed $SEED --json
}

say "== speed: $REPS interleaved reps of each tool, $N customers (SimPy takes a while)"
for r in $(seq 1 "$REPS"); do
    run_fd >"$OUT/firedrill.$r.json"
    run_lean hdr >"$OUT/lean_hdr.$r.json"
    run_lean vec >"$OUT/lean_vec.$r.json"
    run_simpy >"$OUT/simpy.$r.json"
    say "   rep $r/$REPS:" \
        "firedrill $(field customers_per_s <"$OUT/firedrill.$r.json")" \
        "lean(hdr) $(field customers_per_s <"$OUT/lean_hdr.$r.json")" \
        "lean(vec) $(field customers_per_s <"$OUT/lean_vec.$r.json")" \
        "simpy $(field simpy.customers_per_s <"$OUT/simpy.$r.json") customers/s"
done

python3 - "$OUT" "$REPS" "$N" "$SIMPY_VERSION" <<'EOF'
import json, statistics, sys
out, reps, n, simpy_version = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def load(tool, r):
    with open(f"{out}/{tool}.{r}.json") as f:
        return json.load(f)

# (label, file stem, customers/s getter, mean response getter)
tools = [
    ("firedrill queue", "firedrill", lambda d: d["customers_per_s"], lambda d: d["mean_response_s"]),
    ("lean loop (enum, hdr)", "lean_hdr", lambda d: d["customers_per_s"], lambda d: d["mean"]),
    ("lean loop (enum, vec)", "lean_vec", lambda d: d["customers_per_s"], lambda d: d["mean"]),
    (f"SimPy {simpy_version}", "simpy", lambda d: d["simpy"]["customers_per_s"],
     lambda d: d["simpy"]["stats"]["mean"]),
]
med = {}
print(f"M/M/8, lambda = 7.2, mu = 1 (rho = 0.9), {n} customers, seed 1; "
      f"median of {reps} interleaved reps")
print()
print(f"| {'tool':<22} | {'customers/s (median)':>20} | {'min':>12} | {'max':>12} | {'mean response (s)':>17} |")
print(f"|{'-' * 24}|{'-' * 22}:|{'-' * 13}:|{'-' * 13}:|{'-' * 18}:|")
for label, stem, cps, mean in tools:
    docs = [load(stem, r) for r in range(1, reps + 1)]
    xs = [float(cps(d)) for d in docs]
    med[stem] = statistics.median(xs)
    print(f"| {label:<22} | {med[stem]:>20,.0f} | {min(xs):>12,.0f} | {max(xs):>12,.0f} "
          f"| {float(mean(docs[0])):>17.4f} |")
w = load("simpy", 1)["analytic"]["W"]
print(f"\nErlang C mean response W = {w:.4f} s (sanity: every tool simulates the same system)")
print()
print("| ratio (medians)            | value   | goal    |")
print("|----------------------------|--------:|--------:|")
fd = med["firedrill"]
rows = [
    ("firedrill / SimPy", fd / med["simpy"], ">= 100x", fd / med["simpy"] >= 100),
    ("firedrill / lean (hdr)", fd / med["lean_hdr"], ">= 0.70", fd / med["lean_hdr"] >= 0.70),
    ("firedrill / lean (vec)", fd / med["lean_vec"], "", None),
]
for label, v, goal, ok in rows:
    shown = f"{v:.1f}x" if v >= 10 else f"{v:.3f}"
    mark = "" if ok is None else ("  met" if ok else "  MISSED")
    print(f"| {label:<26} | {shown:>7} | {goal:>7} |{mark}")
EOF

# ---------------------------------------------------------------- (iv) peak RSS
# Peak RSS in KiB of the command given as arguments (its stdout is discarded).
peak_rss_kib() {
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -v "$@" 2>"$WORKDIR/time.txt" >/dev/null
        awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORKDIR/time.txt"
    else
        # No GNU time: the kernel's high-water mark of the finished child (same figure as VmHWM).
        python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
    fi
}
if [ ! -x /usr/bin/time ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "== installing GNU time"
    apt-get install -y -qq time >/dev/null 2>&1 || true
fi

say "== peak RSS of firedrill queue"
echo
echo "| customers  | firedrill peak RSS (MiB) | lean loop (enum, hdr) peak RSS (MiB) |"
echo "|-----------:|-------------------------:|-------------------------------------:|"
for n in $RSS_SIZES; do
    fd_kib=$(peak_rss_kib "$FD" queue --arrival-rate $LAM --service exp:1 --servers $C \
        --customers "$n" --seed $SEED --json)
    lean_kib=$(peak_rss_kib "$LEAN" --engine enum --rec hdr -n "$n" --seed $SEED)
    awk -v n="$n" -v a="$fd_kib" -v b="$lean_kib" \
        'BEGIN { printf "| %10d | %24.1f | %36.1f |\n", n, a / 1024, b / 1024 }'
done
echo
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "raw per-run JSON in $OUT"
