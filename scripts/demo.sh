#!/usr/bin/env bash
# The demo: builds hotprobe and the demo service (demo/kvstore.c, a
# key-value store with a write-ahead log, a skip-list memtable, sorted runs
# with compaction, a request parser and its own load generator), then runs
# `hotprobe iterate` on it: iteration 1 probes every function, each next
# one only the hotspots of the one before, until the hot set has settled
# (3–5 iterations). Prints the per-iteration table, the convergence table
# and the final hotspot table; the results (snapshots, probe sets,
# summary.md, flamegraph.svg) stay in target/demo/.
#
# Usage: scripts/demo.sh [extra `hotprobe iterate` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_packages gcc:build-essential cc:build-essential
cargo build --release --workspace
bin="$(hotprobe_bin_dir)"
mkdir -p target/demo
gcc -O2 -g -o target/demo/kvstore demo/kvstore.c
results="target/demo/results-$(date +%Y%m%d-%H%M%S)"
"$bin/hotprobe" iterate --iterations 5 --out "$results" \
  --throughput-regex 'throughput: ([0-9.]+) requests/s' "$@" \
  -- target/demo/kvstore
