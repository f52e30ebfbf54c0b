#!/usr/bin/env bash
# Installs prerequisites, builds buildwatch and runs it on the bundled example build, which
# reads a fake AWS credential and opens a connection to loopback, then shows what it saw.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="/usr/lib/llvm-22/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --release -p monitor
events=$(mktemp --suffix=.jsonl)
report=$(mktemp --suffix=.json)
status=0
./target/release/buildwatch run --events "$events" --report "$report" \
    -- ./examples/suspicious-build/build.sh || status=$?
# 86: the findings reached the policy's fail_on (high) — what this example is meant to show.
if [ "$status" != 86 ]; then
    echo "demo: expected buildwatch to fail the build on policy (exit 86), got $status" >&2
    exit 1
fi
echo
echo "== buildwatch failed the build (exit 86); JSON report: $report"
echo
echo "== what the build's process tree did (full stream: $events)"
grep -E '"kind":"(exec|connect)"|\.aws/credentials' "$events" | grep -v '"error":"ENOENT"' \
    | sed -E 's/.*"kind":"([a-z]+)","pid":([0-9]+).*"(path|address)":"([^"]*)".*/  \1 pid \2: \4/'
