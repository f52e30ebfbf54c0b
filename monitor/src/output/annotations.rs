//! GitHub workflow commands for findings: `::error file=…,line=…,title=…::message`, which the
//! runner shows as annotations on the run and, with a file and line, on the pull request's
//! diff. Critical and high findings are errors, medium warnings, low notices.
//!
//! Everything in them comes from the watched build (messages, paths, package names), and a
//! workflow command is a line the runner parses: each value is escaped as the runner expects
//! (`%`, CR and LF in the message; also `:` and `,` in properties), and other control
//! characters are shown as `\u{..}`, so no finding can end its line early and issue a command
//! of its own (`::add-mask::`, `::stop-commands::`).

use std::fmt::Write as _;

use crate::{detect::rules::Severity, output::report::Report};

/// The runner shows at most 10 errors and 10 warnings per step and 50 per job; the most
/// severe come first, the rest are counted in one notice.
pub const MAX: usize = 50;

pub fn annotations(r: &Report) -> String {
    let mut out = String::new();
    for f in r.findings.iter().take(MAX) {
        let level = match f.severity {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low => "notice",
        };
        let mut props = Vec::new();
        if let Some(loc) = &f.location {
            props.push(format!("file={}", property(&loc.path)));
            props.push(format!("line={}", loc.line));
        }
        props.push(format!(
            "title={}",
            property(&format!("buildwatch {} ({})", f.rule, f.severity.as_str()))
        ));
        let mut msg = f.message.clone();
        if let Some(p) = &f.package {
            let _ = write!(msg, " (package {})", crate::output::text::package_label(p));
        }
        if f.count > 1 {
            let _ = write!(msg, " ×{}", f.count);
        }
        let _ = writeln!(out, "::{level} {}::{}", props.join(","), data(&msg));
    }
    if r.findings.len() > MAX {
        let _ = writeln!(
            out,
            "::notice title=buildwatch::{}",
            data(&format!(
                "{} more finding(s) in the report and SARIF",
                r.findings.len() - MAX
            ))
        );
    }
    out
}

/// A command's message: `%`, CR and LF escaped the runner's way, other control characters
/// shown as `\u{..}`.
fn data(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// A property value: as [`data`], and `:` and `,` too.
fn property(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_cannot_issue_its_own_command() {
        let evil = "x\n::add-mask::secret\r\n::stop-commands::t\u{1b}[31m 100%";
        let d = data(evil);
        assert!(!d.contains('\n') && !d.contains('\r') && !d.contains('\u{1b}'));
        assert_eq!(
            d,
            "x%0A::add-mask::secret%0D%0A::stop-commands::t\\u{1b}[31m 100%25"
        );
        assert_eq!(property("a:b,c"), "a%3Ab%2Cc");
    }
}
