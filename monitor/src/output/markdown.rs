//! The Markdown encoder: the report as a GitHub step summary. Every string from the watched
//! build is escaped for Markdown (table cells cannot be broken out of, no HTML, no links).

use std::fmt::Write as _;

use crate::output::report::Report;

/// A string from the watched build, safe anywhere in Markdown (table cells included).
pub fn escape(s: &str) -> String {
    md(s)
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
    if r.allow_32bit_syscalls {
        let _ = writeln!(m, "\n**{}**", md(crate::output::text::UNSEEN_32BIT));
    }
    let _ = writeln!(
        m,
        "\n{}\n",
        md(&crate::output::text::policy_files_line(
            &r.policy_files,
            false
        ))
    );
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
                if e.refused {
                    "**refused**"
                } else if e.redirected {
                    "DNS proxy"
                } else if e.allowed {
                    "yes"
                } else {
                    "**no**"
                },
                md(&e.process_list())
            );
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metacharacters_are_escaped() {
        assert_eq!(md("x|y`<script>"), "x\\|y\\`\\<script\\>");
        assert_eq!(md("a\nb"), "a b");
    }
}
