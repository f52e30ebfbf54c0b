//! `buildwatch rules check|list|fields`.

use std::path::{Path, PathBuf};

use crate::{
    detect::rules::{Level, fields, yaml},
    policy::config::{self, PolicyArgs, Setup},
};

/// Exit 0 when there are no errors (warnings are printed), 1 otherwise. A file given without
/// `--policy` that is a policy (a YAML mapping, where a rule file is a list) is checked as the
/// policy.
pub fn check(files: &[PathBuf], policy: Option<&Path>, cwd: &Path) -> i32 {
    let mut policy = policy.map(Path::to_owned);
    let mut rule_files = Vec::new();
    for f in files {
        if policy.is_none() && is_policy(f) {
            crate::outln!("{}: a policy (a mapping): checked as one", f.display());
            policy = Some(f.clone());
        } else {
            rule_files.push(f.clone());
        }
    }
    let args = PolicyArgs {
        policy,
        rule_files,
        ..Default::default()
    };
    match config::setup(&args, cwd) {
        Ok(s) => {
            for w in &s.warnings {
                crate::outln!("{w}\n");
            }
            let n = s.rules.rules.len();
            crate::outln!(
                "ok: {n} rules, {} warning(s)",
                s.warnings
                    .iter()
                    .filter(|d| d.level == Level::Warning)
                    .count()
            );
            0
        }
        Err(e) => {
            crate::outln!("{e}");
            1
        }
    }
}

/// Is the file a policy? Its document is a mapping (`fail_on:`, `allow:`…); a rule file's is
/// a list. Unreadable or broken files are not: the rule-file check then says what is wrong.
fn is_policy(path: &Path) -> bool {
    let Ok(src) = std::fs::read_to_string(path) else {
        return false;
    };
    matches!(
        yaml::parse(&path.display().to_string(), &src),
        Ok(Some(node)) if matches!(node.value, yaml::Value::Map(_))
    )
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
        crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return 0;
    }
    let w = s
        .rules
        .rules
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4);
    crate::outln!(
        "{:<w$}  {:<8}  {:<14}  {:<7}  EVENTS",
        "RULE",
        "SEVERITY",
        "CATEGORY",
        "ENABLED"
    );
    for r in &s.rules.rules {
        crate::outln!(
            "{:<w$}  {:<8}  {:<14}  {:<7}  {}",
            r.name,
            r.severity.as_str(),
            r.category,
            if r.enabled { "yes" } else { "no" },
            r.kinds.names().join(",")
        );
    }
    crate::outln!(
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
        crate::outln!("{name:<22} {doc}");
    }
    0
}
