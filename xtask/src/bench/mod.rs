//! `cargo xtask bench [--quick] [--reps N] [--only SECTIONS] [--monitors LIST] [--publish]`: what
//! buildwatch costs a build, measured in one run side by side with bare runs and the
//! alternatives (strace, bpftrace, auditd), alternating the monitors between repetitions.
//! Writes target/bench/results.json and results.md; `--publish` also puts them in
//! docs/benchmarks.md and docs/benchmarks.json. Needs root. Traffic stays on loopback: the
//! builds are generated locally and their packages served from 127.0.0.1.

mod agent;
mod forward;
mod micro;
mod monitors;
mod proc;
mod render;
mod stats;
mod workloads;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use monitors::{Monitor, Seen};
use serde::Serialize;
use stats::Spread;
use workloads::{BUILDS, Build, Projects};

pub struct Ctx {
    pub quick: bool,
    /// `--reps N`: the paired repetitions of the builds and the microbenchmarks.
    pub reps: Option<usize>,
    pub env: monitors::Env,
    pub load: PathBuf,
    pub open_target: PathBuf,
    pub true_bin: PathBuf,
}

const SECTIONS: [&str; 7] = [
    "startup", "micro", "capacity", "latency", "builds", "agent", "forward",
];

struct Options {
    quick: bool,
    reps: Option<usize>,
    publish: bool,
    sections: Vec<String>,
    monitors: Vec<Monitor>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        reps: None,
        publish: false,
        sections: SECTIONS.iter().map(|s| s.to_string()).collect(),
        monitors: monitors::ALL.to_vec(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--publish" => o.publish = true,
            "--reps" => {
                let v = it.next().ok_or("--reps needs a number")?;
                o.reps = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=200).contains(n))
                        .ok_or(format!("--reps {v}: a number from 1 to 200"))?,
                );
            }
            "--only" => {
                let v = it.next().ok_or("--only needs a list")?;
                o.sections = v.split(',').map(str::to_owned).collect();
                if let Some(bad) = o.sections.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                    return Err(format!(
                        "unknown section `{bad}` (sections: {})",
                        SECTIONS.join(",")
                    ));
                }
            }
            "--monitors" => {
                let v = it.next().ok_or("--monitors needs a list")?;
                o.monitors = v
                    .split(',')
                    .map(|m| Monitor::parse(m).ok_or(format!("unknown monitor `{m}`")))
                    .collect::<Result<_, _>>()?;
                if !o.monitors.contains(&Monitor::Bare) {
                    o.monitors.insert(0, Monitor::Bare);
                }
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(o)
}

pub fn main(args: &[String]) -> ExitCode {
    // `cargo xtask` runs this under cargo, which puts its dylib search path (the target's
    // deps and the toolchain's lib) in LD_LIBRARY_PATH. Inherited by the builds, it made
    // every dynamically linked exec look for its libraries there first: failed opens a real
    // CI build does not make, each an event to every monitor (up to 85% of a `make -j2`'s).
    // SAFETY: no other thread runs yet.
    unsafe { std::env::remove_var("LD_LIBRARY_PATH") };
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "xtask bench: {e}\nusage: cargo xtask bench [--quick] [--reps N] [--only {}] \
                 [--monitors bare,buildwatch,strace,bpftrace,auditd] [--publish]",
                SECTIONS.join(",")
            );
            return ExitCode::from(2);
        }
    };
    match bench(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Serialize)]
struct MonitorInfo {
    name: &'static str,
    setup: String,
    /// Why it was left out, when it was.
    unavailable: Option<String>,
}

#[derive(Serialize)]
pub struct BuildResult {
    build: &'static str,
    description: String,
    monitor: &'static str,
    wall_s: Spread,
    cpu_s: Spread,
    /// Median over repetitions of (this monitor's time / bare's time in the same repetition):
    /// pairing runs made minutes apart cancels the machine's drift between repetitions.
    wall_ratio: Option<f64>,
    cpu_ratio: Option<f64>,
    /// Those per-repetition ratios: median, min, max.
    wall_ratios: Spread,
    cpu_ratios: Spread,
    /// What the monitor recorded in the last repetition.
    seen: Seen,
    /// Repetitions that failed (non-zero exit), with the reason.
    failures: Vec<String>,
}

#[derive(Serialize)]
pub struct Results {
    schema: u32,
    quick: bool,
    /// `--reps N`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    reps: Option<usize>,
    machine: Machine,
    monitors: Vec<MonitorInfo>,
    sizes: workloads::Sizes,
    startup: Option<micro::Startup>,
    micro: Vec<micro::MicroResult>,
    capacity: Option<micro::Capacity>,
    latency: Vec<micro::Latency>,
    builds: Vec<BuildResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_soak: Option<agent::Soak>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    agent_host_cost: Vec<agent::HostCost>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    forwarding: Vec<forward::Forwarding>,
    targets: Vec<render::Target>,
    errors: Vec<String>,
}

#[derive(Serialize)]
pub struct Machine {
    date: String,
    kernel: String,
    cpu: String,
    cpus: usize,
    memory_gib: f64,
    buildwatch: String,
}

fn machine(repo: &Path) -> Machine {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cmd = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .current_dir(repo)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    Machine {
        date: cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        kernel: cmd("uname", &["-r"]),
        cpu: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_owned(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        buildwatch: cmd("git", &["describe", "--always", "--dirty"]),
    }
}

fn cargo_build(repo: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("bench: building buildwatch and bw-load (release)");
    let st = Command::new(cargo)
        .current_dir(repo)
        .args([
            "build",
            "--release",
            "--package",
            "monitor",
            "--bin",
            "buildwatch",
        ])
        .args(["--package", "xtask", "--bin", "bw-load"])
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("cargo build --release failed".into());
    }
    Ok(())
}

/// The bench's own cgroup v2 (bpftrace filters on it), found through /proc/mounts.
fn bench_cgroup() -> Result<PathBuf, String> {
    let mounts = fs::read_to_string("/proc/mounts").map_err(|e| e.to_string())?;
    let root = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .ok_or("no cgroup2 mount in /proc/mounts")?;
    let cg = root.join("buildwatch-bench");
    match fs::create_dir(&cg) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(format!("creating {}: {e}", cg.display()))
        }
        _ => Ok(cg),
    }
}

fn ensure_tracefs() {
    let t = Path::new("/sys/kernel/tracing");
    if !t.join("events").exists() {
        let _ = Command::new("mount")
            .args(["-t", "tracefs", "tracefs"])
            .arg(t)
            .status();
    }
}

fn bench(opts: &Options) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root (buildwatch loads eBPF; the alternatives need root too)".into());
    }
    // Started through sudo, buildwatch would build as the invoking user while the bare runs
    // build as root: every monitor must run the same build.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::remove_var("SUDO_UID") };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .map_err(|e| e.to_string())?;
    // Described before the build: the binaries measured are the tree as it was then (edits
    // made while the bench runs do not reach them and must not mark the run dirty).
    let described = machine(&repo);
    cargo_build(&repo)?;
    let out_dir = repo.join("target/bench");
    let work = out_dir.join("work");
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    ensure_tracefs();
    let open_target = work.join("open-target");
    fs::write(&open_target, "x").map_err(|e| e.to_string())?;
    let ctx = Ctx {
        quick: opts.quick,
        reps: opts.reps,
        env: monitors::Env {
            buildwatch: repo.join("target/release/buildwatch"),
            work: work.clone(),
            cgroup: bench_cgroup()?,
        },
        load: repo.join("target/release/bw-load"),
        open_target,
        true_bin: micro::true_bin(),
    };
    let mut errors = Vec::new();
    let mut infos = Vec::new();
    let mut active = Vec::new();
    for &m in &opts.monitors {
        let unavailable = monitors::probe(m, &ctx.env).err();
        if let Some(why) = &unavailable {
            eprintln!("bench: {} left out: {why}", m.name());
        } else {
            active.push(m);
        }
        infos.push(MonitorInfo {
            name: m.name(),
            setup: m.setup(),
            unavailable,
        });
    }
    let sizes = if opts.quick {
        workloads::QUICK
    } else {
        workloads::FULL
    };
    let wants = |s: &str| opts.sections.iter().any(|x| x == s);
    let _resolver = if wants("micro") {
        Some(workloads::resolver(&work).map_err(|e| e.to_string())?)
    } else {
        None
    };

    let startup = if wants("startup") {
        micro::startup(&ctx)
            .map_err(|e| errors.push(format!("startup: {e}")))
            .ok()
    } else {
        None
    };
    let micro = if wants("micro") {
        micro::micro(&ctx, &active)
    } else {
        Vec::new()
    };
    let capacity = if wants("capacity") {
        micro::capacity(&ctx)
            .map_err(|e| errors.push(format!("capacity: {e}")))
            .ok()
    } else {
        None
    };
    let mut latency = Vec::new();
    if wants("latency") {
        for bg in [0, 100_000] {
            match micro::latency(&ctx, bg) {
                Ok(l) => latency.push(l),
                Err(e) => errors.push(format!("latency ({bg}/s background): {e}")),
            }
        }
    }
    let builds = if wants("builds") {
        let projects =
            Projects::prepare(&work.join("projects"), sizes).map_err(|e| e.to_string())?;
        builds(&ctx, &projects, &active, &mut errors)?
    } else {
        Vec::new()
    };
    let agent_soak = if wants("agent") {
        agent::soak(&ctx)
            .map_err(|e| errors.push(format!("agent soak: {e}")))
            .ok()
    } else {
        None
    };
    let agent_host_cost = if wants("agent") {
        agent::host_cost(&ctx).unwrap_or_else(|e| {
            errors.push(format!("agent host-wide cost: {e}"));
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let forwarding = if wants("forward") {
        forward::forwarding(&ctx, &repo).unwrap_or_else(|e| {
            errors.push(format!("forwarding: {e}"));
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let _ = fs::remove_dir(&ctx.env.cgroup);

    let mut results = Results {
        schema: 1,
        quick: opts.quick,
        reps: opts.reps,
        machine: described,
        monitors: infos,
        sizes,
        startup,
        micro,
        capacity,
        latency,
        builds,
        agent_soak,
        agent_host_cost,
        forwarding,
        targets: Vec::new(),
        errors,
    };
    results.targets = render::targets(&results);
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    let md = render::markdown(&results);
    fs::write(out_dir.join("results.json"), &json).map_err(|e| e.to_string())?;
    fs::write(out_dir.join("results.md"), &md).map_err(|e| e.to_string())?;
    eprintln!("{md}");
    eprintln!(
        "bench: wrote {0}/results.json and {0}/results.md",
        out_dir.display()
    );
    if opts.publish {
        render::publish(&repo, &json, &md)?;
        eprintln!("bench: updated docs/benchmarks.md and docs/benchmarks.json");
    }
    Ok(())
}

fn builds(
    ctx: &Ctx,
    projects: &Projects,
    active: &[Monitor],
    errors: &mut Vec<String>,
) -> Result<Vec<BuildResult>, String> {
    // Seven paired repetitions in a full run (their median ratio resolves about 2% on a quiet
    // machine), unless `--reps` says otherwise.
    let reps = ctx.reps.unwrap_or(if ctx.quick { 2 } else { 7 });
    let registry = workloads::registry(projects).map_err(|e| e.to_string())?;
    // (build, monitor) → (repetition, sample)
    let mut wall: std::collections::HashMap<(usize, usize), Vec<(usize, f64)>> = Default::default();
    let mut cpu: std::collections::HashMap<(usize, usize), Vec<(usize, f64)>> = Default::default();
    let mut seen: std::collections::HashMap<(usize, usize), Seen> = Default::default();
    let mut failures: std::collections::HashMap<(usize, usize), Vec<String>> = Default::default();
    // One untimed warm-up of each build (page cache, pyc of pip itself, ...).
    for (bi, &b) in BUILDS.iter().enumerate() {
        eprintln!("bench: warm-up {}", b.name());
        if let Err(e) = one_build(ctx, projects, b, Monitor::Bare, registry.port, "warmup") {
            errors.push(format!("{} warm-up: {e}", b.name()));
            failures.entry((bi, 0)).or_default().push(e);
        }
    }
    let bare_i = active.iter().position(|&m| m == Monitor::Bare);
    // (build, monitor) → the wall time of the bare run made next to each of its runs.
    let mut partner_wall: std::collections::HashMap<(usize, usize), Vec<(usize, f64)>> =
        Default::default();
    let mut partner_cpu: std::collections::HashMap<(usize, usize), Vec<(usize, f64)>> =
        Default::default();
    let mut run = |bi: usize, b: Build, mi: usize, rep: usize| -> Option<(f64, f64)> {
        let m = active[mi];
        eprintln!(
            "bench: {} under {} rep {}/{reps}",
            b.name(),
            m.name(),
            rep + 1
        );
        let tag = format!("build-{bi}-{}", m.name());
        match one_build(ctx, projects, b, m, registry.port, &tag) {
            Ok((o, s)) => {
                let c = o.cpu_s
                    + s.monitor_cpu_s
                        .filter(|_| matches!(m, Monitor::Bpftrace | Monitor::Auditd))
                        .unwrap_or(0.0);
                wall.entry((bi, mi)).or_default().push((rep, o.wall_s));
                cpu.entry((bi, mi)).or_default().push((rep, c));
                seen.insert((bi, mi), s);
                Some((o.wall_s, c))
            }
            Err(e) => {
                eprintln!("bench: {e}");
                failures.entry((bi, mi)).or_default().push(e);
                None
            }
        }
    };
    for rep in 0..reps {
        for (bi, &b) in BUILDS.iter().enumerate() {
            // Each monitor's build is paired with a bare build of its own, made just before or
            // just after it (alternating): one bare build shared by a repetition's monitors is
            // minutes away from some of them, and this machine drifts by more than 2% in that
            // time.
            let mut order: Vec<usize> = (0..active.len()).filter(|&i| Some(i) != bare_i).collect();
            let k = rep % order.len().max(1);
            order.rotate_left(k);
            if order.is_empty() {
                if let Some(bare) = bare_i {
                    run(bi, b, bare, rep);
                }
                continue;
            }
            for (j, mi) in order.into_iter().enumerate() {
                let Some(bare) = bare_i else {
                    run(bi, b, mi, rep);
                    continue;
                };
                let base = if (rep + j) % 2 == 0 {
                    let base = run(bi, b, bare, rep);
                    run(bi, b, mi, rep);
                    base
                } else {
                    run(bi, b, mi, rep);
                    run(bi, b, bare, rep)
                };
                if let Some((w, c)) = base {
                    partner_wall.entry((bi, mi)).or_default().push((rep, w));
                    partner_cpu.entry((bi, mi)).or_default().push((rep, c));
                }
            }
        }
    }
    let mut out = Vec::new();
    let none = Vec::new();
    for (bi, &b) in BUILDS.iter().enumerate() {
        for (mi, &m) in active.iter().enumerate() {
            let w = wall.get(&(bi, mi)).unwrap_or(&none);
            let c = cpu.get(&(bi, mi)).unwrap_or(&none);
            let (wall_ratios, cpu_ratios) = if Some(mi) == bare_i {
                // Bare against itself.
                let ones = |v: &Vec<(usize, f64)>| Spread::of(&vec![1.0; v.len()]);
                (ones(w), ones(c))
            } else {
                (
                    stats::paired_ratios(w, partner_wall.get(&(bi, mi)).unwrap_or(&none)),
                    stats::paired_ratios(c, partner_cpu.get(&(bi, mi)).unwrap_or(&none)),
                )
            };
            out.push(BuildResult {
                build: b.name(),
                description: b.describe(&projects.sizes),
                monitor: m.name(),
                wall_ratio: (wall_ratios.n > 0).then_some(wall_ratios.median),
                cpu_ratio: (cpu_ratios.n > 0).then_some(cpu_ratios.median),
                wall_ratios,
                cpu_ratios,
                wall_s: Spread::of(&w.iter().map(|s| s.1).collect::<Vec<_>>()),
                cpu_s: Spread::of(&c.iter().map(|s| s.1).collect::<Vec<_>>()),
                seen: seen.remove(&(bi, mi)).unwrap_or_default(),
                failures: failures.remove(&(bi, mi)).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

fn one_build(
    ctx: &Ctx,
    projects: &Projects,
    b: Build,
    m: Monitor,
    port: u16,
    tag: &str,
) -> Result<(proc::Outcome, Seen), String> {
    projects.reset(b).map_err(|e| e.to_string())?;
    monitors::wait_released();
    let mut cmd = projects.command(b, port).map_err(|e| e.to_string())?;
    proc::place(&mut cmd, &monitors::placement(m, &ctx.env)).map_err(|e| e.to_string())?;
    let session = monitors::start(m, &ctx.env, tag).map_err(|e| e.to_string())?;
    let cmd = monitors::wrap(m, &ctx.env, &session, cmd);
    let out = proc::measure(cmd);
    let seen = monitors::finish(session);
    let out = out.map_err(|e| e.to_string())?;
    if out.status != 0 {
        return Err(format!(
            "{} under {} exited {}: {}",
            b.name(),
            m.name(),
            out.status,
            tail(&out.stderr)
        ));
    }
    Ok((out, seen.map_err(|e| e.to_string())?))
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}
