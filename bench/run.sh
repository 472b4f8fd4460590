#!/usr/bin/env bash
# The benchmark harness in one command: builds the release binaries, then measures SPEC.md's
# performance table beside same-run references and writes bench/results/<date>.json.
# Everything runs on 127.0.0.1. Takes about 2 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p sigil-http -p sigil-load -p sigil-bench
# 10k websockets on both ends of loopback need file descriptors (raise the hard limit for
# the 100k idle-socket run).
ulimit -n 262144 2>/dev/null || ulimit -n "$(ulimit -Hn)"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/release/harness"
