#!/usr/bin/env bash
# Step 1 of action.yml: install buildwatch from INPUT_TARBALL (path or URL, checksum checked)
# into $RUNNER_TEMP and put it on PATH for the job's later steps; without a tarball, use the
# buildwatch already on PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -n "${INPUT_TARBALL:-}" ]; then
    prefix="${RUNNER_TEMP:?RUNNER_TEMP is not set}/buildwatch"
    args=(--prefix "$prefix")
    if [ -n "${INPUT_SHA256:-}" ]; then
        args+=(--sha256 "$INPUT_SHA256")
    fi
    "$here/scripts/install.sh" "${args[@]}" "$INPUT_TARBALL"
    echo "$prefix/bin" >> "${GITHUB_PATH:?GITHUB_PATH is not set}"
    bw="$prefix/bin/buildwatch"
elif bw=$(command -v buildwatch); then
    echo "buildwatch: using $bw"
else
    echo "::error title=buildwatch::no buildwatch to use: set the action's tarball input to a release tarball's path or URL"
    exit 1
fi
"$bw" --version
