//! `--only forward`: forwarding from the agent with the disk spool on, to syslog over TLS (a
//! real rsyslog with gnutls on loopback) and to an HTTP receiver (the tests' SIEM stand-in,
//! counting lines only, on loopback).
//!
//! The agent watches one cgroup where a producer opens a missing file at a steady rate; every
//! event is forwarded. Each repetition pairs the forwarding run with a run of the same load
//! whose agent forwards nothing, so the forwarding's own CPU per record is the difference.
//! Figures: records forwarded per second (until the spool is empty again), the agent's CPU per
//! forwarded record (all of it, and the forwarding's share), and the spool's write
//! amplification (bytes the agent wrote to disk over the bytes of the records).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    Ctx,
    agent::{Agent, cgroup_root, cpu_s, free_port, sum},
    stats::Spread,
};

#[derive(Clone, Debug, Serialize)]
pub struct Forwarding {
    pub transport: &'static str,
    pub rate_per_s: u64,
    pub seconds: u64,
    /// Per repetition: records forwarded (acknowledged), and what the receiver counted.
    pub forwarded: Vec<u64>,
    pub received: Vec<u64>,
    /// Events lost by the agent, and records a full spool refused (all repetitions).
    pub lost: u64,
    pub dropped_full: u64,
    /// Forwarded records per second, from the load's start until the spool was empty.
    pub throughput_per_s: Spread,
    /// The agent's CPU per forwarded record, and its share over the paired run without
    /// forwarding.
    pub cpu_us_per_record: Spread,
    pub forward_cpu_us_per_record: Spread,
    /// The agent's CPU per record over a paired run that writes the same events to a local
    /// file: what forwarding costs beyond having the events as JSON at all.
    pub over_file_cpu_us_per_record: Spread,
    /// Bytes written to disk by the agent / bytes of the records appended to the spool.
    pub write_amplification: Spread,
}

/// A CA and a certificate for localhost/127.0.0.1 signed by it (the tests' script).
fn make_ca(repo: &Path, dir: &Path) -> Result<(), String> {
    let out = Command::new("sh")
        .arg(repo.join("tests/support/make-test-ca.sh"))
        .arg(dir)
        .arg("bench")
        .output()
        .map_err(|e| format!("make-test-ca.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "make-test-ca.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A receiver on loopback: rsyslogd (TLS) or the stand-in (HTTP, counting lines).
struct Receiver {
    child: Child,
    port: u16,
    control: Option<u16>,
    out: PathBuf,
}

impl Receiver {
    fn rsyslog(dir: &Path, ca: &Path, repo: &Path) -> Result<Self, String> {
        let port = free_port()?;
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let out = dir.join("received.log");
        let conf = dir.join("rsyslog.conf");
        let conf_text = std::fs::read_to_string(repo.join("tests/support/rsyslog-tls.conf"))
            .map_err(|e| format!("tests/support/rsyslog-tls.conf: {e}"))?
            .replace("@WORK@", &work.display().to_string())
            .replace("@CA@", &ca.display().to_string())
            .replace("@PORT@", &port.to_string())
            .replace("@OUT@", &out.display().to_string());
        std::fs::write(&conf, conf_text).map_err(|e| e.to_string())?;
        let child = Command::new("/usr/sbin/rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("rsyslogd (scripts/setup.sh installs it): {e}"))?;
        let r = Self {
            child,
            port,
            control: None,
            out,
        };
        r.wait_listening()?;
        Ok(r)
    }

    fn standin(dir: &Path, repo: &Path) -> Result<Self, String> {
        let port_file = dir.join("standin.port");
        let control_file = dir.join("standin.control");
        let _ = std::fs::remove_file(&port_file);
        let _ = std::fs::remove_file(&control_file);
        let child = Command::new("python3")
            .arg(repo.join("tests/support/siem_standin.py"))
            .arg("--port-file")
            .arg(&port_file)
            .arg("--control-port-file")
            .arg(&control_file)
            .arg("--count-only")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let read = |f: &Path| {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|s| s.trim().parse::<u16>().ok())
        };
        loop {
            if let (Some(port), Some(control)) = (read(&port_file), read(&control_file)) {
                return Ok(Self {
                    child,
                    port,
                    control: Some(control),
                    out: PathBuf::new(),
                });
            }
            if Instant::now() > deadline {
                return Err("the stand-in did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_listening(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err("the receiver did not listen".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Records the receiver has (lines of rsyslog's file; the stand-in's count).
    fn received(&self) -> u64 {
        match self.control {
            Some(c) => Command::new("curl")
                .args(["-s", "-m", "5"])
                .arg(format!("http://127.0.0.1:{c}/_control/stats"))
                .output()
                .ok()
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
                .and_then(|v| v["webhook"]["counted"].as_u64())
                .unwrap_or(0),
            None => std::fs::read(&self.out)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
                .unwrap_or(0),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Bytes a process caused to be written to storage (/proc/PID/io).
fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

struct One {
    forwarded: u64,
    received: u64,
    lost: u64,
    dropped_full: u64,
    cpu_s: f64,
    elapsed_s: f64,
    appended_bytes: u64,
    written_bytes: u64,
}

/// One agent run under the load; `outputs` is its outputs list.
fn one(ctx: &Ctx, tag: &str, rate: u64, seconds: u64, outputs: &str) -> Result<One, String> {
    let cg = ctx.env.cgroup.join(format!("{tag}.service"));
    std::fs::create_dir_all(&cg).map_err(|e| e.to_string())?;
    let mount = cgroup_root()?;
    let rel = cg
        .strip_prefix(&mount)
        .map_err(|_| format!("{} is not below {}", cg.display(), mount.display()))?
        .display()
        .to_string();
    let agent = Agent::start_with(ctx, tag, &format!("[\"{rel}\"]"), outputs)?;
    let pid = agent.child.id();
    let (cpu0, io0) = (cpu_s(pid), write_bytes(pid));
    let start = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}; exec {} rate 1 {rate} {seconds} {}",
            cg.join("cgroup.procs").display(),
            ctx.load.display(),
            ctx.env.work.join("does-not-exist").display()
        ))
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("the load failed: {status}"));
    }
    // Until the spool is empty (or 2 minutes).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut m = agent.metrics();
    loop {
        let waiting = sum(&m, "buildwatch_spool_records");
        let judged = sum(&m, "buildwatch_events_total");
        if waiting == 0.0 && judged > 0.0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        m = agent.metrics();
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let cpu = cpu_s(pid) - cpu0;
    let written = write_bytes(pid).saturating_sub(io0);
    agent.stop();
    let _ = std::fs::remove_dir(&cg);
    Ok(One {
        forwarded: sum(&m, "buildwatch_forward_delivered_total") as u64,
        received: 0,
        lost: sum(&m, "buildwatch_events_lost_total") as u64,
        dropped_full: sum(&m, "buildwatch_forward_dropped_total") as u64,
        cpu_s: cpu,
        elapsed_s,
        appended_bytes: sum(&m, "buildwatch_spool_appended_bytes_total") as u64,
        written_bytes: written,
    })
}

pub fn forwarding(ctx: &Ctx, repo: &Path) -> Result<Vec<Forwarding>, String> {
    // Offered above the target: what is forwarded per second is then the forwarding's own
    // pace (the spool takes up the difference and drains after the load).
    let (rate, seconds, reps) = if ctx.quick {
        (150_000, 10, 1)
    } else {
        (150_000, 30, 3)
    };
    let dir = ctx.env.work.join("forward");
    let _ = std::fs::remove_dir_all(&dir);
    let ca = dir.join("ca");
    make_ca(repo, &ca)?;
    let mut out = Vec::new();
    for transport in ["syslog-tls", "http-webhook"] {
        let mut results: Vec<(One, One, One)> = Vec::new();
        for rep in 0..reps {
            eprintln!("bench: forwarding {transport}, {rate}/s for {seconds} s (repetition {rep})");
            let rdir = dir.join(format!("{transport}-{rep}"));
            std::fs::create_dir_all(&rdir).map_err(|e| e.to_string())?;
            let receiver = match transport {
                "syslog-tls" => Receiver::rsyslog(&rdir, &ca, repo)?,
                _ => Receiver::standin(&rdir, repo)?,
            };
            let spool = rdir.join("spool");
            let outputs = match transport {
                "syslog-tls" => format!(
                    "  - type: syslog\n    address: 127.0.0.1:{}\n    server_name: localhost\n    ca: {}\n    spool: {}\n    records: [events]\n",
                    receiver.port,
                    ca.join("ca.pem").display(),
                    spool.display()
                ),
                _ => format!(
                    "  - type: webhook\n    url: http://127.0.0.1:{}/webhook\n    spool: {}\n    records: [events]\n    batch: 2000\n",
                    receiver.port,
                    spool.display()
                ),
            };
            let bare_outputs = format!(
                "  - type: file\n    path: {}\n    records: [findings]\n",
                rdir.join("findings.jsonl").display()
            );
            let file_outputs = format!(
                "  - type: file\n    path: {}\n    records: [events]\n    max_bytes: 4294967296\n",
                rdir.join("events.jsonl").display()
            );
            let bare = one(ctx, "fwd-bare", rate, seconds, &bare_outputs)?;
            let file = one(ctx, "fwd-file", rate, seconds, &file_outputs)?;
            let _ = std::fs::remove_file(rdir.join("events.jsonl"));
            let mut with = one(ctx, "fwd", rate, seconds, &outputs)?;
            // Let the receiver write out what it has.
            std::thread::sleep(Duration::from_secs(2));
            with.received = receiver.received();
            drop(receiver);
            results.push((with, bare, file));
        }
        let per = |f: &dyn Fn(&One, &One, &One) -> f64| -> Spread {
            Spread::of(
                &results
                    .iter()
                    .map(|(w, b, fl)| f(w, b, fl))
                    .collect::<Vec<_>>(),
            )
        };
        out.push(Forwarding {
            transport,
            rate_per_s: rate,
            seconds,
            forwarded: results.iter().map(|(w, ..)| w.forwarded).collect(),
            received: results.iter().map(|(w, ..)| w.received).collect(),
            lost: results
                .iter()
                .map(|(w, b, f)| w.lost + b.lost + f.lost)
                .sum(),
            dropped_full: results.iter().map(|(w, ..)| w.dropped_full).sum(),
            throughput_per_s: per(&|w, _, _| w.forwarded as f64 / w.elapsed_s),
            cpu_us_per_record: per(&|w, _, _| w.cpu_s * 1e6 / w.forwarded.max(1) as f64),
            forward_cpu_us_per_record: per(&|w, b, _| {
                (w.cpu_s - b.cpu_s) * 1e6 / w.forwarded.max(1) as f64
            }),
            over_file_cpu_us_per_record: per(&|w, _, f| {
                (w.cpu_s - f.cpu_s) * 1e6 / w.forwarded.max(1) as f64
            }),
            write_amplification: per(&|w, _, _| {
                w.written_bytes as f64 / w.appended_bytes.max(1) as f64
            }),
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}
