//! Forwarding over HTTP: Elastic/OpenSearch `_bulk`, Splunk HEC, OTLP/HTTP logs and an NDJSON
//! webhook. One delivery thread per output sends batches from the output's spool and removes
//! a batch only when the receiver acknowledged every record in it:
//!
//! - **Elastic `_bulk`:** `create` actions with the record's stable id as `_id` (a resent
//!   record is a 409 conflict, which counts as delivered: no duplicates). Each item is judged
//!   even when the response is 200 with `errors: true`: 429 and 5xx items are sent again,
//!   other refused items are rejected (kept aside, counted).
//! - **Splunk HEC:** `/services/collector/event`; with `ack: true` a batch counts only once
//!   `/services/collector/ack` says the indexers have it (the request channel is a GUID
//!   chosen per start). An ack that never comes means the batch is sent again.
//! - **OTLP/HTTP logs:** JSON `ExportLogsServiceRequest` to `/v1/logs`; the stable id is the
//!   `log.record.uid` attribute. A `partialSuccess` rejection is counted (the receiver says
//!   retrying will not help).
//! - **Webhook:** one JSON record per line; any 2xx acknowledges the batch.
//!
//! Everywhere: 429 and 5xx (and timeouts, refused or dropped connections) are retried with
//! exponential backoff up to 30 s, honouring `Retry-After`; 401/403 are retried too (a
//! rotated token is fixed without losing records) and said on stderr; a request the receiver
//! finds too large or malformed is split in halves until the one record it refuses is found,
//! and that record alone is rejected.
//!
//! The client is hyper's HTTP/1 over tokio-rustls (TLS 1.2/1.3, ring), with the receiver's
//! certificate checked against the output's CA file (default: the system bundle). Tokens are
//! read when the output starts, from a file or the environment, and go only into the
//! Authorization header.

use std::{
    io::Write as _,
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Request, StatusCode, Uri,
    client::conn::http1::SendRequest,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER},
};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};

use super::{
    Ctx, ForwardSink, Head, Status,
    config::{HttpDest, HttpKind, OnFull, Schema, Token},
    render, stable_id,
};

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The most of a response body read (a bulk response for 10,000 items is about 2 MB).
const MAX_RESPONSE: usize = 16 << 20;

/// The token, read now: from its file (trimmed) or the environment.
fn read_token(t: &Token) -> Result<String, String> {
    let v = match t {
        Token::File(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("token file {}: {e}", p.display()))?
        }
        Token::Env(name) => {
            std::env::var(name).map_err(|_| format!("the token variable {name} is not set"))?
        }
    };
    let v = v.trim().to_owned();
    if v.is_empty() || v.chars().any(|c| c.is_control()) {
        return Err(match t {
            Token::File(p) => format!("token file {}: empty, or not one line", p.display()),
            Token::Env(name) => format!("the token variable {name}: empty, or not one line"),
        });
    }
    Ok(v)
}

pub fn start(
    dest: HttpDest,
    schema: Schema,
    status: Arc<Status>,
    on_full: OnFull,
    flush: Duration,
) -> Result<ForwardSink, String> {
    let uri: Uri = dest
        .url
        .parse()
        .map_err(|e| format!("url {}: {e}", dest.url))?;
    let tls = match uri.scheme_str() {
        Some("https") => Some(super::syslog::tls_config(&dest.tls)?),
        _ => None,
    };
    let token = dest.token.as_ref().map(read_token).transpose()?;
    let auth = token.map(|t| {
        let scheme = match dest.kind {
            HttpKind::Elastic => "ApiKey",
            HttpKind::SplunkHec => "Splunk",
            HttpKind::Otlp | HttpKind::Webhook => "Bearer",
        };
        let mut v =
            HeaderValue::from_str(&format!("{scheme} {t}")).unwrap_or(HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    });
    let client = Client {
        uri,
        tls,
        server_name: dest.tls.server_name.clone().unwrap_or_default(),
        timeout: Duration::from_secs(dest.timeout_secs),
        sender: None,
    };
    let channel = {
        let (a, b) = (
            crate::output::spool::random_id(),
            crate::output::spool::random_id(),
        );
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    };
    let out = Output {
        dest,
        schema,
        auth,
        channel,
        host: super::hostname(),
    };
    let thread = format!("fwd-{}", out.dest.kind.name());
    ForwardSink::start(status, on_full, flush, &thread, move |ctx| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                ctx.status.trouble(&format!("cannot start: {e}"));
                return;
            }
        };
        rt.block_on(deliver(out, client, ctx));
    })
    .map_err(|e| e.to_string())
}

/// An HTTP/1.1 connection to the receiver, made again whenever it breaks.
struct Client {
    uri: Uri,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: String,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

struct Response {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl Client {
    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, String> {
        let host = self.uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self
            .uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| format!("connecting to {host}:{port}: timed out"))?
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        macro_rules! handshake {
            ($io:expr) => {{
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new($io))
                    .await
                    .map_err(|e| format!("HTTP with {host}:{port}: {e}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }};
        }
        Ok(match &self.tls {
            None => handshake!(tcp),
            Some(cfg) => {
                let name = ServerName::try_from(self.server_name.clone())
                    .map_err(|e| format!("server name `{}`: {e}", self.server_name))?;
                let tls = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
                )
                .await
                .map_err(|_| format!("TLS handshake with {host}:{port}: timed out"))?
                .map_err(|e| {
                    format!(
                        "TLS handshake with {host}:{port} ({}): {e}",
                        self.server_name
                    )
                })?;
                handshake!(tls)
            }
        })
    }

    /// POST `body` to `path` (below the URL's own path).
    async fn post(
        &mut self,
        path: &str,
        content_type: &'static str,
        headers: &[(&'static str, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, String> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        let full = {
            let base = self.uri.path().trim_end_matches('/');
            format!("{base}{path}")
        };
        let mut req = Request::post(if full.is_empty() { "/" } else { &full })
            .header(HOST, self.uri.authority().map_or("", |a| a.as_str()))
            .header(CONTENT_TYPE, content_type)
            .header(
                "user-agent",
                concat!("buildwatch/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(*k, v.clone());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))?;
        let exchange = async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(60)));
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("reading the response: {e}"))?
                .to_bytes();
            Ok::<_, String>(Response {
                status,
                retry_after,
                body,
            })
        };
        let r = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no response within {} s", self.timeout.as_secs()))??;
        self.sender = Some(sender);
        Ok(r)
    }
}

/// One record ready to go: its stable id, native line, rendered form, and what the
/// envelopes need from it.
struct Item {
    stable: String,
    native: bytes::Bytes,
    doc: Vec<u8>,
    time_ns: u128,
    kind: String,
    rule: Option<String>,
    severity: Option<String>,
}

impl Item {
    fn new(stable: String, native: bytes::Bytes, doc: Vec<u8>) -> Self {
        let head = Head::of(&native);
        let time_ns = head
            .time()
            .and_then(super::ecs::parse_rfc3339_ns)
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            });
        let (kind, rule, severity) = (
            head.kind().to_owned(),
            head.rule().map(str::to_owned),
            head.severity().map(str::to_owned),
        );
        Self {
            stable,
            native,
            doc,
            time_ns,
            kind,
            rule,
            severity,
        }
    }
}

/// What came of sending some records.
enum Outcome {
    /// Indices (into what was sent) to send again; records refused for good, with why.
    Judged {
        again: Vec<usize>,
        refused: Vec<(usize, String)>,
        wait: Option<Duration>,
    },
    /// Nothing was accepted; try all again later.
    Retry { why: String, wait: Option<Duration> },
    /// The request was too large or malformed as a whole: split it to find the record.
    Split { why: String },
}

struct Output {
    dest: HttpDest,
    schema: Schema,
    auth: Option<HeaderValue>,
    channel: String,
    host: String,
}

fn severity_number(sev: Option<&str>) -> (u8, &'static str) {
    match sev {
        Some("critical") => (21, "FATAL"),
        Some("high") => (17, "ERROR"),
        Some("medium") => (13, "WARN"),
        Some("low") => (10, "INFO2"),
        _ => (9, "INFO"),
    }
}

impl Output {
    fn headers(&self) -> Vec<(&'static str, HeaderValue)> {
        let mut h = Vec::new();
        if let Some(a) = &self.auth {
            h.push((AUTHORIZATION.as_str(), a.clone()));
        }
        if self.dest.kind == HttpKind::SplunkHec
            && let Ok(v) = HeaderValue::from_str(&self.channel)
        {
            h.push(("x-splunk-request-channel", v));
        }
        h
    }

    /// The request body for these records.
    fn body(&self, items: &[&Item]) -> (String, &'static str, Vec<u8>) {
        let mut b = Vec::new();
        match self.dest.kind {
            HttpKind::Elastic => {
                let index = self.dest.index.as_deref().unwrap_or("buildwatch");
                for it in items {
                    let action = json!({"create": {"_index": index, "_id": it.stable}});
                    let _ = serde_json::to_writer(&mut b, &action);
                    b.push(b'\n');
                    b.extend_from_slice(&it.doc);
                    b.push(b'\n');
                }
                ("/_bulk".into(), "application/x-ndjson", b)
            }
            HttpKind::SplunkHec => {
                // The envelope's fields, then the record itself as `event`.
                let mut head = json!({
                    "host": self.host,
                    "source": "buildwatch",
                    "sourcetype": self.dest.sourcetype.as_deref().unwrap_or("_json"),
                });
                if let Some(i) = &self.dest.index {
                    head["index"] = i.as_str().into();
                }
                let head = serde_json::to_vec(&head).unwrap_or_else(|_| b"{}".to_vec());
                let fields = &head[1..head.len() - 1];
                for it in items {
                    let ns = it.time_ns;
                    let _ = write!(
                        b,
                        "{{\"time\":\"{}.{:06}\",",
                        ns / 1_000_000_000,
                        (ns / 1000) % 1_000_000
                    );
                    b.extend_from_slice(fields);
                    b.extend_from_slice(b",\"event\":");
                    b.extend_from_slice(&it.doc);
                    b.extend_from_slice(b"}\n");
                }
                ("/services/collector/event".into(), "application/json", b)
            }
            HttpKind::Otlp => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
                    .to_string();
                let records: Vec<Value> = items
                    .iter()
                    .map(|it| {
                        let (num, text) = severity_number(it.severity.as_deref());
                        let mut attrs = vec![
                            json!({"key": "log.record.uid", "value": {"stringValue": it.stable}}),
                            json!({"key": "event.name", "value": {"stringValue":
                                format!("buildwatch.{}", it.kind)}}),
                        ];
                        if let Some(r) = &it.rule {
                            attrs.push(
                                json!({"key": "buildwatch.rule", "value": {"stringValue": r}}),
                            );
                        }
                        json!({
                            "timeUnixNano": it.time_ns.to_string(),
                            "observedTimeUnixNano": now,
                            "severityNumber": num,
                            "severityText": text,
                            "body": {"stringValue": String::from_utf8_lossy(&it.doc)},
                            "attributes": attrs,
                        })
                    })
                    .collect();
                let req = json!({"resourceLogs": [{
                    "resource": {"attributes": [
                        {"key": "service.name", "value": {"stringValue": "buildwatch"}},
                        {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
                        {"key": "host.name", "value": {"stringValue": self.host}},
                    ]},
                    "scopeLogs": [{
                        "scope": {"name": "buildwatch", "version": env!("CARGO_PKG_VERSION")},
                        "logRecords": records,
                    }],
                }]});
                let _ = serde_json::to_writer(&mut b, &req);
                ("/v1/logs".into(), "application/json", b)
            }
            HttpKind::Webhook => {
                for it in items {
                    b.extend_from_slice(&it.doc);
                    b.push(b'\n');
                }
                (String::new(), "application/x-ndjson", b)
            }
        }
    }

    /// Judge a response to `n` records.
    fn judge(&self, r: &Response, n: usize) -> Outcome {
        let s = r.status;
        let body = || String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).into_owned();
        if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() {
            return Outcome::Retry {
                why: format!("{s}: {}", body()),
                wait: r.retry_after,
            };
        }
        if matches!(s, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Outcome::Retry {
                why: format!("{s}: the receiver refused the credentials"),
                wait: Some(Duration::from_secs(5)),
            };
        }
        if s == StatusCode::PAYLOAD_TOO_LARGE || s == StatusCode::BAD_REQUEST {
            return Outcome::Split {
                why: format!("{s}: {}", body()),
            };
        }
        if !s.is_success() {
            // Anything else (404: a wrong URL; 415) is the configuration's fault: keep the
            // records and say so.
            return Outcome::Retry {
                why: format!("{s}: {}", body()),
                wait: Some(Duration::from_secs(5)),
            };
        }
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        match self.dest.kind {
            HttpKind::Elastic => {
                let items = v["items"].as_array();
                if v["errors"] != Value::Bool(true) && items.is_none_or(|i| i.len() == n) {
                    return Outcome::Judged {
                        again: Vec::new(),
                        refused: Vec::new(),
                        wait: None,
                    };
                }
                let Some(items) = items.filter(|i| i.len() == n) else {
                    return Outcome::Retry {
                        why: format!("{s}: a bulk response without one item per record"),
                        wait: None,
                    };
                };
                let (mut again, mut refused) = (Vec::new(), Vec::new());
                for (i, item) in items.iter().enumerate() {
                    let op = item
                        .as_object()
                        .and_then(|o| o.values().next())
                        .cloned()
                        .unwrap_or_default();
                    let st = op["status"].as_u64().unwrap_or(0);
                    match st {
                        200..=299 | 409 => {}
                        429 | 500..=599 | 0 => again.push(i),
                        _ => refused.push((
                            i,
                            format!(
                                "{st} {}: {}",
                                op["error"]["type"].as_str().unwrap_or(""),
                                op["error"]["reason"].as_str().unwrap_or("")
                            ),
                        )),
                    }
                }
                Outcome::Judged {
                    again,
                    refused,
                    wait: None,
                }
            }
            HttpKind::Otlp => {
                let k = v["partialSuccess"]["rejectedLogRecords"]
                    .as_u64()
                    .or_else(|| {
                        v["partialSuccess"]["rejectedLogRecords"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                    })
                    .unwrap_or(0) as usize;
                let why = v["partialSuccess"]["errorMessage"]
                    .as_str()
                    .unwrap_or("rejected by the collector (partialSuccess)")
                    .to_owned();
                // The collector does not say which: the last k are named, the count is right.
                Outcome::Judged {
                    again: Vec::new(),
                    refused: (n.saturating_sub(k.min(n))..n)
                        .map(|i| (i, why.clone()))
                        .collect(),
                    wait: None,
                }
            }
            HttpKind::SplunkHec | HttpKind::Webhook => Outcome::Judged {
                again: Vec::new(),
                refused: Vec::new(),
                wait: None,
            },
        }
    }

    /// Send these records; with HEC acknowledgement, wait for it.
    async fn send(&self, client: &mut Client, items: &[&Item], ctx: &mut Ctx) -> Outcome {
        let (path, ctype, body) = self.body(items);
        let headers = self.headers();
        let r = match client.post(&path, ctype, &headers, body.into()).await {
            Ok(r) => r,
            Err(why) => return Outcome::Retry { why, wait: None },
        };
        let outcome = self.judge(&r, items.len());
        if !(self.dest.kind == HttpKind::SplunkHec && self.dest.ack) {
            return outcome;
        }
        if !matches!(&outcome, Outcome::Judged { .. }) {
            return outcome;
        }
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let Some(ack_id) = v["ackId"].as_u64() else {
            return Outcome::Retry {
                why:
                    "HEC answered without an ackId (is indexer acknowledgement on for this token?)"
                        .into(),
                wait: Some(Duration::from_secs(5)),
            };
        };
        let started = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if ctx.must_end() {
                return Outcome::Retry {
                    why: "stopped while waiting for the indexer acknowledgement".into(),
                    wait: None,
                };
            }
            let q = serde_json::to_vec(&json!({"acks": [ack_id]})).unwrap_or_default();
            match client
                .post(
                    "/services/collector/ack",
                    "application/json",
                    &headers,
                    q.into(),
                )
                .await
            {
                Ok(a) if a.status.is_success() => {
                    let v: Value = serde_json::from_slice(&a.body).unwrap_or_default();
                    if v["acks"][ack_id.to_string()] == Value::Bool(true) {
                        return outcome;
                    }
                }
                Ok(_) | Err(_) => {}
            }
            if started.elapsed() >= Duration::from_secs(self.dest.ack_timeout_secs) {
                return Outcome::Retry {
                    why: format!(
                        "no indexer acknowledgement for ackId {ack_id} within {} s",
                        self.dest.ack_timeout_secs
                    ),
                    wait: None,
                };
            }
        }
    }
}

async fn deliver(out: Output, mut client: Client, mut ctx: Ctx) {
    let status = ctx.status.clone();
    let spool_id = status.spool().spool_id;
    let mut backoff = Duration::from_millis(100);
    let max = out.dest.batch;
    while !ctx.must_end() {
        let (stopping, batch) = ctx.next_batch(0, max);
        let Some(last) = batch.last().map(|r| r.id) else {
            let _ = status.spool().tick();
            if stopping {
                break;
            }
            ctx.idle(super::IDLE_WAIT);
            continue;
        };
        let items: Vec<Item> = batch
            .into_iter()
            .filter_map(|r| {
                let stable = stable_id(spool_id, r.id);
                match render(out.schema, &stable, r.line(), &out.host) {
                    Some(doc) => Some(Item::new(stable, r.into_line(), doc)),
                    None => {
                        status.reject(&stable, r.line(), "not a JSON object");
                        None
                    }
                }
            })
            .collect();
        // Indices of `items` still to deliver; sent `chunk` at a time.
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut chunk = pending.len().max(1);
        while !pending.is_empty() {
            if ctx.must_end() {
                return;
            }
            let take: Vec<usize> = pending.iter().copied().take(chunk).collect();
            let refs: Vec<&Item> = take.iter().map(|&i| &items[i]).collect();
            match out.send(&mut client, &refs, &mut ctx).await {
                Outcome::Judged {
                    again,
                    refused,
                    wait,
                } => {
                    for (i, why) in &refused {
                        let it = refs[*i];
                        status.reject(&it.stable, &it.native, why);
                    }
                    let keep: Vec<usize> = again.iter().map(|&i| take[i]).collect();
                    pending.retain(|i| !take.contains(i) || keep.contains(i));
                    if keep.is_empty() {
                        status.recovered();
                        status.connected.store(true, Ordering::Relaxed);
                        backoff = Duration::from_millis(100);
                    } else {
                        status.retries.fetch_add(1, Ordering::Relaxed);
                        status.trouble(&format!(
                            "{} of {} records refused for now (429 or 5xx per item)",
                            keep.len(),
                            take.len()
                        ));
                        ctx.sleep(wait.unwrap_or(backoff));
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                Outcome::Retry { why, wait } => {
                    status.retries.fetch_add(1, Ordering::Relaxed);
                    status.connected.store(false, Ordering::Relaxed);
                    status.trouble(&why);
                    ctx.sleep(
                        wait.unwrap_or(backoff)
                            .max(backoff.min(Duration::from_secs(1))),
                    );
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Outcome::Split { why } => {
                    if take.len() > 1 {
                        chunk = take.len().div_ceil(2);
                    } else {
                        let it = refs[0];
                        status.reject(&it.stable, &it.native, &why);
                        pending.retain(|i| *i != take[0]);
                    }
                }
            }
        }
        let _ = status.spool().ack(last);
    }
}
