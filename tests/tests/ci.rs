//! The GitHub action (action.yml) and the GitLab template (examples/gitlab/), run as their CI
//! systems would run them, on a real npm project and a real pip project whose dependency's
//! install step reads an AWS credential. buildwatch is installed from the release tarball
//! (`cargo xtask test` builds it and names it in BUILDWATCH_DIST).
//!
//! Stand-ins, said plainly: GitHub's runner and GitLab's shell executor cannot run here, so
//! tests/support/ci_steps.py executes the definitions' steps the way they do (inputs,
//! step outputs, GITHUB_PATH, GITHUB_OUTPUT, one shell script per GitLab job). The GitHub
//! steps run as an ordinary user with passwordless sudo, made for the test, as on a hosted
//! runner. npm and pip install local packages with no network.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use buildwatch_tests::*;
use serde_json::json;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// An ordinary user with passwordless sudo (as GitHub's hosted runners have), removed with
/// its sudoers entry on drop.
struct RunnerUser {
    name: String,
    home: PathBuf,
    uid: u32,
    sudoers: PathBuf,
}

impl RunnerUser {
    fn new(tmp: &TempDir) -> Self {
        // One user per test: the tests of this file run in parallel.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("bwci{}x{n}", std::process::id() % 100_000);
        let home = tmp.join("home");
        let _ = Command::new("userdel").arg(&name).output();
        let out = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/bash", "--home-dir"])
            .arg(&home)
            .arg(&name)
            .output()
            .expect("useradd");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/bw-ci-{name}"));
        fs::write(&sudoers, format!("{name} ALL=(ALL) NOPASSWD: ALL\n")).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        fs::set_permissions(&sudoers, fs::Permissions::from_mode(0o440)).unwrap();
        let uid = fs::metadata(&home).unwrap().uid();
        Self {
            name,
            home,
            uid,
            sudoers,
        }
    }

    /// Give a path (recursively) to the user.
    fn own(&self, path: &Path) {
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{0}:{0}", self.name))
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for RunnerUser {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.sudoers);
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

const READS_CREDENTIALS_JS: &str =
    "require('fs').readFileSync(require('os').homedir() + '/.aws/credentials');\n";

/// A workspace with an npm project whose dependency `evil-helper` reads the AWS credential in
/// its postinstall, locked (package-lock.json) so `npm ci` installs it; and the workflow file
/// that runs it.
fn npm_workspace(tmp: &TempDir, name: &str, evil: bool) -> PathBuf {
    let ws = tmp.join(name);
    fs::create_dir_all(ws.join("pkgs")).unwrap();
    fs::create_dir_all(ws.join(".github/workflows")).unwrap();
    fs::copy(
        repo().join("examples/github/buildwatch.yml"),
        ws.join(".github/workflows/build.yml"),
    )
    .unwrap();
    let scripts = if evil {
        json!({"postinstall": "node steal.js"})
    } else {
        json!({})
    };
    let tgz = npm_package(
        tmp,
        "evil-helper",
        "1.0.1",
        &[("steal.js", READS_CREDENTIALS_JS)],
        scripts,
    );
    fs::rename(&tgz, ws.join("pkgs/evil-helper-1.0.1.tgz")).unwrap();
    fs::write(
        ws.join("package.json"),
        json!({
            "name": "app", "version": "1.0.0", "private": true,
            "dependencies": {"evil-helper": "file:pkgs/evil-helper-1.0.1.tgz"},
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new("npm")
        .args(["install", "--package-lock-only", "--ignore-scripts"])
        .current_dir(&ws)
        .envs(npm_env(&tmp.join("npm-home")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ws
}

/// The 1-based line of `file` that contains `needle`.
fn line_of(file: &Path, needle: &str) -> usize {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {}", file.display()))
        + 1
}

struct ActionRun {
    result: Value,
    stdout: String,
    stderr: String,
    summary: String,
}

/// The action's steps, as `user`, with a GitHub-like environment for `ws`.
fn run_action(tmp: &TempDir, user: &RunnerUser, ws: &Path, inputs: &[(&str, &str)]) -> ActionRun {
    let temp = tmp.join("runner-temp");
    let _ = fs::remove_dir_all(&temp);
    fs::create_dir_all(&temp).unwrap();
    let summary = tmp.join("step-summary.md");
    fs::write(&summary, "").unwrap();
    let result = tmp.join("result.json");
    let _ = fs::remove_file(&result);
    fs::write(&result, "").unwrap();
    for p in [&temp, &summary, &result, &ws.to_path_buf()] {
        user.own(p);
    }
    // The runner service (this process, through ci_steps.py) runs each step as the user.
    let mut cmd = Command::new("env");
    cmd.arg("-i")
        .arg(format!("CI_STEPS_USER={}", user.name))
        .arg(format!("HOME={}", user.home.display()))
        .arg(format!("USER={}", user.name))
        .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .arg("CI=true")
        .arg("GITHUB_ACTIONS=true")
        .arg(format!("GITHUB_WORKSPACE={}", ws.display()))
        .arg(format!("RUNNER_TEMP={}", temp.display()))
        .arg(format!("GITHUB_STEP_SUMMARY={}", summary.display()))
        .arg("GITHUB_WORKFLOW_REF=example/app/.github/workflows/build.yml@refs/heads/main")
        .arg("GITHUB_RUN_ID=1")
        .args(
            npm_env(&user.home)
                .into_iter()
                .filter(|(k, _)| *k != "HOME")
                .map(|(k, v)| format!("{k}={v}")),
        )
        .arg("PIP_NO_CACHE_DIR=1")
        .arg("PIP_DISABLE_PIP_VERSION_CHECK=1")
        .arg(tools_dir().join("venv/bin/python"))
        .arg(repo().join("tests/support/ci_steps.py"))
        .arg("github")
        .arg(repo().join("action.yml"))
        .arg(&result)
        .args(inputs.iter().map(|(k, v)| format!("{k}={v}")))
        .current_dir(ws);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let result: Value = serde_json::from_slice(&fs::read(&result).unwrap())
        .unwrap_or_else(|e| panic!("no result ({e}): {stdout}\n{stderr}"));
    ActionRun {
        result,
        stdout,
        stderr,
        summary: fs::read_to_string(&summary).unwrap(),
    }
}

/// `npm ci` through the action: the dependency's credential read fails the step by policy;
/// the annotation, the SARIF result and its fingerprint point at the package's line in
/// package-lock.json; the SARIF passes the multitool's GitHub rules; the step summary is
/// written; the build ran as the runner user (node_modules is the user's, not root's); a
/// second run gives the same fingerprint; a clean project passes.
#[test]
fn the_github_action_watches_npm_ci_and_reports_where_code_scanning_can_show_it() {
    let Some(tarball) = dist_tarball() else {
        return;
    };
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("ci-github-npm");
    let user = RunnerUser::new(&tmp);
    fs::create_dir_all(user.home.join(".aws")).unwrap();
    fs::write(
        user.home.join(".aws/credentials"),
        "[default]\naws_access_key_id = AKIAFAKE\n",
    )
    .unwrap();
    user.own(&user.home);
    let ws = npm_workspace(&tmp, "ws", true);
    let lock_line = line_of(
        &ws.join("package-lock.json"),
        "\"node_modules/evil-helper\"",
    );
    let tarball = tarball.display().to_string();
    let inputs = [
        ("tarball", tarball.as_str()),
        ("command", "npm ci"),
        ("fail-on", "high"),
        ("sarif-category", "npm-ci"),
    ];
    let run = run_action(&tmp, &user, &ws, &inputs);
    let why = format!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.result["status"], 86, "{why}");
    assert_eq!(run.result["outputs"]["verdict"], "failed", "{why}");
    assert_eq!(run.result["outputs"]["exit-status"], "86");
    // The annotation, on the package's line.
    let want = format!(
        "::error file=package-lock.json,line={lock_line},title=buildwatch sensitive-file-read (high)::"
    );
    let annotation = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("no `{want}`: {why}"));
    assert!(
        annotation.contains("(package npm evil-helper@1.0.1, postinstall)"),
        "{annotation}"
    );
    eprintln!("the step's output:\n{}\n{}", run.stdout, run.stderr);
    // The step summary.
    assert!(
        run.summary.contains("sensitive-file-read"),
        "{}",
        run.summary
    );
    // The build ran as the runner user.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(ws.join("node_modules")).unwrap().uid(),
        user.uid
    );
    // The SARIF: accepted by the multitool's GitHub rules, each result located in the repo.
    let sarif_path = PathBuf::from(run.result["outputs"]["sarif"].as_str().unwrap());
    let (errors, warnings) = validate_sarif(&sarif_path);
    assert!(errors.is_empty(), "SARIF errors: {errors:#?}");
    eprintln!("SARIF warnings (not errors): {warnings:#?}");
    let sarif: Value = serde_json::from_slice(&fs::read(&sarif_path).unwrap()).unwrap();
    let sarif_run = &sarif["runs"][0];
    assert_eq!(sarif_run["automationDetails"]["id"], "npm-ci/");
    for rule in sarif_run["tool"]["driver"]["rules"].as_array().unwrap() {
        assert!(
            rule["help"]["markdown"]
                .as_str()
                .is_some_and(|m| m.len() > 40),
            "{rule}"
        );
        assert!(
            rule["helpUri"]
                .as_str()
                .is_some_and(|u| u.ends_with(&format!("rules.md#{}", rule["id"].as_str().unwrap()))),
            "{rule}"
        );
    }
    let results = sarif_run["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert!(
            r["locations"][0]["physicalLocation"]["region"]["startLine"].is_u64(),
            "{r}"
        );
        assert!(
            r["partialFingerprints"]["primaryLocationLineHash"].is_string(),
            "{r}"
        );
    }
    let read = results
        .iter()
        .find(|r| r["ruleId"] == "sensitive-file-read")
        .unwrap();
    let loc = &read["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "package-lock.json");
    assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    assert_eq!(loc["region"]["startLine"], lock_line);
    let hash = read["partialFingerprints"]["primaryLocationLineHash"].clone();

    // Again: the same alert.
    let _ = fs::remove_dir_all(ws.join("node_modules"));
    let again = run_action(&tmp, &user, &ws, &inputs);
    assert_eq!(again.result["status"], 86, "{}", again.stderr);
    let sarif: Value = serde_json::from_slice(
        &fs::read(again.result["outputs"]["sarif"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let read = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "sensitive-file-read")
        .unwrap()
        .clone();
    assert_eq!(read["partialFingerprints"]["primaryLocationLineHash"], hash);

    // A clean project passes, and the step passes with it.
    let clean = npm_workspace(&tmp, "clean", false);
    let run = run_action(&tmp, &user, &clean, &inputs);
    assert_eq!(run.result["status"], 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.result["outputs"]["verdict"], "passed");
    assert!(!run.stdout.contains("::error"), "{}", run.stdout);
}

/// `pip install -r requirements.txt` through the action: an sdist whose build reads the
/// credential is located at its line in requirements.txt.
#[test]
fn the_github_action_locates_a_pip_package_in_requirements() {
    let Some(tarball) = dist_tarball() else {
        return;
    };
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("ci-github-pip");
    let user = RunnerUser::new(&tmp);
    fs::create_dir_all(user.home.join(".aws")).unwrap();
    fs::write(user.home.join(".aws/credentials"), "[default]\n").unwrap();
    user.own(&user.home);
    let ws = tmp.join("ws");
    fs::create_dir_all(ws.join("dist")).unwrap();
    let sd = sdist(
        &tmp,
        "evil_py",
        "1.0.0",
        "    open(os.path.expanduser('~/.aws/credentials')).read()",
    );
    fs::rename(&sd, ws.join("dist/evil_py-1.0.0.tar.gz")).unwrap();
    fs::write(ws.join("requirements.txt"), "# runtime\nevil-py==1.0.0\n").unwrap();
    let tarball = tarball.display().to_string();
    let run = run_action(
        &tmp,
        &user,
        &ws,
        &[
            ("tarball", tarball.as_str()),
            (
                "command",
                "python3 -m pip install --no-index --find-links dist --target site -r requirements.txt",
            ),
        ],
    );
    let why = format!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.result["status"], 86, "{why}");
    assert!(
        run.stdout.lines().any(|l| l.starts_with(
            "::error file=requirements.txt,line=2,title=buildwatch sensitive-file-read (high)::"
        ) && l.contains("(package pip evil_py@1.0.0, build_wheel)")),
        "{why}"
    );
    let sarif_path = PathBuf::from(run.result["outputs"]["sarif"].as_str().unwrap());
    let (errors, _) = validate_sarif(&sarif_path);
    assert!(errors.is_empty(), "SARIF errors: {errors:#?}");
}

/// The GitLab template, as GitLab's shell executor runs a job (root, one script): the Code
/// Quality report places the finding at the package's line, the artifacts exist, and the job
/// fails by policy.
#[test]
fn the_gitlab_template_reports_code_quality_at_the_package_line() {
    let Some(tarball) = dist_tarball() else {
        return;
    };
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("ci-gitlab");
    let home = tmp.join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    fs::write(home.join(".aws/credentials"), "[default]\n").unwrap();
    let ws = npm_workspace(&tmp, "ws", true);
    fs::copy(
        repo().join("examples/gitlab/buildwatch.gitlab-ci.yml"),
        ws.join(".gitlab-ci.yml"),
    )
    .unwrap();
    let lock_line = line_of(
        &ws.join("package-lock.json"),
        "\"node_modules/evil-helper\"",
    );
    let result = tmp.join("result.json");
    let out = Command::new(tools_dir().join("venv/bin/python"))
        .arg(repo().join("tests/support/ci_steps.py"))
        .arg("gitlab")
        .arg(ws.join(".gitlab-ci.yml"))
        .arg(&result)
        .arg(".buildwatch")
        .arg(format!("BUILDWATCH_TARBALL={}", tarball.display()))
        .arg("BUILDWATCH_COMMAND=npm ci")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", &home)
        .env("GITLAB_CI", "true")
        .env("CI", "true")
        .env("CI_PROJECT_DIR", &ws)
        .env("CI_CONFIG_PATH", ".gitlab-ci.yml")
        .envs(npm_env(&home).into_iter().filter(|(k, _)| *k != "HOME"))
        .output()
        .unwrap();
    let why = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&fs::read(&result).unwrap()).unwrap();
    assert_eq!(r["status"], 86, "{why}");
    for artifact in r["artifacts"]["paths"].as_array().unwrap() {
        assert!(
            ws.join(artifact.as_str().unwrap()).exists(),
            "{artifact}: {why}"
        );
    }
    let cq_file = r["artifacts"]["reports"]["codequality"].as_str().unwrap();
    let cq: Value = serde_json::from_slice(&fs::read(ws.join(cq_file)).unwrap()).unwrap();
    let issues = cq.as_array().unwrap();
    let read = issues
        .iter()
        .find(|i| i["check_name"] == "sensitive-file-read")
        .unwrap_or_else(|| panic!("{cq:#}"));
    assert_eq!(read["severity"], "critical");
    assert_eq!(read["location"]["path"], "package-lock.json");
    assert_eq!(read["location"]["lines"]["begin"], lock_line);
    for i in issues {
        for key in ["description", "check_name", "fingerprint", "severity"] {
            assert!(i[key].is_string(), "{key}: {i}");
        }
        assert!(i["location"]["path"].is_string() && i["location"]["lines"]["begin"].is_u64());
    }
}
