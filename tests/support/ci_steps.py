"""Run a CI definition's steps locally, the way the CI system would, for the tests.

    ci_steps.py github ACTION_YML RESULT_JSON [NAME=VALUE ...]
        Runs a composite action's steps with the given inputs: `if:` (the `inputs.X == '…'` /
        `!= '…'` forms), `${{ inputs.X }}` and `${{ steps.ID.outputs.Y }}` in env, run and
        working-directory, GITHUB_ACTION_PATH, a fresh GITHUB_OUTPUT and GITHUB_PATH file per
        step (outputs collected, PATH additions applied to later steps), bash with
        `--noprofile --norc -eo pipefail` on a script file, as the runner does. Steps after a
        failing one are skipped. The environment (GITHUB_WORKSPACE, RUNNER_TEMP,
        GITHUB_STEP_SUMMARY, ...) is the caller's.

    ci_steps.py gitlab TEMPLATE_YML RESULT_JSON JOB_KEY [NAME=VALUE ...]
        Runs the job template's before_script and script as one shell script (as GitLab's
        shell executor does), with the template's variables, then the given ones.

With CI_STEPS_USER=NAME in the environment, each step runs as that user (as the runner
service runs jobs as its own user), with the environment given here.

RESULT_JSON gets {"status": N, "outputs": {...}, "steps": [{"name", "status"}]}. The step
output passes through to this process's stdout and stderr. A stand-in for the CI runner,
which cannot run here; the steps themselves are the real ones.
"""

import json
import os
import pwd
import re
import subprocess
import sys
import tempfile

import yaml

EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def evaluate(expr, inputs, steps):
    m = re.fullmatch(r"inputs\.([\w-]+)", expr)
    if m:
        return inputs.get(m.group(1), "")
    m = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr)
    if m:
        return steps.get(m.group(1), {}).get(m.group(2), "")
    m = re.fullmatch(r"github\.action_path", expr)
    if m:
        return os.environ["GITHUB_ACTION_PATH"]
    raise SystemExit(f"ci_steps.py: unsupported expression ${{{{ {expr} }}}}")


def substitute(text, inputs, steps):
    return EXPR.sub(lambda m: evaluate(m.group(1), inputs, steps), str(text))


def condition(cond, inputs, steps):
    if cond is None:
        return True
    cond = EXPR.sub(lambda m: m.group(1), str(cond)).strip()
    m = re.fullmatch(r"inputs\.([\w-]+)\s*(==|!=)\s*'([^']*)'", cond)
    if not m:
        raise SystemExit(f"ci_steps.py: unsupported if: {cond}")
    value = inputs.get(m.group(1), "")
    return (value == m.group(3)) == (m.group(2) == "==")


def github(action_yml, result, args):
    action = yaml.safe_load(open(action_yml))
    action_path = os.path.dirname(os.path.abspath(action_yml))
    inputs = {k: str(v.get("default", "")) for k, v in action.get("inputs", {}).items()}
    for a in args:
        k, _, v = a.partition("=")
        if k not in inputs:
            raise SystemExit(f"ci_steps.py: the action has no input {k}")
        inputs[k] = v
    steps, record, status = {}, [], 0
    env = dict(os.environ, GITHUB_ACTION_PATH=action_path)
    user = env.pop("CI_STEPS_USER", None)
    workspace = env["GITHUB_WORKSPACE"]
    for step in action["runs"]["steps"]:
        name = step.get("name", step.get("id", "step"))
        if status != 0 or not condition(step.get("if"), inputs, steps):
            record.append({"name": name, "status": None})
            continue
        with tempfile.TemporaryDirectory(dir=env.get("RUNNER_TEMP")) as d:
            out_file, path_file = os.path.join(d, "output"), os.path.join(d, "path")
            script = os.path.join(d, "step.sh")
            for f in (out_file, path_file):
                open(f, "w").close()
            open(script, "w").write(substitute(step["run"], inputs, steps))
            if user:
                pw = pwd.getpwnam(user)
                for f in (d, out_file, path_file, script):
                    os.chown(f, pw.pw_uid, pw.pw_gid)
            step_env = dict(env, GITHUB_OUTPUT=out_file, GITHUB_PATH=path_file)
            for k, v in (step.get("env") or {}).items():
                step_env[k] = substitute(v, inputs, steps)
            cwd = os.path.join(workspace, substitute(step.get("working-directory", "."), inputs, steps))
            sys.stdout.flush()
            argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail", script]
            if user:
                argv = ["runuser", "-u", user, "--", "env", "-i"] + [
                    f"{k}={v}" for k, v in step_env.items()
                ] + argv
            rc = subprocess.call(argv, env=step_env, cwd=cwd)
            outputs = {}
            for line in open(out_file).read().splitlines():
                if "=" in line:
                    k, _, v = line.partition("=")
                    outputs[k] = v
            if step.get("id"):
                steps[step["id"]] = outputs
            added = [p for p in open(path_file).read().splitlines() if p]
            if added:
                env["PATH"] = ":".join(reversed(added)) + ":" + env["PATH"]
        record.append({"name": name, "status": rc})
        status = rc
    outputs = {k: substitute(v.get("value", ""), inputs, steps) for k, v in action.get("outputs", {}).items()}
    json.dump({"status": status, "outputs": outputs, "steps": record}, open(result, "w"))
    return status


def gitlab(template_yml, result, job, args):
    doc = yaml.safe_load(open(template_yml))
    tpl = doc[job]
    variables = {k: str(v) for k, v in (doc.get("variables") or {}).items()}
    variables.update({k: str(v) for k, v in (tpl.get("variables") or {}).items()})
    for a in args:
        k, _, v = a.partition("=")
        variables[k] = v
    lines = list(tpl.get("before_script", [])) + list(tpl.get("script", []))
    script = "set -eo pipefail\n" + "\n".join(lines) + "\n"
    env = dict(os.environ, **variables)
    sys.stdout.flush()
    rc = subprocess.call(["bash", "--noprofile", "--norc", "-c", script], env=env, cwd=os.environ["CI_PROJECT_DIR"])
    json.dump({"status": rc, "outputs": {}, "steps": [{"name": job, "status": rc}], "artifacts": tpl.get("artifacts")}, open(result, "w"))
    return rc


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "github":
        sys.exit(github(sys.argv[2], sys.argv[3], sys.argv[4:]))
    if kind == "gitlab":
        sys.exit(gitlab(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
    raise SystemExit(__doc__)
