//! `/healthz` and Prometheus `/metrics`, served on a loopback address by default (hyper, HTTP/1
//! only). The numbers come from the stage's snapshot (refreshed every second), the live
//! counters, and the agent's own process; nothing here touches the pipeline's hot path.
//!
//! At most [`MAX_CONNECTIONS`] connections are served at once and each must send its request
//! within [`HEADER_TIMEOUT`], so a scraper that misbehaves cannot grow the agent's file
//! descriptors or tasks.

use std::{
    convert::Infallible,
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::{
    context::cgroups::Cgroups,
    event::MonitorUsage,
    output::status::PROGRESS,
    pipeline::{SNAPSHOT_EVERY, Snapshot},
};

pub const MAX_CONNECTIONS: usize = 16;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the endpoints read.
pub struct Health {
    pub snapshot: Arc<Mutex<Snapshot>>,
    pub cgroups: Cgroups,
    /// Cgroups in the kernel's scope map now.
    pub watched: AtomicUsize,
    pub host_wide: bool,
    pub reload_failures: AtomicU64,
    /// The forwarding outputs' state (spool size, oldest record, delivered, rejected).
    pub forwards: Vec<Arc<crate::output::forward::Status>>,
    pub started: SystemTime,
}

/// Serve until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let health = health.clone();
                async move { Ok::<_, Infallible>(route(&req, &health)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn route(req: &Request<Incoming>, health: &Health) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => match health.problem() {
            None => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            Some(p) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{p}\n"),
            ),
        },
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(health),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "/healthz or /metrics\n".into(),
        ),
    }
}

impl Health {
    /// Why the agent is not healthy: its stage has not refreshed the snapshot lately (it is
    /// stuck), or it was never started.
    fn problem(&self) -> Option<String> {
        let at = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .taken;
        match at {
            None => Some("starting: the pipeline has not reported yet".into()),
            Some(t) if t.elapsed() > SNAPSHOT_EVERY * 5 => Some(format!(
                "the pipeline stage has not reported for {:.0} s",
                t.elapsed().as_secs_f64()
            )),
            Some(_) => None,
        }
    }
}

/// Label values escaped as the exposition format wants (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The sensor that reports an event kind.
fn sensor_of(kind: &str) -> &'static str {
    match kind {
        "exec" | "fork" | "exit" => "exec",
        "open" | "chdir" | "rename" | "link" => "file",
        "connect" | "send" | "socket" => "net",
        "dns" => "dns",
        "ptrace" | "process_vm" => "procmem",
        "bpf" | "signal" | "escape" => "tamper",
        _ => "buildwatch",
    }
}

/// The Prometheus text exposition (version 0.0.4).
pub fn metrics(h: &Health) -> String {
    let s = h.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut m = String::new();
    let head = |m: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    head(
        &mut m,
        "buildwatch_events_total",
        "counter",
        "Events judged, by sensor and kind.",
    );
    for (kind, n) in &s.events_by_kind {
        let _ = writeln!(
            m,
            "buildwatch_events_total{{sensor=\"{}\",kind=\"{}\"}} {n}",
            sensor_of(kind),
            label(kind)
        );
    }
    head(
        &mut m,
        "buildwatch_events_lost_total",
        "counter",
        "Events lost, by sensor and reason (kernel ring full, decode errors, queues).",
    );
    for ((sensor, reason), n) in &s.lost {
        let _ = writeln!(
            m,
            "buildwatch_events_lost_total{{sensor=\"{}\",reason=\"{}\"}} {n}",
            label(sensor),
            label(reason)
        );
    }
    head(
        &mut m,
        "buildwatch_findings_total",
        "counter",
        "Rule matches, by rule and severity (merged findings count every occurrence).",
    );
    for ((rule, sev), n) in &s.findings {
        let _ = writeln!(
            m,
            "buildwatch_findings_total{{rule=\"{}\",severity=\"{sev}\"}} {n}",
            label(rule)
        );
    }
    let fwd: Vec<_> = h.forwards.iter().map(|f| f.stats()).collect();
    for (name, kind, help, get) in [
        (
            "buildwatch_forward_delivered_total",
            "counter",
            "Records a forwarding output's receiver acknowledged.",
            (|f: &crate::output::forward::ForwardStats| f.delivered) as fn(&_) -> u64,
        ),
        (
            "buildwatch_forward_rejected_total",
            "counter",
            "Records a receiver refused for good (kept in the spool's rejected.jsonl).",
            |f| f.rejected,
        ),
        (
            "buildwatch_forward_dropped_total",
            "counter",
            "Records a full spool refused (a gap record marks each hole).",
            |f| f.dropped_full,
        ),
        (
            "buildwatch_forward_retries_total",
            "counter",
            "Sends that failed and were retried.",
            |f| f.retries,
        ),
        (
            "buildwatch_spool_appended_bytes_total",
            "counter",
            "Bytes of the records appended to a forwarding output's spool.",
            |f| f.appended_bytes,
        ),
        (
            "buildwatch_spool_records",
            "gauge",
            "Records waiting in a forwarding output's spool.",
            |f| f.pending,
        ),
        (
            "buildwatch_spool_bytes",
            "gauge",
            "Bytes of a forwarding output's spool on disk.",
            |f| f.spool_bytes,
        ),
        (
            "buildwatch_spool_oldest_age_seconds",
            "gauge",
            "How long the oldest waiting record has waited.",
            |f| f.oldest_pending_s,
        ),
    ] {
        if fwd.is_empty() {
            break;
        }
        head(&mut m, name, kind, help);
        for f in &fwd {
            let _ = writeln!(m, "{name}{{output=\"{}\"}} {}", label(&f.name), get(f));
        }
    }
    if let Some(q) = &s.queue {
        let name = label(&q.name);
        head(
            &mut m,
            "buildwatch_queue_depth",
            "gauge",
            "Items queued between stages now (unit in the label).",
        );
        let _ = writeln!(
            m,
            "buildwatch_queue_depth{{queue=\"{name}\",unit=\"{}\"}} {}",
            label(&q.unit),
            q.depth
        );
        head(
            &mut m,
            "buildwatch_queue_depth_max",
            "gauge",
            "Highest depth since start.",
        );
        let _ = writeln!(
            m,
            "buildwatch_queue_depth_max{{queue=\"{name}\",unit=\"{}\"}} {}",
            label(&q.unit),
            q.max_depth
        );
        head(
            &mut m,
            "buildwatch_queue_dropped_total",
            "counter",
            "Items a full queue refused.",
        );
        let _ = writeln!(
            m,
            "buildwatch_queue_dropped_total{{queue=\"{name}\"}} {}",
            q.dropped
        );
    }
    head(
        &mut m,
        "buildwatch_sink_records_total",
        "counter",
        "Records per output, by outcome (written, dropped: queue full, unwritten: failed).",
    );
    for sink in &s.sinks {
        let name = label(&sink.name);
        for (outcome, n) in [
            ("written", sink.written),
            ("dropped", sink.dropped),
            ("unwritten", sink.unwritten),
        ] {
            let _ = writeln!(
                m,
                "buildwatch_sink_records_total{{sink=\"{name}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    head(
        &mut m,
        "buildwatch_process_table_size",
        "gauge",
        "Processes the agent's process table holds.",
    );
    let _ = writeln!(m, "buildwatch_process_table_size {}", s.processes);
    head(
        &mut m,
        "buildwatch_cgroups_known",
        "gauge",
        "Cgroups on the host the agent can name.",
    );
    let _ = writeln!(m, "buildwatch_cgroups_known {}", h.cgroups.len());
    head(
        &mut m,
        "buildwatch_cgroups_watched",
        "gauge",
        "Cgroups in the kernel's scope map (0 when the whole host is watched).",
    );
    let _ = writeln!(
        m,
        "buildwatch_cgroups_watched {}",
        h.watched.load(Ordering::Relaxed)
    );
    head(
        &mut m,
        "buildwatch_host_wide",
        "gauge",
        "1 when every process on the host is watched.",
    );
    let _ = writeln!(m, "buildwatch_host_wide {}", u8::from(h.host_wide));
    head(
        &mut m,
        "buildwatch_config_reloads_total",
        "counter",
        "Configuration reloads applied.",
    );
    let _ = writeln!(m, "buildwatch_config_reloads_total {}", s.reloads);
    head(
        &mut m,
        "buildwatch_config_reload_failures_total",
        "counter",
        "Reloads refused (the old configuration kept running).",
    );
    let _ = writeln!(
        m,
        "buildwatch_config_reload_failures_total {}",
        h.reload_failures.load(Ordering::Relaxed)
    );
    head(
        &mut m,
        "buildwatch_findings_new_total",
        "counter",
        "Distinct findings reported as new.",
    );
    let _ = writeln!(
        m,
        "buildwatch_findings_new_total {}",
        PROGRESS.findings.load(Ordering::Relaxed)
    );
    // The agent's own process, with the standard names.
    if let Some(u) = MonitorUsage::of_self() {
        head(
            &mut m,
            "process_cpu_seconds_total",
            "counter",
            "The agent's user and system CPU time.",
        );
        let _ = writeln!(
            m,
            "process_cpu_seconds_total {:.3}",
            (u.cpu_user_ms + u.cpu_system_ms) as f64 / 1000.0
        );
        head(
            &mut m,
            "process_max_resident_memory_bytes",
            "gauge",
            "The agent's peak resident memory.",
        );
        let _ = writeln!(
            m,
            "process_max_resident_memory_bytes {}",
            u.max_rss_kib * 1024
        );
    }
    if let Some(rss) = resident_bytes() {
        head(
            &mut m,
            "process_resident_memory_bytes",
            "gauge",
            "The agent's resident memory now.",
        );
        let _ = writeln!(m, "process_resident_memory_bytes {rss}");
    }
    head(
        &mut m,
        "process_start_time_seconds",
        "gauge",
        "When the agent started (Unix time).",
    );
    let start = h
        .started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let _ = writeln!(m, "process_start_time_seconds {start:.3}");
    m
}

/// Resident memory now, from /proc/self/statm (pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_follow_the_exposition_format() {
        let mut s = Snapshot::default();
        s.events_by_kind.insert("open".into(), 5);
        s.findings.insert(("sensitive-file-read".into(), "high"), 2);
        s.lost.insert(("file".into(), "ringbuf_full".into()), 3);
        let h = Health {
            snapshot: Arc::new(Mutex::new(s)),
            cgroups: Cgroups::default(),
            watched: AtomicUsize::new(2),
            host_wide: false,
            reload_failures: AtomicU64::new(0),
            forwards: Vec::new(),
            started: SystemTime::now(),
        };
        let m = metrics(&h);
        assert!(
            m.contains("buildwatch_events_total{sensor=\"file\",kind=\"open\"} 5\n"),
            "{m}"
        );
        assert!(m.contains(
            "buildwatch_findings_total{rule=\"sensitive-file-read\",severity=\"high\"} 2\n"
        ));
        assert!(
            m.contains("buildwatch_events_lost_total{sensor=\"file\",reason=\"ringbuf_full\"} 3\n")
        );
        assert!(
            m.contains("# TYPE buildwatch_cgroups_watched gauge\nbuildwatch_cgroups_watched 2\n")
        );
        // Every sample line is NAME{LABELS} VALUE or NAME VALUE.
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
            assert!(name.chars().next().unwrap().is_ascii_lowercase(), "{l}");
        }
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(
            h.problem().as_deref(),
            Some("starting: the pipeline has not reported yet")
        );
    }
}
