//! `--only agent`: the agent over a long run, and what it costs the rest of the host.
//!
//! - **Soak.** `buildwatch agent` watches one cgroup where two producers open a missing file
//!   at a steady rate (30 million events in the full run), beside a loop that starts a short
//!   process and reads a fake credential under a new name every few milliseconds (process
//!   churn, and a stream of distinct findings for the windows and caps to bound). The agent's
//!   RSS is sampled every second; after warm-up (the first fifth of the run) it should stay
//!   within 10%.
//! - **Host-wide cost.** The agent watching the whole host (`scope: host`), against no agent,
//!   for a process the rules do not care about: openat+close of an ordinary file, and
//!   fork+execve of `true`, in tight loops; each repetition pairs an agent run with its own
//!   bare run.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{Ctx, micro::parse_loop, stats::Spread};

#[derive(Clone, Debug, Serialize)]
pub struct RssSample {
    pub t_s: u64,
    pub rss_mb: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Soak {
    pub rate_per_s: u64,
    pub seconds: u64,
    /// Events the agent judged (its metrics), and lost.
    pub events: u64,
    pub lost: u64,
    pub findings: u64,
    pub rss: Vec<RssSample>,
    /// After warm-up: lowest and highest RSS, and (max - min) / min.
    pub warm_min_mb: f64,
    pub warm_max_mb: f64,
    pub warm_spread_pct: f64,
    pub agent_cpu_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostCost {
    pub op: &'static str,
    pub ops_per_run: u64,
    pub bare_ns: Spread,
    pub agent_ns: Spread,
    /// Each repetition's agent run over its own bare run.
    pub ratio: Spread,
}

/// A free loopback port (bound, then released for the agent).
pub(super) fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

pub(super) struct Agent {
    pub(super) child: Child,
    port: u16,
}

impl Agent {
    /// Start the agent with `scope` (YAML) and wait until it is watching.
    fn start(ctx: &Ctx, tag: &str, scope: &str) -> Result<Self, String> {
        let dir = ctx.env.work.join(format!("agent-{tag}"));
        let outputs = format!(
            "  - type: file\n    path: {}\n    records: [findings]\n",
            dir.join("findings.jsonl").display()
        );
        Self::start_with(ctx, tag, scope, &outputs)
    }

    /// [`Agent::start`] with these outputs (YAML list items).
    pub(super) fn start_with(
        ctx: &Ctx,
        tag: &str,
        scope: &str,
        outputs: &str,
    ) -> Result<Self, String> {
        let port = free_port()?;
        let dir = ctx.env.work.join(format!("agent-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let cfg = dir.join("agent.yaml");
        std::fs::write(
            &cfg,
            format!(
                "scope: {scope}\nlisten: 127.0.0.1:{port}\nfindings:\n  window_secs: 10\n  max_per_rule: 50\noutputs:\n{outputs}"
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut child = Command::new(&ctx.env.buildwatch)
            .args(["agent", "--config"])
            .arg(&cfg)
            .arg("--pidfile")
            .arg(dir.join("agent.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let err = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.contains("buildwatch: agent ") => break,
                Ok(_) => {}
                Err(_) if Instant::now() > deadline => {
                    let _ = child.kill();
                    return Err("the agent did not start".into());
                }
                Err(_) => {}
            }
        }
        Ok(Self { child, port })
    }

    pub(super) fn metrics(&self) -> String {
        Command::new("curl")
            .args(["-s", "-m", "5"])
            .arg(format!("http://127.0.0.1:{}/metrics", self.port))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn rss_mb(&self) -> Option<f64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = s
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }

    pub(super) fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The sum of a metric's samples (all label sets).
pub(super) fn sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

pub fn soak(ctx: &Ctx) -> Result<Soak, String> {
    let (rate, seconds) = if ctx.quick {
        (100_000, 30)
    } else {
        (200_000, 150)
    };
    let cg = ctx.env.cgroup.join("soak.service");
    std::fs::create_dir_all(&cg).map_err(|e| e.to_string())?;
    let mount = cgroup_root()?;
    let rel = cg
        .strip_prefix(&mount)
        .map_err(|_| format!("{} is not below {}", cg.display(), mount.display()))?
        .display()
        .to_string();
    let agent = Agent::start(ctx, "soak", &format!("[\"{rel}\"]"))?;
    let cpu_before = cpu_s(agent.child.id());
    let procs = cg.join("cgroup.procs");
    let creds = ctx.env.work.join("soak-creds");
    std::fs::create_dir_all(&creds).map_err(|e| e.to_string())?;
    eprintln!("bench: agent soak, {rate}/s for {seconds} s");
    let load = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}; exec {} rate 2 {rate} {seconds} {}",
            procs.display(),
            ctx.load.display(),
            ctx.env.work.join("does-not-exist").display()
        ))
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Churn: a short process and a credential read under a new name, about 50 times a second.
    let churn = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {procs}; i=0; end=$(( $(date +%s) + {seconds} )); \
             while [ $(date +%s) -lt $end ]; do i=$((i+1)); d={creds}/h$((i % 5000))/.aws; \
             mkdir -p $d; echo x > $d/credentials; cat $d/credentials > /dev/null; sleep 0.02; done",
            procs = procs.display(),
            creds = creds.display()
        ))
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut rss = Vec::new();
    let mut load = load;
    let mut churn = churn;
    while start.elapsed() < Duration::from_secs(seconds + 2) {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(mb) = agent.rss_mb() {
            rss.push(RssSample {
                t_s: start.elapsed().as_secs(),
                rss_mb: mb,
            });
        }
        if load.try_wait().ok().flatten().is_some() && churn.try_wait().ok().flatten().is_some() {
            break;
        }
    }
    let _ = load.wait();
    let _ = churn.kill();
    let _ = churn.wait();
    // Let the stage catch up, then read its counts.
    std::thread::sleep(Duration::from_secs(3));
    let m = agent.metrics();
    let agent_cpu_s = cpu_s(agent.child.id()) - cpu_before;
    agent.stop();
    let _ = std::fs::remove_dir(&cg);
    let warm: Vec<f64> = rss.iter().skip(rss.len() / 5).map(|s| s.rss_mb).collect();
    let (min, max) = warm
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
    Ok(Soak {
        rate_per_s: rate,
        seconds,
        events: sum(&m, "buildwatch_events_total") as u64,
        lost: sum(&m, "buildwatch_events_lost_total") as u64,
        findings: sum(&m, "buildwatch_findings_total") as u64,
        warm_min_mb: min,
        warm_max_mb: max,
        warm_spread_pct: if min > 0.0 {
            (max - min) / min * 100.0
        } else {
            0.0
        },
        rss,
        agent_cpu_s,
    })
}

/// user+system CPU seconds of a process, from /proc/PID/stat.
pub(super) fn cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

pub(super) fn cgroup_root() -> Result<PathBuf, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    info.lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|r| r.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .ok_or_else(|| "no cgroup v2 mount".into())
}

pub fn host_cost(ctx: &Ctx) -> Result<Vec<HostCost>, String> {
    let reps = if ctx.quick { 3 } else { 7 };
    let ops: [(&str, Vec<String>, u64); 2] = [
        (
            "openat+close",
            vec![
                "open".into(),
                String::new(),
                ctx.open_target.display().to_string(),
            ],
            if ctx.quick { 200_000 } else { 1_000_000 },
        ),
        (
            "fork+execve true",
            vec![
                "exec".into(),
                String::new(),
                ctx.true_bin.display().to_string(),
            ],
            if ctx.quick { 500 } else { 2_000 },
        ),
    ];
    let mut out = Vec::new();
    for (op, args, n) in ops {
        let mut bare = Vec::new();
        let mut with = Vec::new();
        let mut ratio = Vec::new();
        for rep in 0..reps {
            eprintln!("bench: agent host-wide cost, {op}, rep {}", rep + 1);
            let mut args = args.clone();
            args[1] = n.to_string();
            let run = |ctx: &Ctx| -> Result<f64, String> {
                let o = Command::new(&ctx.load)
                    .args(&args)
                    .output()
                    .map_err(|e| e.to_string())?;
                let (ops, ns, _) = parse_loop(&String::from_utf8_lossy(&o.stdout))
                    .ok_or_else(|| format!("{op}: no result"))?;
                Ok(ns as f64 / ops.max(1) as f64)
            };
            // The previous repetition's agent may still be releasing its programs (host-wide,
            // not inert): the bare run waits for them to be gone.
            super::monitors::wait_released();
            let b = run(ctx)?;
            let agent = Agent::start(ctx, "host", "host")?;
            let a = run(ctx);
            agent.stop();
            let a = a?;
            bare.push(b);
            with.push(a);
            ratio.push(a / b);
        }
        out.push(HostCost {
            op,
            ops_per_run: n,
            bare_ns: Spread::of(&bare),
            agent_ns: Spread::of(&with),
            ratio: Spread::of(&ratio),
        });
    }
    Ok(out)
}
