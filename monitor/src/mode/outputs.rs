//! The outputs a mode asks for, as sinks on one bus, and the end of a run or replay: close the
//! event sinks, judge, publish the report to the report sinks and the terminal.

use std::{
    fs, io,
    os::unix::fs::FileTypeExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::{
    detect::analyzer::Analyzer,
    output::{
        Outputs,
        bus::{Bus, Record},
        encode::Format,
        report::{Final, Report},
        sink::{LazyFile, Stream},
    },
};

/// How long a run's forwarding outputs get, at its end, to deliver (`forward_wait_secs`).
pub const FORWARD_WAIT: Duration = Duration::from_secs(10);

/// How long the sinks get, at the end, to write what they have queued. A sink still busy then
/// (a FIFO nobody reads, a hung network filesystem) is abandoned and reported as stalled.
pub const SINK_DEADLINE: Duration = Duration::from_secs(5);

/// The bus with the terminal (stderr), the event stream (`events`: a file, a FIFO, or `-` for
/// stdout) and the report files. A regular events file is created now, so a bad path fails
/// before anything runs; a FIFO is opened by its sink's thread (opening one waits for a reader).
/// Check every output path before anything runs: a report that cannot be written must stop a
/// build before it starts, not after it ran for an hour. An existing file is opened for
/// appending (nothing in it changes); a missing one is created and removed again. FIFOs and
/// `-` (stdout) are not opened (a FIFO's open waits for its reader).
pub fn check_paths(events: Option<&Path>, outputs: &Outputs) -> anyhow::Result<()> {
    let paths = [
        ("--events", events),
        ("--report", outputs.report.as_deref()),
        ("--sarif", outputs.sarif.as_deref()),
        ("--summary-md", outputs.summary_md.as_deref()),
        ("--codequality", outputs.codequality.as_deref()),
    ];
    for (flag, path) in paths {
        let Some(p) = path else { continue };
        if p.as_os_str() == "-" && flag == "--events" {
            continue;
        }
        let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{flag} {}: {e}", p.display());
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => return Err(fail(&"is a directory")),
            Ok(m) if m.file_type().is_fifo() => {}
            Ok(_) => {
                fs::OpenOptions::new()
                    .append(true)
                    .open(p)
                    .map_err(|e| fail(&e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(p)
                    .map_err(|e| fail(&e))?;
                let _ = fs::remove_file(p);
            }
            Err(e) => return Err(fail(&e)),
        }
    }
    Ok(())
}

pub fn bus(events: Option<&Path>, outputs: &Outputs) -> anyhow::Result<Bus> {
    let mut bus = Bus::new();
    bus.add(
        "terminal",
        Format::Terminal,
        Box::new(Stream::new(io::stderr(), "stderr")),
    );
    if let Some(p) = events {
        if p.as_os_str() == "-" {
            bus.add(
                "events",
                Format::JsonLines,
                Box::new(Stream::new(io::stdout(), "stdout")),
            );
        } else if fs::metadata(p).is_ok_and(|m| m.file_type().is_fifo()) {
            bus.add(
                "events",
                Format::JsonLines,
                Box::new(LazyFile::new(p.to_path_buf(), false)),
            );
        } else {
            let f = fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            bus.add(
                "events",
                Format::JsonLines,
                Box::new(Stream::new(f, &p.display().to_string())),
            );
        }
    }
    if outputs.annotations {
        // Workflow commands are read from the step's output; stdout unless the event stream
        // has it.
        let to_stdout = !events.is_some_and(|p| p.as_os_str() == "-");
        let stream: Box<dyn crate::output::sink::Writer> = if to_stdout {
            Box::new(Stream::new(io::stdout(), "stdout"))
        } else {
            Box::new(Stream::new(io::stderr(), "stderr"))
        };
        bus.add("annotations", Format::Annotations, stream);
    }
    let wait = outputs.forward_wait.unwrap_or(FORWARD_WAIT);
    for o in &outputs.forward {
        let (name, writer, status) = crate::output::forward::open(o, wait, true)?;
        if let Some(s) = status {
            bus.forwards.push(s);
        }
        bus.add_filtered(
            &name,
            Format::Agent,
            writer,
            Some(crate::output::forward::filter(o)),
        );
    }
    for (path, format, append) in [
        (&outputs.report, Format::ReportJson, false),
        (&outputs.sarif, Format::Sarif, false),
        (&outputs.summary_md, Format::Markdown, true),
        (&outputs.codequality, Format::CodeQuality, false),
    ] {
        if let Some(p) = path {
            bus.add(
                format.name(),
                format,
                Box::new(LazyFile::new(p.clone(), append)),
            );
        }
    }
    Ok(bus)
}

/// Close the event stream, judge, and write the report everywhere it goes. Fails when a report
/// file could not be written (a CI job would read a stale or missing report).
pub fn conclude(bus: &Bus, analyzer: Analyzer, outputs: &Outputs) -> anyhow::Result<Report> {
    bus.close(|f| f == Format::JsonLines, Instant::now() + SINK_DEADLINE);
    bus.announce_errors();
    let mut report = Report::new(&analyzer, &bus.stats());
    if bus.wants(Format::Agent) {
        // The forwarding outputs get the run's summary, then deliver what they can within
        // the wait; what is left stays in their spools. The report then says which.
        bus.publish(&Record::Summary(Arc::new(run_summary(&report))));
        let wait = outputs.forward_wait.unwrap_or(FORWARD_WAIT);
        bus.close(
            |f| f == Format::Agent,
            Instant::now() + wait + SINK_DEADLINE,
        );
        bus.announce_errors();
        report.output = bus.stats().into_iter().filter(|s| !s.complete()).collect();
        report.forwarding = bus.forwards.iter().map(|s| s.stats()).collect();
    }
    if let Some(path) = &outputs.learn {
        let v = serde_json::to_value(&report).unwrap_or_default();
        let policy = crate::mode::learn::learn(&v, "this run").map_err(|e| anyhow::anyhow!(e))?;
        std::fs::write(path, policy).with_context(|| format!("--learn {}", path.display()))?;
    }
    bus.publish(&Record::Report(Arc::new(Final {
        report: report.clone(),
        rules: analyzer.rules,
        sarif_category: outputs
            .sarif_category
            .clone()
            .unwrap_or_else(|| crate::output::sarif::DEFAULT_CATEGORY.to_owned()),
    })));
    bus.close(|_| true, Instant::now() + SINK_DEADLINE);
    let failed: Vec<String> = bus
        .stats()
        .into_iter()
        .filter(|s| {
            matches!(
                s.format.as_str(),
                "report" | "sarif" | "markdown" | "codequality"
            ) && !s.complete()
        })
        .map(|s| {
            s.error
                .unwrap_or_else(|| format!("{}: not written", s.name))
        })
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("writing the report: {}", failed.join("; "));
    }
    Ok(report)
}

/// The line a run sends its forwarding outputs last: what ran, the verdict and the counts.
fn run_summary(r: &Report) -> serde_json::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    serde_json::json!({
        "schema": crate::event::SCHEMA,
        "kind": "run_summary",
        "time": crate::context::proctable::format_time(now),
        "run_summary": {
            "command": r.command,
            "exit_code": r.exit_code,
            "verdict": r.verdict,
            "findings": r.findings.len(),
            "by_severity": r.summary.by_severity,
            "events": r.events,
            "policy_files": r.policy_files,
        },
    })
}
