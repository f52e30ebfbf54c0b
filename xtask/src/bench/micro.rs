//! Microbenchmarks (cost per syscall, in and out of the watched scope), start-up time,
//! capacity (events/s through the rules with nothing lost) and open → finding latency.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde::Serialize;

use super::{
    Ctx,
    monitors::{self, Monitor},
    proc::{self, monotonic_ns},
    stats::Spread,
    workloads::RESOLVER,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Open,
    Exec,
    Connect,
    Dns,
}

pub const OPS: [Op; 4] = [Op::Open, Op::Exec, Op::Connect, Op::Dns];

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Open => "openat+close",
            Op::Exec => "fork+execve true",
            Op::Connect => "TCP connect+accept on loopback",
            Op::Dns => "DNS query to loopback resolver",
        }
    }

    fn count(self, quick: bool) -> u64 {
        let n = match self {
            Op::Open => 200_000,
            Op::Exec => 2_000,
            Op::Connect => 20_000,
            Op::Dns => 10_000,
        };
        if quick { n / 4 } else { n }
    }

    fn args(self, ctx: &Ctx, n: u64) -> Vec<String> {
        let mut a = vec![n.to_string()];
        match self {
            Op::Open => {
                a.insert(0, "open".into());
                a.push(ctx.open_target.display().to_string());
            }
            Op::Exec => {
                a.insert(0, "exec".into());
                a.push(ctx.true_bin.display().to_string());
            }
            Op::Connect => a.insert(0, "connect".into()),
            Op::Dns => {
                a.insert(0, "dns".into());
                a.push(RESOLVER.into());
            }
        }
        a
    }
}

/// Where the loop runs relative to what the monitor watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The loop is (part of) the watched command.
    In,
    /// The monitor is watching something else while the loop runs beside it.
    Out,
}

#[derive(Clone, Debug, Serialize)]
pub struct MicroResult {
    pub op: &'static str,
    pub monitor: &'static str,
    pub scope: Option<Scope>,
    pub ops_per_run: u64,
    /// Nanoseconds per operation, over the repetitions.
    pub ns_per_op: Spread,
    /// Median over the repetitions of (this run − the bare run made next to it), ns per op.
    pub overhead_ns: Option<f64>,
    /// The same differences' spread.
    pub overhead_spread: Option<Spread>,
    /// Median of the same pairs' ratios.
    pub ratio: Option<f64>,
    /// Monitor-recorded events per operation (from the last repetition), when known.
    pub events_per_op: Option<f64>,
    pub lost: Option<u64>,
}

pub fn parse_loop(stdout: &str) -> Option<(u64, u64, Option<u64>)> {
    let line = stdout.lines().rev().find(|l| l.starts_with("{\"ops\""))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some((
        v["ops"].as_u64()?,
        v["ns"].as_u64()?,
        v["answered"].as_u64(),
    ))
}

/// Something the monitor watches while an out-of-scope loop runs: `sleep` under it.
struct Decoy(Option<std::process::Child>);

impl Decoy {
    fn start(ctx: &Ctx, m: Monitor, s: &monitors::Session) -> Result<Self, String> {
        if !matches!(m, Monitor::Buildwatch) {
            return Ok(Self(None));
        }
        // `sh -c 'echo up; exec sleep 600'`: the line arrives once buildwatch has attached
        // its sensors and started the command.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo up; exec sleep 600"]);
        let mut cmd = monitors::wrap(m, &ctx.env, s, cmd);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "up" {
            let _ = child.kill();
            return Err("the watched decoy did not start".into());
        }
        Ok(Self(Some(child)))
    }

    fn stop(self) {
        if let Some(mut c) = self.0 {
            // SIGTERM is forwarded to the sleep; buildwatch then reports and exits.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// One loop under one monitor and scope: (ns per op, events seen, lost).
fn one(
    ctx: &Ctx,
    op: Op,
    m: Monitor,
    scope: Scope,
    n: u64,
    tag: &str,
) -> Result<(f64, monitors::Seen), String> {
    monitors::wait_released();
    let session = monitors::start(m, &ctx.env, tag).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&ctx.load);
    cmd.args(op.args(ctx, n));
    let (cmd, decoy) = match scope {
        Scope::In => {
            proc::place(&mut cmd, &monitors::placement(m, &ctx.env)).map_err(|e| e.to_string())?;
            (monitors::wrap(m, &ctx.env, &session, cmd), None)
        }
        Scope::Out => (cmd, Some(Decoy::start(ctx, m, &session)?)),
    };
    let out = proc::measure(cmd);
    if let Some(d) = decoy {
        d.stop();
    }
    let seen = monitors::finish(session).map_err(|e| e.to_string())?;
    let out = out.map_err(|e| e.to_string())?;
    let (ops, ns, answered) = parse_loop(&out.stdout).ok_or_else(|| {
        format!(
            "{} under {}: no result ({}): {}",
            op.name(),
            m.name(),
            out.status,
            out.stderr.trim()
        )
    })?;
    if answered.is_some_and(|a| a < ops) {
        return Err(format!(
            "{} of {ops} DNS queries went unanswered under {}",
            ops - answered.unwrap_or(0),
            m.name()
        ));
    }
    Ok((ns as f64 / ops as f64, seen))
}

pub fn micro(ctx: &Ctx, monitors: &[Monitor]) -> Vec<MicroResult> {
    let reps = ctx.reps.unwrap_or(if ctx.quick { 2 } else { 5 });
    let mut cases: Vec<(Op, Monitor, Option<Scope>)> = Vec::new();
    for op in OPS {
        for &m in monitors {
            match m {
                Monitor::Bare => cases.push((op, m, None)),
                // ptrace only slows the processes it traces.
                Monitor::Strace => cases.push((op, m, Some(Scope::In))),
                _ => {
                    cases.push((op, m, Some(Scope::In)));
                    cases.push((op, m, Some(Scope::Out)));
                }
            }
        }
    }
    let mut samples: HashMap<usize, Vec<f64>> = HashMap::new();
    // Per monitored case: its difference from, and ratio to, the bare run made next to it.
    let mut diffs: HashMap<usize, Vec<f64>> = HashMap::new();
    let mut ratios: HashMap<usize, Vec<f64>> = HashMap::new();
    let mut last_seen: HashMap<usize, (u64, monitors::Seen)> = HashMap::new();
    let mut run = |i: usize, rep: usize| -> Option<f64> {
        let (op, m, scope) = cases[i];
        // strace costs ~100× per syscall: fewer iterations, same per-op figure.
        let n = op.count(ctx.quick) / if m == Monitor::Strace { 20 } else { 1 };
        let tag = format!("micro-{}-{rep}", m.name());
        eprintln!(
            "bench: micro {} under {} ({:?}) rep {}",
            op.name(),
            m.name(),
            scope,
            rep + 1
        );
        match one(ctx, op, m, scope.unwrap_or(Scope::In), n, &tag) {
            Ok((ns, seen)) => {
                samples.entry(i).or_default().push(ns);
                last_seen.insert(i, (n, seen));
                Some(ns)
            }
            Err(e) => {
                eprintln!("bench: {e}");
                None
            }
        }
    };
    for rep in 0..reps {
        for op in OPS {
            let bare = cases.iter().position(|c| c.0 == op && c.1 == Monitor::Bare);
            // Each monitored case is paired with a bare run of its own, made just before or
            // just after it (alternating): the machine's drift between the two is small, where
            // one bare run shared by every monitor of a repetition is minutes from some.
            let mut idx: Vec<usize> = (0..cases.len())
                .filter(|&i| cases[i].0 == op && Some(i) != bare)
                .collect();
            let k = rep % idx.len().max(1);
            idx.rotate_left(k);
            let Some(bare) = bare else {
                // Nothing to pair with: each case on its own.
                for i in idx {
                    run(i, rep);
                }
                continue;
            };
            if idx.is_empty() {
                run(bare, rep);
            }
            for (j, i) in idx.into_iter().enumerate() {
                let (b, x) = if (rep + j) % 2 == 0 {
                    let b = run(bare, rep);
                    (b, run(i, rep))
                } else {
                    let x = run(i, rep);
                    (run(bare, rep), x)
                };
                if let (Some(b), Some(x)) = (b, x) {
                    diffs.entry(i).or_default().push(x - b);
                    if b > 0.0 {
                        ratios.entry(i).or_default().push(x / b);
                    }
                }
            }
        }
    }
    let mut out: Vec<MicroResult> = Vec::new();
    for (i, &(op, m, scope)) in cases.iter().enumerate() {
        let Some(s) = samples.get(&i) else { continue };
        let spread = Spread::of(s);
        let overhead = diffs.get(&i).map(|d| Spread::of(d));
        let (n, seen) = last_seen.get(&i).cloned().unwrap_or_default();
        out.push(MicroResult {
            op: op.name(),
            monitor: m.name(),
            scope,
            ops_per_run: n,
            overhead_ns: overhead.as_ref().map(|d| d.median),
            overhead_spread: overhead,
            ratio: ratios.get(&i).map(|r| Spread::of(r).median),
            events_per_op: seen
                .events
                .filter(|_| scope == Some(Scope::In) && n > 0)
                .map(|e| e as f64 / n as f64),
            lost: seen.lost,
            ns_per_op: spread,
        });
    }
    out
}

#[derive(Clone, Debug, Serialize)]
pub struct Startup {
    /// Invocation of `buildwatch run` → the command running, milliseconds; no earlier run's
    /// programs still being released.
    pub buildwatch_ms: Spread,
    /// The same, started 2.5 s after another `buildwatch run` ended: its programs are being
    /// released meanwhile (about 6 s), one RCU grace period each under the kernel's tracepoint
    /// mutex, and attaching waits for that mutex (two watched steps in one CI job). Started at
    /// once instead, it is not slower: the tracepoints are still in use and nothing waits.
    pub back_to_back_ms: Spread,
    /// Invocation → running for the same command started directly (the exec itself).
    pub bare_ms: Spread,
}

pub fn startup(ctx: &Ctx) -> Result<Startup, String> {
    let reps = if ctx.quick { 5 } else { 15 };
    let (mut bw, mut next, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    // Invocation → the probe's first line, its monotonic clock.
    let probe = |watched: bool| -> Result<f64, String> {
        let mut cmd = if watched {
            let mut c = Command::new(&ctx.env.buildwatch);
            c.args(["run", "--"]).arg(&ctx.load);
            c
        } else {
            Command::new(&ctx.load)
        };
        cmd.arg("now");
        let t0 = monotonic_ns();
        let out = proc::measure(cmd).map_err(|e| e.to_string())?;
        let t: u64 = out
            .stdout
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| format!("start-up probe printed nothing: {}", out.stderr.trim()))?;
        Ok(t.saturating_sub(t0) as f64 / 1e6)
    };
    for rep in 0..reps {
        for watched in [rep % 2 == 0, rep % 2 != 0] {
            monitors::wait_released();
            let ms = probe(watched)?;
            if watched { bw.push(ms) } else { bare.push(ms) }
        }
        // 2.5 s after the run just measured (or the bare probe: then a run first).
        if rep % 2 == 0 {
            monitors::wait_released();
            probe(true)?;
        }
        std::thread::sleep(std::time::Duration::from_millis(2500));
        next.push(probe(true)?);
    }
    monitors::wait_released();
    Ok(Startup {
        buildwatch_ms: Spread::of(&bw),
        back_to_back_ms: Spread::of(&next),
        bare_ms: Spread::of(&bare),
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct RateStep {
    /// Opens per second asked of the producers (0: as fast as they can).
    pub target_per_s: u64,
    pub achieved_per_s: f64,
    pub events: u64,
    pub lost: u64,
    /// buildwatch's own CPU per event, microseconds.
    pub monitor_us_per_event: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Capacity {
    pub producers: u64,
    pub seconds_per_step: u64,
    pub steps: Vec<RateStep>,
    /// Highest achieved rate of a step with nothing lost.
    pub max_lossless_per_s: Option<f64>,
}

pub fn capacity(ctx: &Ctx) -> Result<Capacity, String> {
    let secs = if ctx.quick { 2 } else { 4 };
    let producers = 2;
    let targets: &[u64] = if ctx.quick {
        &[100_000, 300_000, 0]
    } else {
        &[100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 0]
    };
    let mut steps = Vec::new();
    for &target in targets {
        eprintln!("bench: capacity at {target}/s (0 = unpaced)");
        monitors::wait_released();
        let session = monitors::start(Monitor::Buildwatch, &ctx.env, "capacity")
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&ctx.load);
        cmd.args([
            "rate",
            &producers.to_string(),
            &target.to_string(),
            &secs.to_string(),
        ])
        .arg(ctx.env.work.join("does-not-exist"));
        let cmd = monitors::wrap(Monitor::Buildwatch, &ctx.env, &session, cmd);
        let out = proc::measure(cmd).map_err(|e| e.to_string())?;
        let seen = monitors::finish(session).map_err(|e| e.to_string())?;
        let (ops, ns, _) = parse_loop(&out.stdout)
            .ok_or_else(|| format!("rate: no result: {}", out.stderr.trim()))?;
        let events = seen.events.unwrap_or(0);
        steps.push(RateStep {
            target_per_s: target,
            achieved_per_s: ops as f64 / (ns as f64 / 1e9),
            events,
            lost: seen.lost.unwrap_or(0),
            monitor_us_per_event: seen
                .monitor_cpu_s
                .filter(|_| events > 0)
                .map(|c| c * 1e6 / events as f64),
        });
    }
    let max_lossless_per_s = steps
        .iter()
        .filter(|s| s.lost == 0)
        .map(|s| s.achieved_per_s)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    Ok(Capacity {
        producers,
        seconds_per_step: secs,
        steps,
        max_lossless_per_s,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub background_events_per_s: u64,
    pub opens: u64,
    pub findings: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Sensitive-file opens, 20 ms apart, each timed from just before the open to the moment its
/// live finding line reaches buildwatch's stderr; optionally with a background event load in
/// the same run.
pub fn latency(ctx: &Ctx, background: u64) -> Result<Latency, String> {
    let n: u64 = if ctx.quick { 50 } else { 250 };
    let dir = ctx.env.work.join("latency-homes");
    for i in 0..n {
        let d = dir.join(format!("h{i}/.aws"));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        std::fs::write(
            d.join("credentials"),
            "[default]\naws_access_key_id = AKIAEXAMPLEBENCH\n",
        )
        .map_err(|e| e.to_string())?;
    }
    let load = shell_quote(&ctx.load);
    let secs = n * 20 / 1000 + 2;
    let script = if background > 0 {
        format!(
            "{load} rate 1 {background} {secs} {} >/dev/null & {load} latency {n} 20 {}; wait",
            shell_quote(&ctx.env.work.join("does-not-exist")),
            shell_quote(&dir)
        )
    } else {
        format!("exec {load} latency {n} 20 {}", shell_quote(&dir))
    };
    monitors::wait_released();
    let mut cmd = Command::new(&ctx.env.buildwatch);
    cmd.args(["run", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel::<(bool, String, u64)>();
    let mut readers = Vec::new();
    for (is_err, pipe) in [
        (
            false,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ),
        (
            true,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ),
    ] {
        let tx = tx.clone();
        let Some(pipe) = pipe else { continue };
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send((is_err, line, monotonic_ns()));
            }
        }));
    }
    drop(tx);
    let (mut opened, mut found) = (HashMap::new(), HashMap::new());
    while let Ok((is_err, line, t)) = rx.recv_timeout(Duration::from_secs(120)) {
        if !is_err {
            // `open I T_NS`
            let mut f = line.split(' ');
            if let (Some("open"), Some(i), Some(ts)) = (f.next(), f.next(), f.next())
                && let (Ok(i), Ok(ts)) = (i.parse::<u64>(), ts.parse::<u64>())
            {
                opened.insert(i, ts);
            }
        } else if line.contains("sensitive-file-read")
            && let Some(i) = line
                .split("/h")
                .last()
                .and_then(|rest| rest.split('/').next())
                .and_then(|i| i.parse::<u64>().ok())
        {
            found.entry(i).or_insert(t);
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let _ = proc::wait4(child.id());
    let mut lat: Vec<f64> = opened
        .iter()
        .filter_map(|(i, t0)| Some(found.get(i)?.saturating_sub(*t0) as f64 / 1e6))
        .collect();
    if lat.is_empty() {
        return Err("no sensitive-file finding arrived".into());
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    Ok(Latency {
        background_events_per_s: background,
        opens: opened.len() as u64,
        findings: found.len() as u64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat[lat.len() - 1],
    })
}

/// Single-quote for sh (the paths are the bench's own, but quote them properly anyway).
fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// Where `true` lives (the exec loop needs an absolute path).
pub fn true_bin() -> PathBuf {
    ["/usr/bin/true", "/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/bin/true"))
}
