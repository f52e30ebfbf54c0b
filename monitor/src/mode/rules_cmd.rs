//! `buildwatch rules check|list|fields`.

use std::path::{Path, PathBuf};

use crate::{
    detect::rules::{Level, fields},
    policy::config::{self, PolicyArgs, Setup},
};

/// Exit 0 when there are no errors (warnings are printed), 1 otherwise.
pub fn check(files: &[PathBuf], policy: Option<&Path>, cwd: &Path) -> i32 {
    let args = PolicyArgs {
        policy: policy.map(Path::to_owned),
        rule_files: files.to_vec(),
        ..Default::default()
    };
    match config::setup(&args, cwd) {
        Ok(s) => {
            for w in &s.warnings {
                println!("{w}\n");
            }
            let n = s.rules.rules.len();
            println!(
                "ok: {n} rules, {} warning(s)",
                s.warnings
                    .iter()
                    .filter(|d| d.level == Level::Warning)
                    .count()
            );
            0
        }
        Err(e) => {
            println!("{e}");
            1
        }
    }
}

pub fn list(s: &Setup, json: bool) -> i32 {
    if json {
        let v: Vec<serde_json::Value> = s
            .rules
            .rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "rule": r.name, "category": r.category, "severity": r.severity,
                    "enabled": r.enabled, "events": r.kinds.names(), "desc": r.desc.trim(),
                    "condition": r.condition(), "tags": r.tags, "source": r.pos.to_string(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return 0;
    }
    let w = s
        .rules
        .rules
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4);
    println!(
        "{:<w$}  {:<8}  {:<14}  {:<7}  EVENTS",
        "RULE", "SEVERITY", "CATEGORY", "ENABLED"
    );
    for r in &s.rules.rules {
        println!(
            "{:<w$}  {:<8}  {:<14}  {:<7}  {}",
            r.name,
            r.severity.as_str(),
            r.category,
            if r.enabled { "yes" } else { "no" },
            r.kinds.names().join(",")
        );
    }
    println!(
        "\nfail_on: {}; allow: loopback {}{}",
        s.policy.fail_on.as_str(),
        if s.policy.allow_loopback { "yes" } else { "no" },
        s.policy
            .allow
            .iter()
            .map(|e| format!(", {e}"))
            .collect::<String>()
    );
    0
}

pub fn fields() -> i32 {
    for (name, doc) in fields::catalogue() {
        println!("{name:<22} {doc}");
    }
    0
}
