//! `buildwatch replay EVENTS.jsonl`: evaluates a recorded event stream (from `run --events`)
//! with the current rules and policy, without root or BPF, and writes the same outputs a live
//! run does. The events go through the same pipeline as a live run's, entering at the context
//! stage (they carry their context already), so they meet the same detect and output stages:
//! given the same rules and policy, a replay reaches the live run's findings and verdict.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
    sync::Arc,
};

use crate::{
    detect::analyzer::Analyzer,
    event::{self, Event},
    mode::outputs,
    output::{Outputs, bus::Record},
    pipeline::Pipeline,
    policy::config::Setup,
};

/// Longest line accepted (a legitimate event is a few KiB; argv is capped at 4 KiB).
const MAX_LINE: u64 = 1 << 20;
/// Bad lines described individually before only counting.
const MAX_LINE_ERRORS: u64 = 10;

/// Replay a recorded stream through the pipeline (entering at the context stage) and write
/// the outputs a live run would.
pub fn replay(path: &Path, setup: Setup, outputs: &Outputs) -> anyhow::Result<i32> {
    let input: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(
            File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?,
        )
    };
    let name = path.display().to_string();
    let bus = Arc::new(outputs::bus(None, outputs)?);
    let pipeline = Pipeline::start(Analyzer::new(setup.rules, setup.policy), bus.clone(), false)?;
    let fed = feed(&name, input, &pipeline);
    let analyzer = pipeline.finish();
    let bad = fed?;
    if bad > 0 {
        bus.publish(&Record::Notice(
            format!("{name}: {bad} line(s) were not events and were skipped").into(),
        ));
    }
    let report = outputs::conclude(&bus, analyzer)?;
    Ok(report.verdict.exit_status)
}

/// Send every event of a stream into the pipeline; returns how many lines were not events.
fn feed(name: &str, input: impl Read, pipeline: &Pipeline) -> anyhow::Result<u64> {
    let note = |msg: String| pipeline.bus().publish(&Record::Notice(msg.into()));
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
                    pipeline.send_recorded(ev);
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
                note(format!("{name}:{n}: not an event: {c}"));
            }
        }
    }
    Ok(bad)
}
