#!/usr/bin/env bash
# CPython on a shared libpython through `hotprobe iterate`: the probed module
# is libpython (thousands of functions with symbols), the workload a small
# pure-Python benchmark (demo/pybench.py: JSON, regexes, dicts and lists, a
# recursive function). One bare run first gives the rate to compare with.
#
# Usage: scripts/cpython.sh [--python PATH] [--rounds N] [--iterations N] [--out DIR] [-- iterate flags…]
# The Python must be linked against a shared libpython (pyenv builds with
# --enable-shared; the default is this machine's pyenv 3.11.7).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

python="${PYTHON:-/root/.pyenv/versions/3.11.7/bin/python3.11}" rounds=600 iterations=5 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --iterations) iterations="$2"; shift ;;
    --out) out="$2"; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--python PATH] [--rounds N] [--iterations N] [--out DIR] [-- iterate flags…]" >&2; exit 2 ;;
  esac
  shift
done

python="$(command -v "$python" || true)"
if [ -z "$python" ] || ! ldd "$python" | grep -q 'libpython'; then
  echo "$0: ${python:-the Python} is not linked against a shared libpython; pass --python PATH (e.g. a pyenv build with PYTHON_CONFIGURE_OPTS=--enable-shared)" >&2
  exit 1
fi
out="${out:-target/cpython/results-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
echo "python: $python ($(ldd "$python" | awk '/libpython/ {print $3}'))"
echo "bare (no agent): $("$python" demo/pybench.py "$rounds" 2>&1 >/dev/null)"

cargo build --release --workspace
bin="$(hotprobe_bin_dir)"
rm -rf "$out/loop"
"$bin/hotprobe" iterate --iterations "$iterations" --out "$out/loop" --modules '*libpython*' \
  --throughput-regex 'rounds/s: ([0-9.]+)' "$@" \
  -- "$python" demo/pybench.py "$rounds"
