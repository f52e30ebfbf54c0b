//! Events → findings. Evaluates the rules indexed for each event's kind against the event in
//! its process context (the shared process model, `context::process`), merges findings, and
//! tallies egress destinations, files written during the run and event counts. `run` and
//! `replay` both drive it with the same stream, which is what makes a replay reach the live
//! run's verdict.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
};

use serde::Serialize;

use crate::{
    context::process::{Id, ProcInfo, Processes, basename},
    detect::{
        dns_shape::{Counts, Shape, rare_qtype},
        findings::{AncestorRef, Finding, Findings, ProcessRef},
        rules::{
            Rule, RuleSet, Severity,
            fields::{Field, Kinds, ProcField, Scope, Subject, Val},
        },
    },
    event::{Destination, Detail, Event, Target},
    policy::Policy,
};

/// Files remembered as written during the run; beyond this, new writes are counted, not kept.
pub const MAX_WRITTEN: usize = 200_000;

pub fn opens_for_write(flags: &[Cow<'static, str>]) -> bool {
    flags.iter().any(|f| {
        matches!(
            f.as_ref(),
            "write" | "create" | "truncate" | "append" | "tmpfile"
        )
    })
}

/// Ancestors recorded in a finding.
const FINDING_ANCESTRY: usize = 8;
/// Processes named per egress destination.
const EGRESS_PROCESSES: usize = 8;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Egress {
    pub family: String,
    pub address: String,
    pub port: Option<u16>,
    /// `connect` or the protocol of an unconnected send (`udp`).
    pub via: String,
    pub allowed: bool,
    /// Block mode refused it (every time: a refused destination stays refused).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// Port 53 of one of the run's resolvers (the system's or the policy's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resolver: bool,
    /// Block mode sent it to its DNS proxy instead (a resolver's port 53).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redirected: bool,
    /// Names this run's DNS resolved the address from (at most 8); empty when it never did.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub domains: BTreeSet<String>,
    pub count: u64,
    /// Tools that used it (at most 8).
    pub processes: BTreeSet<String>,
    /// Packages (`name@version`) whose processes used it (at most 8).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub packages: BTreeSet<String>,
    pub first_seen: String,
}

impl Egress {
    /// `addr:port`, IPv6 in brackets.
    pub fn endpoint(&self) -> String {
        match (self.port, self.family.as_str()) {
            (None, _) => self.address.clone(),
            (Some(p), "inet6") => format!("[{}]:{p}", self.address),
            (Some(p), _) => format!("{}:{p}", self.address),
        }
    }

    /// ` (name, name)` when DNS named the address, else empty.
    pub fn domain_note(&self) -> String {
        if self.domains.is_empty() {
            return String::new();
        }
        let names: Vec<&str> = self.domains.iter().map(String::as_str).collect();
        format!(" ({})", names.join(", "))
    }

    pub fn process_list(&self) -> String {
        let procs: Vec<&str> = self.processes.iter().map(String::as_str).collect();
        procs.join(", ")
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Totals {
    /// Events other than `run`, `run_end` and `lost` records.
    pub total: u64,
    /// Events the kernel or decoder could not deliver (sum of `lost` records).
    pub lost: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// Read-only opens under system directories the kernel counted per process instead of
    /// reporting (the sum of the exit events' `reads_summarized`).
    pub reads_summarized: u64,
}

pub struct Analyzer {
    pub rules: RuleSet,
    pub policy: Policy,
    /// Path → executable name of the process that last opened it for writing during the run.
    written: HashMap<String, String>,
    /// Writes not remembered because [`MAX_WRITTEN`] was reached.
    pub written_overflow: u64,
    pub findings: Findings,
    egress: BTreeMap<EgressKey, Egress>,
    /// Connections and sends to destinations past [`MAX_EGRESS`].
    pub egress_unlisted: u64,
    pub totals: Totals,
    /// From the stream's `run` record.
    pub command: Vec<String>,
    /// From the `run` record: 32-bit syscalls were allowed, and went unseen.
    pub allow_32bit_syscalls: bool,
    /// The command's working directory, from the `run` record.
    pub cwd: String,
    /// The stream's `run_end` record.
    pub run_end: Option<crate::event::RunEnd>,
    /// Processes (pid, start) whose command line made an action finding: the finding's index
    /// and severity. What they and their descendants do next in [`GROUPED_CATEGORIES`], no
    /// more severe, is a part of it.
    actions: HashMap<(u32, u64), (usize, Severity)>,
    /// Processes (pid, start) that opened /proc itself: they list the process table, as ps
    /// and top do (`proc.listed_processes`).
    listers: HashSet<(u32, u64)>,
    /// Processes (pid, start) that read the environment of another process, not their own
    /// descendant (`proc.read_other_environ`, for them and what they start afterwards).
    environ_readers: HashSet<(u32, u64)>,
    /// Which process writes into which pipe and which reads a program from it, and which
    /// processes made network calls (`pipe.*`).
    pipes: Pipes,
    /// The CI's secret values, as hashes of their encodings, to find in DNS queries.
    pub secrets: super::secrets::Secrets,
    /// The last event's DNS name with a secret's encoding cut out, for the stage to publish
    /// in place of the name (see [`Analyzer::take_redacted`]).
    redacted: Option<String>,
    /// The secret the current exec's arguments carried ([`Analyzer::redact_exec`]).
    exec_secret: Option<String>,
    /// Findings below this are dropped (an agent scope's severity floor; Low for a run).
    pub min_severity: Severity,
    /// Why the stream itself cannot be vouched for (a replay of a damaged or truncated
    /// stream), beyond what its `run_end` says. Each is a reason the verdict fails.
    pub unverified: Vec<String>,
    /// The system's resolvers (from the `run` record) and the policy's.
    resolvers: Vec<IpAddr>,
    dns_windows: crate::detect::dns_shape::Windows,
    /// What each package's processes did (`name@version`): the basis of `buildwatch diff`.
    pub packages: BTreeMap<String, Behaviour>,
}

/// Packages whose behaviour is kept, and entries kept per kind and package.
const MAX_PACKAGES: usize = 2000;
const MAX_BEHAVIOUR: usize = 64;

/// What one package's processes did: the executables they ran and the destinations they
/// reached (a name its DNS gave, else the address and port). Bounded; what did not fit is
/// counted.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Behaviour {
    #[serde(default)]
    pub executables: BTreeSet<String>,
    #[serde(default)]
    pub destinations: BTreeSet<String>,
    /// Registrable domains (Public Suffix List) its processes asked DNS about.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub dns: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub unlisted: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

impl Behaviour {
    fn add(set: &mut BTreeSet<String>, unlisted: &mut u64, v: String) {
        if set.len() < MAX_BEHAVIOUR || set.contains(&v) {
            set.insert(v);
        } else {
            *unlisted += 1;
        }
    }
}

/// `name@version` of a package.
fn package_key(p: &crate::event::Package) -> String {
    match &p.version {
        Some(v) => format!("{}@{v}", p.name),
        None => p.name.clone(),
    }
}

/// Note what the event's package (if any) did: an executable it ran, a destination.
fn behaviour(packages: &mut BTreeMap<String, Behaviour>, s: &Subj<'_>) {
    let Some(pkg) = s.proc.and_then(|p| p.package.as_ref()) else {
        return;
    };
    let key = package_key(pkg);
    if packages.len() >= MAX_PACKAGES && !packages.contains_key(&key) {
        return;
    }
    let b = packages.entry(key).or_default();
    match &s.ev.detail {
        Detail::Exec(x) if x.outcome.ret == 0 => {
            let tool = s.proc.map(|p| p.tool.clone()).unwrap_or_default();
            Behaviour::add(&mut b.executables, &mut b.unlisted, tool);
        }
        Detail::Connect(_) | Detail::Send(_) => {
            if let Some((d, _)) = destination(s.ev)
                && matches!(d.family.as_str(), "inet" | "inet6")
            {
                let what = match (&d.domain, d.port) {
                    (Some(name), Some(p)) => format!("{name}:{p}"),
                    (Some(name), None) => name.clone(),
                    (None, Some(p)) if d.address.as_deref().is_some_and(|a| a.contains(':')) => {
                        format!("[{}]:{p}", d.address.as_deref().unwrap_or(""))
                    }
                    (None, Some(p)) => format!("{}:{p}", d.address.as_deref().unwrap_or("")),
                    (None, None) => d.address.clone().unwrap_or_default(),
                };
                Behaviour::add(&mut b.destinations, &mut b.unlisted, what);
            }
        }
        Detail::Dns(d) if d.direction == "query" => {
            if let Some(q) = d.qname.as_deref() {
                let q = q.strip_suffix('.').unwrap_or(q).to_ascii_lowercase();
                let reg = psl::domain_str(&q).unwrap_or(&q).to_owned();
                Behaviour::add(&mut b.dns, &mut b.unlisted, reg);
            }
        }
        _ => {}
    }
}

/// What the DNS heuristics make of one query.
pub struct DnsView {
    pub shape: Shape,
    /// The secret variable whose value this query carries (alone or joined with the labels
    /// of earlier queries to its domain).
    pub secret: Option<String>,
    /// None for responses: only queries count.
    pub counts: Option<Counts>,
}

impl Analyzer {
    pub fn new(rules: RuleSet, policy: Policy) -> Self {
        Self {
            rules,
            policy,
            written: HashMap::new(),
            written_overflow: 0,
            findings: Findings::default(),
            egress: BTreeMap::new(),
            egress_unlisted: 0,
            totals: Totals::default(),
            command: Vec::new(),
            allow_32bit_syscalls: false,
            run_end: None,
            unverified: Vec::new(),
            min_severity: Severity::Low,
            actions: HashMap::new(),
            listers: HashSet::new(),
            environ_readers: HashSet::new(),
            pipes: Pipes::default(),
            secrets: super::secrets::Secrets::none(),
            redacted: None,
            exec_secret: None,
            cwd: String::new(),
            resolvers: Vec::new(),
            dns_windows: Default::default(),
            packages: BTreeMap::new(),
        }
    }

    fn dns_view(&mut self, ev: &Event) -> Option<DnsView> {
        let Detail::Dns(d) = &ev.detail else {
            return None;
        };
        let qname = d.qname.as_deref()?;
        let t = &self.policy.dns;
        let shape = Shape::of(qname, t);
        let counts = (d.direction == "query").then(|| {
            let rare = d.qtype.as_deref().is_some_and(rare_qtype);
            self.dns_windows
                .record(&shape.domain, qname, rare, ev.ts_ns, t)
        });
        // Queries are joined per domain; a response names what its query named.
        let secret = if d.direction == "query" {
            self.secrets.check_query(qname, &shape.domain)
        } else {
            self.secrets.check_name(qname, &shape.domain)
        };
        Some(DnsView {
            shape,
            counts,
            secret,
        })
    }

    /// Before an event is applied to the process table and judged: an exec's arguments that
    /// carry a secret's value are replaced by `<redacted:VAR>`, so that neither the process
    /// table, the findings nor any output holds the value; `exec.secret` names the variable.
    /// A replay reads the markers its stream holds.
    pub fn redact_exec(&mut self, ev: &mut Event) {
        self.exec_secret = match &mut ev.detail {
            Detail::Exec(x) => self.secrets.redact_args(&mut x.argv),
            _ => None,
        };
    }

    /// Take one event, in the context of `procs` (already updated with it); `on_new` sees
    /// each finding the first time it appears.
    pub fn observe(&mut self, ev: &Event, procs: &Processes, on_new: &mut dyn FnMut(&Finding)) {
        match &ev.detail {
            Detail::Run(r) => {
                self.command = r.command.clone();
                self.allow_32bit_syscalls = r.allow_32bit_syscalls;
                self.cwd = r.cwd.clone();
                self.resolvers = r
                    .resolvers
                    .iter()
                    .chain(r.dns_proxy.as_ref())
                    .filter_map(|a| a.parse().ok())
                    .collect();
                return;
            }
            Detail::RunEnd(e) => {
                self.run_end = Some(e.clone());
                return;
            }
            Detail::Lost(l) => {
                self.totals.lost += l.count;
                crate::output::status::PROGRESS
                    .lost
                    .fetch_add(l.count, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            Detail::Exit(_) => {
                if let Some(p) = procs.of_event(ev) {
                    let key = (p.pid, p.start_ns);
                    self.actions.remove(&key);
                    self.listers.remove(&key);
                    // environ_readers stays: what the reader started still descends from it.
                    self.pipes.exited(key);
                }
            }
            _ => {}
        }
        self.totals.total += 1;
        crate::output::status::PROGRESS
            .events
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.totals.by_kind.get_mut(ev.kind.as_ref()) {
            Some(n) => *n += 1,
            None => {
                self.totals.by_kind.insert(ev.kind.to_string(), 1);
            }
        }
        if let Detail::Exit(x) = &ev.detail {
            self.totals.reads_summarized += u64::from(x.reads_summarized);
        }
        if let Detail::Open(o) = &ev.detail
            && o.outcome.ret >= 0
            && opens_for_write(&o.flags)
        {
            // The writer's executable name, not its script: lists of writers (linkers,
            // downloaders) name binaries, and a script cannot pass itself off as one.
            let tool = procs
                .of_event(ev)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            let path = o.target.clone().unwrap_or_else(|| o.path.clone());
            if self.written.len() < MAX_WRITTEN || self.written.contains_key(&path) {
                self.written.insert(path, tool);
            } else {
                self.written_overflow += 1;
            }
        }
        let Some(kind) = Kinds::index(&ev.kind) else {
            return;
        };
        // Listing the process table: /proc itself opened (a directory read follows).
        if let Detail::Open(o) = &ev.detail
            && o.outcome.ret >= 0
            && matches!(o.path.as_str(), "/proc" | "/proc/")
            && let Some(p) = procs.of_event(ev)
            && (self.listers.len() < MAX_ACTIONS)
        {
            self.listers.insert((p.pid, p.start_ns));
        }
        self.pipes.observe(ev, procs, &mut self.written);
        // Reading another process's environment (not a descendant's), for what it does next.
        if let Detail::Open(o) = &ev.detail
            && o.outcome.ret >= 0
            && o.path.ends_with("/environ")
            && self.environ_readers.len() < MAX_ACTIONS
        {
            let first = Subj::new(ev, kind, procs, &self.written, &self.policy);
            let other = first.value(Field::FileProcEntry) == s("environ")
                && matches!(first.value(Field::FileProcRelation), Val::Str(r) if r == "run" || r == "outside");
            if other && let Some(p) = first.proc {
                self.environ_readers.insert((p.pid, p.start_ns));
            }
        }
        let dns = self.dns_view(ev);
        // A name that carried a secret is judged, reported and published without it.
        let redacted_ev;
        let ev = match dns
            .as_ref()
            .and_then(|d| d.secret.as_deref().map(|v| (d, v)))
        {
            Some((d, var)) => {
                let name = format!("{}.{}", super::secrets::redaction(var), d.shape.domain);
                let mut e = ev.clone();
                if let Detail::Dns(x) = &mut e.detail {
                    x.qname = Some(name.clone());
                }
                self.redacted = Some(name);
                redacted_ev = e;
                &redacted_ev
            }
            None => ev,
        };
        let mut subject = Subj::new(ev, kind, procs, &self.written, &self.policy);
        subject.dns = dns.as_ref();
        subject.resolvers = &self.resolvers;
        subject.listers = Some(&self.listers);
        subject.environ_readers = Some(&self.environ_readers);
        subject.pipes = Some(&self.pipes);
        subject.exec_secret = self.exec_secret.as_deref();
        if let Some((dest, via)) = destination(ev) {
            egress_seen(
                &mut self.egress,
                &mut self.egress_unlisted,
                dest,
                via,
                &subject,
            );
        }
        behaviour(&mut self.packages, &subject);
        let mut found: Vec<Finding> = self
            .rules
            .matching(&subject)
            .map(|rule| finding(rule, &subject))
            .collect();

        found.retain(|f| f.severity >= self.min_severity);
        if found.is_empty() {
            return;
        }
        // Done by a process inside an action that already has its finding: a part of it.
        if let Some((i, severity)) = action_of(&self.actions, &subject) {
            found.retain(|f| {
                let part =
                    GROUPED_CATEGORIES.contains(&f.category.as_str()) && f.severity <= severity;
                if part {
                    self.findings.attach(i, part_of(f));
                }
                !part
            });
        }
        // One event, one finding: the most severe rule's (the first of equals); the others
        // are its parts.
        let Some(top) = (0..found.len()).max_by_key(|&i| (found[i].severity, usize::MAX - i))
        else {
            return;
        };
        let mut main = found.remove(top);
        main.parts = found.iter().map(part_of).collect();
        let starts_action = matches!(ev.detail, Detail::Exec(_))
            && ACTION_CATEGORIES.contains(&main.category.as_str());
        let severity = main.severity;
        let (index, new) = self.findings.add_indexed(main);
        if let Some(i) = index {
            if new && let Some(f) = self.findings.get(i) {
                crate::output::status::PROGRESS
                    .findings
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                on_new(f);
            }
            if starts_action
                && let Some(p) = subject.proc
                && (self.actions.len() < MAX_ACTIONS
                    || self.actions.contains_key(&(p.pid, p.start_ns)))
            {
                self.actions.insert((p.pid, p.start_ns), (i, severity));
            }
        }
    }

    /// The name the event just observed must be published with: a DNS name that carried a
    /// secret, with the labels left of its registrable domain replaced by `<redacted:VAR>`.
    pub fn take_redacted(&mut self) -> Option<String> {
        self.redacted.take()
    }

    pub fn egress(&self) -> Vec<Egress> {
        self.egress.values().cloned().collect()
    }
}

type EgressKey = (String, String, Option<u16>, String);

/// A finding on an exec in these categories makes the command line an action (`sh -c
/// "curl … | sh"`, a decode piped to a shell, a downloaded file run).
const ACTION_CATEGORIES: &[&str] = &["shell-spawn", "download-exec"];
/// Findings that become parts of an action when its process or a descendant makes them:
/// the tools it starts and where they connect. Credential reads, memory access, persistence
/// and tampering always stay findings of their own.
const GROUPED_CATEGORIES: &[&str] = &["shell-spawn", "download-exec", "egress"];
/// Processes remembered as actions at once (entries go when the process exits).
const MAX_ACTIONS: usize = 10_000;

/// The action the event's process belongs to: its own, or the nearest ancestor's.
fn action_of(
    actions: &HashMap<(u32, u64), (usize, Severity)>,
    s: &Subj<'_>,
) -> Option<(usize, Severity)> {
    if actions.is_empty() {
        return None;
    }
    let p = s.proc?;
    if let Some(a) = actions.get(&(p.pid, p.start_ns)) {
        return Some(*a);
    }
    let id = s.id?;
    s.procs
        .ancestors(id)
        .into_iter()
        .find_map(|a| actions.get(&(a.pid, a.start_ns)).copied())
}

fn part_of(f: &Finding) -> crate::detect::findings::Part {
    crate::detect::findings::Part {
        rule: f.rule.clone(),
        category: f.category.clone(),
        severity: f.severity,
        message: f.message.clone(),
        pid: f.process.pid,
        count: 1,
    }
}

/// Distinct egress destinations listed; the watched code picks them (every port of every
/// address), so past this they are counted in `Analyzer::egress_unlisted` instead.
pub const MAX_EGRESS: usize = 10_000;

fn egress_seen(
    table: &mut BTreeMap<EgressKey, Egress>,
    unlisted: &mut u64,
    d: &Destination,
    via: &str,
    s: &Subj<'_>,
) {
    if !matches!(d.family.as_str(), "inet" | "inet6") {
        return;
    }
    let addr = d.address.clone().unwrap_or_default();
    let key = (d.family.clone(), addr.clone(), d.port, via.to_owned());
    if table.len() >= MAX_EGRESS && !table.contains_key(&key) {
        *unlisted += 1;
        return;
    }
    let redirected = match &s.ev.detail {
        Detail::Connect(c) => c.redirected,
        Detail::Send(x) => x.redirected,
        _ => false,
    };
    // What went to the DNS proxy was judged there, by name.
    let allowed = redirected || matches!(s.value(Field::NetAllowed), Val::Bool(true));
    let refused = matches!(s.value(Field::NetRefused), Val::Bool(true));
    let resolver = matches!(s.value(Field::NetResolver), Val::Bool(true));
    let e = table.entry(key).or_insert_with(|| Egress {
        family: d.family.clone(),
        address: addr,
        port: d.port,
        via: via.to_owned(),
        allowed,
        refused,
        resolver,
        redirected,
        domains: BTreeSet::new(),
        count: 0,
        processes: BTreeSet::new(),
        packages: BTreeSet::new(),
        first_seen: s.ev.time.clone(),
    });
    e.count += 1;
    if let Some(name) = &d.domain
        && e.domains.len() < EGRESS_PROCESSES
    {
        e.domains.insert(name.clone());
    }
    if e.processes.len() < EGRESS_PROCESSES
        && let Some(p) = s.proc
    {
        e.processes.insert(p.tool.clone());
    }
    if e.packages.len() < EGRESS_PROCESSES
        && let Some(pkg) = s.proc.and_then(|p| p.package.as_ref())
    {
        e.packages.insert(match &pkg.version {
            Some(v) => format!("{}@{v}", pkg.name),
            None => pkg.name.clone(),
        });
    }
}

fn destination(ev: &Event) -> Option<(&Destination, &str)> {
    match &ev.detail {
        Detail::Connect(c) => Some((&c.dest, "connect")),
        Detail::Send(s) => Some((&s.dest, s.protocol.as_str())),
        _ => None,
    }
}

fn finding(rule: &Rule, s: &Subj<'_>) -> Finding {
    let message = rule.message(s);
    let process = match s.proc {
        Some(p) => ProcessRef {
            pid: p.pid,
            exe: p.exe.clone(),
            argv: p.argv.clone(),
            ancestry: s
                .id
                .map(|id| s.procs.ancestors(id))
                .unwrap_or_default()
                .into_iter()
                .take(FINDING_ANCESTRY)
                .map(|a| AncestorRef {
                    pid: a.pid,
                    exe: a.exe.clone(),
                    argv: a.argv.clone(),
                })
                .collect(),
        },
        None => ProcessRef {
            pid: s.ev.pid,
            exe: s.ev.exe.as_deref().map(str::to_owned),
            argv: Vec::new(),
            ancestry: Vec::new(),
        },
    };
    Finding {
        rule: rule.name.clone(),
        category: rule.category.clone(),
        severity: rule.severity,
        message,
        process,
        package: s.proc.and_then(|p| p.package.clone()),
        cgroup: s.ev.cgroup.clone(),
        detail: detail(s.ev),
        count: 1,
        first_seen: s.ev.time.clone(),
        first_seq: s.ev.seq,
        tags: rule.tags.clone(),
        location: None,
        parts: Vec::new(),
        parts_unlisted: 0,
    }
}

/// The part of the event a reader of the finding needs (absent values left out).
fn detail(ev: &Event) -> serde_json::Value {
    use serde_json::json;
    let mut v = match &ev.detail {
        Detail::Open(o) => json!({
            "path": o.path, "target": o.target, "flags": o.flags, "error": o.outcome.error,
            "killed": o.killed.then_some(true),
        }),
        Detail::Exec(x) => json!({
            "path": x.path, "argv": x.argv, "cwd": x.cwd, "error": x.outcome.error,
            "killed": x.killed.then_some(true),
        }),
        Detail::Connect(c) => json!({
            "family": c.dest.family, "address": c.dest.address, "port": c.dest.port, "via": "connect",
            "domain": c.dest.domain, "error": c.outcome.error,
        }),
        Detail::Send(x) => json!({
            "family": x.dest.family, "address": x.dest.address, "port": x.dest.port, "via": x.protocol,
            "domain": x.dest.domain,
        }),
        Detail::Ptrace(p) => json!({
            "request": p.request,
            "target": p.target.as_ref().map(|t| json!({ "pid": t.pid, "exe": t.exe })),
            "error": p.outcome.error,
            "killed": p.killed.then_some(true),
        }),
        Detail::Dns(d) => json!({
            "direction": d.direction, "qname": d.qname, "qtype": d.qtype, "protocol": d.protocol,
            "resolver": d.resolver, "resolver_port": d.resolver_port, "rcode": d.rcode,
            "malformed": d.malformed, "unsolicited": d.unsolicited.then_some(true),
        }),
        Detail::ProcessVm(v) => json!({
            "op": v.op, "target": { "pid": v.target.pid, "exe": v.target.exe },
            "bytes": (v.outcome.ret >= 0).then_some(v.outcome.ret), "error": v.outcome.error,
            "killed": v.killed.then_some(true),
        }),
        Detail::Bpf(b) => json!({ "cmd": b.cmd }),
        Detail::Escape(x) => json!({ "cgroup_id": x.cgroup_id, "killed": x.killed }),
        Detail::Signal(x) => json!({
            "call": x.call, "target": x.target, "aimed_at": x.aimed_at, "signal": x.signal_name,
        }),
        Detail::Rename(r) | Detail::Link(r) => json!({
            "path": r.to, "from": r.from, "syscall": r.syscall, "error": r.outcome.error,
        }),
        Detail::Socket(x) => json!({
            "family": x.family, "type": x.sock_type, "protocol": x.protocol, "error": x.outcome.error,
        }),
        _ => json!({ "kind": ev.kind }),
    };
    drop_nulls(&mut v);
    v
}

fn drop_nulls(v: &mut serde_json::Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
        m.values_mut().for_each(drop_nulls);
    }
}

/// One event in its process context, as the rules see it.
pub struct Subj<'a> {
    pub ev: &'a Event,
    kind: usize,
    procs: &'a Processes,
    id: Option<Id>,
    written: &'a HashMap<String, String>,
    policy: &'a Policy,
    proc: Option<&'a ProcInfo>,
    parent: Option<&'a ProcInfo>,
    pub dns: Option<&'a DnsView>,
    pub resolvers: &'a [IpAddr],
    /// The analyzer's process state (none for a subject made on its own).
    listers: Option<&'a HashSet<(u32, u64)>>,
    environ_readers: Option<&'a HashSet<(u32, u64)>>,
    pipes: Option<&'a Pipes>,
    /// An exec's argument carried this secret's value (see [`Analyzer::redact_exec`]).
    exec_secret: Option<&'a str>,
}

impl<'a> Subj<'a> {
    pub fn new(
        ev: &'a Event,
        kind: usize,
        procs: &'a Processes,
        written: &'a HashMap<String, String>,
        policy: &'a Policy,
    ) -> Self {
        let id = procs.find(ev.pid, ev.start_ns);
        let proc = id.map(|id| procs.info(id));
        let parent = id
            .and_then(|id| procs.parent(id))
            .or_else(|| {
                proc.and_then(|p| p.ppid)
                    .or(ev.ppid)
                    .and_then(|pp| procs.running(pp))
            })
            .map(|p| procs.info(p));
        Self {
            ev,
            kind,
            procs,
            id,
            written,
            policy,
            proc,
            parent,
            dns: None,
            resolvers: &[],
            listers: None,
            environ_readers: None,
            pipes: None,
            exec_secret: None,
        }
    }

    /// `pipe.*`: on an exec, the pipe its standard input reads (the processes writing into
    /// it, whether one made network calls, whether the new program takes its code from it);
    /// on a connect or send, the pipe the caller's standard output feeds (who reads a program
    /// from it).
    fn pipe_value(&self, f: Field) -> Val<'a> {
        let (Some(pipes), Some(p)) = (self.pipes, self.proc) else {
            return Val::Missing;
        };
        let key = (p.pid, p.start_ns);
        let names = |v: &'a [((u32, u64), String)]| {
            Val::List(v.iter().map(|(_, n)| Cow::Borrowed(n.as_str())).collect())
        };
        match &self.ev.detail {
            Detail::Exec(x) if x.outcome.ret == 0 => {
                let pipe =
                    |s: &'a crate::event::StdStream| (s.kind == "pipe").then_some(s.ino).flatten();
                let stdin = x.stdio.as_ref().and_then(|s| pipe(&s.stdin));
                let reads = stdin.is_some() && reads_program_from_stdin(&p.name, &x.argv);
                if reads || f == Field::PipeSide {
                    // As the reader: who writes into the pipe it takes its program from.
                    let ends = stdin.and_then(|i| pipes.ends.get(&i));
                    return match f {
                        Field::PipeSide => {
                            if reads {
                                s("reader")
                            } else {
                                let out = x.stdio.as_ref().and_then(|s| pipe(&s.stdout));
                                let fed = out
                                    .and_then(|o| pipes.ends.get(&o))
                                    .is_some_and(|e| !e.readers.is_empty());
                                s(if fed { "writer" } else { "" })
                            }
                        }
                        Field::PipeIntoInterpreter => Val::Bool(true),
                        Field::PipeFromNetwork => Val::Bool(ends.is_some_and(|e| {
                            e.writers.iter().any(|(k, _)| pipes.networked.contains(k))
                        })),
                        Field::PipeWriter => {
                            ends.map_or(Val::List(Vec::new()), |e| names(&e.writers))
                        }
                        _ => Val::List(vec![Cow::Borrowed(p.name.as_str())]),
                    };
                }
                // As the writer: a program that started after its reader (`a | sh` where sh
                // ran first) feeds a pipe some process reads its program from.
                let ends = x
                    .stdio
                    .as_ref()
                    .and_then(|s| pipe(&s.stdout))
                    .and_then(|o| pipes.ends.get(&o))
                    .filter(|e| !e.readers.is_empty());
                match f {
                    Field::PipeIntoInterpreter => Val::Bool(ends.is_some()),
                    Field::PipeFromNetwork => Val::Bool(pipes.networked.contains(&key)),
                    Field::PipeWriter => Val::List(if ends.is_some() {
                        vec![Cow::Borrowed(p.name.as_str())]
                    } else {
                        Vec::new()
                    }),
                    _ => ends.map_or(Val::List(Vec::new()), |e| names(&e.readers)),
                }
            }
            Detail::Connect(_) | Detail::Send(_) => {
                let ends = pipes
                    .of_proc
                    .get(&key)
                    .and_then(|(_, out)| *out)
                    .and_then(|i| pipes.ends.get(&i));
                match f {
                    Field::PipeSide => s(if ends.is_some_and(|e| !e.readers.is_empty()) {
                        "writer"
                    } else {
                        ""
                    }),
                    Field::PipeIntoInterpreter => {
                        Val::Bool(ends.is_some_and(|e| !e.readers.is_empty()))
                    }
                    Field::PipeFromNetwork => Val::Bool(pipes.networked.contains(&key)),
                    Field::PipeWriter => Val::List(vec![Cow::Borrowed(p.name.as_str())]),
                    _ => ends.map_or(Val::List(Vec::new()), |e| names(&e.readers)),
                }
            }
            _ => Val::Missing,
        }
    }
    /// A process field; `owner_tool` needs what the run wrote.
    fn proc_value<'p>(&self, p: &'p ProcInfo, f: ProcField) -> Val<'p> {
        if f != ProcField::OwnerTool {
            return proc_value(p, f);
        }
        // The tool's own file: the script an interpreter runs, else the executable.
        let path = match (&p.script, &p.exe) {
            (Some(script), _) => {
                let cwd = p.cwd.as_deref().unwrap_or("/");
                let abs = crate::context::paths::resolve(cwd.as_bytes(), script.as_bytes());
                String::from_utf8_lossy(&abs).into_owned()
            }
            (None, Some(exe)) => exe.clone(),
            (None, None) => return s(""),
        };
        let installed = (INSTALLED_PREFIXES.iter().any(|pre| path.starts_with(pre))
            || INSTALLED_MANAGED.iter().any(|m| path.contains(m)))
            && self.writer_of(&path).is_none();
        // `python3 -m pip` imports `pip` from its working directory first: a module of that
        // name written there during the run is not the installed tool.
        let planted = p.script.is_none() && p.tool != p.name && {
            let cwd = p.cwd.as_deref().unwrap_or("/").trim_end_matches('/');
            let t = &p.tool;
            [
                format!("{cwd}/{t}/__main__.py"),
                format!("{cwd}/{t}/__init__.py"),
                format!("{cwd}/{t}.py"),
            ]
            .iter()
            .any(|f| self.writer_of(f).is_some())
        };
        if installed && !planted {
            s(&p.tool)
        } else {
            s("")
        }
    }

    fn writer_of(&self, path: &str) -> Option<&'a str> {
        self.written.get(path).map(String::as_str)
    }

    /// The code-injection variable of an exec, the file it names, and whether that file was
    /// written during the run or lies in a temporary directory (preferred when several).
    fn injected(&self, x: &crate::event::Exec) -> Option<(&'static str, String, bool)> {
        let cwd = self.proc.and_then(|p| p.cwd.as_deref()).unwrap_or(&x.cwd);
        let mut first: Option<(&'static str, String, bool)> = None;
        for (var, value) in &x.env {
            let var: &'static str = match var.as_str() {
                "LD_PRELOAD" => "LD_PRELOAD",
                "LD_AUDIT" => "LD_AUDIT",
                "PYTHONSTARTUP" => "PYTHONSTARTUP",
                "BASH_ENV" => "BASH_ENV",
                "ENV" => "ENV",
                "NODE_OPTIONS" => "NODE_OPTIONS",
                "RUBYOPT" => "RUBYOPT",
                _ => continue,
            };
            for path in injection_paths(var, value)
                .into_iter()
                .filter(|p| p.starts_with('/') || p.starts_with("./") || p.starts_with("../"))
            {
                let abs = crate::context::paths::resolve(cwd.as_bytes(), path.as_bytes());
                let abs = String::from_utf8_lossy(&abs).into_owned();
                let temp = ["/tmp/", "/var/tmp/", "/dev/shm/"]
                    .iter()
                    .any(|t| abs.starts_with(t));
                let written = temp || self.writer_of(&abs).is_some();
                if written {
                    return Some((var, abs, true));
                }
                first.get_or_insert((var, abs, false));
            }
        }
        first
    }

    /// Who wrote what an exec runs during this run: the executed file, or else the script an
    /// interpreter runs (the kernel executes a script's interpreter, so the file the run
    /// wrote is the script).
    fn exec_writer(&self, x: &crate::event::Exec) -> Option<&'a str> {
        self.writer_of(&x.path).or_else(|| {
            let p = self.proc?;
            let script = p
                .script
                .as_deref()
                .or_else(|| shell_script(&p.name, &p.argv))?;
            let cwd = p.cwd.as_deref().unwrap_or("/");
            let abs = crate::context::paths::resolve(cwd.as_bytes(), script.as_bytes());
            self.writer_of(&String::from_utf8_lossy(&abs))
        })
    }

    fn is_resolver(&self, ip: IpAddr) -> bool {
        self.resolvers.contains(&ip) || self.policy.resolvers.contains(&ip)
    }

    fn dns_detail(&self) -> Option<&'a crate::event::Dns> {
        match &self.ev.detail {
            Detail::Dns(d) => Some(d),
            _ => None,
        }
    }

    fn outcome(&self) -> Option<(i64, Option<&'a str>)> {
        let o = match &self.ev.detail {
            Detail::Exec(x) => &x.outcome,
            Detail::Open(x) => &x.outcome,
            Detail::Chdir(x) => &x.outcome,
            Detail::Connect(x) => &x.outcome,
            Detail::Ptrace(x) => &x.outcome,
            Detail::ProcessVm(x) => &x.outcome,
            Detail::Socket(x) => &x.outcome,
            Detail::Rename(x) | Detail::Link(x) => &x.outcome,
            Detail::Unlink(x) => &x.outcome,
            Detail::Chmod(x) => &x.outcome,
            Detail::Truncate(x) => &x.outcome,
            Detail::Setxattr(x) => &x.outcome,
            _ => return None,
        };
        Some((o.ret, o.error.as_deref()))
    }

    fn target(&self) -> Option<&'a Target> {
        match &self.ev.detail {
            Detail::Ptrace(p) => p.target.as_ref(),
            Detail::ProcessVm(v) => Some(&v.target),
            _ => None,
        }
    }

    fn dest(&self) -> Option<&'a Destination> {
        destination(self.ev).map(|(d, _)| d)
    }

    fn ip(&self) -> Option<IpAddr> {
        self.dest()?.address.as_deref()?.parse().ok()
    }
}

/// Most pipes remembered, processes remembered as having made network calls, and ends kept
/// per pipe.
const MAX_PIPES: usize = 10_000;
const MAX_NETWORKED: usize = 10_000;
const MAX_ENDS: usize = 8;

/// The run's pipes as the exec events' stdio shows them.
#[derive(Default)]
pub struct Pipes {
    /// Pipe inode → who writes into it (standard output) and who reads a program from it.
    ends: HashMap<u64, PipeEnds>,
    /// Process (pid, start) → the pipes of its standard input and output.
    of_proc: HashMap<(u32, u64), (Option<u64>, Option<u64>)>,
    /// Processes that connected or sent to an IP address.
    networked: HashSet<(u32, u64)>,
}

#[derive(Default)]
struct PipeEnds {
    writers: Vec<((u32, u64), String)>,
    readers: Vec<((u32, u64), String)>,
}

impl Pipes {
    /// Take what `ev` says about pipes and network calls. A program whose standard output is
    /// a file this run opened for writing becomes that file's writer (`base64 -d > x`: the
    /// shell opened x, base64 wrote it).
    fn observe(&mut self, ev: &Event, procs: &Processes, written: &mut HashMap<String, String>) {
        // Only execs and network calls matter here: every other event (an open, most of
        // them) skips the process lookup.
        if !matches!(
            ev.detail,
            Detail::Exec(_) | Detail::Connect(_) | Detail::Send(_)
        ) {
            return;
        }
        let Some(p) = procs.of_event(ev) else { return };
        let key = (p.pid, p.start_ns);
        match &ev.detail {
            Detail::Exec(x) if x.outcome.ret == 0 => {
                let Some(io) = &x.stdio else { return };
                let pipe =
                    |s: &crate::event::StdStream| (s.kind == "pipe").then_some(s.ino).flatten();
                let (stdin, stdout) = (pipe(&io.stdin), pipe(&io.stdout));
                if let Some(i) = stdin
                    && reads_program_from_stdin(&p.name, &x.argv)
                {
                    self.end(i, key, &p.name, false);
                }
                if let Some(o) = stdout {
                    self.end(o, key, &p.name, true);
                }
                if stdin.is_some() || stdout.is_some() {
                    if self.of_proc.len() < MAX_PIPES {
                        self.of_proc.insert(key, (stdin, stdout));
                    }
                } else {
                    self.of_proc.remove(&key);
                }
                if io.stdout.kind == "file"
                    && let Some(path) = &io.stdout.path
                    && let Some(w) = written.get_mut(path)
                {
                    w.clone_from(&p.name);
                }
            }
            Detail::Connect(_) | Detail::Send(_) => {
                let ip = destination(ev)
                    .is_some_and(|(d, _)| matches!(d.family.as_str(), "inet" | "inet6"));
                // Only a process that writes into a pipe can feed one from the network.
                let feeds = self.of_proc.get(&key).is_some_and(|(_, out)| out.is_some());
                if ip && feeds && self.networked.len() >= MAX_NETWORKED {
                    self.collect();
                }
                if ip && feeds && self.networked.len() < MAX_NETWORKED {
                    self.networked.insert(key);
                }
            }
            _ => {}
        }
    }

    /// A process ended. Its pipes and its network calls are kept while room lasts (a reader
    /// may start after its writer finished: `curl … | python3` behind a slow launcher), and
    /// dropped by [`Pipes::collect`] when the tables fill.
    fn exited(&mut self, key: (u32, u64)) {
        self.of_proc.remove(&key);
    }

    /// Forget the pipes no running process writes into or reads from, and the network calls
    /// of processes that neither run nor write into a pipe still known.
    fn collect(&mut self) {
        let alive = &self.of_proc;
        self.ends.retain(|_, e| {
            e.writers
                .iter()
                .chain(&e.readers)
                .any(|(k, _)| alive.contains_key(k))
        });
        let writers: HashSet<(u32, u64)> = self
            .ends
            .values()
            .flat_map(|e| e.writers.iter().map(|(k, _)| *k))
            .collect();
        self.networked
            .retain(|k| alive.contains_key(k) || writers.contains(k));
    }

    fn end(&mut self, pipe: u64, key: (u32, u64), name: &str, writer: bool) {
        if !self.ends.contains_key(&pipe) && self.ends.len() >= MAX_PIPES {
            self.collect();
            if self.ends.len() >= MAX_PIPES {
                return;
            }
        }
        let e = self.ends.entry(pipe).or_default();
        let list = if writer {
            &mut e.writers
        } else {
            &mut e.readers
        };
        if list.len() < MAX_ENDS && !list.iter().any(|(k, _)| *k == key) {
            list.push((key, name.to_owned()));
        }
    }
}

/// The files a code-injection variable makes a program load.
fn injection_paths<'v>(var: &str, value: &'v str) -> Vec<&'v str> {
    match var {
        "LD_PRELOAD" | "LD_AUDIT" => value.split([':', ' ']).filter(|p| !p.is_empty()).collect(),
        "NODE_OPTIONS" | "RUBYOPT" => {
            let mut out = Vec::new();
            let mut words = value.split_whitespace();
            while let Some(w) = words.next() {
                let takes = [
                    "--require",
                    "-r",
                    "--import",
                    "--loader",
                    "--experimental-loader",
                ];
                if let Some((opt, v)) = w.split_once('=')
                    && takes.contains(&opt)
                {
                    out.push(v);
                } else if takes.contains(&w) {
                    out.extend(words.next());
                } else if var == "RUBYOPT"
                    && let Some(v) = w.strip_prefix("-r")
                    && !v.is_empty()
                {
                    out.push(v);
                }
            }
            out
        }
        _ => (!value.is_empty()).then_some(value).into_iter().collect(),
    }
}

/// The script file a shell runs (`sh a.sh`), when its command line names one: the first
/// operand, unless `-c` or `-s` gives the program another way.
fn shell_script<'p>(name: &str, argv: &'p [String]) -> Option<&'p str> {
    const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash"];
    if !SHELLS.contains(&name) {
        return None;
    }
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        match a.strip_prefix('-').or_else(|| a.strip_prefix('+')) {
            Some("-") => return args.next().map(String::as_str),
            Some(o) if o.starts_with('-') => {}
            Some(o) if o.contains('c') || o.contains('s') => return None,
            Some("o" | "O") => {
                args.next();
            }
            Some(_) => {}
            None => return Some(a),
        }
    }
    None
}

/// Does a new program named `name` with `argv` read its program from standard input? A
/// shell without `-c` and without a script operand (or with `-s`); an interpreter (python,
/// perl, ruby, node, php) without `-c`/`-e`/`-m` and without a script, or with `-` as the
/// script.
fn reads_program_from_stdin(name: &str, argv: &[String]) -> bool {
    const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash"];
    let interp = name.starts_with("python")
        || matches!(
            name,
            "perl" | "ruby" | "node" | "nodejs" | "php" | "bun" | "deno"
        );
    if !SHELLS.contains(&name) && !interp {
        return false;
    }
    let shell = SHELLS.contains(&name);
    let python = name.starts_with("python");
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        let a = a.as_str();
        if a == "-" {
            return true;
        }
        if a == "--" {
            // What follows is the script (or `-`).
            return args.next().is_none_or(|s| s == "-");
        }
        let Some(opts) = a.strip_prefix('-').or_else(|| a.strip_prefix('+')) else {
            // An operand: a script file.
            return false;
        };
        if shell {
            if let Some(long) = opts.strip_prefix('-') {
                if matches!(long, "rcfile" | "init-file") {
                    args.next();
                }
                continue; // --norc, --posix…
            }
            if opts.contains('c') {
                return false;
            }
            if opts.contains('s') {
                return true;
            }
            // -o OPTION, also bundled (-eo pipefail).
            for _ in opts.matches(['o', 'O']) {
                args.next();
            }
        } else if python {
            // Code on the command line: -c, -m. Options with a separate argument: -W, -X.
            if opts.starts_with('-') {
                continue; // --version, --help…
            }
            if opts.starts_with('c') || opts.starts_with('m') {
                return false;
            }
            if matches!(opts, "W" | "X") {
                args.next();
            }
        } else {
            // node, ruby, perl, php…: -e/-E/-p/--eval/--print give the code; -r/--require,
            // -m/-M, --import and --loader load a module and still read the program.
            if matches!(opts, "e" | "E" | "p" | "-eval" | "-print") || opts.starts_with('e') {
                return false;
            }
            if matches!(opts, "r" | "-require" | "-import" | "-loader" | "I" | "M") {
                args.next();
            }
        }
    }
    true
}

fn s(v: &str) -> Val<'_> {
    Val::Str(Cow::Borrowed(v))
}

fn opt(v: Option<&str>) -> Val<'_> {
    v.map_or(Val::Missing, s)
}

/// Where installed software lives: a tool whose file is under one of these, and was not
/// written during the run, is what it says it is (`proc.owner_tool`).
const INSTALLED_PREFIXES: &[&str] = &[
    "/usr/",
    "/bin/",
    "/sbin/",
    "/lib/",
    "/lib64/",
    "/opt/",
    "/snap/",
    "/nix/store/",
];

/// Language version managers install tools under a home directory; their trees count as
/// installed software too (a tool there is the manager's install, unless written in the run).
/// `~/.local/bin` does not: `pip install --user` from any earlier step writes there.
const INSTALLED_MANAGED: &[&str] = &[
    "/.pyenv/versions/",
    "/.nvm/versions/",
    "/.asdf/installs/",
    "/.volta/tools/image/",
    "/.rustup/toolchains/",
    "/.local/share/mise/installs/",
];

fn proc_value(p: &ProcInfo, f: ProcField) -> Val<'_> {
    match f {
        ProcField::Pid => Val::Num(p.pid.into()),
        ProcField::Name => s(&p.name),
        ProcField::Exe => opt(p.exe.as_deref()),
        ProcField::Tool => s(&p.tool),
        ProcField::Script => opt(p.script.as_deref()),
        ProcField::Argv => Val::Strings(&p.argv),
        ProcField::Arg(i) => opt(p.argv.get(i as usize).map(String::as_str)),
        ProcField::Args => Val::Str(Cow::Owned(p.argv.get(1..).unwrap_or_default().join(" "))),
        ProcField::Cmdline => Val::Str(Cow::Owned(p.cmdline())),
        ProcField::Cwd => opt(p.cwd.as_deref()),
        ProcField::SecretEnv => Val::Strings(&p.secret_env),
        ProcField::HoldsSecrets => Val::Bool(!p.secret_env.is_empty()),
        // Worked out by `Subj::proc_value`, which knows what the run wrote.
        ProcField::OwnerTool => s(""),
    }
}

/// For /proc/PID/X or /proc/PID/task/TID/X: (PID or TID, X).
fn proc_entry(path: &str) -> Option<(Option<u32>, &str)> {
    let rest = path.strip_prefix("/proc/")?;
    let (who, rest) = rest.split_once('/')?;
    let (who, rest) = match rest.strip_prefix("task/").and_then(|r| r.split_once('/')) {
        Some((tid, r)) => (tid, r),
        None => (who, rest),
    };
    let pid = match who {
        "self" | "thread-self" => None,
        n => Some(n.parse().ok()?),
    };
    Some((pid, rest))
}

impl Subject for Subj<'_> {
    fn kind(&self) -> usize {
        self.kind
    }

    fn value(&self, f: Field) -> Val<'_> {
        let ev = self.ev;
        let pkg = self.proc.and_then(|p| p.package.as_ref());
        let open = match &ev.detail {
            Detail::Open(o) => Some(o),
            _ => None,
        };
        // A rename or link writes its new name: the file fields describe it.
        let relink = match &ev.detail {
            Detail::Rename(r) | Detail::Link(r) => Some(r),
            _ => None,
        };
        let fpath: Option<&str> = open
            .map(|o| o.path.as_str())
            .or(relink.map(|r| r.to.as_str()))
            .or(match &ev.detail {
                Detail::Unlink(u) => Some(u.path.as_str()),
                Detail::Chmod(c) => Some(c.path.as_str()),
                Detail::Truncate(t) => Some(t.path.as_str()),
                Detail::Setxattr(x) => Some(x.path.as_str()),
                _ => None,
            });
        let chmod_mode = match &ev.detail {
            Detail::Chmod(c) => u32::from_str_radix(&c.mode, 8).ok(),
            _ => None,
        };
        let exec = match &ev.detail {
            Detail::Exec(x) => Some(x),
            _ => None,
        };
        match f {
            Field::EvtType => s(&ev.kind),
            Field::EvtFailed => Val::Bool(self.outcome().is_some_and(|(r, _)| r < 0)),
            Field::EvtError => opt(self.outcome().and_then(|(_, e)| e)),
            Field::Proc(Scope::Proc, pf) => {
                self.proc.map_or(Val::Missing, |p| self.proc_value(p, pf))
            }
            Field::Proc(Scope::Parent, pf) => {
                self.parent.map_or(Val::Missing, |p| self.proc_value(p, pf))
            }
            Field::Proc(Scope::Ancestor, pf) => {
                let mut out = Vec::new();
                for a in self
                    .id
                    .map(|id| self.procs.ancestors(id))
                    .unwrap_or_default()
                {
                    out.extend(self.proc_value(a, pf).into_strs());
                }
                Val::List(out)
            }
            // No package: the empty string, so `pkg.name != ""` reads naturally.
            Field::PkgName => s(pkg.map_or("", |p| p.name.as_str())),
            Field::PkgVersion => s(pkg.and_then(|p| p.version.as_deref()).unwrap_or("")),
            Field::PkgManager => s(pkg.map_or("", |p| p.manager.as_str())),
            Field::FilePath => opt(fpath),
            Field::FileTarget => opt(open
                .map(|o| o.target.as_deref().unwrap_or(&o.path))
                .or(fpath)),
            Field::FilePaths => match (open, fpath) {
                (Some(o), _) => Val::Pair(o.path.as_str(), o.target.as_deref()),
                (None, Some(p)) => Val::Pair(p, None),
                (None, None) => Val::Missing,
            },
            Field::FileName => opt(fpath.map(basename)),
            Field::FileDir => opt(fpath.map(|p| {
                p.rsplit_once('/')
                    .map_or("", |(d, _)| if d.is_empty() { "/" } else { d })
            })),
            Field::FileFlags => match (open, relink) {
                (Some(o), _) => Val::Cows(&o.flags),
                (None, Some(_)) => Val::List(vec![Cow::Borrowed("write"), Cow::Borrowed("create")]),
                (None, None) => Val::Missing,
            },
            Field::FileWrite => match (open, relink) {
                (Some(o), _) => Val::Bool(opens_for_write(&o.flags)),
                (None, Some(_)) => Val::Bool(true),
                (None, None) => Val::Missing,
            },
            Field::FileCreate => match (open, relink) {
                (Some(o), _) => Val::Bool(o.flags.iter().any(|f| f == "create" || f == "tmpfile")),
                (None, Some(_)) => Val::Bool(true),
                (None, None) => Val::Missing,
            },
            Field::FileSource => opt(relink.map(|r| r.from.as_str())),
            Field::FileByHandle => match (open, relink) {
                (Some(o), _) => Val::Bool(o.syscall == "open_by_handle_at"),
                (None, Some(_)) => Val::Bool(false),
                (None, None) => Val::Missing,
            },
            Field::FileOtherProc => fpath.map_or(Val::Missing, |p| {
                Val::Bool(matches!(proc_entry(p), Some((Some(q), _)) if q != ev.pid && q != ev.tid))
            }),
            Field::FileProcEntry => opt(fpath.and_then(proc_entry).map(|(_, e)| e)),
            Field::ProcListedProcesses => Val::Bool(
                self.proc
                    .zip(self.listers)
                    .is_some_and(|(p, l)| l.contains(&(p.pid, p.start_ns))),
            ),
            // The process itself, or one it descends from, read another's environment.
            Field::ProcReadOtherEnviron => {
                Val::Bool(self.proc.zip(self.environ_readers).is_some_and(|(p, r)| {
                    !r.is_empty()
                        && (r.contains(&(p.pid, p.start_ns))
                            || self.id.is_some_and(|id| {
                                self.procs
                                    .ancestors(id)
                                    .iter()
                                    .any(|a| r.contains(&(a.pid, a.start_ns)))
                            }))
                }))
            }
            Field::FileCgroupOutside => open.map_or(Val::Missing, |o| Val::Bool(o.cgroup_outside)),
            Field::FileBuildwatchPolicy => fpath.map_or(Val::Missing, |p| {
                let is_policy = |p: &str| {
                    basename(p) == crate::policy::DEFAULT_FILE
                        || self.policy.sources.iter().any(|s| s.path == p)
                };
                let target = open.and_then(|o| o.target.as_deref());
                Val::Bool(is_policy(p) || target.is_some_and(is_policy))
            }),
            Field::EvtKilled => open.map_or(Val::Missing, |o| Val::Bool(o.killed)),
            Field::FileProcRelation => match fpath.and_then(proc_entry) {
                Some((Some(p), _)) if p != ev.tid => {
                    s(self.procs.relation(ev.pid, i32::try_from(p).unwrap_or(-1)))
                }
                Some(_) => s("self"),
                None => Val::Missing,
            },
            Field::NetFamily => opt(self.dest().map(|d| d.family.as_str())),
            Field::NetAddr => self.ip().map_or(Val::Missing, Val::Ip),
            Field::NetPort => self
                .dest()
                .and_then(|d| d.port)
                .map_or(Val::Missing, |p| Val::Num(p.into())),
            Field::NetProtocol => match &ev.detail {
                Detail::Send(x) => s(&x.protocol),
                Detail::Connect(_) => s(""),
                _ => Val::Missing,
            },
            Field::NetLoopback => self
                .ip()
                .map_or(Val::Missing, |ip| Val::Bool(ip.is_loopback())),
            Field::NetRefused => match &self.ev.detail {
                Detail::Connect(c) => Val::Bool(c.refused),
                Detail::Send(x) => Val::Bool(x.refused),
                _ => Val::Missing,
            },
            Field::NetAllowed => self.ip().map_or(Val::Missing, |ip| {
                let d = self.dest();
                Val::Bool(self.policy.allowed(
                    ip,
                    d.and_then(|d| d.port),
                    d.and_then(|d| d.domain.as_deref()),
                ))
            }),
            Field::NetResolver => self.ip().map_or(Val::Missing, |ip| {
                let port = self.dest().and_then(|d| d.port);
                Val::Bool(port == Some(53) && self.is_resolver(ip))
            }),
            Field::NetAllowedByAddress => self.ip().map_or(Val::Missing, |ip| {
                // Without a name, domain entries cannot match: address entries decide.
                Val::Bool(
                    self.policy
                        .allowed(ip, self.dest().and_then(|d| d.port), None),
                )
            }),
            Field::NetUnixPath => opt(self.dest().and_then(|d| d.path.as_deref())),
            Field::NetEndpoint => self.dest().map_or(Val::Missing, |d| {
                let addr = d.address.as_deref().unwrap_or("?");
                let addr = if d.family == "inet6" {
                    Cow::Owned(format!("[{addr}]"))
                } else {
                    Cow::Borrowed(addr)
                };
                let port = d.port.map(|p| format!(":{p}")).unwrap_or_default();
                Val::Str(Cow::Owned(match &d.domain {
                    Some(n) => format!("{n} ({addr}){port}"),
                    None => format!("{addr}{port}"),
                }))
            }),
            Field::NetDomain => opt(self.dest().and_then(|d| d.domain.as_deref())),
            Field::NetResolved => self
                .dest()
                .map_or(Val::Missing, |d| Val::Bool(d.domain.is_some())),
            Field::DnsDirection => opt(self.dns_detail().map(|d| d.direction.as_str())),
            Field::DnsProtocol => opt(self.dns_detail().map(|d| d.protocol.as_str())),
            Field::DnsQname => opt(self.dns_detail().and_then(|d| d.qname.as_deref())),
            Field::DnsQtype => opt(self.dns_detail().and_then(|d| d.qtype.as_deref())),
            Field::DnsRcode => opt(self.dns_detail().and_then(|d| d.rcode.as_deref())),
            Field::DnsResolver => self
                .dns_detail()
                .and_then(|d| d.resolver.parse().ok())
                .map_or(Val::Missing, Val::Ip),
            Field::DnsSystemResolver => self
                .dns_detail()
                .and_then(|d| d.resolver.parse::<IpAddr>().ok())
                .map_or(Val::Missing, |ip| Val::Bool(self.is_resolver(ip))),
            Field::DnsMalformed => self
                .dns_detail()
                .map_or(Val::Missing, |d| Val::Bool(d.malformed.is_some())),
            Field::DnsUnsolicited => self
                .dns_detail()
                .map_or(Val::Missing, |d| Val::Bool(d.unsolicited)),
            Field::DnsRefused => self.dns_detail().map_or(Val::Missing, |d| {
                Val::Bool(
                    self.policy.block
                        && d.direction == "query"
                        && d.qname
                            .as_deref()
                            .is_none_or(|q| self.policy.name_allowed(q).is_none()),
                )
            }),
            Field::DnsDomain => opt(self.dns.map(|v| v.shape.domain.as_str())),
            Field::ExecEnv => exec.map_or(Val::Missing, |x| {
                Val::List(
                    x.env
                        .iter()
                        .map(|(k, v)| Cow::Owned(format!("{k}={v}")))
                        .collect(),
                )
            }),
            Field::ExecSecret => match &ev.detail {
                Detail::Exec(_) => s(self.exec_secret.unwrap_or("")),
                _ => Val::Missing,
            },
            Field::ExecInjectedVar | Field::ExecInjectedFile | Field::ExecInjectedWritten => {
                let Some(x) = exec else {
                    return Val::Missing;
                };
                let found = self.injected(x);
                match f {
                    Field::ExecInjectedVar => s(found.as_ref().map_or("", |(v, _, _)| *v)),
                    Field::ExecInjectedFile => Val::Str(Cow::Owned(
                        found
                            .as_ref()
                            .map(|(_, p, _)| p.clone())
                            .unwrap_or_default(),
                    )),
                    _ => Val::Bool(found.is_some_and(|(_, _, w)| w)),
                }
            }
            Field::XattrName => match &ev.detail {
                Detail::Setxattr(x) => s(&x.name),
                _ => Val::Missing,
            },
            Field::BindAddr | Field::BindPort | Field::BindProtocol | Field::BindLoopback => {
                let (local, protocol) = match &ev.detail {
                    Detail::Bind(b) => (&b.local, &b.protocol),
                    Detail::Listen(l) => (&l.local, &l.protocol),
                    _ => return Val::Missing,
                };
                let ip: Option<IpAddr> = local.address.as_deref().and_then(|a| a.parse().ok());
                match f {
                    Field::BindAddr => ip.map_or(Val::Missing, Val::Ip),
                    Field::BindPort => Val::Num(local.port.unwrap_or(0).into()),
                    Field::BindProtocol => s(protocol),
                    _ => Val::Bool(ip.is_some_and(|ip| ip.is_loopback())),
                }
            }
            Field::ChmodMode => chmod_mode.map_or(Val::Missing, |m| Val::Num(m.into())),
            Field::ChmodExec => chmod_mode.map_or(Val::Missing, |m| Val::Bool(m & 0o111 != 0)),
            Field::ChmodSetid => chmod_mode.map_or(Val::Missing, |m| Val::Bool(m & 0o6000 != 0)),
            Field::FileWriter => fpath.map_or(Val::Missing, |p| {
                // The file the run wrote is known by its resolved path.
                let target = match &ev.detail {
                    Detail::Open(o) => o.target.as_deref(),
                    Detail::Unlink(u) => u.target.as_deref(),
                    Detail::Chmod(c) => c.target.as_deref(),
                    Detail::Truncate(t) => t.target.as_deref(),
                    _ => None,
                };
                s(target
                    .and_then(|t| self.writer_of(t))
                    .or_else(|| self.writer_of(p))
                    .unwrap_or(""))
            }),
            Field::DnsSecret => self
                .dns
                .map_or(Val::Missing, |v| s(v.secret.as_deref().unwrap_or(""))),
            Field::DnsSubdomain => opt(self.dns.map(|v| v.shape.subdomain.as_str())),
            Field::DnsNameLen => self
                .dns
                .map_or(Val::Missing, |v| Val::Num(v.shape.name_len as i64)),
            Field::DnsLabelMax => self
                .dns
                .map_or(Val::Missing, |v| Val::Num(v.shape.label_max as i64)),
            Field::DnsEncoding => opt(self.dns.map(|v| v.shape.encoding.unwrap_or(""))),
            Field::DnsLongLabel => self.dns.map_or(Val::Missing, |v| {
                Val::Bool(v.shape.long_label(&self.policy.dns))
            }),
            Field::DnsLongName => self.dns.map_or(Val::Missing, |v| {
                Val::Bool(v.shape.long_name(&self.policy.dns))
            }),
            Field::DnsHighEntropy => self.dns.map_or(Val::Missing, |v| {
                Val::Bool(v.shape.high_entropy(&self.policy.dns))
            }),
            Field::DnsSubdomains => self
                .dns
                .and_then(|v| v.counts)
                .map_or(Val::Missing, |c| Val::Num(c.distinct as i64)),
            Field::DnsRareQueries => self
                .dns
                .and_then(|v| v.counts)
                .map_or(Val::Missing, |c| Val::Num(c.rare as i64)),
            Field::DnsManySubdomains => self.dns.and_then(|v| v.counts).map_or(Val::Missing, |c| {
                Val::Bool(c.distinct >= self.policy.dns.max_subdomains)
            }),
            Field::DnsRareTypeBurst => self.dns.and_then(|v| v.counts).map_or(Val::Missing, |c| {
                Val::Bool(c.rare >= self.policy.dns.max_rare_queries)
            }),
            Field::ExecPath => opt(exec.map(|x| x.path.as_str())),
            Field::ExecFilename => opt(exec.map(|x| x.filename.as_str())),
            Field::ExecWrittenInRun => {
                exec.map_or(Val::Missing, |x| Val::Bool(self.exec_writer(x).is_some()))
            }
            Field::ExecWriter => opt(exec.and_then(|x| self.exec_writer(x))),
            Field::PipeIntoInterpreter
            | Field::PipeFromNetwork
            | Field::PipeWriter
            | Field::PipeReader
            | Field::PipeSide => self.pipe_value(f),
            Field::ExecMemfd => exec.map_or(Val::Missing, |x| {
                Val::Bool(x.path.starts_with("/memfd:") || x.filename.starts_with("/memfd:"))
            }),
            Field::ExecDeleted => exec.map_or(Val::Missing, |x| Val::Bool(x.deleted)),
            Field::PtraceRequest => match &ev.detail {
                Detail::Ptrace(p) => s(&p.request),
                _ => Val::Missing,
            },
            Field::ProcessVmOp => match &ev.detail {
                Detail::ProcessVm(v) => s(&v.op),
                _ => Val::Missing,
            },
            Field::SignalName => match &ev.detail {
                Detail::Signal(x) => s(x.signal_name.as_deref().unwrap_or("")),
                _ => Val::Missing,
            },
            Field::ExitSignal => match &ev.detail {
                Detail::Exit(x) => s(x.signal_name.as_deref().unwrap_or("")),
                _ => Val::Missing,
            },
            Field::SignalAimedAt => match &ev.detail {
                Detail::Signal(x) => s(&x.aimed_at),
                _ => Val::Missing,
            },
            Field::SocketFamily => match &ev.detail {
                Detail::Socket(x) => s(&x.family),
                _ => Val::Missing,
            },
            Field::SocketType => match &ev.detail {
                Detail::Socket(x) => s(&x.sock_type),
                _ => Val::Missing,
            },
            Field::BpfCmd => match &ev.detail {
                Detail::Bpf(b) => s(&b.cmd),
                _ => Val::Missing,
            },
            Field::TargetPid => self
                .target()
                .map_or(Val::Missing, |t| Val::Num(t.pid.into())),
            Field::TargetExe => opt(self.target().and_then(|t| t.exe.as_deref())),
            Field::TargetName => opt(self.target().and_then(|t| t.exe.as_deref()).map(basename)),
            Field::TargetRelation => self
                .target()
                .map_or(Val::Missing, |t| s(self.procs.relation(ev.pid, t.pid))),
        }
    }
}

#[cfg(test)]
mod tests {

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn who_reads_its_program_from_standard_input() {
        let yes = |n: &str, a: &[&str]| assert!(reads_program_from_stdin(n, &v(a)), "{a:?}");
        let no = |n: &str, a: &[&str]| assert!(!reads_program_from_stdin(n, &v(a)), "{a:?}");
        yes("sh", &["sh"]);
        yes("bash", &["bash", "-e", "-x"]);
        yes("bash", &["bash", "-s", "--", "arg"]);
        yes("bash", &["bash", "-"]);
        yes("sh", &["sh", "-o", "pipefail"]);
        yes("python3", &["python3"]);
        yes("python3", &["python3", "-u", "-"]);
        yes("python3.12", &["python3.12", "-W", "ignore"]);
        yes("node", &["node"]);
        yes("python3", &["python3", "-E"]);
        yes("python3", &["python3", "-I", "-u"]);
        yes("node", &["node", "-r", "x"]);
        yes("ruby", &["ruby", "-rjson"]);
        yes("perl", &["perl", "-mstrict"]);
        yes("bash", &["bash", "-eo", "pipefail"]);
        yes("bash", &["bash", "--rcfile", "/dev/null"]);
        no("bash", &["bash", "--", "build.sh"]);
        no("python3", &["python3", "-W", "ignore", "x.py"]);
        no("sh", &["sh", "-c", "echo"]);
        no("bash", &["bash", "-ec", "echo"]);
        no("sh", &["sh", "build.sh"]);
        no("python3", &["python3", "-c", "print(1)"]);
        no("python3", &["python3", "-m", "pip"]);
        no("python3", &["python3", "setup.py"]);
        no("node", &["node", "-e", "1"]);
        no("node", &["node", "install.js"]);
        no("cat", &["cat"]);
        no("tar", &["tar", "x"]);
    }

    #[test]
    fn the_script_a_shell_runs() {
        assert_eq!(shell_script("sh", &v(&["sh", "a.sh", "x"])), Some("a.sh"));
        assert_eq!(
            shell_script("bash", &v(&["bash", "-e", "-o", "pipefail", "b.sh"])),
            Some("b.sh")
        );
        assert_eq!(
            shell_script("bash", &v(&["bash", "--", "-weird.sh"])),
            Some("-weird.sh")
        );
        assert_eq!(shell_script("sh", &v(&["sh", "-c", "a.sh"])), None);
        assert_eq!(shell_script("sh", &v(&["sh", "-s", "a"])), None);
        assert_eq!(shell_script("sh", &v(&["sh"])), None);
        assert_eq!(shell_script("node", &v(&["node", "a.js"])), None);
    }

    use super::*;

    #[test]
    fn proc_paths_split() {
        assert_eq!(proc_entry("/proc/12/mem"), Some((Some(12), "mem")));
        assert_eq!(
            proc_entry("/proc/12/task/13/environ"),
            Some((Some(13), "environ"))
        );
        assert_eq!(proc_entry("/proc/self/maps"), Some((None, "maps")));
        assert_eq!(proc_entry("/proc/cpuinfo"), None);
        assert_eq!(proc_entry("/proc/x1/mem"), None);
    }
}
