#!/usr/bin/env bash
# Runs the peer benchmarks and every hub workload in one session, on a release build,
# waiting before each step (up to 10 minutes) for the 1-minute load average to drop
# below 1.0. JSON lines go to target/bench/results.jsonl (the peers' lines first), the
# load before each step to target/bench/load.log.
#
#   bench/run-all.sh            # from the project root, after
#   CARGO_TARGET_DIR=/work/target-bench cargo build --release -p agenthub -p agentd -p agenthub-bench
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS=${REDIS:-redis://127.0.0.1:6379}
OUT=target/bench
mkdir -p "$OUT"
: > "$OUT/results.jsonl"
: > "$OUT/load.log"

wait_idle() {  # $1: what comes next
  for _ in $(seq 1 20); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk "BEGIN { exit !($load < 1.0) }" && break
    sleep 30
  done
  echo "$(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg) before $1" | tee -a "$OUT/load.log" >&2
}

bench() {  # $1: label; the rest: agenthub-bench arguments
  local label=$1; shift
  wait_idle "$label"
  timeout 1800 "$BIN/agenthub-bench" --out "$OUT/results.jsonl" "$@" > /dev/null \
    || echo "FAILED: $label" | tee -a "$OUT/load.log" >&2
}

if [ "${SKIP_PEERS:-0}" != 1 ]; then
  wait_idle peers
  ../shared/peers/run.sh --work-dir target/peers --no-results-md
  cat target/peers/out/results.jsonl >> "$OUT/results.jsonl"
fi

bench "W1 sqlite" w1
bench "W1 postgres" --postgres "$PG" w1
bench "W1 sqlite M=1000" w1 --agents 1000
bench "W1 postgres M=1000" --postgres "$PG" w1 --agents 1000
bench "W2 sqlite" w2 --steps "${W2_STEPS:-20000}"
bench "W2 postgres" --postgres "$PG" w2 --steps "${W2_PG_STEPS:-10000}"
bench "W3" w3 --connections "${W3_CONNECTIONS:-2000,10000,18000}"
bench "W4" --postgres "$PG" --redis-url "$REDIS" w4
bench "W5" w5
bench "W6" w6 --agents "${W6_AGENTS:-10000}"
bench "lost (default lease)" lost
bench "lost (--lease-ms 10000)" lost --lease-ms 10000 --sweep-interval-ms 1000
target/peers/.venv/bin/python ../shared/peers/py/table.py "$OUT/results.jsonl" > "$OUT/table.md"
echo "table: $OUT/table.md" >&2
