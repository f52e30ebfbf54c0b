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

use anyhow::bail;

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
    outputs::check_paths(None, outputs)?;
    let bus = Arc::new(outputs::bus(None, outputs)?);
    // The secrets a replay looks for are those in its own environment (export the CI's to
    // check a recorded stream against them).
    let mut secrets = crate::detect::secrets::Secrets::from_env(&setup.policy.secrets);
    // What the live run found is marked in the stream, where the values were replaced.
    secrets.trust_markers = true;
    let mut analyzer = Analyzer::new(setup.rules, setup.policy);
    analyzer.secrets = secrets;
    let pipeline = Pipeline::start(analyzer, bus.clone(), false)?;
    let fed = feed(&name, input, &pipeline);
    let mut analyzer = pipeline.finish();
    let Fed { events, bad } = fed?;
    if events == 0 {
        bail!(
            "{name}: no events{}: not an event stream from `buildwatch run --events`",
            if bad > 0 {
                format!(" ({bad} line(s) that are not events)")
            } else {
                " (empty)".to_owned()
            }
        );
    }
    // A stream buildwatch wrote has no bad lines and ends with `run_end`: anything else was
    // cut short or changed, and the replay cannot vouch for the run.
    if bad > 0 {
        bus.publish(&Record::Notice(
            format!("{name}: {bad} line(s) were not events and were skipped").into(),
        ));
        analyzer.unverified.push(format!(
            "{name}: {bad} line(s) are not events: the stream was damaged or changed"
        ));
    }
    if analyzer.run_end.is_none() {
        bus.publish(&Record::Notice(
            format!("{name}: the stream ends without `run_end`: it was cut short").into(),
        ));
        analyzer.unverified.push(format!(
            "{name}: the stream ends without `run_end` (truncated, or the run never finished)"
        ));
    }
    let report = outputs::conclude(&bus, analyzer, outputs)?;
    Ok(report.verdict.exit_status)
}

/// What [`feed`] sent on, and how many lines were not events.
struct Fed {
    events: u64,
    bad: u64,
}

/// The one field read before the rest: a newer schema may change everything else.
#[derive(serde::Deserialize)]
struct Schema {
    schema: u32,
}

/// Send every event of a stream into the pipeline. A line from a newer buildwatch (a higher
/// event schema) stops the replay: this one cannot judge it.
fn feed(name: &str, input: impl Read, pipeline: &Pipeline) -> anyhow::Result<Fed> {
    let note = |msg: String| pipeline.bus().publish(&Record::Notice(msg.into()));
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut line = Vec::new();
    let mut n = 0u64;
    let mut bad = 0u64;
    let mut events = 0u64;
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
            match serde_json::from_slice::<Schema>(&line) {
                Ok(s) if s.schema > event::SCHEMA => bail!(
                    "{name}:{n}: written by a newer buildwatch (event schema {}; this one reads \
                     {}): replay it with that version",
                    s.schema,
                    event::SCHEMA
                ),
                Ok(s) if s.schema < event::SCHEMA => Some(format!(
                    "event schema {} (this buildwatch reads {})",
                    s.schema,
                    event::SCHEMA
                )),
                Err(e) => Some(e.to_string()),
                Ok(_) => match serde_json::from_slice::<Event>(&line) {
                    Ok(ev) => {
                        pipeline.send_recorded(ev);
                        events += 1;
                        None
                    }
                    Err(e) => Some(e.to_string()),
                },
            }
        };
        if let Some(c) = complaint {
            bad += 1;
            if bad <= MAX_LINE_ERRORS {
                note(format!("{name}:{n}: not an event: {c}"));
            }
        }
    }
    Ok(Fed { events, bad })
}
