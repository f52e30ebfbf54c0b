//! The terminal encoder: the live finding line, buildwatch's notices and the end-of-run
//! summary, as lines prefixed `buildwatch:` for stderr. Every line is escaped here, in one
//! place: control characters from the watched build (paths, argv, package names, DNS names)
//! never reach the terminal raw.

use std::{borrow::Cow, fmt::Write as _, sync::OnceLock};

use crate::{
    detect::findings::Finding,
    event::{Detail, Event, Exit},
    output::report::Report,
};

/// Every terminal line fits this many columns, prefix included; the report and the event
/// stream keep the whole text.
pub const WIDTH: usize = 100;
const PREFIX: &str = "buildwatch: ";

/// How the terminal output looks, set once from the command line (`--color`, `-q`, `-v`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours on severity tags and the verdict.
    pub color: bool,
    /// Findings and the verdict only: no notices, no summary tables.
    pub quiet: bool,
    /// Also a line per exec, connection and DNS query as they happen.
    pub verbose: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

/// Set the terminal style (first call wins; tests and library users get the default).
pub fn set_style(s: Style) {
    let _ = STYLE.set(s);
}

pub fn style() -> Style {
    STYLE.get().copied().unwrap_or_default()
}

/// Colour by default: on a terminal, and in GitHub Actions' log (which renders ANSI), unless
/// NO_COLOR is set (https://no-color.org) or TERM is dumb.
pub fn color_auto(stderr_is_tty: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var("TERM").as_deref() == Ok("dumb");
    let actions = std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true");
    !no_color && (stderr_is_tty && !dumb || actions)
}

/// The lines as written to the terminal: prefixed, escaped, cut to [`WIDTH`] columns,
/// coloured when the style says so, newline-terminated.
pub fn lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> String {
    let color = style().color;
    let mut out = String::new();
    for l in lines {
        let safe = term_safe(l.as_ref());
        let fitted = shorten(&safe, WIDTH - PREFIX.len());
        out.push_str(PREFIX);
        if color {
            out.push_str(&paint(&fitted));
        } else {
            out.push_str(&fitted);
        }
        out.push('\n');
    }
    out
}

/// Colour the severity tag of a finding line and the verdict (the text is already escaped:
/// these are the only escape sequences in it).
fn paint(line: &str) -> String {
    const RESET: &str = "\x1b[0m";
    for (tag, code) in [
        ("[CRITICAL]", "\x1b[1;31m"),
        ("[HIGH]", "\x1b[31m"),
        ("[MEDIUM]", "\x1b[33m"),
        ("[LOW]", "\x1b[36m"),
        ("policy: FAILED", "\x1b[1;31m"),
        ("policy: passed", "\x1b[32m"),
    ] {
        if let Some(rest) = line.strip_prefix(tag) {
            return format!("{code}{tag}{RESET}{rest}");
        }
    }
    line.to_owned()
}

/// `-v`: one line for an exec, connection or DNS query, as it happens.
pub fn event_line(ev: &Event) -> Option<String> {
    let who = ev
        .exe
        .as_deref()
        .map(|e| e.rsplit('/').next().unwrap_or(e))
        .unwrap_or("?");
    match &ev.detail {
        Detail::Exec(x) if x.outcome.ret == 0 => {
            Some(format!("exec [pid {}] {}", ev.pid, x.argv.join(" ")))
        }
        Detail::Connect(c) => Some(format!(
            "connect [pid {} {who}] {}{}{}",
            ev.pid,
            c.dest
                .address
                .as_deref()
                .or(c.dest.path.as_deref())
                .unwrap_or("?"),
            c.dest.port.map(|p| format!(":{p}")).unwrap_or_default(),
            c.dest
                .domain
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )),
        Detail::Dns(d) if d.direction == "query" => Some(format!(
            "dns [pid {} {who}] {} {}",
            ev.pid,
            d.qname.as_deref().unwrap_or("?"),
            d.qtype.as_deref().unwrap_or("")
        )),
        _ => None,
    }
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

/// The lines shown when a finding first appears (escaped by [`lines`] like every line): the
/// severity, rule and message, then, indented, the package and step, the DNS name and the
/// other rules the same action matched.
pub fn live_lines(f: &Finding) -> Vec<String> {
    let head = format!("[{}] {}: ", f.severity.as_str().to_uppercase(), f.rule);
    let pid = format!(" [pid {}]", f.process.pid);
    // The message gives way: the whole of it is in the report.
    let room = (WIDTH - PREFIX.len())
        .saturating_sub(head.chars().count() + pid.len())
        .max(24);
    let mut out = vec![format!(
        "{head}{}{pid}",
        shorten(&term_safe(&f.message), room)
    )];
    let mut more = Vec::new();
    if let Some(p) = &f.package {
        more.push(format!("package {}", package_label(p)));
    }
    if let Some(q) = f.detail.get("qname").and_then(|q| q.as_str()) {
        more.push(format!("query {}", shorten(q, 60)));
    }
    if !f.parts.is_empty() {
        let names: Vec<&str> = f.parts.iter().map(|p| p.rule.as_str()).collect();
        more.push(format!("also {}", names.join(", ")));
    }
    for m in more {
        out.push(format!("  {m}"));
    }
    out
}

/// `npm name@version, step`: which package, and which of its steps.
pub fn package_label(p: &crate::event::Package) -> String {
    let mut s = format!("{} {}", p.manager, p.name);
    if let Some(v) = &p.version {
        let _ = write!(s, "@{v}");
    }
    if let Some(step) = &p.step {
        let _ = write!(s, ", {step}");
    }
    s
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
    if style().quiet {
        return verdict_lines(r);
    }
    if let Some(end) = &r.run_end {
        let kinds: Vec<String> = r
            .events
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut line = format!("{} events; lost {}", r.events.total, r.events.lost);
        if let Some(p) = &end.pipeline {
            let unreadable = p.kernel.total("read_error");
            if unreadable > 0 {
                let _ = write!(line, "; unreadable arguments {unreadable}");
            }
        }
        let _ = write!(line, "; command {}", describe(&end.status));
        out.push(line);
        out.push(format!("  by kind: {}", kinds.join(", ")));
        if r.events.reads_summarized > 0 {
            out.push(format!(
                "  reads of system directories counted, not listed: {} (--all-reads lists them)",
                r.events.reads_summarized
            ));
        }
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
            let related = if f.parts.is_empty() {
                String::new()
            } else {
                format!(" (+{} related)", f.parts.len())
            };
            let room = (WIDTH - PREFIX.len())
                .saturating_sub(2 + 9 + w + 1 + 5 + 2 + related.len())
                .max(24);
            out.push(format!(
                "  {:<8} {:<w$} {:>5}  {}{related}",
                f.severity.as_str(),
                f.rule,
                f.count,
                shorten(&term_safe(&f.message), room)
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
                if e.refused {
                    "REFUSED (block mode)"
                } else if e.redirected {
                    "to the DNS proxy (block mode)"
                } else if e.allowed {
                    "allowed"
                } else {
                    "NOT ALLOWED"
                },
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
    for f in &r.forwarding {
        out.push(format!("forwarding to {}:", f.name));
        let mut line = format!(
            "  {} delivered, {} waiting in the spool",
            f.delivered, f.pending
        );
        if f.rejected > 0 {
            line.push_str(&format!(", {} refused by the receiver", f.rejected));
        }
        if f.dropped_full > 0 {
            line.push_str(&format!(", {} dropped (spool full)", f.dropped_full));
        }
        out.push(line);
        if f.pending > 0
            && let Some(e) = &f.last_error
        {
            out.push(format!("  last error: {e}"));
        }
    }
    if r.allow_32bit_syscalls {
        out.push(UNSEEN_32BIT.into());
    }
    if r.policy_files.is_empty() {
        out.push(policy_files_line(&r.policy_files, true));
    }
    for f in &r.policy_files {
        // One line each: a long path is cut in its middle, the checksum stays.
        out.push(format!(
            "policy file: {} {} (sha256 {})",
            f.kind,
            f.path,
            f.sha256.get(..12).unwrap_or(&f.sha256)
        ));
    }
    out.extend(verdict_lines(r));
    out
}

/// The verdict, and each reason on a line of its own.
fn verdict_lines(r: &Report) -> Vec<String> {
    let v = &r.verdict;
    if !v.failed {
        return vec![format!("policy: passed (fail_on {})", v.fail_on)];
    }
    let mut out = vec![format!("policy: FAILED; exit status {}", v.exit_status)];
    for why in &v.reasons {
        // Wrapped, not cut: each reason is what a user has to act on.
        for (i, l) in wrap(why, WIDTH - PREFIX.len() - 11).into_iter().enumerate() {
            out.push(format!(
                "{}{l}",
                if i == 0 { "  because: " } else { "           " }
            ));
        }
    }
    out
}

/// `text` in lines of at most `width` characters, broken at spaces where it can be.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        let n = cur.chars().count();
        if n > 0 && n + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    out.push(cur);
    out
}

/// What every report says of a run with `--allow-32bit-syscalls`.
pub const UNSEEN_32BIT: &str = "32-bit syscalls allowed, and not seen (--allow-32bit-syscalls)";

/// Which policy judged the run: every file loaded, with its SHA-256 (`short`: its first 12
/// hex digits, for the terminal; the report has them whole).
pub fn policy_files_line(files: &[crate::policy::Source], short: bool) -> String {
    if files.is_empty() {
        return "policy files: none (built-in rules and default policy)".into();
    }
    let list: Vec<String> = files
        .iter()
        .map(|f| {
            let sum = if short {
                f.sha256.get(..12).unwrap_or(&f.sha256)
            } else {
                &f.sha256
            };
            format!("{} {} (sha256 {sum})", f.kind, f.path)
        })
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
            "process 7 outlived the command: killed: evil\x1b]0;x\x07",
        ]);
        assert_eq!(
            out,
            "buildwatch: ok\nbuildwatch: process 7 outlived the command: killed: evil\\u{1b}]0;x\\u{7}\n"
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
