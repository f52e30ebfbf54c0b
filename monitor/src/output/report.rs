//! Outputs of a verdict: the live finding line, the end-of-run summary on the terminal, the JSON
//! report (`--report`, documented in docs/report.md), SARIF 2.1.0 (`--sarif`) and the Markdown
//! step summary (`$GITHUB_STEP_SUMMARY` or `--summary-md`).
//!
//! Every string from the watched build (paths, argv, package names) is untrusted: terminal
//! output escapes control characters (no escape-sequence injection), Markdown escapes its
//! metacharacters.

use std::{borrow::Cow, collections::BTreeMap, fmt::Write as _, io, path::Path};

use serde::Serialize;
use serde_json::json;

use crate::detect::{
    analyzer::{Analyzer, Egress, Totals},
    findings::Finding,
    rules::RuleSet,
};

pub const REPORT_SCHEMA: u32 = 1;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verdict {
    pub fail_on: &'static str,
    pub failed: bool,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// buildwatch's exit status: the command's, or [`crate::exit::POLICY_VIOLATION`].
    pub exit_status: i32,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub by_severity: BTreeMap<&'static str, u64>,
    pub by_category: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub schema: u32,
    pub buildwatch: String,
    pub command: Vec<String>,
    /// The command's exit code (128+N for signal N); null when the stream has no `run_end`.
    pub exit_code: Option<i32>,
    pub verdict: Verdict,
    pub summary: Summary,
    pub findings: Vec<Finding>,
    /// Occurrences per rule not listed in `findings` because the rule already had
    /// `findings::MAX_PER_RULE` distinct findings.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub findings_unlisted: BTreeMap<String, u64>,
    pub egress: Vec<Egress>,
    /// Connections and sends to destinations past `analyzer::MAX_EGRESS` distinct ones.
    #[serde(skip_serializing_if = "is_zero")]
    pub egress_unlisted: u64,
    pub events: Totals,
    /// buildwatch's own CPU time and peak memory (from `run_end`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<crate::event::MonitorUsage>,
}

impl Report {
    pub fn new(a: &Analyzer) -> Self {
        let fail_on = a.policy.fail_on;
        let mut reasons = Vec::new();
        let findings = a.findings.sorted();
        let tripping = findings
            .iter()
            .filter(|f| fail_on.trips(f.severity))
            .count();
        if tripping > 0 {
            reasons.push(format!(
                "{tripping} finding(s) at or above {}",
                fail_on.as_str()
            ));
        }
        if a.policy.fail_on_lost && a.totals.lost > 0 {
            reasons.push(format!(
                "{} event(s) lost and fail_on_lost is set",
                a.totals.lost
            ));
        }
        let failed = !reasons.is_empty();
        let command_status = a.exit_code.unwrap_or(0);
        Self {
            schema: REPORT_SCHEMA,
            buildwatch: env!("CARGO_PKG_VERSION").into(),
            command: a.command.clone(),
            exit_code: a.exit_code,
            verdict: Verdict {
                fail_on: fail_on.as_str(),
                failed,
                reasons,
                exit_status: if failed {
                    crate::exit::POLICY_VIOLATION
                } else {
                    command_status
                },
            },
            summary: Summary {
                by_severity: a.findings.by_severity(),
                by_category: a.findings.by_category(),
            },
            findings,
            findings_unlisted: a.findings.unlisted().clone(),
            egress: a.egress(),
            egress_unlisted: a.egress_unlisted,
            events: a.totals.clone(),
            monitor: a.monitor,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Control characters shown as `\u{..}` so untrusted text cannot drive the terminal.
pub fn term_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// The line printed on stderr when a finding first appears.
pub fn live_line(f: &Finding) -> String {
    let mut line = format!(
        "[{}] {}: {}",
        f.severity.as_str().to_uppercase(),
        f.rule,
        term_safe(&f.message)
    );
    if let Some(p) = &f.package {
        let _ = write!(line, " (package {} {}", p.manager, term_safe(&p.name));
        if let Some(v) = &p.version {
            let _ = write!(line, "@{}", term_safe(v));
        }
        line.push(')');
    }
    if let Some(q) = f.detail.get("qname").and_then(|q| q.as_str()) {
        let _ = write!(line, " query {}", term_safe(&shorten(q, 72)));
    }
    let _ = write!(line, " [pid {}]", f.process.pid);
    line
}

/// At most `max` characters: the start and the end with `…` between (the end of a DNS name
/// says whose it is, the start what it carries). The report keeps the whole text.
pub fn shorten(s: &str, max: usize) -> Cow<'_, str> {
    let n = s.chars().count();
    if n <= max {
        return Cow::Borrowed(s);
    }
    let head: String = s.chars().take(max / 2).collect();
    let tail: String = s.chars().skip(n - (max - max / 2 - 1)).collect();
    Cow::Owned(format!("{head}…{tail}"))
}

/// The end-of-run summary, one string of lines (each printed with the `buildwatch:` prefix).
pub fn terminal_summary(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let sev = &r.summary.by_severity;
    out.push(format!(
        "findings: {} (critical {}, high {}, medium {}, low {})",
        r.findings.len(),
        sev.get("critical").unwrap_or(&0),
        sev.get("high").unwrap_or(&0),
        sev.get("medium").unwrap_or(&0),
        sev.get("low").unwrap_or(&0)
    ));
    if !r.findings.is_empty() {
        let cats: Vec<String> = r
            .summary
            .by_category
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        out.push(format!("  by category: {}", cats.join(", ")));
        let w = r
            .findings
            .iter()
            .map(|f| f.rule.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push(format!(
            "  {:<8} {:<w$} {:>5}  MESSAGE",
            "SEVERITY", "RULE", "COUNT"
        ));
        for f in &r.findings {
            out.push(format!(
                "  {:<8} {:<w$} {:>5}  {}",
                f.severity.as_str(),
                f.rule,
                f.count,
                term_safe(&f.message)
            ));
        }
    }
    for (rule, n) in &r.findings_unlisted {
        out.push(format!(
            "  {rule}: {n} more occurrence(s) not listed (over {} distinct findings)",
            crate::detect::findings::MAX_PER_RULE
        ));
    }
    if !r.egress.is_empty() {
        out.push("egress:".into());
        for e in &r.egress {
            out.push(format!(
                "  {}{} {} x{} {} by {}",
                e.endpoint(),
                term_safe(&e.domain_note()),
                e.via,
                e.count,
                if e.allowed { "allowed" } else { "NOT ALLOWED" },
                term_safe(&e.process_list())
            ));
        }
    }
    if r.egress_unlisted > 0 {
        out.push(format!(
            "  {} more connection(s)/send(s) to destinations not listed (over {} distinct)",
            r.egress_unlisted,
            crate::detect::analyzer::MAX_EGRESS
        ));
    }
    if let Some(m) = &r.monitor {
        out.push(format!(
            "buildwatch itself: {:.2} s CPU (user {:.2}, system {:.2}), peak memory {:.1} MiB",
            (m.cpu_user_ms + m.cpu_system_ms) as f64 / 1000.0,
            m.cpu_user_ms as f64 / 1000.0,
            m.cpu_system_ms as f64 / 1000.0,
            m.max_rss_kib as f64 / 1024.0
        ));
    }
    let v = &r.verdict;
    if v.failed {
        out.push(format!(
            "policy: FAILED ({}); exit status {}",
            v.reasons.join("; "),
            v.exit_status
        ));
    } else {
        out.push(format!("policy: passed (fail_on {})", v.fail_on));
    }
    out
}

fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let verdict = if r.verdict.failed {
        "❌ failed"
    } else {
        "✅ passed"
    };
    let _ = writeln!(m, "## buildwatch: {verdict}\n");
    let _ = writeln!(m, "Command: {}  ", md(&r.command.join(" ")));
    let _ = writeln!(
        m,
        "Exit code: {}; fail on: {}; events: {} (lost {})\n",
        r.exit_code.map_or("unknown".into(), |c| c.to_string()),
        r.verdict.fail_on,
        r.events.total,
        r.events.lost
    );
    for reason in &r.verdict.reasons {
        let _ = writeln!(m, "- {}", md(reason));
    }
    if r.findings.is_empty() {
        let _ = writeln!(m, "No findings.");
    } else {
        let _ = writeln!(
            m,
            "\n| Severity | Category | Rule | Count | Finding | Package |"
        );
        let _ = writeln!(m, "|---|---|---|---:|---|---|");
        for f in &r.findings {
            let pkg = f.package.as_ref().map_or(String::new(), |p| {
                md(&format!(
                    "{} {}{}",
                    p.manager,
                    p.name,
                    p.version
                        .as_ref()
                        .map(|v| format!("@{v}"))
                        .unwrap_or_default()
                ))
            });
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                f.severity,
                md(&f.category),
                md(&f.rule),
                f.count,
                md(&f.message),
                pkg
            );
        }
    }
    if !r.egress.is_empty() {
        let _ = writeln!(
            m,
            "\n| Destination | Domains | Via | Count | Allowed | Processes |"
        );
        let _ = writeln!(m, "|---|---|---|---:|---|---|");
        for e in &r.egress {
            let domains: Vec<&str> = e.domains.iter().map(String::as_str).collect();
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                md(&e.endpoint()),
                md(&domains.join(", ")),
                e.via,
                e.count,
                if e.allowed { "yes" } else { "**no**" },
                md(&e.process_list())
            );
        }
    }
    m
}

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

/// Write the requested outputs. Markdown is appended (GitHub's step summary is shared by all
/// steps of a job); the others are replaced.
pub fn write_outputs(r: &Report, rules: &RuleSet, out: &Outputs) -> io::Result<()> {
    if let Some(p) = &out.report {
        write_json(p, &serde_json::to_value(r).map_err(io::Error::other)?)?;
    }
    if let Some(p) = &out.sarif {
        write_json(p, &sarif(r, rules))?;
    }
    if let Some(p) = &out.summary_md {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        f.write_all(markdown(r).as_bytes())?;
    }
    Ok(())
}

fn write_json(p: &Path, v: &serde_json::Value) -> io::Result<()> {
    let mut s = serde_json::to_string_pretty(v).map_err(io::Error::other)?;
    s.push('\n');
    std::fs::write(p, s)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", p.display())))
}

/// Where the outputs go.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    pub report: Option<std::path::PathBuf>,
    pub sarif: Option<std::path::PathBuf>,
    pub summary_md: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_is_defused() {
        assert_eq!(term_safe("a\x1b[31mb"), "a\\u{1b}[31mb");
        assert_eq!(md("x|y`<script>"), "x\\|y\\`\\<script\\>");
        assert_eq!(file_uri("/tmp/a b/ü"), "file:///tmp/a%20b/%C3%BC");
        assert_eq!(fingerprint("r", "m"), fingerprint("r", "m"));
        assert_ne!(fingerprint("r", "m"), fingerprint("rm", ""));
    }

    #[test]
    fn long_names_are_shortened_keeping_both_ends() {
        assert_eq!(shorten("short.test", 72), "short.test");
        let long = format!("{}.0.exfil.test", "a".repeat(100));
        let s = shorten(&long, 20);
        assert_eq!(s.chars().count(), 20);
        assert!(
            s.starts_with("aaaaaaaaaa…") && s.ends_with("xfil.test"),
            "{s}"
        );
    }
}
