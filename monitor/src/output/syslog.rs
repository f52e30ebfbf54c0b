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
    io::{self, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};

use crate::output::{
    sink::Writer,
    spool::{Spool, Spooled},
};

/// How long a sent record waits, with the connection up, before it counts as delivered.
pub const SETTLE: Duration = Duration::from_secs(2);
const BATCH: usize = 512;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct SyslogConfig {
    /// HOST:PORT of the receiver.
    pub address: String,
    /// The name the server's certificate must carry.
    pub server_name: String,
    pub ca_file: PathBuf,
    /// A client certificate and its key (PEM), when the receiver asks for one.
    pub client: Option<(PathBuf, PathBuf)>,
    pub hostname: String,
}

/// The TLS client configuration, from the files; every problem named with its file.
pub fn tls_config(c: &SyslogConfig) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&c.ca_file)
        .map_err(|e| format!("{}: {e}", c.ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", c.ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", c.ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate in it", c.ca_file.display()));
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
    ServerName::try_from(c.server_name.clone())
        .map_err(|e| format!("server name `{}`: {e}", c.server_name))?;
    Ok(Arc::new(config))
}

/// The sink side: records go into the spool (fast, on the sink's thread); a delivery thread
/// sends them on.
pub struct SyslogSink {
    spool: Arc<Mutex<Spool>>,
    name: String,
    delivery: Option<Delivery>,
}

struct Delivery {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl SyslogSink {
    pub fn start(config: SyslogConfig, spool: Spool, flush: Duration) -> Result<Self, String> {
        let tls = tls_config(&config)?;
        let spool = Arc::new(Mutex::new(spool));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (spool, stop, config) = (spool.clone(), stop.clone(), config.clone());
            std::thread::Builder::new()
                .name("syslog".into())
                .spawn(move || deliver(&config, &tls, &spool, &stop, flush))
                .map_err(|e| e.to_string())?
        };
        Ok(Self {
            spool,
            name: format!("syslog {}", config.address),
            delivery: Some(Delivery { stop, thread }),
        })
    }
}

impl Writer for SyslogSink {
    /// A batch of JSON lines into the spool; a full spool drops the newest (counted, and a
    /// gap record follows).
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut spool = self.spool.lock().unwrap_or_else(|e| e.into_inner());
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            spool.append(line)?;
        }
        spool.sync(false)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn describe(&self, e: &io::Error) -> String {
        format!("{}: {e}", self.name)
    }
}

impl Drop for SyslogSink {
    /// Closing: the delivery thread sends what it can within its flush time, then stops; the
    /// rest stays in the spool for the next start.
    fn drop(&mut self) {
        if let Some(d) = self.delivery.take() {
            d.stop.store(true, Ordering::Relaxed);
            let _ = d.thread.join();
        }
        let _ = self
            .spool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sync(true);
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(c: &SyslogConfig, tls: &Arc<ClientConfig>) -> Result<Tls, String> {
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
    let name = ServerName::try_from(c.server_name.clone()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
    let mut s = StreamOwned::new(conn, sock);
    // The handshake now: a certificate that does not check out fails here, before any data.
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("TLS handshake with {addr} ({}): {e}", c.server_name))?;
    }
    Ok(s)
}

/// The delivery loop: send what the spool holds, settle it, reconnect with backoff.
fn deliver(
    c: &SyslogConfig,
    tls: &Arc<ClientConfig>,
    spool: &Mutex<Spool>,
    stop: &AtomicBool,
    flush: Duration,
) {
    let mut conn: Option<Tls> = None;
    let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut next = 0u64;
    let mut backoff = Duration::from_millis(100);
    let mut last_error: Option<String> = None;
    let mut stopping_at: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) && stopping_at.is_none() {
            stopping_at = Some(Instant::now());
        }
        if stopping_at.is_some_and(|t| t.elapsed() >= flush) {
            break;
        }
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
                let _ = spool.lock().unwrap_or_else(|e| e.into_inner()).ack(id);
            }
        }
        let batch: Vec<Spooled> = spool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_from(next, BATCH)
            .unwrap_or_default();
        if batch.is_empty() {
            if stopping_at.is_some() {
                // All sent: close cleanly; what the server read before closing is delivered.
                if let Some(mut s) = conn.take() {
                    s.conn.send_close_notify();
                    let _ = s.flush();
                    let _ = s.sock.shutdown(std::net::Shutdown::Write);
                    let mut sink = [0u8; 512];
                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                    if let Some(&(id, _)) = sent.back() {
                        let _ = spool.lock().unwrap_or_else(|e| e.into_inner()).ack(id);
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if conn.is_none() {
            match connect(c, tls) {
                Ok(s) => {
                    if last_error.take().is_some() {
                        eprintln!("buildwatch: syslog {}: connected again", c.address);
                    }
                    conn = Some(s);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    if last_error.as_deref() != Some(&e) {
                        eprintln!(
                            "buildwatch: syslog {}: {e}; records stay in the spool",
                            c.address
                        );
                        last_error = Some(e);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let mut frames = Vec::new();
        {
            let s = spool.lock().unwrap_or_else(|e| e.into_inner());
            for r in &batch {
                frames.extend_from_slice(&frame(&s.event_id(r.id), &r.payload, &c.hostname));
            }
        }
        let s = conn.as_mut().expect("connected above");
        match s.write_all(&frames).and_then(|()| s.flush()) {
            Ok(()) => {
                let now = Instant::now();
                for r in &batch {
                    sent.push_back((r.id, now));
                }
                next = batch.last().map_or(next, |r| r.id);
            }
            Err(e) => {
                let msg = format!("sending: {e}");
                if last_error.as_deref() != Some(&msg) {
                    eprintln!(
                        "buildwatch: syslog {}: {msg}; sending again from the spool",
                        c.address
                    );
                    last_error = Some(msg);
                }
                // Everything not settled goes again on the next connection.
                conn = None;
                sent.clear();
                next = 0;
            }
        }
    }
}

/// RFC 5424 structured-data parameter value escaping: `"`, `\` and `]`.
fn sd_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One octet-counted RFC 5424 frame for a native JSON line.
pub fn frame(id: &str, payload: &[u8], hostname: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let kind = v["kind"].as_str().unwrap_or("event");
    let finding = &v["finding"];
    let severity = finding["severity"].as_str().or(v["severity"].as_str());
    // Facility local0 (16); severity from the finding's, informational for events.
    let sev = match severity {
        Some("critical") => 2,
        Some("high") => 3,
        Some("medium") => 4,
        Some("low") => 5,
        _ => 6,
    };
    let time = v["time"]
        .as_str()
        .or(finding["first_seen"].as_str())
        .unwrap_or("-");
    let mut sd = format!(
        "[buildwatch@32473 id=\"{}\" kind=\"{}\"",
        sd_value(id),
        sd_value(kind)
    );
    if let Some(rule) = finding["rule"].as_str().or(v["rule"].as_str()) {
        sd.push_str(&format!(" rule=\"{}\"", sd_value(rule)));
    }
    if let Some(s) = severity {
        sd.push_str(&format!(" severity=\"{}\"", sd_value(s)));
    }
    let cgroup = finding["cgroup"]["path"]
        .as_str()
        .or(v["cgroup"]["path"].as_str());
    if let Some(cg) = cgroup {
        sd.push_str(&format!(" cgroup=\"{}\"", sd_value(cg)));
    }
    sd.push(']');
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let msgid: String = kind
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    let msg = format!(
        "<{}>1 {time} {} buildwatch {} {} {sd} ",
        16 * 8 + sev,
        if host.is_empty() { "-" } else { &host },
        std::process::id(),
        if msgid.is_empty() { "-" } else { &msgid },
    );
    let mut body = msg.into_bytes();
    body.extend_from_slice(payload);
    let mut out = format!("{} ", body.len()).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// This host's name, for the HOSTNAME field.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_octet_counted_rfc5424_with_escaped_structured_data() {
        let line = br#"{"schema":1,"kind":"finding","time":"2026-12-02T16:00:00Z","finding":{"rule":"r\"]x","severity":"high","cgroup":{"path":"/a.service"}}}"#;
        let f = frame("abc-1", line, "host 1");
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
