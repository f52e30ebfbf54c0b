//! The SARIF 2.1.0 encoder: every rule of the rule set as a descriptor, one result per
//! finding, for code-scanning dashboards.
//!
//! Hand-built JSON, checked in the tests by Microsoft's SARIF multitool with GitHub's rules.
//! serde-sarif, the maintained crate, generates a model of the whole schema in its build
//! script and brings a builder crate, for the thirty-odd fields written here.

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

/// Where each rule's documentation is: `docs/rules.md` of the buildwatch the binary was built
/// from (`BUILDWATCH_DOCS_URL` at build time; the default is a placeholder for builds that do
/// not set it). Each rule has a heading there, so `#RULE` is its anchor.
pub const DOCS_URL: &str = match option_env!("BUILDWATCH_DOCS_URL") {
    Some(u) => u,
    None => "https://buildwatch.example/docs/",
};

/// The category code scanning files the results under (`runAutomationDetails.id`), unless
/// `--sarif-category` names another (one per job that uploads, so runs do not replace each
/// other's alerts).
pub const DEFAULT_CATEGORY: &str = "buildwatch";

/// `sensitive-file-read` → `SensitiveFileRead` (SARIF wants a name that is not the id).
fn pascal(id: &str) -> String {
    id.split(['-', '_', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// Whitespace (YAML folding, indentation) collapsed to single spaces.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first sentence of a description, ending with a full stop.
fn first_sentence(desc: &str) -> String {
    let flat = flat(desc);
    let end = flat
        .match_indices(". ")
        .next()
        .map_or(flat.len(), |(i, _)| i + 1);
    let mut s = flat[..end].trim().to_owned();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// Help for a rule, as plain text and Markdown: what it means, when it fires, what to do.
fn help(rule: &crate::detect::rules::Rule) -> (String, String) {
    let desc = flat(&rule.desc);
    let uri = format!("{DOCS_URL}rules.md#{}", rule.name);
    let respond = "Find the process and package in the result. If the build should not do \
                   this, treat the package as compromised: pin the last good version, rotate \
                   any credential the build could read, and report it. If it is expected, add \
                   an exception to .buildwatch.yaml (docs/rules.md#exceptions).";
    let condition = flat(rule.condition());
    let text = format!(
        "{desc}\n\nSeverity: {}. Category: {}.\n\nFires when: {condition}\n\n{respond}\n\n{uri}",
        rule.severity.as_str(),
        rule.category,
    );
    let markdown = format!(
        "{desc}\n\n**Severity:** {} · **Category:** {}\n\n**Fires when:** `{}`\n\n\
         **What to do:** {respond}\n\n[Rule reference]({uri})",
        rule.severity.as_str(),
        rule.category,
        condition.replace('`', "'")
    );
    (text, markdown)
}

/// SARIF 2.1.0 for GitHub code scanning: every rule of the rule set with its help, one result
/// per finding at its place in the repository (see `location`), fingerprints that survive
/// reruns, and the category of the upload.
pub fn sarif(r: &Report, rules: &RuleSet, category: &str) -> serde_json::Value {
    let descriptors: Vec<serde_json::Value> = rules
        .rules
        .iter()
        .map(|rule| {
            let (text, markdown) = help(rule);
            let mut tags = vec!["security".to_owned(), rule.category.clone()];
            tags.extend(rule.tags.iter().cloned());
            let level = sarif_level(rule.severity);
            json!({
                "id": rule.name,
                "name": pascal(&rule.name),
                "shortDescription": { "text": first_sentence(&rule.desc) },
                "fullDescription": { "text": flat(&rule.desc) },
                "help": { "text": text, "markdown": markdown },
                "helpUri": format!("{DOCS_URL}rules.md#{}", rule.name),
                "defaultConfiguration": { "level": level, "enabled": rule.enabled },
                "properties": {
                    "category": rule.category,
                    "severity": rule.severity,
                    "tags": tags,
                    "precision": "high",
                    "problem.severity": if level == "note" { "recommendation" } else { level },
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
            if let Some(loc) = &f.location {
                res["locations"] = json!([{ "physicalLocation": {
                    "artifactLocation": { "uri": relative_uri(&loc.path), "uriBaseId": "%SRCROOT%" },
                    "region": {
                        "startLine": loc.line,
                        "startColumn": 1,
                        "endLine": loc.line,
                        "endColumn": loc.width + 1,
                    },
                }}]);
                res["partialFingerprints"]["primaryLocationLineHash"] =
                    json!(line_hash(&f.rule, &loc.path, &loc.text, &f.message));
            }
            res
        })
        .collect();
    let mut run = json!({
        "tool": { "driver": {
            "name": "buildwatch",
            "version": r.buildwatch,
            "semanticVersion": r.buildwatch,
            "informationUri": DOCS_URL,
            "rules": descriptors,
        }},
        "automationDetails": { "id": format!("{category}/") },
        "columnKind": "unicodeCodePoints",
        "invocations": [{
            "executionSuccessful": true,
            "commandLine": r.command.join(" "),
            "exitCode": r.exit_code,
            "properties": { "policyFiles": r.policy_files },
        }],
        "results": results,
    });
    if r.allow_32bit_syscalls {
        let inv = &mut run["invocations"][0];
        inv["properties"]["allow32bitSyscalls"] = json!(true);
        inv["toolExecutionNotifications"] = json!([{
            "level": "warning",
            "message": { "text": crate::output::text::UNSEEN_32BIT },
        }]);
    }
    if let Some(root) = &r.repository_root {
        let mut uri = file_uri(root);
        if !uri.ends_with('/') {
            uri.push('/');
        }
        run["originalUriBaseIds"] = json!({ "%SRCROOT%": { "uri": uri } });
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}

/// A relative URI reference: the path's segments percent-encoded.
fn relative_uri(path: &str) -> String {
    file_uri(path).trim_start_matches("file://").to_owned()
}

/// GitHub's `primaryLocationLineHash`: the same alert on every run that finds it, even when
/// the line moves or pids and temporary names in the message change (digits do not count).
fn line_hash(rule: &str, path: &str, line: &str, message: &str) -> String {
    let norm = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect()
    };
    format!(
        "{}:1",
        fingerprint(
            &format!("{rule}\0{path}\0{}", norm(line.trim())),
            &norm(message)
        )
    )
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
pub fn fingerprint(rule: &str, message: &str) -> String {
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
        assert_eq!(relative_uri("a b/c.json"), "a%20b/c.json");
        assert_eq!(
            line_hash("r", "p", "  x 12", "pid 4"),
            line_hash("r", "p", "x 99", "pid 7")
        );
        assert_eq!(pascal("sensitive-file-read"), "SensitiveFileRead");
        assert_eq!(first_sentence("Reads a key. Then more."), "Reads a key.");
    }
}
