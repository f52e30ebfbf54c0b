//! `buildwatch drill`: real npm and pip installing the drill's packages under real eBPF. The
//! packages' "attacks" go to the drill's own servers on loopback and its fake home and secrets.

use std::{fs, process::Command};

use buildwatch_tests::*;
use serde_json::Value;

const TECHNIQUES: &[&str] = &[
    "credential-read",
    "dns-leak",
    "curl-pipe-sh",
    "shell-rc",
    "process-memory",
    "download-exec",
];

/// The scorecard's row for a technique in an ecosystem's table: its cells.
fn row(card: &str, eco: &str, technique: &str) -> Vec<String> {
    let table = card
        .split("\n## ")
        .find(|s| s.starts_with(eco))
        .unwrap_or_else(|| panic!("no {eco} table:\n{card}"));
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("| {technique} |")))
        .unwrap_or_else(|| panic!("no {technique} row for {eco}:\n{card}"));
    line.trim_matches('|')
        .split(" | ")
        .map(|c| c.trim().to_owned())
        .collect()
}

fn drill(tmp: &TempDir, args: &[&str]) -> std::process::Output {
    Command::new(buildwatch_bin())
        .current_dir(tmp.path())
        .env_remove("SUDO_UID")
        .arg("drill")
        .arg("--dir")
        .arg(tmp.join("drill"))
        .args(args)
        .output()
        .unwrap()
}

/// A drill against a fresh project, both ecosystems with their default install commands:
/// every technique caught, by the rule meant for it, with a time to detect; the run itself
/// failed as it should; the fake secret left only redacted.
#[test]
fn a_drill_against_a_fresh_project_catches_every_technique_with_its_time_to_detect() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("drill");
    let out = drill(&tmp, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let card = fs::read_to_string(tmp.join("drill/scorecard.md")).expect("a scorecard");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}\n{card}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(card.contains("**12 of 12 techniques caught.**"), "{card}");
    let expected = [
        ("credential-read", "sensitive-file-read"),
        ("dns-leak", "secret-exfil"),
        ("curl-pipe-sh", "download-piped-to-shell"),
        ("shell-rc", "write-shell-rc"),
        ("process-memory", "read-other-process-memory"),
        ("download-exec", "exec-downloaded-file"),
    ];
    for eco in ["npm", "pip"] {
        for (t, rule) in expected {
            let r = row(&card, eco, t);
            assert_eq!(r[2], "caught", "{eco} {t}: {r:?}");
            assert!(r[3].contains(rule), "{eco} {t}: {rule} not in {r:?}");
            let ms: f64 = r[4]
                .strip_suffix(" ms")
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| panic!("{eco} {t}: no time to detect: {r:?}"));
            // Raised after the technique started, and live (not at the end of the run).
            assert!(ms > 0.0 && ms < 2000.0, "{eco} {t}: {ms} ms");
        }
        // Each watched install failed, as a build that did these things must.
        let report: Value = serde_json::from_slice(
            &fs::read(tmp.join(&format!("drill/out-{eco}/report.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(report["verdict"]["failed"], true, "{eco}");
        assert_eq!(report["events"]["lost"], 0, "{eco}");
        // The leak's queries are in the events with the secret's part redacted.
        let events =
            fs::read_to_string(tmp.join(&format!("drill/out-{eco}/events.jsonl"))).unwrap();
        assert!(
            events.contains("<redacted:AWS_SECRET_ACCESS_KEY>"),
            "{eco}: no redacted query"
        );
        // The attacks stayed on loopback.
        for e in report["egress"].as_array().unwrap() {
            let a = e["address"].as_str().unwrap();
            assert!(a.starts_with("127."), "{eco}: traffic left loopback: {e}");
        }
    }
    assert!(
        card.contains("The fake AWS_SECRET_ACCESS_KEY appears in none of buildwatch's outputs."),
        "{card}"
    );
    // The kit's fake home took the write; nothing else did.
    let rc = fs::read_to_string(tmp.join("drill/home/.bashrc")).unwrap();
    assert!(rc.contains("buildwatch drill (npm)") && rc.contains("buildwatch drill (pip)"));
    assert_eq!(TECHNIQUES.len(), expected.len());
}

/// The scorecard reports what buildwatch did, not what it was meant to: with write-shell-rc
/// switched off by the user's rules, the shell-rc technique is missed and the drill fails. The
/// user's own install command runs in the drill's project (pip finds the drill's registry
/// through PIP_FIND_LINKS).
#[test]
fn a_drill_reports_a_technique_its_rules_do_not_catch_as_missed() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("drill-miss");
    let rules = tmp.join("off.yaml");
    fs::write(&rules, "- rule: write-shell-rc\n  enabled: false\n").unwrap();
    let out = drill(
        &tmp,
        &[
            "--ecosystem",
            "pip",
            "--rules",
            rules.to_str().unwrap(),
            "--scorecard",
            tmp.join("card.md").to_str().unwrap(),
            "--",
            "python3",
            "-m",
            "pip",
            "install",
            "--target",
            "site",
            "-r",
            "requirements.txt",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let card = fs::read_to_string(tmp.join("card.md")).expect("a scorecard");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{card}");
    assert!(card.contains("**5 of 6 techniques caught.**"), "{card}");
    let r = row(&card, "pip", "shell-rc");
    assert_eq!(r[2], "MISSED", "{r:?}");
    assert_eq!(r[4], "–", "{r:?}");
    assert!(
        stdout.contains("shell-rc") && stdout.contains("MISSED"),
        "{stdout}"
    );
    for t in TECHNIQUES.iter().filter(|t| **t != "shell-rc") {
        assert_eq!(row(&card, "pip", t)[2], "caught", "{t}:\n{card}");
    }
    assert!(!card.contains("## npm"), "only pip was asked for:\n{card}");
}

/// Bad invocations are refused with a reason, before anything runs.
#[test]
fn a_drill_refuses_a_used_directory_and_a_command_without_its_ecosystem() {
    let tmp = TempDir::new("drill-usage");
    fs::create_dir_all(tmp.join("drill")).unwrap();
    fs::write(tmp.join("drill/keep.txt"), "mine").unwrap();
    let out = drill(&tmp, &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an empty directory"), "{err}");
    assert_eq!(
        fs::read_to_string(tmp.join("drill/keep.txt")).unwrap(),
        "mine"
    );
    let out = Command::new(buildwatch_bin())
        .args(["drill", "--dir"])
        .arg(tmp.join("other"))
        .args(["--", "npm", "ci"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("needs --ecosystem"), "{err}");
    assert!(
        !tmp.join("other").exists(),
        "nothing is written for a refused drill"
    );
    let out = Command::new(buildwatch_bin())
        .args(["drill", "--ecosystem", "cargo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
