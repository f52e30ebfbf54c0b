//! Forwarding to syslog: RFC 5424 messages over TCP with RFC 5425 TLS and octet-counting
//! framing, through the output's disk spool (`spool`), so nothing is lost while the receiver
//! is down or buildwatch restarts.
//!
//! - **TLS** (rustls, ring): the server's certificate is checked against the configured CA
//!   file and the configured server name; a client certificate is optional. There is no
//!   fallback to cleartext: a failed handshake is an error, retried with backoff, and the
//!   records stay in the spool.
//! - **Messages:** `<PRI>1 TIME HOST buildwatch PID KIND [buildwatch@32473 id=… kind=… rule=…
//!   severity=… cgroup=…] JSON` — the native JSON line is the message; the structured data
//!   carries the fields a receiver filters on, and `id` is the record's stable id for
//!   removing duplicates. (32473 is the enterprise number RFC 5612 sets aside for examples:
//!   buildwatch has no number of its own.)
//! - **Delivery is at least once.** Syslog over TLS has no acknowledgement; a record counts as
//!   delivered (and leaves the spool) once the TLS write that carried it completed and the
//!   connection stayed up for [`SETTLE`] after it. When the connection breaks, everything not
//!   yet settled is sent again on the next one: duplicates are bounded by what was sent in the
//!   last [`SETTLE`].

use std::{
    collections::VecDeque,
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};

use super::{
    Ctx, ForwardSink, Head, Status,
    config::{OnFull, Schema, Tls},
    decimal, native_parts, push_stable_id, render_into,
};

/// How long a sent record waits, with the connection up, before it counts as delivered.
pub const SETTLE: Duration = Duration::from_secs(2);
const BATCH: usize = 512;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The CA bundle used when an output names none (Debian's and Ubuntu's).
pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Clone, Debug)]
pub struct SyslogConfig {
    /// HOST:PORT of the receiver.
    pub address: String,
    pub tls: Tls,
    pub schema: Schema,
    pub hostname: String,
}

/// The TLS client configuration, from the files; every problem named with its file.
pub fn tls_config(c: &Tls) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let ca = c.ca.as_deref().unwrap_or(Path::new(SYSTEM_CA));
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate in it", ca.display()));
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
    let config = match &c.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    let name = c.server_name.clone().unwrap_or_default();
    ServerName::try_from(name.clone()).map_err(|e| format!("server name `{name}`: {e}"))?;
    Ok(Arc::new(config))
}

/// Start the output: its TLS configuration is checked now (a missing CA file fails the
/// start); connecting is the delivery thread's business, retried while records wait.
pub fn start(
    config: SyslogConfig,
    status: Arc<Status>,
    on_full: OnFull,
    flush: Duration,
) -> Result<ForwardSink, String> {
    let tls = tls_config(&config.tls)?;
    ForwardSink::start(status, on_full, flush, "syslog", move |ctx| {
        deliver(&config, &tls, ctx);
    })
    .map_err(|e| e.to_string())
}

type Stream = StreamOwned<ClientConnection, TcpStream>;

fn connect(c: &SyslogConfig, tls: &Arc<ClientConfig>) -> Result<Stream, String> {
    let addr = c
        .address
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", c.address))?
        .next()
        .ok_or_else(|| format!("{}: no address", c.address))?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = sock.set_write_timeout(Some(Duration::from_secs(10)));
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let server = c.tls.server_name.clone().unwrap_or_default();
    let name = ServerName::try_from(server.clone()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
    let mut s = StreamOwned::new(conn, sock);
    // The handshake now: a certificate that does not check out fails here, before any data.
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("TLS handshake with {addr} ({server}): {e}"))?;
    }
    Ok(s)
}

/// The delivery loop: send what the spool holds, settle it, reconnect with backoff.
fn deliver(c: &SyslogConfig, tls: &Arc<ClientConfig>, mut ctx: Ctx) {
    let status = ctx.status.clone();
    let spool_id = status.spool().spool_id;
    let mut conn: Option<Stream> = None;
    let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut next = 0u64;
    let mut backoff = Duration::from_millis(100);
    // Kept between batches: no allocation per record.
    let (mut frames, mut header, mut message, mut id) =
        (Vec::new(), Vec::new(), Vec::new(), String::new());
    // The spool's part of the id once; the record's number each time.
    push_stable_id(&mut id, spool_id, 0);
    id.pop();
    let (id_prefix, mut digits) = (id.len(), [0u8; 20]);
    while !ctx.must_end() {
        // Settle what was sent long enough ago on a connection still up.
        if conn.is_some() {
            let mut settled = None;
            while let Some(&(id, at)) = sent.front() {
                if at.elapsed() < SETTLE {
                    break;
                }
                settled = Some(id);
                sent.pop_front();
            }
            if let Some(id) = settled {
                let _ = status.spool().ack(id);
            }
        }
        let (stopping, batch) = ctx.next_batch(next, BATCH);
        if batch.is_empty() {
            let _ = status.spool().tick();
            if stopping {
                // All sent: close cleanly; what the server read before closing is delivered.
                if let Some(mut s) = conn.take() {
                    s.conn.send_close_notify();
                    let _ = s.flush();
                    let _ = s.sock.shutdown(std::net::Shutdown::Write);
                    let mut sink = [0u8; 512];
                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                    if let Some(&(id, _)) = sent.back() {
                        let _ = status.spool().ack(id);
                    }
                }
                break;
            }
            ctx.idle(super::IDLE_WAIT);
            continue;
        }
        if conn.is_none() {
            match connect(c, tls) {
                Ok(s) => {
                    status.recovered();
                    conn = Some(s);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    status.trouble(&e);
                    ctx.sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        frames.clear();
        for r in &batch {
            id.truncate(id_prefix);
            id.push_str(std::str::from_utf8(decimal(r.id, &mut digits)).unwrap_or_default());
            let line = r.line();
            let head = Head::of(line);
            // A native record goes into the frame as it is, behind its id; another schema is
            // rendered first.
            let native = match c.schema {
                Schema::Native => native_parts(&id, line),
                _ => None,
            };
            let message: &[&[u8]] = match &native {
                Some(parts) => parts,
                None => {
                    message.clear();
                    if render_into(c.schema, &id, line, &c.hostname, &mut message) {
                        &[&message]
                    } else {
                        &[line]
                    }
                }
            };
            frame(&mut frames, &mut header, &id, &head, message, &c.hostname);
        }
        let s = conn.as_mut().expect("connected above");
        match s.write_all(&frames).and_then(|()| s.flush()) {
            Ok(()) => {
                // Per batch: acknowledging an id acknowledges every one before it.
                if let Some(last) = batch.last() {
                    sent.push_back((last.id, Instant::now()));
                    next = last.id;
                }
            }
            Err(e) => {
                status
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                status.trouble(&format!("sending: {e}"));
                // Everything not settled goes again on the next connection.
                conn = None;
                sent.clear();
                next = 0;
            }
        }
    }
}

/// Append `s`'s printable ASCII (at most `max` characters), or `-` when there is none: the
/// header fields of RFC 5424 take nothing else.
fn push_graphic(out: &mut Vec<u8>, s: &str, max: usize) {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= max && b.iter().all(u8::is_ascii_graphic) {
        out.extend_from_slice(b);
        return;
    }
    let start = out.len();
    out.extend(b.iter().copied().filter(u8::is_ascii_graphic).take(max));
    if out.len() == start {
        out.push(b'-');
    }
}

/// Append a structured-data parameter value, escaping `"`, `\` and `]` (RFC 5424).
fn push_sd(out: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    while let Some(i) = memchr::memchr3(b'"', b'\\', b']', rest) {
        out.extend_from_slice(&rest[..i]);
        out.push(b'\\');
        out.push(rest[i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// Append one octet-counted RFC 5424 frame to `out`: the structured data from the native
/// line's head, the message `message` (the record in the output's schema). `header` is
/// scratch space (kept between calls: no allocation per record).
pub fn frame(
    out: &mut Vec<u8>,
    header: &mut Vec<u8>,
    id: &str,
    head: &Head,
    message: &[&[u8]],
    hostname: &str,
) {
    static PID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let pid = PID.get_or_init(|| std::process::id().to_string());
    let kind = head.kind();
    let severity = head.severity();
    // Facility local0 (16); severity from the finding's, informational for events.
    let pri: &[u8] = match severity {
        Some("critical") => b"<130>1 ",
        Some("high") => b"<131>1 ",
        Some("medium") => b"<132>1 ",
        Some("low") => b"<133>1 ",
        _ => b"<134>1 ",
    };
    let body = header;
    body.clear();
    body.extend_from_slice(pri);
    push_graphic(body, head.time().unwrap_or("-"), 64);
    body.push(b' ');
    push_graphic(body, hostname, 255);
    body.extend_from_slice(b" buildwatch ");
    body.extend_from_slice(pid.as_bytes());
    body.push(b' ');
    push_graphic(body, kind, 32);
    body.extend_from_slice(b" [buildwatch@32473 id=\"");
    push_sd(body, id);
    body.extend_from_slice(b"\" kind=\"");
    push_sd(body, kind);
    body.push(b'"');
    for (name, value) in [
        (&b" rule=\""[..], head.rule()),
        (b" severity=\"", severity),
        (b" cgroup=\"", head.cgroup()),
    ] {
        if let Some(v) = value {
            body.extend_from_slice(name);
            push_sd(body, v);
            body.push(b'"');
        }
    }
    body.extend_from_slice(b"] ");
    // MSG-LEN SP, then the message.
    let message_len: usize = message.iter().map(|p| p.len()).sum();
    let mut digits = [0u8; 20];
    let len = super::decimal((body.len() + message_len) as u64, &mut digits);
    out.reserve(len.len() + 1 + body.len() + message_len);
    out.extend_from_slice(len);
    out.push(b' ');
    out.extend_from_slice(body);
    for p in message {
        out.extend_from_slice(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_octet_counted_rfc5424_with_escaped_structured_data() {
        let line = br#"{"schema":1,"kind":"finding","time":"2026-12-02T16:00:00Z","finding":{"rule":"r\"]x","severity":"high","cgroup":{"path":"/a.service"}}}"#;
        let mut f = Vec::new();
        frame(
            &mut f,
            &mut Vec::new(),
            "abc-1",
            &Head::of(line),
            &[line],
            "host 1",
        );
        let s = String::from_utf8(f).unwrap();
        let (len, rest) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert!(
            rest.starts_with("<131>1 2026-12-02T16:00:00Z host1 buildwatch "),
            "{rest}"
        );
        assert!(rest.contains(r#"[buildwatch@32473 id="abc-1" kind="finding" rule="r\"\]x" severity="high" cgroup="/a.service"] {"#), "{rest}");
    }
}
