//! The stages wired together. Two threads and a queue between them, then the output bus:
//!
//! ```text
//! ring ─▶ [ring reader: read] ─▶ queue (bytes, drops counted) ─▶ [stage thread: decode →
//!          context → detect] ─▶ bus ─▶ per-sink queue (records, drops counted) ─▶ [sink thread]
//! ```
//!
//! - **Ring → reader.** The kernel counts what a full ring refuses (`ringbuf_full`, per
//!   sensor).
//! - **Reader → stage.** A bounded queue of record chunks, [`INGEST_QUEUE_BYTES`]. It absorbs
//!   a stage that is momentarily slow (a /proc read, a burst of findings) without holding up
//!   the reader. When it is full, the reader keeps its chunk and leaves further records in the
//!   kernel ring until there is room (back-pressure: dropping in userspace while the ring still
//!   had room would lose records for nothing); the ring and the queue add up to one buffer,
//!   and what neither holds is counted by the kernel as `ringbuf_full`. At the end of a run the
//!   reader waits for room until the drain's deadline, then counts refused chunks as
//!   `queue_full`.
//! - **Mode and replay → stage.** The same queue. The mode's records (run start, stragglers,
//!   run end) pass a full queue; a replay waits for room (back-pressure), because nothing is
//!   lost by waiting on a file and a replay must see every event.
//! - **Stage → sinks.** The bus: one bounded queue per sink; see `output::bus`.
//!
//! Every queue's depth, peak and drops go into `run_end`.

pub mod queue;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{
    context::{
        cgroups::Cgroups,
        enrich,
        proctable::{LiveProc, ProcTable, boot_to_unix_offset},
    },
    detect::{analyzer::Analyzer, rules::RuleSet},
    event::{
        self, Detail, DrainStats, Event, Exit, KernelStats, MonitorUsage, PipelineStats,
        QueueStats, SinkStats,
    },
    ingest::{
        decode,
        reader::{self, Batch, Downstream},
    },
    output::bus::{Bus, Record},
    pipeline::queue::{Pop, Queue},
};

/// Bytes of undecoded records the queue after the ring reader holds (about as much as the
/// kernel ring: together they ride out a stall of the stage twice as long as the ring alone).
pub const INGEST_QUEUE_BYTES: u64 = 8 * 1024 * 1024;

/// What enters the stage thread.
pub enum Input {
    /// From the ring reader.
    Ingest(Batch),
    /// An event already in its process context, from a recorded stream: it enters at the
    /// context stage and goes through detect and output like a live one.
    Recorded(Box<Event>),
    /// From the mode.
    Mode(Box<ModeInput>),
    /// New rules and policy (the agent's reload), for the events from now on: the default
    /// pair, then one per scope entry that has its own (in the order of `Scoped`).
    Reload(Box<Vec<(RuleSet, crate::policy::Policy)>>),
}

/// A scope entry with its own rules and policy: events from a cgroup whose path (or an
/// ancestor's) matches `glob` are judged by `analyzer`, which drops findings below
/// `analyzer.min_severity`.
pub struct Scoped {
    pub glob: globset::GlobMatcher,
    pub analyzer: Analyzer,
}

/// What the agent adds to the stage: the host's cgroups, to name each event's; and a snapshot
/// of the stage's counts for its metrics, refreshed every [`SNAPSHOT_EVERY`].
#[derive(Clone)]
pub struct AgentHooks {
    pub cgroups: Cgroups,
    pub snapshot: Arc<Mutex<Snapshot>>,
    /// Findings are merged over this window; at its end each one seen again is rolled up
    /// (with its count) and the table starts afresh.
    pub window: Duration,
}

pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// How often the agent's process table is checked against /proc.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The stage's counts, for /metrics.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub events_by_kind: BTreeMap<String, u64>,
    /// (sensor, reason) → events lost.
    pub lost: BTreeMap<(String, String), u64>,
    /// (rule, severity) → occurrences.
    pub findings: BTreeMap<(String, &'static str), u64>,
    pub processes: usize,
    pub queue: Option<QueueStats>,
    pub sinks: Vec<SinkStats>,
    pub reloads: u64,
    /// When the stage took it (None: not yet).
    pub taken: Option<Instant>,
}

/// A few per run, and boxed in `Input`.
#[allow(clippy::large_enum_variant)] // a few per run, and the enum is boxed in `Input`
pub enum ModeInput {
    /// The command the mode started (its fork happened outside the watched scope).
    Root { pid: u32, cwd: Vec<u8> },
    /// A record for the stream (run start, straggler), put in `pid`'s process context.
    Record {
        pid: u32,
        ts_ns: u64,
        detail: Detail,
        escaped: Vec<String>,
    },
    /// The last record: how the command ended. The stage adds its own accounting.
    End {
        ts_ns: u64,
        exit_code: i32,
        status: Exit,
        /// Why the run cannot be vouched for (see [`event::RunEnd::unverified`]).
        unverified: Vec<String>,
    },
}

/// The stage thread and the queue that feeds it.
pub struct Pipeline {
    queue: Arc<Queue<Input>>,
    bus: Arc<Bus>,
    thread: thread::JoinHandle<Analyzer>,
}

impl Pipeline {
    /// Start the stage thread. `live`: events come from the kernel now (packages can be
    /// attributed by reading the build's files); otherwise from a recording.
    pub fn start(analyzer: Analyzer, bus: Arc<Bus>, live: bool) -> std::io::Result<Self> {
        Self::start_with(analyzer, bus, live, None, Vec::new())
    }

    /// [`start`](Self::start) for the agent: events are named with their cgroup, and the
    /// stage keeps a snapshot of its counts.
    pub fn start_agent(
        analyzer: Analyzer,
        scoped: Vec<Scoped>,
        bus: Arc<Bus>,
        hooks: AgentHooks,
    ) -> std::io::Result<Self> {
        Self::start_with(analyzer, bus, true, Some(hooks), scoped)
    }

    fn start_with(
        analyzer: Analyzer,
        bus: Arc<Bus>,
        live: bool,
        hooks: Option<AgentHooks>,
        scoped: Vec<Scoped>,
    ) -> std::io::Result<Self> {
        let queue = Arc::new(Queue::new("ingest", "bytes", INGEST_QUEUE_BYTES));
        let thread = {
            let mut table = ProcTable::new(LiveProc, boot_to_unix_offset());
            table.secrets = crate::detect::secrets::SecretNames::new(&analyzer.policy.secrets);
            let stage = Stage {
                table,
                analyzer,
                bus: bus.clone(),
                queue: queue.clone(),
                live,
                decode_errors: 0,
                dns_discarded_reported: 0,
                ingest_end: None,
                hooks,
                lost_tally: BTreeMap::new(),
                reloads: 0,
                findings_before: BTreeMap::new(),
                scoped,
            };
            thread::Builder::new()
                .name("stage".into())
                .spawn(move || stage.run())?
        };
        Ok(Self { queue, bus, thread })
    }

    /// Where the ring reader sends its batches.
    pub fn downstream(&self) -> Box<dyn Downstream> {
        Box::new(IngestEnd(self.queue.clone()))
    }

    /// A record from the mode (never refused).
    pub fn send(&self, m: ModeInput) {
        self.queue.push_control(Input::Mode(Box::new(m)));
    }

    /// New rules and policies for the events from now on (never refused): the default pair,
    /// then one per scoped analyzer, in order.
    pub fn reload(&self, sets: Vec<(RuleSet, crate::policy::Policy)>) {
        self.queue.push_control(Input::Reload(Box::new(sets)));
    }

    /// A recorded event, waiting for room.
    pub fn send_recorded(&self, ev: Event) {
        let weight = 512;
        self.queue
            .push_wait(Input::Recorded(Box::new(ev)), weight, far_future());
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// No more input: the stage finishes what is queued and hands back the detect state.
    pub fn finish(self) -> Analyzer {
        self.queue.close();
        match self.thread.join() {
            Ok(a) => a,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

struct IngestEnd(Arc<Queue<Input>>);

impl Downstream for IngestEnd {
    fn try_send(&self, records: Bytes) -> Result<(), Bytes> {
        let weight = records.len() as u64;
        self.0
            .offer(Input::Ingest(Batch::Records(records)), weight)
            .map_err(|input| match input {
                Input::Ingest(Batch::Records(r)) => r,
                _ => unreachable!("offered records"),
            })
    }
    fn send_until(&self, records: Bytes, deadline: Instant) -> bool {
        let weight = records.len() as u64;
        self.0
            .push_wait(Input::Ingest(Batch::Records(records)), weight, deadline)
    }
    fn send_control(&self, batch: Batch) {
        self.0.push_control(Input::Ingest(batch));
    }
}

/// Context and detect, on one thread: they share the process model, and each event's rules
/// need its context first.
struct Stage {
    table: ProcTable,
    analyzer: Analyzer,
    bus: Arc<Bus>,
    queue: Arc<Queue<Input>>,
    live: bool,
    /// Records that did not decode, not yet reported as lost.
    decode_errors: u64,
    dns_discarded_reported: u64,
    ingest_end: Option<(Option<DrainStats>, KernelStats)>,
    hooks: Option<AgentHooks>,
    /// (sensor, reason) → lost, for the agent's metrics.
    lost_tally: BTreeMap<(String, String), u64>,
    reloads: u64,
    /// (rule, severity) → occurrences in the windows already rolled up (the metrics count on).
    findings_before: BTreeMap<(String, &'static str), u64>,
    /// Scope entries with their own rules and policy (the agent's).
    scoped: Vec<Scoped>,
}

impl Stage {
    fn run(mut self) -> Analyzer {
        let mut next_check = Instant::now();
        let mut next_snapshot = Instant::now();
        let window = self.hooks.as_ref().map(|h| h.window);
        let mut next_window = window.map(|w| Instant::now() + w);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            match self.queue.pop(Duration::from_millis(100)) {
                Pop::Item(input) => self.handle(input),
                Pop::Empty => {}
                Pop::Closed => break,
            }
            let now = Instant::now();
            if now >= next_check {
                self.bus.announce_errors();
                next_check = now + Duration::from_millis(100);
            }
            if self.hooks.is_some() && now >= next_snapshot {
                self.snapshot();
                next_snapshot = now + SNAPSHOT_EVERY;
            }
            if let (Some(w), Some(at)) = (window, next_window)
                && now >= at
            {
                self.roll_window(w);
                next_window = Some(now + w);
            }
            if self.hooks.is_some() && now >= next_sweep {
                // Processes whose exit was never seen (lost, or left the scope) go.
                self.table
                    .processes_mut()
                    .sweep(crate::context::enrich::running);
                next_sweep = now + SWEEP_EVERY;
            }
        }
        self.bus.announce_errors();
        if let Some(w) = window {
            self.roll_window(w);
        }
        if self.hooks.is_some() {
            self.snapshot();
        }
        self.analyzer
    }

    /// The end of a findings window: roll up each finding seen again in it (its count in
    /// the window) and what the per-rule cap only counted, then start afresh.
    fn roll_window(&mut self, window: Duration) {
        let time = self.table.unix_time(boot_now());
        let mut windows = Vec::new();
        for a in std::iter::once(&mut self.analyzer)
            .chain(self.scoped.iter_mut().map(|s| &mut s.analyzer))
        {
            for (k, n) in a.findings.counts() {
                *self.findings_before.entry(k).or_default() += n;
            }
            windows.push(a.findings.take_window());
        }
        for w in windows {
            self.publish_window(w, window, &time);
        }
    }

    fn publish_window(&self, w: crate::detect::findings::Window, window: Duration, time: &str) {
        for f in w.repeated {
            let v = serde_json::json!({
                "schema": event::SCHEMA,
                "kind": "finding_rollup",
                "time": time,
                "window_secs": window.as_secs(),
                "rule": f.rule,
                "severity": f.severity,
                "message": f.message,
                "cgroup": f.cgroup,
                "package": f.package,
                "first_seen": f.first_seen,
                "count": f.count,
            });
            self.bus.publish(&Record::Rollup(Arc::new(v)));
        }
        for (key, n) in w.unlisted {
            let (rule, cgroup) = key.split_once(' ').unwrap_or((&key, ""));
            let v = serde_json::json!({
                "schema": event::SCHEMA,
                "kind": "finding_rollup",
                "time": time,
                "window_secs": window.as_secs(),
                "rule": rule,
                "cgroup_path": (!cgroup.is_empty()).then_some(cgroup),
                "not_listed": n,
            });
            self.bus.publish(&Record::Rollup(Arc::new(v)));
        }
    }

    fn analyzers(&self) -> impl Iterator<Item = &Analyzer> {
        std::iter::once(&self.analyzer).chain(self.scoped.iter().map(|s| &s.analyzer))
    }

    /// Refresh the agent's snapshot of the counts.
    fn snapshot(&self) {
        let Some(hooks) = &self.hooks else { return };
        let s = Snapshot {
            events_by_kind: {
                let mut all = BTreeMap::new();
                for a in self.analyzers() {
                    for (k, n) in &a.totals.by_kind {
                        *all.entry(k.clone()).or_default() += n;
                    }
                }
                all
            },
            lost: self.lost_tally.clone(),
            findings: {
                let mut all = self.findings_before.clone();
                for a in self.analyzers() {
                    for (k, n) in a.findings.counts() {
                        *all.entry(k).or_default() += n;
                    }
                }
                all
            },
            processes: self.table.processes().len(),
            queue: Some(self.queue.stats()),
            sinks: self.bus.stats(),
            reloads: self.reloads,
            taken: Some(Instant::now()),
        };
        *hooks.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Ingest(Batch::Records(chunk)) => {
                let mut events = Vec::new();
                for rec in reader::records(&chunk) {
                    match decode::decode(rec) {
                        Ok(ev) => {
                            let cgroup = ev.cgroup;
                            self.table.handle(ev, &mut events);
                            for mut e in events.drain(..) {
                                if let Some(h) = &self.hooks {
                                    e.cgroup = h.cgroups.info(cgroup);
                                }
                                self.emit(e);
                            }
                        }
                        Err(e) => {
                            self.decode_errors += 1;
                            tracing::debug!("undecodable record: {e}");
                        }
                    }
                }
                self.report_own_losses();
            }
            Input::Ingest(Batch::Lost(losses)) => {
                for l in losses {
                    self.lost(l.sensor, l.reason, l.count);
                }
            }
            Input::Ingest(Batch::End { drain, kernel }) => {
                self.report_own_losses();
                self.ingest_end = Some((drain, kernel));
            }
            Input::Recorded(ev) => self.emit(*ev),
            Input::Mode(m) => self.mode(*m),
            Input::Reload(sets) => {
                let mut sets = sets.into_iter();
                for a in std::iter::once(&mut self.analyzer)
                    .chain(self.scoped.iter_mut().map(|s| &mut s.analyzer))
                {
                    if let Some((rules, policy)) = sets.next() {
                        a.rules = rules;
                        a.policy = policy;
                    }
                }
                self.table.secrets =
                    crate::detect::secrets::SecretNames::new(&self.analyzer.policy.secrets);
                self.reloads += 1;
            }
        }
    }

    fn mode(&mut self, m: ModeInput) {
        match m {
            ModeInput::Root { pid, cwd } => self.table.add_root(pid, &cwd),
            ModeInput::Record {
                pid,
                ts_ns,
                detail,
                escaped,
            } => {
                let ev = self.table.envelope(pid, pid, ts_ns, detail, escaped);
                self.emit(ev);
            }
            ModeInput::End {
                ts_ns,
                exit_code,
                status,
                unverified,
            } => {
                self.report_own_losses();
                let (drain, kernel) = self.ingest_end.take().unwrap_or_default();
                let pipeline = PipelineStats {
                    queues: vec![self.queue.stats()],
                    sinks: self.bus.stats(),
                    kernel,
                    drain,
                };
                let end = Detail::RunEnd(event::RunEnd {
                    exit_code,
                    status,
                    monitor: MonitorUsage::of_self(),
                    pipeline: Some(pipeline),
                    unverified,
                });
                let ev = self.table.envelope(0, 0, ts_ns, end, Vec::new());
                self.emit(ev);
            }
        }
    }

    /// Losses found by this stage: records that did not decode, DNS TCP streams that could
    /// not be reassembled.
    fn report_own_losses(&mut self) {
        if self.decode_errors > 0 {
            let n = std::mem::take(&mut self.decode_errors);
            self.lost(None, "decode_error", n);
        }
        let discarded = self.table.dns_tcp_discarded();
        if discarded > self.dns_discarded_reported {
            let n = discarded - self.dns_discarded_reported;
            self.dns_discarded_reported = discarded;
            self.lost(Some("dns"), "dns_tcp_discarded", n);
        }
    }

    fn lost(&mut self, sensor: Option<&str>, reason: &str, count: u64) {
        if self.hooks.is_some() {
            *self
                .lost_tally
                .entry((sensor.unwrap_or("pipeline").to_owned(), reason.to_owned()))
                .or_default() += count;
        }
        let detail = Detail::Lost(event::Lost {
            count,
            sensor: sensor.map(Into::into),
            reason: reason.into(),
        });
        let ev = self.table.envelope(0, 0, boot_now(), detail, Vec::new());
        self.emit(ev);
    }

    /// One event through the process model, detect, and onto the bus.
    fn emit(&mut self, mut ev: Event) {
        // The scope entry the event's cgroup (or an ancestor) matches judges it; otherwise
        // the default rules and policy.
        let scoped = match (&ev.cgroup, self.scoped.is_empty()) {
            (Some(c), false) => {
                let path = c.path.trim_start_matches('/');
                self.scoped.iter().position(|s| {
                    std::iter::successors(Some(path), |p| p.rsplit_once('/').map(|(a, _)| a))
                        .any(|p| s.glob.is_match(p))
                })
            }
            _ => None,
        };
        let analyzer = match scoped {
            Some(i) => &mut self.scoped[i].analyzer,
            None => &mut self.analyzer,
        };
        // Secrets out of the arguments before anything keeps them.
        analyzer.redact_exec(&mut ev);
        let procs = self.table.processes_mut();
        if self.live {
            enrich::package(&mut ev, procs);
        }
        procs.apply(&ev);
        let bus = &self.bus;
        analyzer.observe(&ev, procs, &mut |f| {
            bus.publish(&Record::Finding(Arc::new(f.clone())));
        });
        if let Some(name) = analyzer.take_redacted()
            && let crate::event::Detail::Dns(d) = &mut ev.detail
        {
            d.qname = Some(name);
        }
        procs.retire(&ev);
        if bus.wants_events() {
            bus.publish(&Record::Event(Arc::new(ev)));
        }
    }
}

/// Now on the kernel's boot clock (the clock event timestamps use).
pub fn boot_now() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}
