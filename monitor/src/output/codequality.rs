//! GitLab's Code Quality report (`artifacts:reports:codequality`): one issue per finding, which
//! GitLab shows in the merge request widget and, with a location, on the diff. It is the
//! report format GitLab shows natively on every tier (its SAST report format needs Ultimate,
//! and its JUnit report would show findings as failed tests).
//!
//! GitLab requires a location on every issue: a finding without one (no manifest line, no
//! command file) is placed on the CI configuration's first line (`CI_CONFIG_PATH`, default
//! `.gitlab-ci.yml`).

use serde_json::{Value, json};

use crate::{detect::rules::Severity, output::report::Report};

pub fn codequality(r: &Report) -> Value {
    let ci = std::env::var("CI_CONFIG_PATH")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".gitlab-ci.yml".into());
    let issues: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            let (path, line) = f
                .location
                .as_ref()
                .map_or((ci.as_str(), 1), |l| (l.path.as_str(), l.line));
            let mut description = format!("{}: {}", f.rule, f.message);
            if let Some(p) = &f.package {
                description.push_str(&format!(
                    " (package {})",
                    crate::output::text::package_label(p)
                ));
            }
            json!({
                "type": "issue",
                "description": description,
                "check_name": f.rule,
                "categories": ["Security"],
                "fingerprint": crate::output::sarif::fingerprint(&f.rule, &format!("{path}\0{}", f.message)),
                "severity": match f.severity {
                    Severity::Critical => "blocker",
                    Severity::High => "critical",
                    Severity::Medium => "major",
                    Severity::Low => "minor",
                },
                "location": { "path": path, "lines": { "begin": line } },
            })
        })
        .collect();
    Value::Array(issues)
}
