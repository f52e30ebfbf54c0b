//! `buildwatch replay EVENTS.jsonl`: evaluates a recorded event stream (from `run --events`)
//! with the current rules and policy, without root or BPF, and writes the same outputs a live
//! run does. Given the same rules and policy, it reaches the live run's findings and verdict.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
};

use crate::{
    detect::analyzer::Analyzer,
    event::{self, Event},
    mode::note,
    output::report::{self, Outputs, Report},
    policy::config::Setup,
};

/// Longest line accepted (a legitimate event is a few KiB; argv is capped at 4 KiB).
const MAX_LINE: u64 = 1 << 20;
/// Bad lines described individually before only counting.
const MAX_LINE_ERRORS: u64 = 10;

pub struct ReplayResult {
    pub report: Report,
    /// Lines that were not events of a known schema.
    pub bad_lines: u64,
}

pub fn replay(path: &Path, setup: Setup, outputs: &Outputs) -> anyhow::Result<i32> {
    let input: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(
            File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?,
        )
    };
    let name = path.display().to_string();
    let mut a = Analyzer::new(setup.rules, setup.policy);
    let r = evaluate(&name, input, &mut a, &mut |f| note(&report::live_line(f)))?;
    for line in report::terminal_summary(&r.report) {
        note(&line);
    }
    if r.bad_lines > 0 {
        note(&format!(
            "{}: {} line(s) were not events and were skipped",
            name, r.bad_lines
        ));
    }
    report::write_outputs(&r.report, &a.rules, outputs)?;
    Ok(r.report.verdict.exit_status)
}

/// Feed every event of a stream to the analyzer.
pub fn evaluate(
    name: &str,
    input: impl Read,
    a: &mut Analyzer,
    on_new: &mut dyn FnMut(&crate::detect::findings::Finding),
) -> anyhow::Result<ReplayResult> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut line = Vec::new();
    let mut n = 0u64;
    let mut bad = 0u64;
    loop {
        line.clear();
        let got = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)?;
        if got == 0 {
            break;
        }
        n += 1;
        let complaint = if line.len() as u64 > MAX_LINE && !line.ends_with(b"\n") {
            // Skip the rest of the over-long line.
            loop {
                let mut rest = Vec::new();
                let k = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut rest)?;
                if k == 0 || rest.ends_with(b"\n") {
                    break;
                }
            }
            Some(format!("longer than {MAX_LINE} bytes"))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            match serde_json::from_slice::<Event>(&line) {
                Ok(ev) if ev.schema == event::SCHEMA => {
                    a.observe(&ev, on_new);
                    None
                }
                Ok(ev) => Some(format!(
                    "event schema {} (this buildwatch reads {})",
                    ev.schema,
                    event::SCHEMA
                )),
                Err(e) => Some(e.to_string()),
            }
        };
        if let Some(c) = complaint {
            bad += 1;
            if bad <= MAX_LINE_ERRORS {
                note(&format!("{name}:{n}: not an event: {c}"));
            }
        }
    }
    Ok(ReplayResult {
        report: Report::new(a),
        bad_lines: bad,
    })
}
