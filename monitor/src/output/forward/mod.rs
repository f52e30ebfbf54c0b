//! Forwarding to SIEMs. Every forwarding output has its own disk spool (`output::spool`): the
//! sink appends records to it on the sink's thread and a delivery thread sends them on,
//! removing them only once the receiver acknowledged them. So nothing is lost while the
//! receiver is down, slow or refusing, or while buildwatch restarts.
//!
//! - `syslog`: RFC 5424 over TLS (RFC 5425), octet-counted.
//! - `http`: Elastic/OpenSearch `_bulk`, Splunk HEC (with indexer acknowledgement), OTLP/HTTP
//!   logs and an NDJSON webhook.
//! - `ecs`, `ocsf`: the two SIEM schemas a record can be sent in, besides buildwatch's own.
//!
//! A record the receiver refuses for good (a 400 for that record; a mapping conflict) is not
//! retried forever: it is counted as rejected and kept, with the receiver's reason, in
//! `rejected.jsonl` in the spool directory (bounded), so it can be looked at and sent again.

pub mod config;
pub mod ecs;
pub mod http;
pub mod ocsf;
pub mod syslog;

use std::{
    io::{self, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde::Serialize;

use self::config::{OnFull, Schema};
use crate::output::{
    bus::Record,
    sink::Writer,
    spool::{Spool, Spooled},
};

/// The most `rejected.jsonl` holds; past it, rejected records are only counted.
const REJECTED_MAX_BYTES: u64 = 16 << 20;

/// One forwarding output's state, shared by its sink, its delivery thread, the agent's
/// metrics and a run's report.
pub struct Status {
    pub name: String,
    pub spool: Mutex<Spool>,
    /// Records the receiver refused for good (acknowledged in the spool, kept aside).
    pub rejected: AtomicU64,
    /// Requests (or TLS writes) that failed and were retried.
    pub retries: AtomicU64,
    pub connected: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

/// What a forwarding output did, for `/metrics`, the run summary and the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForwardStats {
    pub name: String,
    /// Records the receiver acknowledged since buildwatch started.
    pub delivered: u64,
    /// Records waiting in the spool (this run's and any left from before).
    pub pending: u64,
    /// Refused by the receiver for good (kept in the spool's rejected.jsonl).
    pub rejected: u64,
    /// Refused by the full spool (each hole is announced by a gap record).
    pub dropped_full: u64,
    /// Records found torn or corrupt in the spool after a crash.
    pub corrupt: u64,
    pub retries: u64,
    pub spool_bytes: u64,
    /// Bytes of the records appended to the spool since buildwatch started.
    pub appended_bytes: u64,
    /// Seconds the oldest waiting record has waited.
    pub oldest_pending_s: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Status {
    pub fn new(name: String, spool: Spool) -> Arc<Self> {
        Arc::new(Self {
            name,
            spool: Mutex::new(spool),
            rejected: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            last_error: Mutex::new(None),
        })
    }

    pub fn spool(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> ForwardStats {
        let s = self.spool().stats();
        let rejected = self.rejected.load(Ordering::Relaxed);
        ForwardStats {
            name: self.name.clone(),
            delivered: s.acked.saturating_sub(rejected),
            pending: s.records,
            rejected,
            dropped_full: s.refused,
            corrupt: s.corrupt,
            retries: self.retries.load(Ordering::Relaxed),
            spool_bytes: s.bytes,
            appended_bytes: s.appended_bytes,
            oldest_pending_s: s.oldest_age_s,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// A problem the delivery ran into; said once on stderr until it changes.
    pub fn trouble(&self, msg: &str) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(msg) {
            eprintln!(
                "buildwatch: {}: {msg}; records stay in the spool",
                self.name
            );
            *last = Some(msg.to_owned());
        }
    }

    /// Delivery works again (after [`Status::trouble`]).
    pub fn recovered(&self) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.take().is_some() {
            eprintln!("buildwatch: {}: delivering again", self.name);
        }
    }

    /// A record the receiver refused for good: counted, and kept with the reason.
    pub fn reject(&self, id: &str, payload: &[u8], reason: &str) {
        let n = self.rejected.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            eprintln!(
                "buildwatch: {}: the receiver refused record {id}: {reason} (kept in the spool's rejected.jsonl)",
                self.name
            );
        }
        let path = self.spool().dir().join("rejected.jsonl");
        if std::fs::metadata(&path).map_or(0, |m| m.len()) >= REJECTED_MAX_BYTES {
            return;
        }
        let line = serde_json::json!({
            "id": id,
            "reason": reason,
            "record": String::from_utf8_lossy(payload),
        });
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let mut b = serde_json::to_vec(&line).unwrap_or_default();
            b.push(b'\n');
            let _ = f.write_all(&b);
        }
    }
}

/// The longest a delivery with nothing to send waits before it looks again (settling sent
/// records, writing the ledger); new records wake it at once.
pub const IDLE_WAIT: Duration = Duration::from_millis(250);

/// What a delivery thread is given.
pub struct Ctx {
    pub status: Arc<Status>,
    stop: Arc<AtomicBool>,
    /// How long delivery goes on once asked to stop.
    flush: Duration,
    stopping_at: Option<Instant>,
}

impl Ctx {
    /// Asked to stop (the delivery then sends what it can within its flush time).
    pub fn stopping(&mut self) -> bool {
        if self.stopping_at.is_none() && self.stop.load(Ordering::Acquire) {
            self.stopping_at = Some(Instant::now());
        }
        self.stopping_at.is_some()
    }

    /// The records after `after` (up to `max`), and whether the output was asked to stop
    /// before they were read. A delivery ends only on an empty read made after the stop was
    /// seen: the last records (a run's summary) are appended just before the stop, and a
    /// stop looked at after an empty read could be that stop, ending the delivery with them
    /// unsent.
    pub fn next_batch(&mut self, after: u64, max: usize) -> (bool, Vec<Spooled>) {
        self.next_batch_by(|s| s.spool().read_from(after, max).unwrap_or_default())
    }

    /// [`Ctx::next_batch`] with the read given (a test puts the writer in between).
    fn next_batch_by(
        &mut self,
        read: impl FnOnce(&Status) -> Vec<Spooled>,
    ) -> (bool, Vec<Spooled>) {
        let stopping = self.stopping();
        let batch = read(&self.status);
        (stopping, batch)
    }

    /// The flush time is over: stop now, whatever is left stays in the spool.
    pub fn must_end(&mut self) -> bool {
        self.stopping();
        self.stopping_at.is_some_and(|t| t.elapsed() >= self.flush)
    }

    /// Wait for records while the spool is empty: up to `d`, or less when the sink appends
    /// (it unparks this thread), when the output is asked to stop (likewise), or when the flush
    /// time ends. An idle output then wakes a few times a second, not a hundred.
    pub fn idle(&mut self, d: Duration) {
        let d = match self.stopping_at {
            Some(t) => d.min(self.flush.saturating_sub(t.elapsed())),
            None => d,
        };
        std::thread::park_timeout(d);
    }

    /// Sleep up to `d`, waking when the flush time ends (not for new records: a receiver's
    /// backoff is waited out).
    pub fn sleep(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.must_end() {
            std::thread::sleep(Duration::from_millis(10).min(end - Instant::now()));
        }
    }
}

/// The sink side of a forwarding output: records go into the spool on the sink's thread; a
/// delivery thread sends them on.
pub struct ForwardSink {
    status: Arc<Status>,
    on_full: OnFull,
    delivery: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl ForwardSink {
    pub fn start(
        status: Arc<Status>,
        on_full: OnFull,
        flush: Duration,
        thread: &str,
        deliver: impl FnOnce(Ctx) + Send + 'static,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            status: status.clone(),
            stop: stop.clone(),
            flush,
            stopping_at: None,
        };
        let handle = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || deliver(ctx))?;
        Ok(Self {
            status,
            on_full,
            delivery: Some((stop, handle)),
        })
    }
}

impl Writer for ForwardSink {
    /// A batch of JSON lines into the spool. When it is full: drop the newest (counted, and
    /// a gap record follows), or wait for the delivery to make room.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut records: Vec<Bytes> = bytes
            .split(|&b| b == b'\n')
            .map(Bytes::copy_from_slice)
            .collect();
        self.write_records(&mut records)
    }
    fn keeps_records(&self) -> bool {
        true
    }
    fn write_records(&mut self, records: &mut Vec<Bytes>) -> io::Result<()> {
        // The spool is locked once per batch, and let go only while a full spool waits for
        // the delivery to make room.
        let mut spool = self.status.spool();
        for line in records.drain(..) {
            if line.iter().all(|&b| b == b'\n') {
                continue;
            }
            // A run's summary is never refused (its keys are sorted: `kind` comes first).
            if line.starts_with(br#"{"kind":"run_summary","#) {
                spool.append_reserved(crate::output::spool::record_of(&line))?;
                continue;
            }
            while self.on_full == OnFull::Block && !spool.has_room(line.len()) {
                drop(spool);
                std::thread::sleep(Duration::from_millis(20));
                spool = self.status.spool();
            }
            spool.append_owned(line)?;
        }
        let synced = spool.sync(false);
        drop(spool);
        // The delivery may be waiting for records (`Ctx::idle`).
        if let Some((_, thread)) = &self.delivery {
            thread.thread().unpark();
        }
        synced
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn describe(&self, e: &io::Error) -> String {
        format!("{}: {e}", self.status.name)
    }
}

impl Drop for ForwardSink {
    /// Closing: the delivery thread sends what it can within its flush time, then stops; the
    /// rest stays in the spool for the next start (or the agent).
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.delivery.take() {
            // Release: the records written before the stop are seen by whoever sees it.
            stop.store(true, Ordering::Release);
            thread.thread().unpark();
            let _ = thread.join();
        }
        let _ = self.status.spool().close();
    }
}

/// A spooled native record as the receiver gets it: in `schema`, carrying its stable `id`.
/// None: the line is not a JSON object (every line buildwatch writes is one, so this only
/// guards against a damaged spool). The native form is made without parsing: the id is put
/// in front of the record's own fields.
pub fn render(schema: Schema, id: &str, payload: &[u8], host: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    render_into(schema, id, payload, host, &mut out).then_some(out)
}

/// [`render`], appending to `out` (a sender's buffer, kept between records). False, and `out`
/// as it was, when the line is not a JSON object.
pub fn render_into(
    schema: Schema,
    id: &str,
    payload: &[u8],
    host: &str,
    out: &mut Vec<u8>,
) -> bool {
    let was = out.len();
    let ok = match schema {
        Schema::Native => match native_parts(id, payload) {
            Some(parts) => {
                parts.iter().for_each(|p| out.extend_from_slice(p));
                true
            }
            None => false,
        },
        Schema::Ecs | Schema::Ocsf => match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(v) if v.is_object() => {
                let doc = if schema == Schema::Ecs {
                    ecs::from_native(&v, id, host)
                } else {
                    ocsf::from_native(&v, id, host)
                };
                serde_json::to_writer(&mut *out, &doc).is_ok()
            }
            _ => false,
        },
    };
    if !ok {
        out.truncate(was);
    }
    ok
}

/// A native record with its id as its first member, in pieces (to be written where they go
/// without a copy in between): None when the line is not a non-empty JSON object. Ids are
/// `<hex>-<decimal>` ([`push_stable_id`]): nothing in them needs escaping.
pub fn native_parts<'a>(id: &'a str, payload: &'a [u8]) -> Option<[&'a [u8]; 4]> {
    debug_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    match payload.strip_prefix(b"{") {
        Some(body) if body.first().is_some_and(|&c| c != b'}') => {
            Some([b"{\"id\":\"", id.as_bytes(), b"\",", body])
        }
        _ => None,
    }
}

/// The few fields of a native record the senders need (syslog's structured data, HEC's
/// time, OTLP's severity), read without building the whole record as a tree.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Head<'a> {
    #[serde(borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    rule: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    severity: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    finding: Option<FindingHead<'a>>,
    #[serde(borrow, default)]
    cgroup: Option<CgroupHead<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct FindingHead<'a> {
    #[serde(borrow, default)]
    rule: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    severity: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    first_seen: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    cgroup: Option<CgroupHead<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct CgroupHead<'a> {
    #[serde(borrow, default)]
    path: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Head<'a> {
    /// The head of a native line (empty when it does not parse).
    pub fn of(payload: &'a [u8]) -> Self {
        Self::of_event(payload)
            .unwrap_or_else(|| serde_json::from_slice(payload).unwrap_or_default())
    }

    /// An event line as buildwatch writes it, read without parsing it:
    /// `{"schema":1,"seq":N,"time":"…","ts_ns":N,"kind":"…",…` with the cgroup, if any, as
    /// `"cgroup":{"path":"…"`. The byte sequences searched for cannot occur inside a JSON
    /// string (its quotes would be escaped), so the first match is the key. Anything else
    /// (findings, roll-ups, the summary, a gap record, an escaped value) is parsed.
    fn of_event(p: &'a [u8]) -> Option<Self> {
        use std::sync::LazyLock;

        use memchr::memmem::Finder;
        // Built once: a finder's set-up costs more than the search of a short line.
        static TIME: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"time\":\""));
        static KIND: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"kind\":\""));
        static CGROUP: LazyLock<Finder<'static>> =
            LazyLock::new(|| Finder::new(b"\"cgroup\":{\"path\":\""));
        fn value<'b>(p: &'b [u8], key: &Finder, within: usize) -> Option<&'b str> {
            let region = &p[..p.len().min(within)];
            string_at(p, key.find(region)? + key.needle().len())
        }
        // The string starting at `at`, up to its closing quote (None: escaped, or no quote).
        fn string_at(p: &[u8], at: usize) -> Option<&str> {
            let len = memchr::memchr(b'"', &p[at..])?;
            let v = &p[at..at + len];
            if v.contains(&b'\\') {
                return None;
            }
            std::str::from_utf8(v).ok()
        }
        if !p.starts_with(b"{\"schema\":") {
            return None;
        }
        let time = value(p, &TIME, 96)?;
        let kind = value(p, &KIND, 160)?;
        if matches!(kind, "finding" | "finding_rollup" | "run_summary" | "gap") {
            return None;
        }
        let cgroup = match CGROUP.find(p) {
            None => None,
            Some(i) => Some(CgroupHead {
                path: Some(string_at(p, i + CGROUP.needle().len())?.into()),
            }),
        };
        Some(Self {
            kind: Some(kind.into()),
            time: Some(time.into()),
            cgroup,
            ..Self::default()
        })
    }
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("event")
    }
    /// The record's time (a finding's: its first occurrence).
    pub fn time(&self) -> Option<&str> {
        self.time
            .as_deref()
            .or(self.finding.as_ref().and_then(|f| f.first_seen.as_deref()))
    }
    pub fn rule(&self) -> Option<&str> {
        self.finding
            .as_ref()
            .and_then(|f| f.rule.as_deref())
            .or(self.rule.as_deref())
    }
    pub fn severity(&self) -> Option<&str> {
        self.finding
            .as_ref()
            .and_then(|f| f.severity.as_deref())
            .or(self.severity.as_deref())
    }
    pub fn cgroup(&self) -> Option<&str> {
        self.finding
            .as_ref()
            .and_then(|f| f.cgroup.as_ref())
            .and_then(|c| c.path.as_deref())
            .or(self.cgroup.as_ref().and_then(|c| c.path.as_deref()))
    }
}

/// The MITRE ATT&CK technique ids among a finding's tags (`T1059.004`).
pub fn techniques(tags: &serde_json::Value) -> Vec<&str> {
    tags.as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter(|t| {
            t.strip_prefix('T')
                .and_then(|r| r.chars().next())
                .is_some_and(|c| c.is_ascii_digit())
        })
        .collect()
}

/// A record's stable id: the spool's id and the record's number.
pub fn stable_id(spool_id: u64, n: u64) -> String {
    let mut s = String::with_capacity(40);
    push_stable_id(&mut s, spool_id, n);
    s
}

/// [`stable_id`], appended to `out` (no formatting machinery: a sender writes one per record).
pub fn push_stable_id(out: &mut String, spool_id: u64, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((spool_id >> (shift * 4)) & 0xf) as usize] as char);
    }
    out.push('-');
    let mut digits = [0u8; 20];
    out.extend(decimal(n, &mut digits).iter().map(|&d| d as char));
}

/// `n` in decimal, written at the end of `buf` (no formatting machinery: senders write one
/// or two per record).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// This host's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// An opened output: its name, its writer, and its forwarding state (when spooled).
pub type Opened = (String, Box<dyn Writer>, Option<Arc<Status>>);

/// The writer of one configured output, its name, and its forwarding state (for a spooled
/// output). `flush`: how long a forwarding output goes on delivering once it is closed.
///
/// `run`: for a CI run, whose spool (unless the entry names one) is `run-…` beside the
/// agent's, and which takes the next free `…-N` when another run holds it: what a run leaves
/// undelivered waits there for the next run that opens it.
pub fn open(o: &config::OutputConfig, flush: Duration, run: bool) -> anyhow::Result<Opened> {
    use crate::output::sink::{RotatingFile, Stream};
    let name = o.to.name();
    let spooled = |opts: &config::SpoolOpts| -> anyhow::Result<Arc<Status>> {
        let base = match (run, opts.dir.file_name()) {
            (true, Some(f)) if !opts.explicit => opts
                .dir
                .with_file_name(format!("run-{}", f.to_string_lossy())),
            _ => opts.dir.clone(),
        };
        let tries = if run { 8 } else { 1 };
        let mut last = None;
        for n in 1..=tries {
            let dir = if n == 1 {
                base.clone()
            } else {
                let mut d = base.clone().into_os_string();
                d.push(format!("-{n}"));
                d.into()
            };
            match Spool::open(&dir, opts.max_bytes, Duration::from_millis(200)) {
                Ok(spool) => return Ok(Status::new(name.clone(), spool)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => last = Some(e),
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "{name}: opening the spool {}: {e}",
                        dir.display()
                    ));
                }
            }
        }
        Err(anyhow::anyhow!(
            "{name}: {}",
            last.map_or_else(|| "no spool".to_owned(), |e| e.to_string())
        ))
    };
    Ok(match &o.to {
        config::Destination::Stdout => (
            name.clone(),
            Box::new(Stream::new(io::stdout(), "stdout")),
            None,
        ),
        config::Destination::File(p) => (
            name.clone(),
            Box::new(RotatingFile::new(
                p.clone(),
                o.max_bytes,
                Duration::from_secs(o.max_age_secs.max(1)),
                o.keep,
            )),
            None,
        ),
        config::Destination::Syslog {
            address,
            tls,
            spool,
            schema,
        } => {
            let status = spooled(spool)?;
            let sink = syslog::start(
                syslog::SyslogConfig {
                    address: address.clone(),
                    tls: tls.clone(),
                    schema: *schema,
                    hostname: hostname(),
                },
                status.clone(),
                spool.on_full,
                flush,
            )
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            (name.clone(), Box::new(sink), Some(status))
        }
        config::Destination::Http {
            dest,
            spool,
            schema,
        } => {
            let status = spooled(spool)?;
            let sink = http::start(dest.clone(), *schema, status.clone(), spool.on_full, flush)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            (name.clone(), Box::new(sink), Some(status))
        }
    })
}

/// Which records an output takes.
pub fn filter(o: &config::OutputConfig) -> crate::output::bus::Filter {
    let o = o.clone();
    Box::new(move |r: &Record| match r {
        Record::Event(ev) => {
            o.events
                && !matches!(ev.kind.as_ref(), "run" | "run_end")
                && (o.kinds.is_empty() || o.kinds.iter().any(|k| k == ev.kind.as_ref()))
        }
        Record::Finding(f) => o.findings && f.severity >= o.min_severity,
        Record::Rollup(v) => {
            o.findings
                && v["severity"]
                    .as_str()
                    .and_then(crate::detect::rules::Severity::parse)
                    .is_none_or(|s| s >= o.min_severity)
        }
        Record::Summary(_) => true,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(tag: &str, max: u64) -> (std::path::PathBuf, Spool) {
        let d = std::env::temp_dir().join(format!("bw-fwd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let s = Spool::open(&d, max, Duration::from_millis(10)).unwrap();
        (d, s)
    }

    /// A delivery that acknowledges what the spool holds every 20 ms, until it stops.
    fn slow_delivery(mut ctx: Ctx) {
        while !ctx.must_end() {
            let (stopping, batch) = ctx.next_batch(0, 1000);
            if let Some(r) = batch.last() {
                ctx.status.spool().ack(r.id).unwrap();
            } else {
                ctx.status.spool().tick().unwrap();
                if stopping {
                    break;
                }
            }
            ctx.sleep(Duration::from_millis(20));
        }
    }

    /// The last record is written just before the stop (a run's summary, then the end). A
    /// delivery whose read comes just before them must still send it: the stop, looked at
    /// after that empty read, would be the one that came with the record, and the record was
    /// left behind (seen in CI: a webhook ended a run with its summary pending). The writer
    /// goes in between the read and the look, every time.
    #[test]
    fn a_record_written_just_before_the_stop_is_delivered() {
        let (d, s) = spool("last", 1 << 20);
        let status = Status::new("test".into(), s);
        let stop = Arc::new(AtomicBool::new(false));
        let mut ctx = Ctx {
            status: status.clone(),
            stop: stop.clone(),
            flush: Duration::from_secs(5),
            stopping_at: None,
        };
        let mut writer = Some(stop);
        for _ in 0..10 {
            let (stopping, batch) = ctx.next_batch_by(|st| {
                let batch = st.spool().read_from(0, 100).unwrap();
                if let Some(stop) = writer.take() {
                    st.spool()
                        .append_owned(Bytes::from_static(b"{\"kind\":\"run_summary\"}"))
                        .unwrap();
                    stop.store(true, Ordering::Release);
                }
                batch
            });
            match batch.last() {
                Some(r) => ctx.status.spool().ack(r.id).unwrap(),
                None if stopping => break,
                None => {}
            }
        }
        let st = status.stats();
        assert_eq!((st.delivered, st.pending), (1, 0), "{st:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_blocking_output_waits_for_room_and_loses_nothing() {
        let (d, s) = spool("block", 1 << 20);
        let status = Status::new("test".into(), s);
        let mut sink = ForwardSink::start(
            status.clone(),
            OnFull::Block,
            Duration::from_secs(5),
            "test",
            slow_delivery,
        )
        .unwrap();
        // 3 MiB through a 1 MiB spool.
        let line = format!("{{\"kind\":\"open\",\"pad\":\"{}\"}}\n", "x".repeat(1000));
        for _ in 0..3000 {
            sink.write(line.as_bytes()).unwrap();
        }
        drop(sink);
        let st = status.stats();
        assert_eq!(st.dropped_full, 0, "{st:?}");
        assert_eq!(st.delivered + st.pending, 3000, "{st:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A delivery waiting for records with nothing to send is woken by the sink's append and
    /// by the stop, not by its timer (a minute here: the test would take that long).
    #[test]
    fn an_idle_delivery_wakes_for_records_and_for_the_stop() {
        let (d, s) = spool("idle", 1 << 20);
        let status = Status::new("test".into(), s);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut sink = ForwardSink::start(
            status.clone(),
            OnFull::Block,
            Duration::from_secs(5),
            "test",
            move |mut ctx| {
                while !ctx.stopping() {
                    let waiting = ctx.status.spool().read_from(0, 10).unwrap().len();
                    if waiting > 0 {
                        let _ = tx.send(waiting);
                    }
                    ctx.idle(Duration::from_secs(60));
                }
            },
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        sink.write(b"{\"kind\":\"open\"}\n").unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
        assert!(start.elapsed() < Duration::from_secs(10));
        let start = Instant::now();
        drop(sink);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_dropping_output_counts_what_it_dropped_and_says_so_in_a_gap_record() {
        let (d, s) = spool("drop", 1 << 20);
        let status = Status::new("test".into(), s);
        // No delivery at all: the receiver is down.
        let mut sink = ForwardSink::start(
            status.clone(),
            OnFull::DropNewest,
            Duration::from_millis(10),
            "test",
            |_ctx| {},
        )
        .unwrap();
        let line = format!("{{\"kind\":\"open\",\"pad\":\"{}\"}}\n", "x".repeat(1000));
        for _ in 0..3000 {
            sink.write(line.as_bytes()).unwrap();
        }
        sink.write(b"{\"kind\":\"run_summary\",\"run_summary\":{}}\n")
            .unwrap();
        drop(sink);
        let st = status.stats();
        assert!(st.dropped_full > 1000, "{st:?}");
        let all = status.spool().read_from(0, 10_000).unwrap();
        let text: Vec<String> = all
            .iter()
            .map(|r| String::from_utf8_lossy(r.line()).into_owned())
            .collect();
        assert_eq!(
            st.pending as usize,
            all.len(),
            "every waiting record is readable"
        );
        // The hole is announced, with its size, before the summary (which is never refused).
        let gap = &text[text.len() - 2];
        assert!(
            gap.contains(&format!("\"dropped\":{}", st.dropped_full)),
            "{gap}"
        );
        assert!(text[text.len() - 1].contains("run_summary"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_head_of_an_event_is_read_without_parsing_and_agrees_with_parsing() {
        let line = br#"{"schema":1,"seq":7,"time":"2026-12-02T17:00:00.5Z","ts_ns":5,"kind":"open","pid":3,"exe":"/bin/\"cgroup\":{\"path\":\"x","cgroup":{"path":"/a.service","kind":"systemd-unit"},"open":{"path":"/p"}}"#;
        let fast = Head::of_event(line).expect("an event line");
        let slow: Head = serde_json::from_slice(line).unwrap();
        for h in [&fast, &slow] {
            assert_eq!(h.kind(), "open");
            assert_eq!(h.time(), Some("2026-12-02T17:00:00.5Z"));
            assert_eq!(h.cgroup(), Some("/a.service"));
            assert_eq!(h.rule(), None);
        }
        // Findings and escaped values take the parser.
        assert!(Head::of_event(br#"{"finding":{},"kind":"finding","schema":1}"#).is_none());
        assert!(
            Head::of_event(br#"{"schema":1,"seq":1,"time":"t","ts_ns":1,"kind":"open","cgroup":{"path":"/a\"b"}}"#)
                .is_none()
        );
    }

    #[test]
    fn native_records_carry_their_id_without_being_reparsed() {
        let r = render(Schema::Native, "ab-1", br#"{"kind":"open","x":1}"#, "h").unwrap();
        assert_eq!(r, br#"{"id":"ab-1","kind":"open","x":1}"#);
        assert!(render(Schema::Native, "ab-1", b"{}", "h").is_none());
        assert!(render(Schema::Native, "ab-1", b"[1]", "h").is_none());
        let h = Head::of(
            br#"{"finding":{"rule":"r","severity":"high","cgroup":{"path":"/a"},"first_seen":"t"},"kind":"finding","schema":1}"#,
        );
        assert_eq!(
            (h.kind(), h.rule(), h.severity(), h.cgroup(), h.time()),
            ("finding", Some("r"), Some("high"), Some("/a"), Some("t"))
        );
    }
}
