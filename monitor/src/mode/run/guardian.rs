//! The guardian: a small process outside the run's cgroup that makes sure the watched command
//! never runs on unwatched. buildwatch sends it a heartbeat every second over a pipe. If the
//! pipe closes without a "done" (buildwatch was killed, SIGKILL included) or the heartbeat
//! stops for [`STALL`] (buildwatch was stopped), the guardian kills every process of the run
//! through `cgroup.kill`, writes a report saying the run cannot be vouched for, and exits
//! non-zero. In turn, a guardian that dies before the run is over makes buildwatch fail the
//! run: something killed it.
//!
//! The guardian is buildwatch's own executable started again (`__guardian`), in a session of
//! its own, so signals sent to buildwatch's process group (a terminal's Ctrl-C, `kill 0` in a
//! build script) do not reach it; it ignores the terminating signals it can.

use std::{
    ffi::OsString,
    fs,
    io::{self, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::fcntl::OFlag;

/// The argument that makes `buildwatch` a guardian (not a user-facing command).
pub const ARG: &str = "__guardian";
/// How long the guardian waits for a heartbeat before it treats buildwatch as stopped.
pub const STALL: Duration = Duration::from_secs(10);
const BEAT: Duration = Duration::from_secs(1);
/// The descriptor the guardian reads heartbeats from.
const FD: i32 = 3;

/// buildwatch's side: the guardian process and the heartbeat thread.
pub struct Guardian {
    child: Child,
    stop: Arc<AtomicBool>,
    /// Set by the heartbeat thread when the pipe broke: the guardian is gone.
    lost: Arc<AtomicBool>,
    beats: Option<JoinHandle<OwnedFd>>,
}

/// Start the guardian of the run whose cgroup is `cgroup`; it writes its report to `report`
/// if buildwatch cannot.
pub fn start(cgroup: &Path, report: Option<&Path>) -> io::Result<Guardian> {
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let r = read_end.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("buildwatch-guardian").arg(ARG).arg(cgroup);
    if let Some(report) = report {
        cmd.arg(report);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: only async-signal-safe calls (dup2, setsid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 clears close-on-exec on the copy.
            if libc::dup2(r, FD) < 0 || libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(read_end);
    let (stop, lost) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let beats = {
        let (stop, lost) = (stop.clone(), lost.clone());
        std::thread::Builder::new()
            .name("bw-heartbeat".into())
            .spawn(move || {
                let mut pipe = fs::File::from(write_end);
                while !stop.load(Ordering::Relaxed) {
                    if pipe.write_all(b"h").is_err() {
                        lost.store(true, Ordering::Relaxed);
                        break;
                    }
                    std::thread::park_timeout(BEAT);
                }
                OwnedFd::from(pipe)
            })?
    };
    Ok(Guardian {
        child,
        stop,
        lost,
        beats: Some(beats),
    })
}

impl Guardian {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the guardian is gone before the run was over (something killed it).
    pub fn lost(&mut self) -> bool {
        self.lost.load(Ordering::Relaxed) || matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The run is over and reported: tell the guardian, and wait for it to exit (bounded).
    pub fn finish(mut self) {
        self.done();
        let deadline = Instant::now() + Duration::from_secs(2);
        // It exits within a millisecond or two of "done": look often (a 10 ms step was a
        // tenth of a short run's whole cost), backing off to 10 ms.
        let mut step = Duration::from_micros(200);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(step);
            step = (step * 2).min(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stop the heartbeat and send "done": the guardian exits without acting.
    fn done(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(beats) = self.beats.take() {
            beats.thread().unpark();
            if let Ok(fd) = beats.join() {
                let _ = fs::File::from(fd).write_all(b"d");
            }
        }
    }
}

impl Drop for Guardian {
    /// An error path: buildwatch itself gives up on the run, cleans up (the run's cgroup is
    /// killed and removed when it is dropped) and reports its error; the guardian has
    /// nothing to add. It acts only when buildwatch could not get here.
    fn drop(&mut self) {
        self.done();
    }
}

/// Why the guardian acted.
enum Cause {
    Died,
    Stalled,
}

/// The guardian process: `buildwatch __guardian CGROUP_DIR [REPORT]`, heartbeats on fd 3.
pub fn main(args: &[OsString]) -> i32 {
    let Some(cgroup) = args.first().map(PathBuf::from) else {
        return crate::exit::INTERNAL;
    };
    let report = args.get(1).map(PathBuf::from);
    // The terminating signals it can ignore: only SIGKILL stops it.
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ] {
        // SAFETY: setting a disposition to SIG_IGN.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    // SAFETY: fd 3 was set up for us by `start`; nothing else in this process owns it.
    let pipe = unsafe { OwnedFd::from_raw_fd(FD) };
    // SAFETY: getppid has no preconditions. Our parent is buildwatch (we were just started).
    let buildwatch = unsafe { libc::getppid() };
    let cause = match watch(&pipe, buildwatch) {
        None => return 0,
        Some(cause) => cause,
    };
    let what = match cause {
        Cause::Died => "buildwatch died before the run ended",
        Cause::Stalled => "buildwatch stopped responding (stopped or hung) before the run ended",
    };
    let killed = kill_run(&cgroup);
    let reason = format!(
        "{what}; {killed}: the run cannot be vouched for (buildwatch's guardian, pid {})",
        std::process::id()
    );
    let mut stderr = io::stderr();
    // buildwatch may have died with its status line's scroll region set: give the terminal
    // its whole screen back (harmless when none was set).
    if std::io::IsTerminal::is_terminal(&stderr) {
        let _ = stderr.write_all(crate::output::status::RESET);
    }
    let _ = writeln!(stderr, "buildwatch-guardian: {reason}");
    if let Some(report) = report {
        let doc = serde_json::json!({
            "schema": crate::output::report::REPORT_SCHEMA,
            "buildwatch": env!("CARGO_PKG_VERSION"),
            "written_by": "guardian",
            "verdict": {
                "failed": true,
                "reasons": [reason],
                "exit_status": crate::exit::POLICY_VIOLATION,
                "output_complete": false,
            },
        });
        if let Err(e) = fs::write(&report, format!("{doc:#}\n")) {
            let _ = writeln!(stderr, "buildwatch-guardian: {}: {e}", report.display());
        }
    }
    crate::exit::POLICY_VIOLATION
}

/// How often the guardian looks at buildwatch's state between heartbeats.
const LOOK: Duration = Duration::from_millis(50);
/// `PF_EXITING` in /proc/PID/stat's flags: the task has begun to exit.
const PF_EXITING: u64 = 0x4;

/// Whether `pid` is gone or has begun to exit. A process killed with SIGKILL closes its
/// descriptors (our pipe among them) only after it has torn down everything else, and
/// buildwatch's BPF links take a grace period each: seconds. Its flags say so at once.
fn exiting(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Fields after the command name (which may hold spaces and parentheses): state is the
    // first, flags the seventh.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return true;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("X");
    let flags: u64 = fields.nth(5).and_then(|f| f.parse().ok()).unwrap_or(0);
    matches!(state, "Z" | "X" | "x") || flags & PF_EXITING != 0
}

/// Read heartbeats until "done" (None) or until buildwatch is gone, exiting or stalled.
fn watch(pipe: &OwnedFd, buildwatch: i32) -> Option<Cause> {
    let mut last = Instant::now();
    loop {
        let timeout = STALL.saturating_sub(last.elapsed()).min(LOOK);
        if last.elapsed() >= STALL {
            return Some(Cause::Stalled);
        }
        if exiting(buildwatch) {
            // It may have said "done" just before it exited.
            return (!said_done(pipe)).then_some(Cause::Died);
        }
        let mut fds = [libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as i32) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Some(Cause::Died);
        }
        if n == 0 {
            continue;
        }
        let mut buf = [0u8; 64];
        // SAFETY: reading into a local buffer of the length passed.
        let got = unsafe { libc::read(pipe.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match got {
            0 => return Some(Cause::Died),
            n if n < 0 => {
                if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    return Some(Cause::Died);
                }
            }
            n => {
                if buf[..n as usize].contains(&b'd') {
                    return None;
                }
                last = Instant::now();
            }
        }
    }
}

/// Whether "done" is waiting in the pipe (read without blocking).
fn said_done(pipe: &OwnedFd) -> bool {
    let mut fds = [libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let mut buf = [0u8; 64];
    // SAFETY: one valid pollfd; reading into a local buffer of the length passed.
    unsafe {
        libc::poll(fds.as_mut_ptr(), 1, 0) > 0
            && libc::read(pipe.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                .try_into()
                .is_ok_and(|n: usize| buf[..n.min(buf.len())].contains(&b'd'))
    }
}

/// Kill every process of the run (cgroup.kill, then wait for the cgroup to empty) and remove
/// the cgroup; says what happened.
fn kill_run(cgroup: &Path) -> String {
    if !cgroup.exists() {
        return "the run's cgroup was already gone".into();
    }
    if let Err(e) = fs::write(cgroup.join("cgroup.kill"), "1") {
        return format!(
            "could not kill the run's processes ({}: {e})",
            cgroup.display()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let populated = || {
        fs::read_to_string(cgroup.join("cgroup.events"))
            .map(|s| s.lines().any(|l| l == "populated 1"))
            .unwrap_or(false)
    };
    while populated() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if populated() {
        return "the run's processes did not all die within 5 s".into();
    }
    remove_tree(cgroup);
    "every process of the run was killed".into()
}

/// rmdir a cgroup and the cgroups below it, deepest first (best effort).
fn remove_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// `true` when this process was started as a guardian.
pub fn invoked(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a.as_bytes() == ARG.as_bytes())
}
