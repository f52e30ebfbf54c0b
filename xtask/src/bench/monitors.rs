//! The monitors a build is measured under: none (bare), buildwatch, and the alternatives a
//! user would pick instead, each set up to watch the same syscalls of the same process tree.
//!
//! - `strace -f` with the syscall set buildwatch senses (the approach of ptrace sandboxes).
//! - bpftrace with the equivalent tracepoints, filtered to a cgroup the command joins.
//! - auditd with the equivalent syscall rules, selecting the tree by its audit login uid
//!   (audit has no cgroup or process-tree filter; the login uid is inherited).
//!
//! None of the alternatives evaluates rules or looks at DNS payloads: they only record.

use std::{
    fs,
    io::{self, Read},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::proc::{Placement, proc_usage};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Monitor {
    Bare,
    Buildwatch,
    Strace,
    Bpftrace,
    Auditd,
}

pub const ALL: [Monitor; 5] = [
    Monitor::Bare,
    Monitor::Buildwatch,
    Monitor::Strace,
    Monitor::Bpftrace,
    Monitor::Auditd,
];

/// Login uid that marks the audited tree.
const AUDIT_UID: u32 = 4_242_424;
const AUDIT_KEY: &str = "bwbench";

/// The syscalls buildwatch senses, for strace and audit.
const SYSCALLS: &[&str] = &[
    "execve",
    "execveat",
    "open",
    "openat",
    "openat2",
    "creat",
    "chdir",
    "fchdir",
    "connect",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
];

impl Monitor {
    pub fn name(self) -> &'static str {
        match self {
            Monitor::Bare => "bare",
            Monitor::Buildwatch => "buildwatch",
            Monitor::Strace => "strace",
            Monitor::Bpftrace => "bpftrace",
            Monitor::Auditd => "auditd",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL.into_iter().find(|m| m.name() == s)
    }

    /// What this monitor does, for the report.
    pub fn setup(self) -> String {
        match self {
            Monitor::Bare => "no monitor".into(),
            Monitor::Buildwatch => "`buildwatch run` with the default rules and policy".into(),
            Monitor::Strace => format!("`strace -f -qq -o FILE -e trace={}`", SYSCALLS.join(",")),
            Monitor::Bpftrace => "sys_enter/exit tracepoints of the same syscalls \
                                  plus sched fork/exit, filtered by cgroup, printf to a file"
                .into(),
            Monitor::Auditd => "auditd (-n, own config) with `-a always,exit -S <same syscalls> \
                                -F auid=<tree's login uid>`"
                .into(),
        }
    }
}

/// Paths the monitors need.
pub struct Env {
    pub buildwatch: PathBuf,
    pub work: PathBuf,
    /// The bench's cgroup (v2), which commands under bpftrace join.
    pub cgroup: PathBuf,
}

/// A monitor's state for one measured command.
pub enum Session {
    None,
    Buildwatch { report: PathBuf },
    Strace { out: PathBuf },
    Daemon(Daemon),
}

pub struct Daemon {
    kind: Monitor,
    child: Child,
    out: PathBuf,
    /// Audit's kernel-side lost counter when the session began.
    audit_lost_before: u64,
}

/// What a monitor itself recorded and cost, where it can be told apart from the build.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Seen {
    pub events: Option<u64>,
    pub lost: Option<u64>,
    /// CPU seconds of a separate monitor process (bpftrace, auditd); buildwatch's own share.
    pub monitor_cpu_s: Option<f64>,
    pub monitor_rss_kib: Option<u64>,
    pub findings: Option<u64>,
}

/// Check a monitor can run here; the error says why not.
pub fn probe(m: Monitor, env: &Env) -> Result<(), String> {
    let tool = match m {
        Monitor::Bare => return Ok(()),
        Monitor::Buildwatch => {
            return if env.buildwatch.exists() {
                Ok(())
            } else {
                Err(format!("{} is missing", env.buildwatch.display()))
            };
        }
        Monitor::Strace => "strace",
        Monitor::Bpftrace => "bpftrace",
        Monitor::Auditd => "auditd",
    };
    if which(tool).is_none() {
        return Err(format!(
            "{tool} is not installed (sudo ./scripts/setup.sh --bench)"
        ));
    }
    // A real start and stop: the tool may be installed but not work on this kernel.
    let s = start(m, env, "probe").map_err(|e| e.to_string())?;
    let mut cmd = Command::new("true");
    let at = placement(m, env);
    super::proc::place(&mut cmd, &at).map_err(|e| e.to_string())?;
    let ran = super::proc::measure(wrap(m, env, &s, cmd));
    finish(s).map_err(|e| e.to_string())?;
    let o = ran.map_err(|e| e.to_string())?;
    if o.status != 0 {
        return Err(format!(
            "`true` under {} exited {}: {}",
            m.name(),
            o.status,
            o.stderr.trim()
        ));
    }
    Ok(())
}

/// Wait (up to 30 s) until no earlier buildwatch run is still releasing its programs (its
/// `bw-detach` process). Until then they are attached: every openat on the machine pays their
/// out-of-scope cost, and a run started meanwhile waits on the kernel's tracepoint mutex while
/// they are released (a separate figure, `back_to_back_ms`).
pub fn wait_released() {
    let start = std::time::Instant::now();
    loop {
        // A releaser that has exited but is not reaped yet (state Z) holds nothing.
        let releasing = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|st| {
                        st.split_once(" (bw-detach) ")
                            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
                    })
            });
        if !releasing {
            return;
        }
        if start.elapsed() >= std::time::Duration::from_secs(30) {
            eprintln!(
                "bench: an earlier run's programs were still being released after 30 s; \
                 measuring anyway"
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Where the command must run for this monitor to see it.
pub fn placement(m: Monitor, env: &Env) -> Placement {
    match m {
        Monitor::Bpftrace => Placement {
            cgroup_procs: Some(env.cgroup.join("cgroup.procs")),
            loginuid: None,
        },
        Monitor::Auditd => Placement {
            cgroup_procs: None,
            loginuid: Some(AUDIT_UID),
        },
        _ => Placement::default(),
    }
}

/// Begin a session: start the daemon (bpftrace, auditd) and wait until it is watching.
pub fn start(m: Monitor, env: &Env, tag: &str) -> io::Result<Session> {
    let dir = env.work.join("monitor-out");
    fs::create_dir_all(&dir)?;
    Ok(match m {
        Monitor::Bare => Session::None,
        Monitor::Buildwatch => Session::Buildwatch {
            report: dir.join(format!("{tag}.report.json")),
        },
        Monitor::Strace => Session::Strace {
            out: dir.join(format!("{tag}.strace")),
        },
        Monitor::Bpftrace => Session::Daemon(start_bpftrace(env, &dir.join(format!("{tag}.bt")))?),
        Monitor::Auditd => Session::Daemon(start_auditd(env, &dir.join("audit"))?),
    })
}

/// The command to run: `cmd` itself, or wrapped by the monitor.
pub fn wrap(m: Monitor, env: &Env, s: &Session, cmd: Command) -> Command {
    let argv = || -> Vec<std::ffi::OsString> {
        std::iter::once(cmd.get_program().to_owned())
            .chain(cmd.get_args().map(ToOwned::to_owned))
            .collect()
    };
    let mut wrapped = match (m, s) {
        (Monitor::Buildwatch, Session::Buildwatch { report }) => {
            let mut w = Command::new(&env.buildwatch);
            w.arg("run")
                .arg("--report")
                .arg(report)
                .arg("--")
                .args(argv());
            w
        }
        (Monitor::Strace, Session::Strace { out }) => {
            let mut w = Command::new("strace");
            w.args(["-f", "-qq", "-o"])
                .arg(out)
                .arg("-e")
                .arg(format!("trace={}", SYSCALLS.join(",")))
                .args(argv());
            w
        }
        _ => return cmd,
    };
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped
}

/// End a session: stop the daemon and read what the monitor recorded.
pub fn finish(s: Session) -> io::Result<Seen> {
    match s {
        Session::None => Ok(Seen::default()),
        Session::Buildwatch { report } => {
            let r: serde_json::Value = serde_json::from_slice(&fs::read(&report)?)?;
            let m = &r["monitor"];
            let ms = |k: &str| m[k].as_u64().unwrap_or(0) as f64 / 1000.0;
            Ok(Seen {
                events: r["events"]["total"].as_u64(),
                lost: r["events"]["lost"].as_u64(),
                monitor_cpu_s: m
                    .is_object()
                    .then(|| ms("cpu_user_ms") + ms("cpu_system_ms")),
                monitor_rss_kib: m["max_rss_kib"].as_u64(),
                findings: r["findings"].as_array().map(|f| f.len() as u64),
            })
        }
        Session::Strace { out } => {
            let n = count_lines(&out, |_| true)?;
            let _ = fs::remove_file(&out);
            Ok(Seen {
                events: Some(n),
                ..Seen::default()
            })
        }
        Session::Daemon(d) => stop_daemon(d),
    }
}

fn count_lines(path: &Path, keep: impl Fn(&str) -> bool) -> io::Result<u64> {
    let text = fs::read(path)?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| keep(l))
        .count() as u64)
}

fn bpftrace_script(cgroup: &Path) -> String {
    let filter = format!("/cgroup == cgroupid(\"{}\")/", cgroup.display());
    let mut s = String::from("BEGIN { printf(\"ready\\n\"); }\n");
    s += &format!(
        "tracepoint:syscalls:sys_enter_execve {filter} {{ printf(\"exec %d %s \", pid, \
         str(args->filename)); join(args->argv); }}\n"
    );
    s += &format!(
        "tracepoint:syscalls:sys_enter_execveat {filter} {{ printf(\"execat %d %s\\n\", pid, \
         str(args->filename)); }}\n"
    );
    for (sc, arg) in [
        ("openat", "filename"),
        ("open", "filename"),
        ("creat", "pathname"),
        ("chdir", "filename"),
    ] {
        s += &format!(
            "tracepoint:syscalls:sys_enter_{sc} {filter} {{ @p[tid] = args->{arg}; }}\n\
             tracepoint:syscalls:sys_exit_{sc} /@p[tid]/ {{ printf(\"{sc} %d %d %s\\n\", pid, \
             args->ret, str(@p[tid])); delete(@p[tid]); }}\n"
        );
    }
    for sc in ["connect", "sendto"] {
        let addr = if sc == "connect" { "uservaddr" } else { "addr" };
        s += &format!(
            "tracepoint:syscalls:sys_enter_{sc} {filter} {{ printf(\"{sc} %d %d %r\\n\", pid, \
             args->fd, buf(args->{addr}, 28)); }}\n"
        );
    }
    for sc in [
        "sendmsg",
        "fchdir",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
    ] {
        s += &format!(
            "tracepoint:syscalls:sys_enter_{sc} {filter} {{ printf(\"{sc} %d\\n\", pid); }}\n"
        );
    }
    s += &format!(
        "tracepoint:sched:sched_process_fork {filter} {{ printf(\"fork %d %d\\n\", \
         args->parent_pid, args->child_pid); }}\n\
         tracepoint:sched:sched_process_exit {filter} {{ printf(\"exit %d\\n\", pid); }}\n"
    );
    s
}

fn start_bpftrace(env: &Env, out: &Path) -> io::Result<Daemon> {
    let _ = fs::remove_file(out);
    let mut cmd = Command::new("bpftrace");
    // Output to stdout redirected to the file: with -o, bpftrace 0.17 drops BEGIN's output.
    cmd.args(["-B", "line", "-e"])
        .arg(bpftrace_script(&env.cgroup))
        .stdin(Stdio::null())
        .stdout(fs::File::create(out)?)
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn()?;
    let d = Daemon {
        kind: Monitor::Bpftrace,
        child,
        out: out.to_owned(),
        audit_lost_before: 0,
    };
    wait_ready(d, |out| {
        fs::read_to_string(out).is_ok_and(|t| t.contains("ready"))
    })
}

/// Wait (at most 60 s) until the daemon shows it is watching.
fn wait_ready(mut d: Daemon, ready: impl Fn(&Path) -> bool) -> io::Result<Daemon> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if ready(&d.out) {
            return Ok(d);
        }
        if let Some(st) = d.child.try_wait()? {
            let mut err = String::new();
            if let Some(e) = d.child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(io::Error::other(format!(
                "{} exited ({st}) before it was ready: {}",
                d.kind.name(),
                err.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = d.child.kill();
    let _ = d.child.wait();
    Err(io::Error::other(format!(
        "{} was not ready within 60 s",
        d.kind.name()
    )))
}

fn auditctl(args: &[&str]) -> io::Result<String> {
    let tool = which("auditctl").ok_or_else(|| io::Error::other("auditctl is not installed"))?;
    let out = Command::new(tool).args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "auditctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn audit_lost() -> u64 {
    auditctl(&["-s"])
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("lost ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn start_auditd(_env: &Env, dir: &Path) -> io::Result<Daemon> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let log = dir.join("audit.log");
    // A private configuration: the log in the bench's directory, no actions on disk space.
    fs::write(
        dir.join("auditd.conf"),
        format!(
            "log_file = {}\nlog_format = RAW\nlog_group = root\nflush = INCREMENTAL_ASYNC\n\
             freq = 50\nmax_log_file = 2000\nmax_log_file_action = IGNORE\nnum_logs = 2\n\
             space_left = 2\nspace_left_action = IGNORE\nadmin_space_left = 1\n\
             admin_space_left_action = IGNORE\ndisk_full_action = IGNORE\n\
             disk_error_action = IGNORE\nlocal_events = yes\nwrite_logs = yes\n\
             priority_boost = 0\nname_format = NONE\nplugin_dir = {}\n",
            log.display(),
            dir.display()
        ),
    )?;
    let auditd = which("auditd").ok_or_else(|| io::Error::other("auditd is not installed"))?;
    // -n: stay in the foreground but write the log (-f would send events to stderr instead).
    let child = Command::new(auditd)
        .arg("-n")
        .arg("-c")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let d = Daemon {
        kind: Monitor::Auditd,
        child,
        out: log,
        audit_lost_before: 0,
    };
    let mut d = wait_ready(d, |_| {
        auditctl(&["-s"]).is_ok_and(|s| s.lines().any(|l| l.starts_with("pid ") && l != "pid 0"))
    })?;
    auditctl(&["-D"])?;
    auditctl(&["-b", "8192"])?;
    let mut rule = vec!["-a", "always,exit", "-F", "arch=b64"];
    for sc in SYSCALLS {
        rule.extend(["-S", sc]);
    }
    let uid = format!("auid={AUDIT_UID}");
    let key = format!("key={AUDIT_KEY}");
    rule.extend(["-F", &uid, "-F", &key]);
    auditctl(&rule)?;
    d.audit_lost_before = audit_lost();
    Ok(d)
}

fn stop_daemon(mut d: Daemon) -> io::Result<Seen> {
    let pid = d.child.id();
    let usage = proc_usage(pid);
    let mut seen = Seen {
        monitor_cpu_s: usage.map(|u| u.0),
        monitor_rss_kib: usage.map(|u| u.1),
        ..Seen::default()
    };
    if d.kind == Monitor::Auditd {
        seen.lost = Some(audit_lost().saturating_sub(d.audit_lost_before));
        let _ = auditctl(&["-D"]);
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = d.child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = d.child.wait();
    if d.kind == Monitor::Auditd {
        // auditd leaves auditing enabled; switch it off so later runs pay nothing for it.
        let _ = auditctl(&["-e", "0"]);
        let key = format!("key=\"{AUDIT_KEY}\"");
        seen.events = Some(count_lines(&d.out, |l| {
            l.starts_with("type=SYSCALL") && l.contains(&key)
        })?);
    } else {
        let text = fs::read_to_string(&d.out).unwrap_or_default();
        seen.events = Some(
            text.lines()
                .filter(|l| {
                    !l.is_empty()
                        && *l != "ready"
                        && !l.starts_with("Attaching")
                        && !l.starts_with("Lost ")
                })
                .count() as u64,
        );
        seen.lost = Some(
            text.lines()
                .filter_map(|l| {
                    l.strip_prefix("Lost ")?
                        .split(' ')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum(),
        );
        let _ = fs::remove_file(&d.out);
    }
    Ok(seen)
}
