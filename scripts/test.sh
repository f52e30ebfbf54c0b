#!/usr/bin/env bash
# Installs prerequisites, then runs the whole test suite: unit tests, and end-to-end tests that
# load real eBPF (they need root; with CI=true they fail instead of skipping without it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="/usr/lib/llvm-22/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# Started through sudo, buildwatch would run every test's command as the invoking user: each
# test says who its command runs as.
unset SUDO_UID SUDO_GID SUDO_USER SUDO_COMMAND
cargo xtask test
