#!/usr/bin/env bash
# Installs prerequisites, builds buildwatch and runs it on the bundled example build, which
# reads a fake AWS credential and opens a connection to loopback, then shows what it saw.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="/usr/lib/llvm-22/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --release -p monitor
events=$(mktemp --suffix=.jsonl)
./target/release/buildwatch run --events "$events" -- ./examples/suspicious-build/build.sh
echo
echo "== what the build's process tree did (full stream: $events)"
grep -E '"kind":"(exec|connect)"|\.aws/credentials' "$events" | grep -v '"error":"ENOENT"' \
    | sed -E 's/.*"kind":"([a-z]+)","pid":([0-9]+).*"(path|address)":"([^"]*)".*/  \1 pid \2: \4/'
