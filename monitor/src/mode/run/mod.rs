//! `buildwatch run`: wraps one command. Creates the run's cgroup, loads the sensors and puts
//! the cgroup in their scope, starts the command inside it, and runs the pipeline while
//! forwarding signals. When the command exits: drain the ring within a budget, deal with what
//! the command left behind (stragglers), drain again, and judge.

mod child;
pub mod dns_proxy;
pub mod guard;
pub mod guardian;
pub mod user;

use std::{
    ffi::OsString,
    io,
    os::unix::{ffi::OsStrExt, process::ExitStatusExt},
    path::PathBuf,
    process::ExitStatus,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

pub use self::child::{Parked, join_cgroup, park};
use crate::{
    detect::analyzer::Analyzer,
    event::{self, Detail},
    exit,
    ingest::reader::{Budget, Reader},
    kernel::{cgroup::RunCgroup, loader::Kernel},
    mode::{note, outputs},
    output::{Outputs, bus::Record},
    pipeline::{ModeInput, Pipeline, boot_now},
    policy::config::Setup,
};

/// How long, and how many records, the ring is drained for after the command exits (and
/// again after its stragglers are gone). The rest is read without processing and counted as
/// lost (`drain_skipped`): a process flooding the ring cannot keep a run alive.
pub const DRAIN_BUDGET: Budget = Budget {
    time: Duration::from_secs(2),
    records: 1_000_000,
};

pub struct RunOptions {
    /// `-` for stdout.
    pub events: Option<PathBuf>,
    pub keep_stragglers: bool,
    /// `--allow-32bit-syscalls`: no seccomp filter refusing them (they go unseen).
    pub allow_32bit_syscalls: bool,
    /// `--all-reads`: no read summarized in the kernel.
    pub all_reads: bool,
    pub ring_bytes: u32,
    /// The kernel sensors, loading since before the rules were compiled ([`preload`]).
    pub preload: Option<Preload>,
    /// `--user`: who the command runs as (default: the user who invoked sudo, if any).
    pub user: Option<String>,
    pub command: Vec<OsString>,
    pub analysis: Setup,
    pub outputs: Outputs,
}

/// The kernel sensors loading on a thread of their own. Verifying the programs is most of a
/// run's start-up, and nothing in it depends on the rules or the policy: it starts before
/// they are read and compiled (15-20 ms, on the other core).
pub struct Preload(std::thread::JoinHandle<Result<Kernel, crate::kernel::loader::LoadError>>);

/// Start loading the kernel sensors, when buildwatch is root (else [`run`] says it must be).
pub fn preload(ring_bytes: u32) -> Option<Preload> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    std::thread::Builder::new()
        .name("bw-kernel-load".into())
        .spawn(move || Kernel::load(ring_bytes))
        .ok()
        .map(Preload)
}

pub async fn run(mut opts: RunOptions) -> anyhow::Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`buildwatch run` needs root (to load eBPF programs and create a cgroup)");
    }
    // Before anything runs: a report that cannot be written stops the build now.
    outputs::check_paths(opts.events.as_deref(), &opts.outputs)?;
    let sudo_uid = std::env::var("SUDO_UID").ok();
    let user = user::resolve(opts.user.as_deref(), sudo_uid.as_deref())
        .map_err(|e| anyhow::anyhow!("choosing who the command runs as: {e}"))?;
    let mut cgroup = RunCgroup::create().context("creating the run's cgroup")?;
    // Before anything of the command's exists: whatever happens to buildwatch from now on,
    // the guardian kills what is left of the run and says so.
    let guardian = guardian::start(cgroup.path(), opts.outputs.report.as_deref())
        .context("starting buildwatch's guardian")?;
    let stdout_events = opts.events.as_deref().is_some_and(|p| p.as_os_str() == "-");
    // The homes a run acts in: its user's, root's, and buildwatch's own (block mode guards
    // the credential files in them).
    let homes: Vec<PathBuf> = user
        .as_ref()
        .map(|u| PathBuf::from(&u.home))
        .into_iter()
        .chain(std::env::var_os("HOME").map(PathBuf::from))
        .chain(std::iter::once(PathBuf::from("/root")))
        .collect();
    // The command is forked now and joins the cgroup while the sensors load (see
    // `child::Parked`); it runs nothing until released below.
    if opts.allow_32bit_syscalls {
        note(crate::output::text::UNSEEN_32BIT);
    }
    let parked = child::park(
        &opts.command,
        &cgroup,
        stdout_events,
        user,
        !opts.allow_32bit_syscalls,
    )
    .context("starting the command in the run's cgroup")?;
    // The credential files (block mode's guard, and the read summary's safety net) are looked
    // for in the homes while the sensors load, not after: a home walk beside the verifier.
    let guard_needed = opts.analysis.policy.block || !opts.all_reads;
    let preload = opts.preload.take();
    let (kernel, guarded) = std::thread::scope(|s| {
        let walk = guard_needed.then(|| {
            s.spawn(|| -> Vec<(u64, u64, Vec<String>)> {
                guard::credential_files(&opts.analysis.rules, &homes)
                    .into_iter()
                    .map(|g| (g.dev, g.ino, g.owners))
                    .collect()
            })
        });
        let kernel = match preload {
            Some(Preload(loading)) => loading.join().unwrap_or_else(|_| {
                Err(crate::kernel::loader::LoadError::MissingProgram(
                    "(the loading thread panicked)",
                ))
            }),
            None => Kernel::load(opts.ring_bytes),
        };
        let guarded = walk.map(|w| w.join()).transpose();
        (kernel, guarded)
    });
    let mut kernel = kernel.context("loading the kernel sensors (try `buildwatch doctor`)")?;
    let guarded = guarded
        .map_err(|_| anyhow::anyhow!("looking for the credential files to guard failed"))?
        .unwrap_or_default();
    // SAFETY: getpgrp has no preconditions.
    let pgid = unsafe { libc::getpgrp() };
    kernel
        .protect(&[std::process::id() as i32, guardian.pid() as i32, -pgid])
        .context("protecting buildwatch and its guardian")?;
    let mut scope = kernel.take_scope()?;
    scope
        .add(cgroup.id(), cgroup.level())
        .context("watching the run's cgroup")?;
    let anchor = cgroup.open_dir().context("opening the run's cgroup")?;
    kernel
        .attach_all(&anchor)
        .context("attaching the kernel sensors (try `buildwatch doctor`)")?;
    let mut proxy = None;
    if opts.analysis.policy.block {
        // Fail closed: block mode that cannot be put in place stops the run before the
        // command starts.
        let policy = &opts.analysis.policy;
        let allow = block_allowlist(policy);
        let system: Vec<std::net::IpAddr> =
            crate::context::dns::system_resolvers(std::path::Path::new("/etc/resolv.conf"))
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect();
        let resolvers: Vec<std::net::IpAddr> =
            system.iter().chain(&policy.resolvers).copied().collect();
        let upstream: Vec<std::net::SocketAddr> = if policy.upstream.is_empty() {
            resolvers.iter().map(|r| (*r, 53).into()).collect()
        } else {
            policy.upstream.clone()
        };
        let bound = dns_proxy::bind().await?;
        let setup = crate::kernel::egress::ProxySetup {
            addr: bound.addr,
            port: 53,
            resolvers,
            upstream: upstream.clone(),
        };
        let (n, opener) = kernel
            .block_egress(&allow, Some(&setup))
            .context("turning block mode on")?;
        let opener = opener.context("block mode's DNS proxy has no map to open addresses in")?;
        let p = bound.serve(policy.clone(), upstream.clone(), opener)?;
        note(&format!(
            "block mode: egress outside the allowlist is refused ({n} network(s) allowed); DNS \
             goes through buildwatch's proxy at {} (upstream {})",
            p.addr,
            upstream
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        proxy = Some(p);
        let n = kernel
            .guard_files(&guarded)
            .context("guarding the credential files")?;
        note(&format!(
            "block mode: {n} credential file(s) guarded: a tool that does not own one is killed \
             when it opens it for reading"
        ));
    }
    let read_summary = if opts.all_reads {
        None
    } else {
        summarize_reads(&mut kernel, &guarded, opts.analysis.policy.block)
    };
    let ring = kernel.take_events()?;
    let counters = kernel.take_counters()?;
    let bus = Arc::new(outputs::bus(opts.events.as_deref(), &opts.outputs)?);
    let secrets_config = opts.analysis.policy.secrets.clone();
    let mut analyzer = Analyzer::new(opts.analysis.rules, opts.analysis.policy);
    // The CI's secrets are in buildwatch's own environment, which the command inherits.
    analyzer.secrets = crate::detect::secrets::Secrets::from_env(&secrets_config);
    let pipeline = Pipeline::start(analyzer, bus.clone(), true)?;

    // Handlers go in before the command starts: a signal sent as soon as the command is up
    // must be forwarded, not kill buildwatch with the default action.
    let mut signals = Vec::new();
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
    ] {
        signals.push(signal(kind).context("installing signal handlers")?);
    }
    let [int, term, hup, quit] = &mut signals[..] else {
        unreachable!()
    };

    let cwd = std::env::current_dir().context("reading the current directory")?;
    let resolvers = crate::context::dns::system_resolvers(std::path::Path::new("/etc/resolv.conf"));
    let mut child = match parked.release() {
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
    // Its descendants are followed from the kernel (task_newtask); the command itself, here.
    kernel
        .track(root_pid, true)
        .context("following the command")?;
    // The root goes into the process table before any of its events: the reader starts after
    // this (the ring holds the command's first events meanwhile).
    pipeline.send(ModeInput::Root {
        pid: root_pid,
        cwd: cwd.as_os_str().as_bytes().to_vec(),
    });
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
        dns_proxy: proxy.as_ref().map(|p| p.addr.to_string()),
        allow_32bit_syscalls: opts.allow_32bit_syscalls,
    });
    pipeline.send(ModeInput::Record {
        pid: 0,
        ts_ns: boot_now(),
        detail: run,
        escaped,
    });
    let reader = Reader::start(ring, counters, pipeline.downstream())?;
    // On a terminal, the bottom row shows the run is alive (until the command is done).
    let status_line = crate::output::status::StatusLine::start();

    let status: ExitStatus = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the command")?,
            _ = int.recv() => child::forward(root_pid, Signal::SIGINT),
            _ = term.recv() => child::forward(root_pid, Signal::SIGTERM),
            _ = hup.recv() => child::forward(root_pid, Signal::SIGHUP),
            _ = quit.recv() => child::forward(root_pid, Signal::SIGQUIT),
        }
    };

    drop(status_line);
    // What the command did up to its exit, within the budget (a flooder it left behind is
    // still running: the budget bounds how long it can keep us).
    reader.drain(DRAIN_BUDGET);
    // Whatever is still in the cgroup was left behind by the command.
    let action = if opts.keep_stragglers {
        "kept"
    } else {
        "killed"
    };
    for pid in cgroup.pids() {
        let mut escaped = Vec::new();
        let cmdline = child::cmdline(pid, &mut escaped);
        bus.publish(&Record::Notice(
            // The command line last: a long one is cut in its middle, keeping its end.
            format!(
                "process {pid} outlived the command: {action}: {}",
                cmdline.join(" ")
            )
            .into(),
        ));
        let detail = Detail::Straggler(event::Straggler {
            cmdline,
            action: action.into(),
        });
        pipeline.send(ModeInput::Record {
            pid,
            ts_ns: boot_now(),
            detail,
            escaped,
        });
    }
    if opts.keep_stragglers {
        // buildwatch moves them out itself: not an escape.
        for pid in cgroup.pids() {
            let _ = kernel.track(pid, false);
        }
        cgroup
            .release_all()
            .context("moving kept processes out of the run's cgroup")?;
    } else {
        cgroup
            .kill_all(Duration::from_secs(10))
            .context("killing leftover processes")?;
    }
    // Their exit events are in the ring by now (a task reports exit before it leaves the
    // cgroup).
    reader.drain(DRAIN_BUDGET);
    reader.stop();
    if read_summary.as_ref().is_some_and(|s| s.tripped()) {
        bus.publish(&Record::Notice(
            "reads of system directories were counted until the run made a new name (rename, \
             link or symlink) that could lead there; every read after it is an event"
                .into(),
        ));
    }
    let mut guardian = guardian;
    let mut unverified = Vec::new();
    if guardian.lost() {
        note("buildwatch's guardian died during the run: the run cannot be vouched for");
        unverified.push(
            "buildwatch's guardian died during the run (something killed it): the run cannot \
             be vouched for"
                .to_owned(),
        );
    }
    pipeline.send(ModeInput::End {
        ts_ns: boot_now(),
        exit_code: exit::of_status(&status),
        status: event::Exit::from_status(Some(status.into_raw())),
        unverified,
    });
    let analyzer = pipeline.finish();
    if let Some(p) = proxy.take() {
        note(&p.summary());
    }
    drop(scope);
    kernel.detach_in_background();
    // A cgroup that cannot be removed is reported; the report is still written.
    if let Err(e) = cgroup.remove() {
        note(&format!("removing the run's cgroup: {e}"));
    }
    let report = outputs::conclude(&bus, analyzer, &opts.outputs)?;
    guardian.finish();
    Ok(report.verdict.exit_status)
}

/// What block mode lets through by address: the policy's address entries and loopback
/// (unless the policy says not). Domain entries are the DNS proxy's: an allowed name's answer
/// opens its addresses during the run. Port 53 and DNS over TLS are judged before any of this:
/// the run's resolvers go to the proxy, anything else is refused.
fn block_allowlist(policy: &crate::policy::Policy) -> Vec<crate::kernel::egress::Allow> {
    use crate::{kernel::egress::Allow, policy::Host};
    let mut allow = Vec::new();
    for e in &policy.allow {
        if let Host::Net(net) = &e.host {
            allow.push(Allow {
                net: *net,
                port: e.port,
            });
        }
    }
    if policy.allow_loopback {
        for net in ["127.0.0.0/8", "::1/128"] {
            allow.push(Allow {
                net: net.parse().expect("a network"),
                port: None,
            });
        }
    }
    allow
}

/// Turn on the kernel's read summary (see [`crate::kernel::loader::Kernel::summarize_reads`]).
/// Its safety net is the credential files known by identity: a summarized path that reaches
/// one (through a symlink or hard link planted there) is reported, so outside block mode
/// (which has put them in already) `guarded` are put in here. Whatever fails leaves every
/// read reported, with a notice.
fn summarize_reads(
    kernel: &mut Kernel,
    guarded: &[(u64, u64, Vec<String>)],
    guarded_already: bool,
) -> Option<crate::kernel::loader::ReadSummary> {
    if !guarded_already && let Err(e) = kernel.guard_files(guarded) {
        note(&format!(
            "every read is reported: the credential files could not be told to the kernel: {e}"
        ));
        return None;
    }
    match kernel.summarize_reads() {
        Ok(s) => Some(s),
        Err(e) => {
            note(&format!("every read is reported: {e}"));
            None
        }
    }
}
