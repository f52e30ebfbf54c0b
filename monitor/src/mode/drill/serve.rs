//! The drill's loopback servers: HTTP for the downloads, and a UDP sink on port 53 that the
//! DNS leak's queries go to (and that answers nothing, so no query goes further).

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};

/// Where the DNS leak sends its queries: port 53 of a loopback address of the drill's own,
/// 127.0.79.53 or the next free one (drills side by side), so that no resolver of the
/// machine's gets them.
const DNS_SINK_FIRST: u8 = 53;
const DNS_SINK_TRIES: u8 = 64;

/// Requests answered in all; the drill makes four.
const MAX_REQUESTS: u64 = 256;

pub struct Servers {
    pub http: SocketAddr,
    pub dns_sink: Ipv4Addr,
    stop: Arc<AtomicBool>,
    pub requests: Arc<AtomicU64>,
    pub dns_queries: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    pub fn start(payload: &'static str, tool: &'static str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let dns_queries = Arc::new(AtomicU64::new(0));
        let http = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1")?;
        http.set_nonblocking(true)?;
        let addr = http.local_addr()?;
        // The sink must be the socket that gets the queries: if something else holds port 53
        // there, the drill stops rather than send DNS queries somebody might forward.
        let mut bound = None;
        let mut last_err = None;
        for i in 0..DNS_SINK_TRIES {
            let a = Ipv4Addr::new(127, 0, 79, DNS_SINK_FIRST + i);
            match UdpSocket::bind((a, 53)) {
                Ok(s) => {
                    bound = Some((s, a));
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let (sink, dns_sink) = bound.with_context(|| {
            format!(
                "binding the drill's DNS sink on port 53 of 127.0.79.{DNS_SINK_FIRST}–{} (is buildwatch root?): {}",
                DNS_SINK_FIRST + DNS_SINK_TRIES - 1,
                last_err.map_or(String::new(), |e| e.to_string())
            )
        })?;
        sink.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut threads = Vec::new();
        {
            let (stop, requests) = (stop.clone(), requests.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match http.accept() {
                        Ok((mut s, _)) if requests.load(Ordering::Relaxed) < MAX_REQUESTS => {
                            requests.fetch_add(1, Ordering::Relaxed);
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                            let mut buf = [0u8; 4096];
                            let mut got = 0;
                            while got < buf.len() {
                                match s.read(&mut buf[got..]) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => got += n,
                                }
                                if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                                    break;
                                }
                            }
                            let head = String::from_utf8_lossy(&buf[..got]);
                            let path = head.split_whitespace().nth(1).unwrap_or("");
                            let (status, body) = match path {
                                "/payload.sh" => ("200 OK", payload),
                                "/tool" => ("200 OK", tool),
                                _ => ("404 Not Found", ""),
                            };
                            let _ = write!(
                                s,
                                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                        }
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }));
        }
        {
            let (stop, n) = (stop.clone(), dns_queries.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    if sink.recv_from(&mut buf).is_ok() {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        Ok(Self {
            http: addr,
            dns_sink,
            stop,
            requests,
            dns_queries,
            threads,
        })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
