#!/usr/bin/env bash
# Step 2 of action.yml: run INPUT_COMMAND with bash under buildwatch. buildwatch needs root to
# load its kernel programs; a runner user with passwordless sudo (GitHub's hosted runners)
# starts it through sudo, and buildwatch then runs the command as that user again, with its
# HOME and groups, and with the job's environment (sudo -E), so tokens and caches work as
# without buildwatch. Writes the SARIF and JSON report under $RUNNER_TEMP, sets the step's
# outputs, and exits with buildwatch's status: the command's own, or 86 when the policy
# failed the run.
set -uo pipefail
bw=$(command -v buildwatch) || { echo "::error title=buildwatch::buildwatch is not on PATH"; exit 1; }
dir="${RUNNER_TEMP:?RUNNER_TEMP is not set}/buildwatch-out"
mkdir -p "$dir"
sarif="$dir/buildwatch.sarif"
report="$dir/report.json"
args=(--sarif "$sarif" --report "$report" --sarif-category "${INPUT_SARIF_CATEGORY:-buildwatch}")
if [ -n "${INPUT_POLICY:-}" ]; then
    args+=(--policy "$INPUT_POLICY")
fi
if [ -n "${INPUT_FAIL_ON:-}" ]; then
    args+=(--fail-on "$INPUT_FAIL_ON")
fi
if [ -n "${INPUT_ARGS:-}" ]; then
    read -r -a extra <<< "$INPUT_ARGS"
    args+=("${extra[@]}")
fi
if [ "$(id -u)" = 0 ]; then
    "$bw" "${args[@]}" -- bash -e -o pipefail -c "$INPUT_COMMAND"
    status=$?
else
    sudo -E env "PATH=$PATH" "$bw" "${args[@]}" -- bash -e -o pipefail -c "$INPUT_COMMAND"
    status=$?
    sudo chown "$(id -u):$(id -g)" "$dir" "$sarif" "$report" 2>/dev/null || true
fi
verdict=unknown
if [ -f "$report" ]; then
    # The report's verdict block (pretty-printed JSON: one key per line).
    if sed -n '/^  "verdict": {/,/^  }/p' "$report" | grep -q '"failed": true'; then
        verdict=failed
    else
        verdict=passed
    fi
fi
{
    echo "sarif=$sarif"
    echo "report=$report"
    echo "verdict=$verdict"
    echo "exit-status=$status"
} >> "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
exit "$status"
