//! The SARIF 2.1.0 encoder: every rule of the rule set as a descriptor, one result per
//! finding, for code-scanning dashboards.

use std::fmt::Write as _;

use serde_json::json;

use crate::{detect::rules::RuleSet, output::report::Report};

fn sarif_level(s: crate::detect::rules::Severity) -> &'static str {
    use crate::detect::rules::Severity::*;
    match s {
        Critical | High => "error",
        Medium => "warning",
        Low => "note",
    }
}

/// GitHub code scanning's `security-severity` scale (0-10).
fn security_severity(s: crate::detect::rules::Severity) -> &'static str {
    use crate::detect::rules::Severity::*;
    match s {
        Critical => "9.5",
        High => "8.0",
        Medium => "5.5",
        Low => "2.0",
    }
}

/// SARIF 2.1.0: every rule of the rule set in `tool.driver.rules`, one result per finding.
pub fn sarif(r: &Report, rules: &RuleSet) -> serde_json::Value {
    let descriptors: Vec<serde_json::Value> = rules
        .rules
        .iter()
        .map(|rule| {
            json!({
                "id": rule.name,
                "name": rule.name,
                "shortDescription": { "text": rule.desc.lines().next().unwrap_or(&rule.name) },
                "fullDescription": { "text": rule.desc },
                "defaultConfiguration": { "level": sarif_level(rule.severity), "enabled": rule.enabled },
                "properties": {
                    "category": rule.category,
                    "severity": rule.severity,
                    "tags": rule.tags,
                    "security-severity": security_severity(rule.severity),
                },
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = r
        .findings
        .iter()
        .map(|f| {
            let index = rules.rules.iter().position(|x| x.name == f.rule);
            let mut res = json!({
                "ruleId": f.rule,
                "level": sarif_level(f.severity),
                "message": { "text": f.message },
                "partialFingerprints": { "buildwatch/v1": fingerprint(&f.rule, &f.message) },
                "properties": {
                    "category": f.category,
                    "severity": f.severity,
                    "count": f.count,
                    "process": f.process,
                    "package": f.package,
                    "detail": f.detail,
                    "firstSeen": f.first_seen,
                },
            });
            if let Some(i) = index {
                res["ruleIndex"] = json!(i);
            }
            if let Some(path) = f.detail.get("path").and_then(|p| p.as_str()).filter(|p| p.starts_with('/')) {
                res["locations"] = json!([{ "physicalLocation": { "artifactLocation": { "uri": file_uri(path) } } }]);
            }
            res
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "buildwatch",
                "version": r.buildwatch,
                "semanticVersion": r.buildwatch,
                "rules": descriptors,
            }},
            "invocations": [{
                "executionSuccessful": true,
                "commandLine": r.command.join(" "),
                "exitCode": r.exit_code,
                "properties": { "policyFiles": r.policy_files },
            }],
            "results": results,
        }],
    })
}

/// A `file://` URI with the path percent-encoded (SARIF requires valid URIs).
fn file_uri(path: &str) -> String {
    let mut out = String::from("file://");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Stable across runs for the same rule and message (FNV-1a, hex).
fn fingerprint(rule: &str, message: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in rule.bytes().chain([0]).chain(message.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_fingerprints() {
        assert_eq!(file_uri("/tmp/a b/ü"), "file:///tmp/a%20b/%C3%BC");
        assert_eq!(fingerprint("r", "m"), fingerprint("r", "m"));
        assert_ne!(fingerprint("r", "m"), fingerprint("rm", ""));
    }
}
