//! The command line's contract with a pipeline: usage errors have a status of their own, a
//! closed pipe is not a crash, output paths are checked before anything runs, and mistakes in
//! policy and rules are named with a suggestion.

use std::{
    fs,
    io::Read,
    process::{Command, Stdio},
};

use buildwatch_tests::*;

fn bw(dir: &TempDir, args: &[&str]) -> std::process::Output {
    Command::new(buildwatch_bin())
        .current_dir(dir.path())
        .args(args)
        .output()
        .unwrap()
}

/// Usage errors exit 64 (EX_USAGE), which make (2), npm and pip (1) and cargo (101) do not
/// use; help and version are not errors.
#[test]
fn usage_errors_have_their_own_status() {
    let dir = TempDir::new("cli-usage");
    for args in [
        &["--no-such-flag", "--", "true"][..],
        &["run"],
        &["--ring-size", "1000", "--", "true"],
        &["--fail-on", "sometimes", "--", "true"],
        &["rules", "frobnicate"],
        &[],
    ] {
        let out = bw(&dir, args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}: says what is wrong");
    }
    for args in [&["--help"][..], &["--version"], &["rules", "--help"]] {
        assert_eq!(bw(&dir, args).status.code(), Some(0), "{args:?}");
    }
}

/// `buildwatch rules fields | head -1`: the reader goes away; buildwatch stops quietly with
/// status 0 (it panicked).
#[test]
fn a_closed_pipe_is_not_a_crash() {
    for args in [&["rules", "fields"][..], &["rules", "list"]] {
        let mut child = Command::new(buildwatch_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one byte, then close the pipe with the rest unread.
        let mut stdout = child.stdout.take().unwrap();
        let mut one = [0u8; 1];
        stdout.read_exact(&mut one).unwrap();
        drop(stdout);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A report that cannot be written stops the run before the command starts (it was found
/// after the whole build had run). No root needed: replay checks the same way, and run checks
/// before anything that needs root is asked for.
#[test]
fn output_paths_are_checked_before_anything_runs() {
    let dir = TempDir::new("cli-paths");
    let marker = dir.join("ran");
    let touch = format!("touch {}", marker.display());
    for (flag, path) in [
        ("--report", "no-such-dir/r.json"),
        ("--sarif", "."),
        ("--summary-md", "no-such-dir/s.md"),
        ("--events", "no-such-dir/e.jsonl"),
    ] {
        let out = bw(&dir, &[flag, path, "--", "sh", "-c", &touch]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(out.status.code(), Some(125), "{flag}: {stderr}");
            assert!(
                stderr.contains(flag) && stderr.contains(path),
                "{flag}: {stderr}"
            );
        } else {
            assert_ne!(out.status.code(), Some(0), "{flag}: {stderr}");
        }
        assert!(!marker.exists(), "{flag}: the command ran");
        if flag != "--events" {
            let out = bw(&dir, &["replay", "/dev/null", flag, path]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(125), "replay {flag}: {stderr}");
            assert!(stderr.contains(flag), "replay {flag}: {stderr}");
            assert!(!stderr.contains("no events"), "checked first: {stderr}");
        }
    }
    // A path that can be written is left as it was found (absent here).
    let out = bw(&dir, &["replay", "/dev/null", "--report", "fine.json"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no events"));
    assert!(!dir.join("fine.json").exists());
}

/// Mistakes in a policy or a rule file: `buildwatch:`-prefixed, positioned, with a suggestion
/// for a near miss; `rules check` on a policy file checks it as a policy; addresses that are
/// not addresses are not taken for domains.
#[test]
fn policy_mistakes_are_named_with_suggestions() {
    let dir = TempDir::new("cli-policy");
    fs::write(dir.join("p.yaml"), "fial_on: high\n").unwrap();
    let out = bw(&dir, &["replay", "/dev/null", "--policy", "p.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains(
            "buildwatch: p.yaml:1:1: error: unknown policy key `fial_on` (did you mean `fail_on`?)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("buildwatch: 1 error(s)"), "{stderr}");

    fs::write(
        dir.join("r.yaml"),
        "- rule: r\n  desc: d\n  condition: evt.type = open and file.pth = /x\n  output: o\n  severity: high\n  category: c\n",
    )
    .unwrap();
    let out = bw(&dir, &["rules", "check", "r.yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("unknown field `file.pth` (did you mean `file.path`?)"),
        "{stdout}"
    );

    // A policy given to `rules check` is checked as a policy, not as a broken rule file.
    fs::write(
        dir.join(".buildwatch.yaml"),
        "fail_on: high\nallow: [300.1.1.1:443]\n",
    )
    .unwrap();
    let out = bw(&dir, &["rules", "check", ".buildwatch.yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("checked as one"), "{stdout}");
    assert!(
        stdout.contains("`300.1.1.1` is not an IPv4 address"),
        "{stdout}"
    );
    assert!(!stdout.contains("a rule file is a list"), "{stdout}");
    fs::write(
        dir.join(".buildwatch.yaml"),
        "fail_on: high\nallow: [10.200.0.1:443]\n",
    )
    .unwrap();
    let out = bw(&dir, &["rules", "check", ".buildwatch.yaml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // On the command line too, as a usage error.
    let out = bw(&dir, &["--allow", "1.2.3", "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1.2.3"));
}

/// A recorded stream with one exec and a long, critical finding, and its run_end.
fn long_stream(dir: &TempDir) -> std::path::PathBuf {
    // A long executable path makes a long message.
    let exe = format!("/opt/{}cat", "tool/".repeat(40));
    let lines = [
        serde_json::json!({"schema": 1, "seq": 1, "time": "2026-11-25T00:00:00.000000001Z",
            "ts_ns": 1, "kind": "exec", "pid": 5, "tid": 5, "exec": {"syscall": "execve",
            "filename": exe, "path": exe, "argv": ["cat", "x"],
            "cwd": "/", "ret": 0}}),
        serde_json::json!({"schema": 1, "seq": 2, "time": "2026-11-25T00:00:00.000000002Z",
            "ts_ns": 2, "kind": "open", "pid": 5, "tid": 5, "open": {"path": "/proc/1/mem",
            "syscall": "openat", "flags": ["read"], "flags_raw": 0, "ret": 3}}),
        serde_json::json!({"schema": 1, "seq": 3, "time": "2026-11-25T00:00:01Z", "ts_ns": 3,
            "kind": "run_end", "pid": 0, "tid": 0, "run_end": {"exit_code": 0, "code": 0}}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let path = dir.join("e.jsonl");
    fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

/// Terminal output: every line fits 100 columns (the report keeps the whole message);
/// colour only when asked for or on a terminal, never with NO_COLOR; -q is findings and the
/// verdict; -v adds a line per exec.
#[test]
fn terminal_lines_fit_and_follow_colour_quiet_and_verbose() {
    let dir = TempDir::new("cli-terminal");
    let stream = long_stream(&dir);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(buildwatch_bin())
            .current_dir(dir.path())
            .arg("replay")
            .arg(&stream)
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("GITHUB_ACTIONS")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(86));
        String::from_utf8(out.stderr).unwrap()
    };
    let plain = run(&["--report", "r.json"], &[]);
    for l in plain.lines() {
        assert!(
            l.chars().count() <= 100,
            "{} columns: {l}",
            l.chars().count()
        );
    }
    assert!(
        !plain.contains('\u{1b}'),
        "no colour off a terminal: {plain}"
    );
    let r: Value = serde_json::from_slice(&fs::read(dir.join("r.json")).unwrap()).unwrap();
    assert!(
        r["findings"][0]["message"].as_str().unwrap().len() > 200,
        "the report keeps it whole"
    );

    let coloured = run(&["--color", "always"], &[]);
    assert!(
        coloured.contains("\u{1b}[1;31m[CRITICAL]\u{1b}[0m"),
        "{coloured}"
    );
    assert!(
        coloured.contains("\u{1b}[1;31mpolicy: FAILED"),
        "{coloured}"
    );
    // GitHub's log renders colour; NO_COLOR wins over the automatic choice.
    assert!(run(&[], &[("GITHUB_ACTIONS", "true")]).contains('\u{1b}'));
    assert!(!run(&[], &[("GITHUB_ACTIONS", "true"), ("NO_COLOR", "1")]).contains('\u{1b}'));

    let quiet = run(&["-q"], &[]);
    let q: Vec<&str> = quiet.lines().collect();
    assert!(
        q[0].starts_with("buildwatch: [CRITICAL] read-other-process-memory"),
        "{quiet}"
    );
    assert!(
        q.iter()
            .any(|l| l.starts_with("buildwatch: policy: FAILED")),
        "{quiet}"
    );
    assert!(
        !quiet.contains("findings:") && !quiet.contains("SEVERITY"),
        "{quiet}"
    );

    let verbose = run(&["-v"], &[]);
    assert!(
        verbose.contains("buildwatch: exec [pid 5] cat x"),
        "{verbose}"
    );
    assert!(!plain.contains("exec [pid"), "{plain}");
}

/// A forwarding output that is wrong (in an `--output` file or the policy's `outputs:`)
/// stops the run before the command starts, positioned; a token never goes in clear.
#[test]
fn forwarding_output_mistakes_stop_before_anything_runs() {
    let dir = TempDir::new("cli-outputs");
    fs::write(
        dir.join("out.yaml"),
        "outputs:\n  - type: webhook\n    url: http://hooks.example/in\n    token_env: HOOK_TOKEN\n",
    )
    .unwrap();
    let out = bw(&dir, &["run", "--output", "out.yaml", "--", "touch", "ran"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("out.yaml:3:10: error: a token is not sent in clear"),
        "{stderr}"
    );
    assert!(!dir.join("ran").exists());
    fs::write(
        dir.join("p.yaml"),
        "outputs:\n  - type: splunk_hec\n    url: https://hec.example\n",
    )
    .unwrap();
    let out = bw(&dir, &["replay", "/dev/null", "--policy", "p.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains(
            "buildwatch: p.yaml:2:5: error: a splunk_hec output needs `token_file:` or `token_env:`"
        ),
        "{stderr}"
    );
}

/// `buildwatch learn REPORT`: the allowlist a report's run needed, as a policy; anything that
/// is not a report is an error, not an empty policy.
#[test]
fn learn_writes_the_allowlist_a_report_needed() {
    let dir = TempDir::new("cli-learn");
    fs::write(
        dir.join("r.json"),
        r#"{"schema":1,"egress":[
            {"address":"10.200.0.5","port":443,"domains":["a.pkgs.example"],"processes":["npm"],
             "packages":["left-pad@1.2.2"],"allowed":false},
            {"address":"10.200.0.6","port":443,"domains":["b.pkgs.example"],"processes":["npm"],
             "allowed":false},
            {"address":"10.200.0.9","port":8443,"processes":["curl"],"allowed":false}],
          "findings":[
            {"rule":"sensitive-file-read","category":"sensitive-file",
             "process":{"exe":"/usr/bin/node"},"package":{"name":"left-pad","version":"1.2.2"},
             "detail":{"path":"/home/u/.npmrc\"]]\nallow: [\"**.evil.example\"]"},
             "parts":[{"rule":"sensitive-file-probe"}]},
            {"rule":"dns-long-label","category":"dns-exfil","process":{"exe":"/usr/bin/node"},
             "detail":{"qname":"abc.exfil.example"}},
            {"rule":"egress-unlisted","category":"egress","process":{"exe":"/usr/bin/curl"},
             "detail":{"address":"10.200.0.9"}}]}"#,
    )
    .unwrap();
    let out = bw(&dir, &["learn", "r.json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text.contains("  - \"**.pkgs.example:443\""), "{text}");
    assert!(
        text.contains("# needed by npm, package left-pad@1.2.2"),
        "{text}"
    );
    assert!(text.contains("  - \"10.200.0.9:8443\""), "{text}");
    // The findings outside egress become exceptions on the executable and the subject; a
    // hostile path stays one quoted value.
    assert!(text.contains("  - rule: \"sensitive-file-read\""), "{text}");
    assert!(
        text.contains("  - rule: \"sensitive-file-probe\""),
        "{text}"
    );
    assert!(text.contains("    fields: [proc.exe, dns.qname]"), "{text}");
    assert!(
        text.contains(
            r#"values: [["/usr/bin/node", "/home/u/.npmrc\"]]\nallow: [\"**.evil.example\"]"]]"#
        ),
        "{text}"
    );
    assert!(!text.contains("rule: \"egress-unlisted\""), "{text}");
    assert!(!text.contains("\nallow: [\"**.evil"), "{text}");
    let out = bw(&dir, &["learn", "r.json", "-o", "learned.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    // The learned file is a policy `rules check` accepts.
    let out = bw(&dir, &["rules", "check", "--policy", "learned.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    fs::write(dir.join("not.json"), "{\"schema\": 1}").unwrap();
    let out = bw(&dir, &["learn", "not.json"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no egress table"));
}
