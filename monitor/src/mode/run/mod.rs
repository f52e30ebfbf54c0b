//! `buildwatch run`: wraps one command. Creates the run's cgroup, attaches the sensors, starts
//! the command inside the cgroup (it joins before exec, so nothing it does is missed), pumps
//! events reader → decode → process table → enrich → analyzer and sink while forwarding
//! signals, removes whatever the command left behind, then reports the verdict.

use std::{
    ffi::{CString, OsString},
    fs,
    io::{self, Write},
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    process::ExitStatus,
    time::Duration,
};

use anyhow::{Context, bail};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    context::{
        enrich,
        proctable::{LiveProc, ProcTable, boot_to_unix_offset},
    },
    detect::analyzer::Analyzer,
    event::{self, Detail, Event},
    exit,
    ingest::{decode, reader::EventReader},
    kernel::{
        cgroup::RunCgroup,
        loader::{KernelCounters, Scope, Sensors},
    },
    mode::note,
    output::{
        report::{self, Outputs, Report},
        sink::{JsonLines, Null, Sink},
    },
    policy::config::Setup,
};

pub struct RunOptions {
    /// `-` for stdout.
    pub events: Option<PathBuf>,
    pub keep_stragglers: bool,
    pub ring_bytes: u32,
    pub command: Vec<OsString>,
    pub analysis: Setup,
    pub outputs: Outputs,
}

/// Where each event goes once it has its process context: enrichment, the analyzer (live
/// finding lines), then the event sink.
struct Pipeline {
    sink: Box<dyn Sink>,
    analyzer: Analyzer,
    decode_errors: u64,
    reported_decode_errors: u64,
    sink_failed: bool,
    reported_lost: KernelCounters,
    reported_dns_discarded: u64,
}

pub async fn run(opts: RunOptions) -> anyhow::Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`buildwatch run` needs root (to load eBPF programs and create a cgroup)");
    }
    let mut cgroup = RunCgroup::create().context("creating the run's cgroup")?;
    let mut sensors = Sensors::attach(Scope::Cgroup(&cgroup), opts.ring_bytes)
        .context("loading the kernel sensors (try `buildwatch doctor`)")?;
    let mut reader = EventReader::new(sensors.take_events()?)?;
    let sink: Box<dyn Sink> = match opts.events.as_deref() {
        None => Box::new(Null),
        Some(p) if p.as_os_str() == "-" => Box::new(JsonLines::new(io::stdout())),
        Some(p) => Box::new(JsonLines::new(
            fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
    };

    // Handlers go in before the command starts: a signal sent as soon as the command is up
    // must be forwarded, not kill buildwatch with the default action.
    let mut signals = Vec::new();
    for (kind, sig) in [
        (SignalKind::interrupt(), Signal::SIGINT),
        (SignalKind::terminate(), Signal::SIGTERM),
        (SignalKind::hangup(), Signal::SIGHUP),
        (SignalKind::quit(), Signal::SIGQUIT),
    ] {
        signals.push((signal(kind).context("installing signal handlers")?, sig));
    }
    let [(int, _), (term, _), (hup, _), (quit, _)] = &mut signals[..] else {
        unreachable!()
    };

    let cwd = std::env::current_dir().context("reading the current directory")?;
    let resolvers = crate::context::dns::system_resolvers(std::path::Path::new("/etc/resolv.conf"));
    let mut child = match spawn_in_cgroup(&opts.command, &cgroup) {
        Ok(child) => child,
        Err(e) => {
            let name = opts.command[0].to_string_lossy();
            note(&format!("cannot run `{name}`: {e}"));
            return Ok(match e.kind() {
                io::ErrorKind::NotFound => exit::NOT_FOUND,
                io::ErrorKind::PermissionDenied => exit::NOT_EXECUTABLE,
                _ => exit::INTERNAL,
            });
        }
    };
    let root_pid = child.id().context("child has no pid")?;

    let mut table = ProcTable::new(LiveProc, boot_to_unix_offset());
    let argv = opts.command.iter().map(|a| a.as_bytes().to_vec()).collect();
    table.add_root(root_pid, cwd.as_os_str().as_bytes(), argv);
    let mut p = Pipeline {
        sink,
        analyzer: Analyzer::new(opts.analysis.rules, opts.analysis.policy),
        decode_errors: 0,
        reported_decode_errors: 0,
        sink_failed: false,
        reported_lost: KernelCounters::default(),
        reported_dns_discarded: 0,
    };
    let mut escaped = Vec::new();
    let run = Detail::Run(event::Run {
        command: opts
            .command
            .iter()
            .map(|a| event::text(a.as_bytes(), "run.command", &mut escaped))
            .collect(),
        cwd: event::text(cwd.as_os_str().as_bytes(), "run.cwd", &mut escaped),
        pid: root_pid,
        version: env!("CARGO_PKG_VERSION").into(),
        resolvers,
    });
    let ev = table.envelope(0, 0, boot_now(), run, escaped);
    p.record(ev);

    let status: ExitStatus = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the command")?,
            _ = int.recv() => forward(root_pid, Signal::SIGINT),
            _ = term.recv() => forward(root_pid, Signal::SIGTERM),
            _ = hup.recv() => forward(root_pid, Signal::SIGHUP),
            _ = quit.recv() => forward(root_pid, Signal::SIGQUIT),
            _ = reader.wait() => {
                p.pump(&mut reader, &mut table);
                p.report_lost(&sensors, &mut table);
            }
        }
    };
    p.pump(&mut reader, &mut table);

    // Whatever is still in the cgroup was left behind by the command.
    let stragglers = cgroup.pids();
    for pid in &stragglers {
        let mut escaped = Vec::new();
        let cmdline = cmdline(*pid, &mut escaped);
        let action = if opts.keep_stragglers {
            "kept"
        } else {
            "killed"
        };
        note(&format!(
            "process {pid} ({}) outlived the command: {action}",
            cmdline.join(" ")
        ));
        let detail = Detail::Straggler(event::Straggler {
            cmdline,
            action: action.into(),
        });
        let ev = table.envelope(*pid, *pid, boot_now(), detail, escaped);
        p.record(ev);
    }
    if opts.keep_stragglers {
        cgroup
            .release_all()
            .context("moving kept processes out of the run's cgroup")?;
    } else {
        cgroup
            .kill_all(Duration::from_secs(10))
            .context("killing leftover processes")?;
    }
    // Their exit events are in the ring by now (a task reports exit before it leaves the cgroup).
    p.pump(&mut reader, &mut table);
    p.report_lost(&sensors, &mut table);
    let end = Detail::RunEnd(event::RunEnd {
        exit_code: crate::exit::of_status(&status),
        status: event::Exit::from_status(Some(std::os::unix::process::ExitStatusExt::into_raw(
            status,
        ))),
        monitor: event::MonitorUsage::of_self(),
    });
    let ev = table.envelope(0, 0, boot_now(), end, Vec::new());
    p.record(ev);
    if let Err(e) = p.sink.flush() {
        note(&format!("writing events: {e}"));
    }

    summarise(&p, &sensors.counters(), &status);
    drop(reader);
    sensors.detach_in_background();
    cgroup.remove().context("removing the run's cgroup")?;
    let report = Report::new(&p.analyzer);
    for line in report::terminal_summary(&report) {
        note(&line);
    }
    report::write_outputs(&report, &p.analyzer.rules, &opts.outputs).context("writing reports")?;
    Ok(report.verdict.exit_status)
}

fn spawn_in_cgroup(command: &[OsString], cgroup: &RunCgroup) -> io::Result<tokio::process::Child> {
    let procs = cgroup.procs_file_cstring();
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    // SAFETY: the closure only makes async-signal-safe calls (open/write/close) on memory
    // prepared before fork.
    unsafe {
        cmd.pre_exec(move || join_cgroup(&procs));
    }
    cmd.spawn()
}

/// Runs in the forked child before exec: move ourselves into the run's cgroup. If this fails
/// the spawn fails; the command never runs unwatched.
pub(crate) fn join_cgroup(procs: &CString) -> io::Result<()> {
    // SAFETY: plain syscalls on a valid NUL-terminated path and a local buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != 1 {
            return Err(err);
        }
    }
    Ok(())
}

fn forward(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
}

impl Pipeline {
    fn pump(&mut self, reader: &mut EventReader, table: &mut ProcTable) {
        reader.drain(|rec| match decode::decode(rec) {
            Ok(ev) => table.handle(ev, &mut |e| self.record(e)),
            Err(e) => {
                self.decode_errors += 1;
                tracing::debug!("undecodable record: {e}");
            }
        });
    }

    fn record(&mut self, mut ev: Event) {
        enrich::package(&mut ev, self.analyzer.model());
        self.analyzer
            .observe(&ev, &mut |f| note(&report::live_line(f)));
        if self.sink_failed {
            return;
        }
        if let Err(e) = self.sink.send(&ev) {
            self.sink_failed = true;
            if e.kind() != io::ErrorKind::BrokenPipe {
                note(&format!(
                    "writing events failed, no more events will be written: {e}"
                ));
            }
        }
    }

    /// Put `lost` events in the stream for every loss the kernel counted since the last report.
    fn report_lost(&mut self, sensors: &Sensors, table: &mut ProcTable) {
        let now = sensors.counters();
        let before = self.reported_lost;
        for (reason, n) in [
            ("ringbuf_full", now.ringbuf_full - before.ringbuf_full),
            ("stash_full", now.stash_full - before.stash_full),
            (
                "decode_error",
                self.decode_errors - self.reported_decode_errors,
            ),
            (
                "dns_tcp_discarded",
                table.dns_tcp_discarded() - self.reported_dns_discarded,
            ),
        ] {
            if n > 0 {
                let detail = Detail::Lost(event::Lost {
                    count: n,
                    reason: reason.into(),
                });
                let ev = table.envelope(0, 0, boot_now(), detail, Vec::new());
                self.record(ev);
            }
        }
        self.reported_lost = now;
        self.reported_decode_errors = self.decode_errors;
        self.reported_dns_discarded = table.dns_tcp_discarded();
    }
}

fn summarise(p: &Pipeline, counters: &KernelCounters, status: &ExitStatus) {
    let totals = &p.analyzer.totals;
    let kinds: Vec<String> = totals
        .by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let mut msg = format!("{} events ({})", totals.total, kinds.join(", "));
    msg.push_str(&format!("; lost {}", counters.lost()));
    if p.decode_errors > 0 {
        msg.push_str(&format!("; undecodable {}", p.decode_errors));
    }
    if counters.read_errors > 0 {
        msg.push_str(&format!("; unreadable arguments {}", counters.read_errors));
    }
    msg.push_str(&format!("; command {}", describe(status)));
    note(&msg);
}

fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!(
            "killed by {}",
            event::signal_name(s).unwrap_or_else(|| format!("signal {s}"))
        ),
        _ => "ended".into(),
    }
}

fn cmdline(pid: u32, escaped: &mut Vec<String>) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .map(|s| event::text(s, "straggler.cmdline", escaped))
        .collect()
}

fn boot_now() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Flush stdout before exit so `--events -` output is complete.
pub fn flush_stdout() {
    let _ = io::stdout().flush();
}
