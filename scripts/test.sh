#!/usr/bin/env bash
# Runs hotprobe's whole test suite on a fresh machine: installs what the
# tests need (Debian packages, when root), builds the agent and the CLI in
# release, and runs every crate's tests against those builds.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Rust toolchain is not a Debian package we install: rustup provides it.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "${HOME:-}/.cargo/bin/cargo" ]; then
    echo "test.sh: cargo is in ~/.cargo/bin but not on PATH: run '. \"\$HOME/.cargo/env\"' and rerun scripts/test.sh" >&2
  else
    cat >&2 <<'MSG'
test.sh: cargo not found. Install the Rust toolchain with rustup (https://rustup.rs):
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh
then run '. "$HOME/.cargo/env"' (or open a new shell) and rerun scripts/test.sh.
MSG
  fi
  exit 1
fi

need_pkgs=()
for tool in gcc g++ objcopy strip readelf; do
  command -v "$tool" >/dev/null 2>&1 || need_pkgs+=(build-essential binutils)
done
command -v gzip >/dev/null 2>&1 || need_pkgs+=(gzip)  # the CLI tests decode pprof output
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "test.sh: please install: ${need_pkgs[*]} (e.g. sudo apt-get install ${need_pkgs[*]})" >&2
    exit 1
  fi
fi

# Optional: the real-server tests (tests/tests/redis.rs) say they skipped without these.
opt_pkgs=()
command -v redis-server >/dev/null 2>&1 || opt_pkgs+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || opt_pkgs+=(redis-tools)
if [ "${#opt_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${opt_pkgs[@]}"; } ||
      echo "test.sh: could not install ${opt_pkgs[*]}; the redis tests will skip" >&2
  else
    echo "test.sh: ${opt_pkgs[*]} not installed: the redis tests will skip (sudo apt-get install ${opt_pkgs[*]})" >&2
  fi
fi

cargo build --release --workspace
cargo test --release --workspace -- --test-threads="${HOTPROBE_TEST_THREADS:-2}"
