//! Encoders: one record in, the bytes a sink of that format writes out (or nothing, when the
//! format has no use for the record). The bus calls each format once per record and shares
//! the bytes among that format's sinks.

use bytes::Bytes;

use crate::output::{annotations, bus::Record, codequality, markdown, sarif, text};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Events, one JSON object per line (docs/events.md).
    JsonLines = 0,
    /// Lines for a person at a terminal: findings as they appear, notices, the summary.
    Terminal = 1,
    /// The JSON report (docs/report.md).
    ReportJson = 2,
    /// SARIF 2.1.0.
    Sarif = 3,
    /// The Markdown step summary.
    Markdown = 4,
    /// GitHub workflow commands, one annotation per finding.
    Annotations = 5,
    /// GitLab's Code Quality report.
    CodeQuality = 6,
    /// The agent's stream: events as in [`Format::JsonLines`], and findings as lines of kind
    /// `finding`, as they are found.
    Agent = 7,
}

impl Format {
    pub const COUNT: usize = 8;

    pub fn name(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Terminal => "terminal",
            Format::ReportJson => "report",
            Format::Sarif => "sarif",
            Format::Markdown => "markdown",
            Format::Annotations => "annotations",
            Format::CodeQuality => "codequality",
            Format::Agent => "agent",
        }
    }

    /// Formats of the report, written once at the end.
    pub fn is_report(self) -> bool {
        matches!(
            self,
            Format::ReportJson | Format::Sarif | Format::Markdown | Format::CodeQuality
        )
    }
}

pub fn encode(format: Format, rec: &Record) -> Option<Bytes> {
    match (format, rec) {
        (Format::JsonLines | Format::Agent, Record::Event(ev)) => {
            // Written into the thread's scratch buffer, then copied out at its exact size: no
            // growing a fresh buffer per event, and no spare capacity held in the sinks' queues.
            thread_local! {
                static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            SCRATCH.with_borrow_mut(|v| {
                v.clear();
                crate::event::json::write(ev, v).ok()?;
                // Debug builds (the end-to-end tests') check every event against serde's bytes.
                debug_assert_eq!(
                    String::from_utf8_lossy(v),
                    String::from_utf8_lossy(&serde_json::to_vec(&**ev).unwrap_or_default())
                );
                v.push(b'\n');
                let line = Bytes::copy_from_slice(v);
                // One huge event does not keep its buffer for the thread's life.
                if v.capacity() > 64 << 10 {
                    *v = Vec::new();
                }
                Some(line)
            })
        }
        (Format::Agent, Record::Rollup(v) | Record::Summary(v)) => {
            let mut v = serde_json::to_vec(&**v).ok()?;
            v.push(b'\n');
            Some(v.into())
        }
        (Format::Agent, Record::Finding(f)) => {
            let mut v = serde_json::to_vec(&serde_json::json!({
                "schema": crate::event::SCHEMA,
                "kind": "finding",
                "time": f.first_seen,
                // When buildwatch raised it (the bus encodes a finding as it is published):
                // detection latency is `detected` - `time`.
                "detected": crate::context::proctable::format_time(now_ns()),
                "finding": &**f,
            }))
            .ok()?;
            v.push(b'\n');
            Some(v.into())
        }
        (Format::Terminal, Record::Finding(f)) => Some(text::lines(text::live_lines(f)).into()),
        (Format::Terminal, Record::Notice(_)) if text::style().quiet => None,
        (Format::Terminal, Record::Notice(n)) => Some(text::lines([&**n]).into()),
        (Format::Terminal, Record::Event(ev)) if text::style().verbose => {
            text::event_line(ev).map(|l| text::lines([l]).into())
        }
        (Format::Terminal, Record::SinkError { sink, error }) => {
            Some(text::lines([format!("output {sink} failed: {error}")]).into())
        }
        (Format::Terminal, Record::Report(f)) => {
            Some(text::lines(text::terminal_summary(&f.report)).into())
        }
        (Format::ReportJson, Record::Report(f)) => pretty(&serde_json::to_value(&f.report).ok()?),
        (Format::Sarif, Record::Report(f)) => {
            pretty(&sarif::sarif(&f.report, &f.rules, &f.sarif_category))
        }
        (Format::Markdown, Record::Report(f)) => Some(markdown::markdown(&f.report).into()),
        (Format::Annotations, Record::Report(f)) => {
            Some(annotations::annotations(&f.report).into())
        }
        (Format::CodeQuality, Record::Report(f)) => pretty(&codequality::codequality(&f.report)),
        _ => None,
    }
}

/// Nanoseconds since the Unix epoch, now.
fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn pretty(v: &serde_json::Value) -> Option<Bytes> {
    let mut s = serde_json::to_vec_pretty(v).ok()?;
    s.push(b'\n');
    Some(s.into())
}
