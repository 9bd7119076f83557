#!/usr/bin/env bash
# How redis's functions' speed moves within one run: redis-server under the
# agent with adaptive off (every call of the probe set's functions timed),
# pinned to CPU 0 under redis-benchmark on CPU 1, and `hotprobe snapshot
# --reset` every 50 ms; prints, per interval, calls, p50 and mean
# inclusive and mean inherent time of the functions named.
#
# Usage: bench/redis_timeline.sh PROBESET [FUNCTION,FUNCTION…]
#   e.g. bench/redis_timeline.sh target/redis/X1/loop/iter-2/probes.toml setGenericCommand,call
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
probeset="$1" names="${2:-setGenericCommand,writeToClient,call}"
bin="$(hotprobe_bin_dir)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
port="$(free_port)"
HOTPROBE_OUTPUT="$out/final-{pid}.json" HOTPROBE_ADAPTIVE=0 HOTPROBE_PROBESET="$probeset" \
  LD_PRELOAD="$bin/libhotprobe.so" redis-server --bind 127.0.0.1 --port "$port" --save '' \
  --appendonly no --server_cpulist 0 >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
"$bin/hotprobe" snapshot --reset-only "$pid" >/dev/null
taskset -c 1 redis-benchmark -p "$port" -t set,get -c 8 -n 100000 -q >"$out/load.txt" 2>&1 &
load=$!
i=0
while kill -0 "$load" 2>/dev/null; do
  sleep 0.05
  i=$((i + 1))
  f="$("$bin/hotprobe" snapshot --reset "$pid" 2>/dev/null)" && mv "$f" "$out/interval-$(printf %04d $i).json"
done
kill -TERM "$pid"
wait "$pid" || true
tr '\r' '\n' <"$out/load.txt" | grep 'per second' || true
python3 - "$out" "$names" <<'PY'
import glob, json, sys
out, names = sys.argv[1], sys.argv[2].split(",")
print("interval | " + " | ".join(f"{n}: calls, p50, mean, mean inherent (ns)" for n in names))
for f in sorted(glob.glob(f"{out}/interval-*.json")):
    probes = {p["name"]: p for p in json.load(open(f))["probes"]}
    cells = []
    for n in names:
        p = probes.get(n)
        if not p or not p["count"]:
            cells.append("-")
            continue
        c = p["count"]
        cells.append(f"{c} {p['p50_inclusive_ns']} {p['inclusive_ns'] / c:.0f} {p['inherent_ns'] / c:.0f}")
    print(f[-9:-5] + " | " + " | ".join(cells))
PY
