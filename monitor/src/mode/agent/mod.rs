//! `buildwatch agent`: the same sensors and rules on a whole host, as a daemon. It watches the
//! whole host or the cgroups that match its configuration (following them as they come and
//! go), names every event's cgroup, writes events and findings to its outputs, serves
//! `/healthz` and `/metrics`, reloads on SIGHUP and flushes on SIGTERM. It never watches
//! itself (the kernel programs skip its pid), and signals aimed at it from watched processes
//! are findings.
//!
//! ```text
//! config ─▶ scope (cgroups, rescanned) ─▶ kernel scope map
//! kernel ring ─▶ reader ─▶ stage (context, cgroup names, detect) ─▶ bus ─▶ rotating file, stdout
//!                           └─ snapshot ─▶ /metrics
//! ```

pub mod cgroups;
pub mod config;
pub mod health;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};

use self::{
    cgroups::Scanner,
    config::{AgentConfig, Scope},
    health::Health,
};
use crate::{
    detect::analyzer::Analyzer,
    ingest::reader::{Budget, Reader},
    kernel::{cgroup, kbtf, loader::Kernel, scope::ScopeMap},
    mode::note,
    output::{
        bus::{Bus, Record},
        encode::Format,
        sink::Stream,
    },
    pipeline::{AgentHooks, Pipeline, Snapshot},
    policy::config::{PolicyArgs, Setup, setup_in},
};

pub const DEFAULT_PIDFILE: &str = "/run/buildwatch/agent.pid";
/// How long the outputs get to write what is queued when the agent stops.
const FLUSH: Duration = Duration::from_secs(5);
/// The ring is drained this long at most when the agent stops.
const STOP_DRAIN: Budget = Budget {
    time: Duration::from_secs(2),
    records: 1_000_000,
};

pub struct AgentOptions {
    pub config: PathBuf,
    pub pidfile: PathBuf,
    pub ring_bytes: u32,
}

/// `buildwatch agent check CONFIG`: the configuration and the rules and policy it names.
pub fn check(path: &Path) -> i32 {
    match load(path) {
        Ok((cfg, j)) => {
            let setup = &j.default;
            for w in setup
                .warnings
                .iter()
                .chain(j.own.iter().flat_map(|(s, _)| &s.warnings))
            {
                crate::outln!("buildwatch: {w}");
            }
            crate::outln!(
                "ok: {} ({} rules; scope {}; {} output(s))",
                path.display(),
                setup.rules.rules.len(),
                match &cfg.scope {
                    Scope::Host => "host".to_owned(),
                    Scope::Globs { patterns, .. } => patterns.join(", "),
                },
                cfg.outputs.len()
            );
            0
        }
        Err(e) => {
            crate::outln!("{e}");
            1
        }
    }
}

/// `buildwatch agent reload`: SIGHUP to the running agent named by its pid file.
pub fn reload(pidfile: &Path) -> i32 {
    let pid = match std::fs::read_to_string(pidfile)
        .map_err(|e| e.to_string())
        .and_then(|s| s.trim().parse::<i32>().map_err(|e| e.to_string()))
    {
        Ok(p) if p > 1 => p,
        Ok(p) => {
            note(&format!(
                "{}: `{p}` is not an agent's pid",
                pidfile.display()
            ));
            return crate::exit::INTERNAL;
        }
        Err(e) => {
            note(&format!(
                "{}: {e} (is the agent running?)",
                pidfile.display()
            ));
            return crate::exit::INTERNAL;
        }
    };
    match nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    ) {
        Ok(()) => 0,
        Err(e) => {
            note(&format!("signalling the agent (pid {pid}): {e}"));
            crate::exit::INTERNAL
        }
    }
}

/// The configuration, and the rules and policy it names; every error, positioned.
/// The judgement of each scope entry that brings its own (after the default one).
struct Judgements {
    default: Setup,
    /// Per entry with its own policy, rules or floor, in order: its setup and floor.
    own: Vec<(Setup, crate::detect::rules::Severity)>,
}

fn load(path: &Path) -> Result<(AgentConfig, Judgements), String> {
    let cfg = config::load(path).map_err(|ds| {
        let n = ds.len();
        let text: Vec<String> = ds.iter().map(|d| format!("buildwatch: {d}")).collect();
        format!(
            "{}\nbuildwatch: {n} error(s) in the agent configuration",
            text.join("\n\n")
        )
    })?;
    let args = PolicyArgs {
        policy: cfg.policy.clone(),
        rule_files: cfg.rules.clone(),
        ..Default::default()
    };
    let default = setup_in(&args, None, true)?;
    let mut own = Vec::new();
    if let Scope::Globs { own: entries, .. } = &cfg.scope {
        for e in entries {
            // The entry's policy replaces the top-level one; its rule files add to the
            // top-level ones.
            let args = PolicyArgs {
                policy: e.policy.clone().or_else(|| cfg.policy.clone()),
                rule_files: cfg.rules.iter().chain(&e.rules).cloned().collect(),
                ..Default::default()
            };
            let s = setup_in(&args, None, true)
                .map_err(|err| format!("{err}\nbuildwatch: in scope entry `{}`", e.pattern))?;
            own.push((s, e.min_severity));
        }
    }
    Ok((cfg, Judgements { default, own }))
}

/// The analyzers of the scope entries with their own judgement.
fn scoped(
    cfg: &AgentConfig,
    own: Vec<(Setup, crate::detect::rules::Severity)>,
) -> Vec<crate::pipeline::Scoped> {
    let Scope::Globs { own: entries, .. } = &cfg.scope else {
        return Vec::new();
    };
    entries
        .iter()
        .zip(own)
        .filter_map(|(e, (setup, floor))| {
            let glob = globset::Glob::new(&e.pattern).ok()?.compile_matcher();
            let mut analyzer = Analyzer::new(setup.rules, setup.policy);
            analyzer.min_severity = floor;
            analyzer.findings = crate::detect::findings::Findings::with_cap(cfg.max_per_rule);
            Some(crate::pipeline::Scoped { glob, analyzer })
        })
        .collect()
}

/// The agent's bus, and the state of its forwarding outputs (for /metrics).
fn bus(
    cfg: &AgentConfig,
    forwards: &mut Vec<Arc<crate::output::forward::Status>>,
) -> anyhow::Result<Bus> {
    let mut bus = Bus::new();
    // The agent's own messages (notices, a failing output) go to stderr: the journal.
    bus.add_filtered(
        "terminal",
        Format::Terminal,
        Box::new(Stream::new(std::io::stderr(), "stderr")),
        Some(Box::new(|r: &Record| {
            matches!(r, Record::Notice(_) | Record::SinkError { .. })
        })),
    );
    for o in &cfg.outputs {
        let (name, writer, status) = crate::output::forward::open(o, FLUSH, false)?;
        if let Some(s) = status {
            forwards.push(s);
        }
        bus.add_filtered(
            &name,
            Format::Agent,
            writer,
            Some(crate::output::forward::filter(o)),
        );
    }
    Ok(bus)
}

/// Put the configured scope into the kernel's map: the whole host, or the cgroups a walk
/// finds matching (their ids in the map; what a walk no longer finds, out).
fn apply_scope(scope: &Scope, map: &mut ScopeMap, scanner: &mut Scanner) -> usize {
    let _ = map.set_all(matches!(scope, Scope::Host));
    let changes = scanner.scan(scope);
    for id in &changes.remove {
        if let Err(e) = map.remove(*id) {
            tracing::warn!("unwatching cgroup {id}: {e}");
        }
    }
    for (id, level, path) in &changes.add {
        if let Err(e) = map.add(*id, *level) {
            note(&format!("cannot watch cgroup /{path}: {e}"));
            scanner.unwatch(*id);
        }
    }
    map.ids().count()
}

pub async fn agent(opts: AgentOptions) -> anyhow::Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`buildwatch agent` needs root (to load eBPF programs and watch the host)");
    }
    kbtf::task_offsets().map_err(|e| {
        anyhow::anyhow!(
            "the kernel's BTF is needed ({e}); `buildwatch doctor` says what is missing"
        )
    })?;
    let (mut cfg, judgements) = load(&opts.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Judgements {
        default: setup,
        own,
    } = judgements;
    for w in setup
        .warnings
        .iter()
        .chain(own.iter().flat_map(|(s, _)| &s.warnings))
    {
        note(&w.to_string());
    }
    let mount = cgroup::v2_mount().context("finding the cgroup v2 hierarchy")?;
    let me = std::process::id();
    let mut kernel = Kernel::load(opts.ring_bytes)
        .context("loading the kernel sensors (try `buildwatch doctor`)")?;
    // Signals, pidfds and ptrace aimed at the agent from watched processes are findings.
    kernel
        .protect(&[me as i32])
        .context("protecting the agent")?;
    let mut scope = kernel.take_scope()?;
    scope
        .agent(me)
        .context("excluding the agent from its own scope")?;
    // The doorbell before the first walk: a cgroup made after it rings.
    let doorbell = kernel
        .watch_cgroup_changes()
        .map_err(|e| {
            note(&format!(
                "cgroup changes are not signalled ({e}): the cgroup tree is walked every {} ms",
                cgroups::RESCAN.as_millis()
            ))
        })
        .ok();
    let ring_count = || doorbell.as_ref().and_then(|d| d.count());
    let mut seen = ring_count();
    let mut walked = Instant::now();
    let mut scanner = Scanner::new(mount.clone());
    let watched = apply_scope(&cfg.scope, &mut scope, &mut scanner);
    // The cgroup programs (connect, sendmsg, DNS packets) at the root: they see every cgroup;
    // the scope map decides which are judged.
    let anchor =
        std::fs::File::open(&mount).with_context(|| format!("opening {}", mount.display()))?;
    kernel
        .attach_all(&anchor)
        .context("attaching the kernel sensors (try `buildwatch doctor`)")?;
    let ring = kernel.take_events()?;
    let counters = kernel.take_counters()?;
    let mut forwards = Vec::new();
    let bus = Arc::new(bus(&cfg, &mut forwards)?);
    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    let hooks = AgentHooks {
        cgroups: scanner.known.clone(),
        snapshot: snapshot.clone(),
        window: Duration::from_secs(cfg.window_secs),
    };
    let mut analyzer = Analyzer::new(setup.rules, setup.policy);
    analyzer.findings = crate::detect::findings::Findings::with_cap(cfg.max_per_rule);
    let scoped = scoped(&cfg, own);
    let pipeline = Pipeline::start_agent(analyzer, scoped, bus.clone(), hooks)?;
    let reader = Reader::start(ring, counters, pipeline.downstream())?;
    let health = Arc::new(Health {
        snapshot,
        cgroups: scanner.known.clone(),
        watched: AtomicUsize::new(watched),
        host_wide: matches!(cfg.scope, Scope::Host),
        reload_failures: AtomicU64::new(0),
        forwards,
        started: SystemTime::now(),
    });
    let server = match cfg.listen {
        Some(addr) => {
            let listener = health::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} for /healthz and /metrics"))?;
            if let Ok(bound) = listener.local_addr() {
                note(&format!("serving /healthz and /metrics on http://{bound}"));
            }
            Some(tokio::spawn(health::serve(listener, health.clone())))
        }
        None => None,
    };
    if let Some(dir) = opts.pidfile.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&opts.pidfile, format!("{me}\n"))
        .with_context(|| format!("writing {}", opts.pidfile.display()))?;
    note(&format!(
        "agent {me} watching {} ({}); config {}",
        match &cfg.scope {
            Scope::Host => "the whole host".to_owned(),
            Scope::Globs { .. } => format!("{watched} cgroup(s)"),
        },
        pipeline_rules(&cfg),
        opts.config.display()
    ));

    let mut hup = signal(SignalKind::hangup()).context("installing signal handlers")?;
    let mut term = signal(SignalKind::terminate()).context("installing signal handlers")?;
    let mut int = signal(SignalKind::interrupt()).context("installing signal handlers")?;
    let mut rescan = tokio::time::interval(if doorbell.is_some() {
        cgroups::POLL
    } else {
        cgroups::RESCAN
    });
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = rescan.tick() => {
                // The count read before the walk: a change during the walk rings again.
                let now = ring_count();
                if cgroups::walk_due(now, seen, walked.elapsed()) {
                    (seen, walked) = (now, Instant::now());
                    let n = apply_scope(&cfg.scope, &mut scope, &mut scanner);
                    health.watched.store(n, Ordering::Relaxed);
                }
            }
            _ = hup.recv() => {
                match load(&opts.config) {
                    Ok((new, j)) => {
                        for w in j.default.warnings.iter().chain(j.own.iter().flat_map(|(s, _)| &s.warnings)) {
                            note(&w.to_string());
                        }
                        let own_before = own_entries(&cfg.scope);
                        let own_now = own_entries(&new.scope);
                        let mut sets = vec![(j.default.rules, j.default.policy)];
                        // Scoped analyzers are matched to entries by position: only when
                        // the entries are the same ones.
                        if own_before == own_now {
                            sets.extend(j.own.into_iter().map(|(s, _)| (s.rules, s.policy)));
                        }
                        pipeline.reload(sets);
                        if new.outputs.len() != cfg.outputs.len()
                            || new.listen != cfg.listen
                            || own_before != own_now
                        {
                            note("reloaded; outputs, `listen` and which scope entries have their \
                                  own policy take effect at the next start");
                        } else {
                            note("reloaded");
                        }
                        if own_before == own_now {
                            cfg.scope = new.scope;
                        }
                        let n = apply_scope(&cfg.scope, &mut scope, &mut scanner);
                        health.watched.store(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        health.reload_failures.fetch_add(1, Ordering::Relaxed);
                        note("reload refused: the running configuration stays");
                        let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{e}\n").as_bytes());
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    // Stop: what the kernel still holds, through the stage, then every output written.
    note("stopping: flushing the outputs");
    if let Some(s) = server {
        s.abort();
    }
    reader.drain(STOP_DRAIN);
    reader.stop();
    let _analyzer = pipeline.finish();
    bus.close(|_| true, Instant::now() + FLUSH);
    drop(scope);
    kernel.detach_in_background();
    let _ = std::fs::remove_file(&opts.pidfile);
    Ok(0)
}

/// The patterns of the scope entries with their own judgement, in order.
fn own_entries(scope: &Scope) -> Vec<String> {
    match scope {
        Scope::Globs { own, .. } => own.iter().map(|e| e.pattern.clone()).collect(),
        Scope::Host => Vec::new(),
    }
}

fn pipeline_rules(cfg: &AgentConfig) -> String {
    match (&cfg.policy, cfg.rules.len()) {
        (Some(p), n) => format!("default rules, policy {}, {n} rule file(s)", p.display()),
        (None, 0) => "default rules".into(),
        (None, n) => format!("default rules and {n} rule file(s)"),
    }
}
