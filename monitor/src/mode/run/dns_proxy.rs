//! Block mode's DNS proxy: the DNS-layer half of block mode. The kernel's connect and sendmsg
//! hooks send the run's port-53 traffic to its resolvers (UDP and TCP) here, to a loopback
//! address of 127.53.0.0/16 picked per run, and refuse every other port-53 or DNS-over-TLS
//! destination.
//!
//! A query whose name a domain entry of the allowlist allows is forwarded to the upstream
//! resolvers (the policy's `dns: upstream:`, else the system's); the addresses its answer
//! gives are opened in the kernel, for this run and with the entry's port, *before* the answer
//! reaches the client. Any other query (and any name of a known DNS-over-HTTPS service) is
//! answered NXDOMAIN, or with the policy's sinkhole address, and never leaves the machine.
//!
//! Every query is still seen by the DNS sensor (the packets to and from the proxy), so the
//! query-shape rules judge refused queries too. The proxy is a part of buildwatch: when it is
//! gone, nothing listens at its address and the run's DNS fails, closed.
//!
//! Everything here parses what the run sends: lengths are checked, work is bounded (queries in
//! flight, TCP connections, time), and nothing panics on input.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::bail;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Semaphore,
    task::JoinHandle,
    time::timeout,
};

use crate::{context::dns, kernel::egress::Opener, policy::Policy};

/// How long one upstream resolver gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// A client's TCP connection is closed after this long without a query.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// UDP queries answered at once; more are dropped (and counted).
const MAX_IN_FLIGHT: usize = 256;
/// Client TCP connections at once; more are closed at once (and counted).
const MAX_TCP: usize = 64;
/// The largest DNS message (UDP datagram or TCP frame).
const MAX_MESSAGE: usize = 65535;

const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_REFUSED: u8 = 5;
/// Longest name on the wire (RFC 1035).
const MAX_NAME: usize = 255;
/// How long a reply may take to be written to a TCP client.
const TCP_WRITE: Duration = Duration::from_secs(5);

/// What the proxy did (for the run's notes).
#[derive(Default, Debug)]
pub struct Stats {
    pub queries: AtomicU64,
    pub forwarded: AtomicU64,
    pub refused: AtomicU64,
    /// Upstream did not answer, or answered something unusable: the client got SERVFAIL.
    pub failed: AtomicU64,
    /// Not a query (or several questions): the client got FORMERR.
    pub malformed: AtomicU64,
    /// Dropped: too many queries or connections at once.
    pub dropped: AtomicU64,
    /// Destinations opened in the kernel.
    pub opened: AtomicU64,
    /// Destinations an allowed answer named that could not be opened (the kernel map is
    /// full): the run cannot reach them.
    pub open_failed: AtomicU64,
}

struct Shared {
    policy: Policy,
    upstream: Vec<SocketAddr>,
    opener: Mutex<Opener>,
    stats: Arc<Stats>,
}

pub struct DnsProxy {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub stats: Arc<Stats>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Candidate proxy addresses for this process: spread over 127.53.0.0/16 by pid, so that
/// concurrent runs do not collide (and one that does moves on).
fn candidates(pid: u32) -> impl Iterator<Item = Ipv4Addr> {
    (0..64u32).map(move |i| {
        let h = pid
            .wrapping_mul(2_654_435_761)
            .wrapping_add(i.wrapping_mul(40_503))
            % 65_024
            + 256;
        Ipv4Addr::new(127, 53, (h >> 8) as u8, h as u8)
    })
}

/// The proxy's sockets, bound before the kernel is told where they are.
pub struct Bound {
    pub addr: Ipv4Addr,
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Bind the proxy: UDP and TCP, port 53 of a 127.53.0.0/16 address.
pub async fn bind() -> anyhow::Result<Bound> {
    let mut last = None;
    for addr in candidates(std::process::id()) {
        let at = SocketAddr::from((addr, 53));
        let udp = match UdpSocket::bind(at).await {
            Ok(u) => u,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match TcpListener::bind(at).await {
            Ok(tcp) => return Ok(Bound { addr, udp, tcp }),
            Err(e) => last = Some(e),
        }
    }
    bail!(
        "block mode's DNS proxy could not bind port 53 of any 127.53.0.0/16 address tried ({})",
        last.map(|e| e.to_string()).unwrap_or_default()
    )
}

impl Bound {
    /// Start answering: allowed names go to `upstream` (which must not be empty when the
    /// policy has domain entries), and the addresses of their answers are opened through
    /// `opener`.
    pub fn serve(
        self,
        policy: Policy,
        upstream: Vec<SocketAddr>,
        opener: Opener,
    ) -> anyhow::Result<DnsProxy> {
        let domains = policy
            .allow
            .iter()
            .any(|e| matches!(e.host, crate::policy::Host::Domain(_)));
        // Without domain entries every query is refused: no upstream is needed.
        if upstream.is_empty() && domains {
            bail!(
                "block mode's DNS proxy has no upstream resolver: /etc/resolv.conf names none \
                 (set `dns: upstream:` in the policy)"
            );
        }
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            policy,
            upstream,
            opener: Mutex::new(opener),
            stats: stats.clone(),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(self.udp), shared.clone())),
            tokio::spawn(serve_tcp(self.tcp, shared)),
        ];
        Ok(DnsProxy {
            addr: self.addr,
            port: 53,
            stats,
            tasks,
        })
    }
}

impl DnsProxy {
    /// One line for the run's notes.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut line = format!(
            "block mode's DNS proxy: {} queries, {} forwarded, {} refused, {} destinations opened",
            n(&s.queries),
            n(&s.forwarded),
            n(&s.refused),
            n(&s.opened)
        );
        for (what, v) in [
            ("failed upstream (SERVFAIL)", n(&s.failed)),
            ("malformed (FORMERR)", n(&s.malformed)),
            ("dropped (too many at once)", n(&s.dropped)),
            ("destinations not opened (map full)", n(&s.open_failed)),
        ] {
            if v > 0 {
                line.push_str(&format!(", {v} {what}"));
            }
        }
        line
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, shared) = (sock.clone(), shared.clone());
        tokio::spawn(async move {
            if let Some(reply) = answer(&shared, &query, false).await {
                let _ = sock.send_to(&reply, peer).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_connection(stream, &shared).await;
            drop(permit);
        });
    }
}

/// One client connection: length-prefixed queries until it closes or idles.
async fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    loop {
        let Some(query) = timeout(TCP_IDLE, read_frame(&mut stream))
            .await
            .ok()
            .flatten()
        else {
            return;
        };
        let Some(reply) = answer(shared, &query, true).await else {
            return;
        };
        // A client that does not read its answer gives its connection up.
        if !matches!(
            timeout(TCP_WRITE, write_frame(&mut stream, &reply)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()? as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

async fn write_frame(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await
}

/// The reply to one query (`None`: nothing to answer, not even an error).
async fn answer(shared: &Shared, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let stats = &shared.stats;
    stats.queries.fetch_add(1, Ordering::Relaxed);
    // A response is never answered (a spoofed one would start a loop); neither is anything
    // too short to carry an id.
    if query.len() < 12 || query[2] & 0x80 != 0 {
        stats.malformed.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    // Standard queries only (opcode 0): no UPDATE, NOTIFY or others through the proxy.
    if query[2] & 0x78 != 0 {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return error_reply(query, RCODE_REFUSED);
    }
    let msg = match dns::parse(query) {
        Ok(m) if !m.response && m.questions == 1 && m.qname.is_some() => m,
        _ => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            return error_reply(query, RCODE_FORMERR);
        }
    };
    let qname = msg.qname.as_deref().unwrap_or_default();
    let Some(ports) = shared.policy.name_allowed(qname) else {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return refusal(query, msg.qtype.as_deref(), shared.policy.sinkhole);
    };
    let Some(reply) = forward(&shared.upstream, query, tcp).await else {
        stats.failed.fetch_add(1, Ordering::Relaxed);
        return error_reply(query, RCODE_SERVFAIL);
    };
    // Only an answer to this query opens anything; anything else is a failure.
    let parsed = match dns::parse(&reply) {
        Ok(r)
            if r.response
                && r.id == msg.id
                && r.qname.as_deref().map(str::to_ascii_lowercase)
                    == msg.qname.as_deref().map(str::to_ascii_lowercase) =>
        {
            r
        }
        _ => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            return error_reply(query, RCODE_SERVFAIL);
        }
    };
    {
        let mut opener = shared.opener.lock().unwrap_or_else(|e| e.into_inner());
        for addr in parsed.resolved() {
            for port in &ports {
                match opener.open(addr, *port) {
                    Ok(()) => stats.opened.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.open_failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    }
    stats.forwarded.fetch_add(1, Ordering::Relaxed);
    Some(reply)
}

/// Ask the upstream resolvers in turn; the first reply.
async fn forward(upstream: &[SocketAddr], query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    for up in upstream {
        let got = if tcp {
            timeout(UPSTREAM_TIMEOUT, forward_tcp(*up, query)).await
        } else {
            timeout(UPSTREAM_TIMEOUT, forward_udp(*up, query)).await
        };
        if let Ok(Some(reply)) = got {
            return Some(reply);
        }
    }
    None
}

async fn forward_udp(up: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let local: SocketAddr = match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await.ok()?;
    // Connected: only the upstream's datagrams are received.
    sock.connect(up).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = sock.recv(&mut buf).await.ok()?;
    buf.truncate(n);
    Some(buf)
}

async fn forward_tcp(up: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(up).await.ok()?;
    write_frame(&mut stream, query).await.ok()?;
    read_frame(&mut stream).await
}

/// What the proxy answers `query` when it refuses it (NXDOMAIN, or the sinkhole), or a
/// FORMERR when it is not a query it can answer; `None` when there is nothing to answer. The
/// fuzz target's entry: any bytes, no panic, and a reply that parses.
pub fn refuse(query: &[u8], sinkhole: Option<IpAddr>) -> Option<Vec<u8>> {
    match dns::parse(query) {
        Ok(m) if !m.response && m.questions == 1 && m.qname.is_some() => {
            refusal(query, m.qtype.as_deref(), sinkhole)
        }
        _ => error_reply(query, RCODE_FORMERR),
    }
}

/// Where the first question ends (after its type and class), in a message whose header is
/// whole; `None` when it does not fit.
fn question_end(msg: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        if at - 12 > MAX_NAME {
            return None;
        }
        let len = *msg.get(at)? as usize;
        if len == 0 {
            at += 1;
            break;
        }
        // A compression pointer (or a reserved label type) in a query's question: not
        // copied (the reply could not keep what it points at).
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
    }
    let end = at + 4;
    (end <= msg.len()).then_some(end)
}

/// A reply carrying the query's id, opcode, RD bit and first question, with `rcode` and
/// `answers` answer records; `None` when the query's header or question is not whole.
fn reply_head(query: &[u8], rcode: u8, answers: u16) -> Option<Vec<u8>> {
    let end = question_end(query)?;
    let mut out = Vec::with_capacity(end + 32);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD; RA; the rcode.
    out.push(0x80 | (query[2] & 0x79));
    out.push(0x80 | (rcode & 0x0f));
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    Some(out)
}

/// An error reply: with the query's question when it is whole, else the header alone (no
/// question); `None` without even an id to answer.
fn error_reply(query: &[u8], rcode: u8) -> Option<Vec<u8>> {
    reply_head(query, rcode, 0).or_else(|| {
        let id = query.get(..2)?;
        let flags = query.get(2).copied().unwrap_or(0);
        let mut out = id.to_vec();
        out.push(0x80 | (flags & 0x79));
        out.push(0x80 | (rcode & 0x0f));
        out.extend_from_slice(&[0; 8]);
        Some(out)
    })
}

/// A refused query's answer: NXDOMAIN, or the sinkhole address for an A or AAAA query of its
/// family.
fn refusal(query: &[u8], qtype: Option<&str>, sinkhole: Option<IpAddr>) -> Option<Vec<u8>> {
    let record: Option<(u16, Vec<u8>)> = match (qtype, sinkhole) {
        (Some("A"), Some(IpAddr::V4(a))) => Some((1, a.octets().to_vec())),
        (Some("AAAA"), Some(IpAddr::V6(a))) => Some((28, a.octets().to_vec())),
        _ => None,
    };
    let Some((rtype, data)) = record else {
        return reply_head(query, RCODE_NXDOMAIN, 0).or_else(|| error_reply(query, RCODE_FORMERR));
    };
    let Some(mut out) = reply_head(query, 0, 1) else {
        return error_reply(query, RCODE_FORMERR);
    };
    // The owner is the question's name (a pointer to offset 12), class IN, TTL 60.
    out.extend_from_slice(&[0xc0, 0x0c]);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&60u32.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(&data);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (type A) with id 0x1234 and RD.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn refusals_are_well_formed_answers_to_the_query() {
        let q = query("ab12.attacker.example", 1);
        let r = refusal(&q, Some("A"), None).unwrap();
        let m = dns::parse(&r).unwrap();
        assert!(m.response);
        assert_eq!(m.id, 0x1234);
        assert_eq!(m.rcode, "NXDOMAIN");
        assert_eq!(m.qname.as_deref(), Some("ab12.attacker.example"));
        assert!(m.answers.is_empty());
        let r = refusal(&q, Some("A"), Some("10.200.0.1".parse().unwrap())).unwrap();
        let m = dns::parse(&r).unwrap();
        assert_eq!(m.rcode, "NOERROR");
        assert_eq!(
            m.resolved().collect::<Vec<_>>(),
            vec!["10.200.0.1".parse::<IpAddr>().unwrap()]
        );
        // An AAAA query with an IPv4 sinkhole: NXDOMAIN.
        let q6 = query("x.attacker.example", 28);
        let m =
            dns::parse(&refusal(&q6, Some("AAAA"), Some("10.200.0.1".parse().unwrap())).unwrap())
                .unwrap();
        assert_eq!(m.rcode, "NXDOMAIN");
    }

    #[test]
    fn hostile_queries_never_panic() {
        for bad in [
            vec![],
            vec![0x12],
            vec![0; 12],
            vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63],
            vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x80, 1, 2],
            vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0],
        ] {
            let _ = error_reply(&bad, RCODE_FORMERR);
            let _ = refusal(&bad, Some("A"), Some("10.200.0.1".parse().unwrap()));
        }
        assert_eq!(
            error_reply(&[0; 11], RCODE_FORMERR).map(|r| r.len()),
            Some(12)
        );
        assert!(error_reply(&[0], RCODE_FORMERR).is_none());
        // A name over 255 bytes: no question copied, the reply still parses.
        let mut long = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(question_end(&long), None);
        for bad in [
            vec![
                0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x20, 0, 1, 0, 1,
            ],
            vec![0x12, 0x34, 0x81, 0, 0, 1],
            long,
        ] {
            let r = refuse(&bad, None).unwrap();
            assert_eq!(dns::parse(&r).unwrap().rcode, "FORMERR");
        }
        let q = query("a.b", 1);
        assert_eq!(question_end(&q), Some(q.len()));
        assert_eq!(question_end(&q[..q.len() - 1]), None);
    }

    #[test]
    fn addresses_spread_and_stay_in_the_proxy_range() {
        let a: Vec<Ipv4Addr> = candidates(4242).collect();
        assert_eq!(a.len(), 64);
        assert!(
            a.iter()
                .all(|x| x.octets()[..2] == [127, 53] && x.octets()[2] >= 1)
        );
        assert_ne!(candidates(1).next(), candidates(2).next());
    }
}
