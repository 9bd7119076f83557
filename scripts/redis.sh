#!/usr/bin/env bash
# Debian's redis-server under redis-benchmark, through `hotprobe iterate`.
#
# redis-server is the main executable (stripped: its ~3,200 probeable
# .dynsym functions are found without debug info). Each iteration starts it
# on a free port of 127.0.0.1 (no persistence), waits for `redis-cli ping`,
# runs `redis-benchmark -t set,get -c 8 -n N -q`, and stops it with
# SIGTERM. Before the loop, one bare run (no agent) gives the throughput to
# compare with.
#
# With two CPUs or more, the server runs on CPU 0 and the load generator on
# CPU 1, in the bare run and in the loop (redis's own `server_cpulist`, so
# that no other program runs under the agent; `taskset` for the load). Left
# to the scheduler, redis-server ran 25–35 % slower in some runs than in
# others, every function alike, and which functions end hot moved with it
# (BENCHMARKS.md, "where the fast and slow runs come from").
#
# Usage: scripts/redis.sh [--bare] [--no-pin] [-n REQUESTS] [--iterations N] [--out DIR] [-- iterate flags…]
#   --bare     only the bare run (no agent)
#   --no-pin   leave the server and the load generator to the scheduler
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

requests=100000 iterations=5 bare_only=0 out="" pin=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bare) bare_only=1 ;;
    --no-pin) pin=0 ;;
    -n|--requests) requests="$2"; shift ;;
    --iterations) iterations="$2"; shift ;;
    --out) out="$2"; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--bare] [--no-pin] [-n REQUESTS] [--iterations N] [--out DIR] [-- iterate flags…]" >&2; exit 2 ;;
  esac
  shift
done

need_packages redis-server:redis-server redis-benchmark:redis-tools redis-cli:redis-tools
out="${out:-target/redis/results-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
regex='([0-9.]+) requests per second'
on_server="" on_load=""
if [ "$pin" = 1 ]; then
  if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null && taskset -c 1 true 2>/dev/null; then
    on_server=" --server_cpulist 0" on_load="taskset -c 1 "
  else
    echo "$(basename "$0"): CPUs 0 and 1 (or taskset) not available: server and load run unpinned" >&2
  fi
fi

bare_run() {
  local port pid
  port="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no$on_server >"$out/bare-server.log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true' EXIT
  for _ in $(seq 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  $on_load redis-benchmark -p "$port" -t set,get -c 8 -n "$requests" -q >"$out/bare-load.stdout" 2>&1
  kill -TERM "$pid"
  wait "$pid" || true
  trap - EXIT
  echo "bare (no agent): $(tr '\r' '\n' <"$out/bare-load.stdout" | grep -E "$regex" | sed -E 's/, p50.*//' | paste -sd' ' -)"
}

bare_run
[ "$bare_only" = 1 ] && exit 0

cargo build --release --workspace
bin="$(hotprobe_bin_dir)"
port="$(free_port)"
rm -rf "$out/loop"
"$bin/hotprobe" iterate --iterations "$iterations" --out "$out/loop" --modules main \
  --server "redis-server --bind 127.0.0.1 --port $port --save '' --appendonly no$on_server" \
  --ready-cmd "redis-cli -p $port ping" \
  --load "${on_load}redis-benchmark -p $port -t set,get -c 8 -n $requests -q" \
  --throughput-regex "$regex" "$@"
