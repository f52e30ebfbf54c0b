//! The terminal encoder: the live finding line, buildwatch's notices and the end-of-run
//! summary, as lines prefixed `buildwatch:` for stderr. Every line is escaped here, in one
//! place: control characters from the watched build (paths, argv, package names, DNS names)
//! never reach the terminal raw.

use std::{borrow::Cow, fmt::Write as _};

use crate::{detect::findings::Finding, event::Exit, output::report::Report};

/// The lines as written to the terminal: prefixed, escaped, newline-terminated.
pub fn lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str("buildwatch: ");
        out.push_str(&term_safe(l.as_ref()));
        out.push('\n');
    }
    out
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

/// The line shown when a finding first appears (escaped by [`lines`] like every line).
pub fn live_line(f: &Finding) -> String {
    let mut line = format!(
        "[{}] {}: {}",
        f.severity.as_str().to_uppercase(),
        f.rule,
        f.message
    );
    if let Some(p) = &f.package {
        let _ = write!(line, " (package {} {}", p.manager, p.name);
        if let Some(v) = &p.version {
            let _ = write!(line, "@{v}");
        }
        line.push(')');
    }
    if let Some(q) = f.detail.get("qname").and_then(|q| q.as_str()) {
        let _ = write!(line, " query {}", shorten(q, 72));
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

/// The end-of-run summary: the run's totals, findings, egress, buildwatch's own cost, output
/// problems and the verdict.
pub fn terminal_summary(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(end) = &r.run_end {
        let kinds: Vec<String> = r
            .events
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut line = format!(
            "{} events ({}); lost {}",
            r.events.total,
            kinds.join(", "),
            r.events.lost
        );
        if let Some(p) = &end.pipeline {
            let unreadable = p.kernel.total("read_error");
            if unreadable > 0 {
                let _ = write!(line, "; unreadable arguments {unreadable}");
            }
        }
        let _ = write!(line, "; command {}", describe(&end.status));
        out.push(line);
        if let Some(p) = &end.pipeline {
            let kernel: Vec<String> = p
                .kernel
                .sensors
                .iter()
                .flat_map(|(sensor, reasons)| {
                    reasons
                        .iter()
                        .map(move |(r, n)| format!("{sensor} {r} {n}"))
                })
                .collect();
            if !kernel.is_empty() {
                out.push(format!("kernel sensors counted: {}", kernel.join(", ")));
            }
            if let Some(d) = p.drain.as_ref().filter(|d| d.skipped > 0 || !d.complete) {
                out.push(format!(
                    "end-of-run drain: {} record(s) processed, {} read but not processed \
                     (budget {} ms / {} records){}",
                    d.drained,
                    d.skipped,
                    d.budget_ms,
                    d.budget_records,
                    if d.complete {
                        ""
                    } else {
                        "; the ring was not empty when it stopped"
                    }
                ));
            }
        }
    }
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
                f.message
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
                e.domain_note(),
                e.via,
                e.count,
                if e.allowed { "allowed" } else { "NOT ALLOWED" },
                e.process_list()
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
    for sink in &r.output {
        out.push(format!(
            "output {} incomplete: {} written, {} dropped (queue full), {} unwritten{}",
            sink.name,
            sink.written,
            sink.dropped,
            sink.unwritten,
            sink.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    out.push(policy_files_line(&r.policy_files));
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

/// Which policy judged the run: every file loaded, with its SHA-256.
pub fn policy_files_line(files: &[crate::policy::Source]) -> String {
    if files.is_empty() {
        return "policy files: none (built-in rules and default policy)".into();
    }
    let list: Vec<String> = files
        .iter()
        .map(|f| format!("{} {} (sha256 {})", f.kind, f.path, f.sha256))
        .collect();
    format!("policy files: {}", list.join(", "))
}

fn describe(status: &Exit) -> String {
    match (status.code, status.signal) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!(
            "killed by {}",
            status
                .signal_name
                .clone()
                .unwrap_or_else(|| format!("signal {s}"))
        ),
        _ => "ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_escaped() {
        assert_eq!(term_safe("a\x1b[31mb"), "a\\u{1b}[31mb");
        let out = lines([
            "ok",
            "process 7 (evil\x1b]0;x\x07) outlived the command: killed",
        ]);
        assert_eq!(
            out,
            "buildwatch: ok\nbuildwatch: process 7 (evil\\u{1b}]0;x\\u{7}) outlived the command: killed\n"
        );
        assert_eq!(lines(["two\nlines"]), "buildwatch: two\\u{a}lines\n");
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
