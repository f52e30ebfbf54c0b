//! Running one measured command: wall time, the CPU time of its whole process tree (wait4's
//! rusage covers every descendant that was waited for), its exit status and its output.

use std::{
    ffi::CString,
    io::{self, Read},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Instant,
};

/// Where a measured command starts, besides its argv.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// cgroup.procs file the child joins before exec (so bpftrace's cgroup filter sees it).
    pub cgroup_procs: Option<PathBuf>,
    /// Audit login uid the child takes before exec (so audit rules can select its tree).
    pub loginuid: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub wall_s: f64,
    /// User + system time of the process and every descendant it waited for.
    pub cpu_s: f64,
    /// Exit code, or 128+N for signal N.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id, pointer to a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("path contains NUL"))
}

/// Make `cmd` join a cgroup and/or take a login uid in the child, before exec.
pub fn place(cmd: &mut Command, at: &Placement) -> io::Result<()> {
    let procs = at.cgroup_procs.as_deref().map(cpath).transpose()?;
    let loginuid = at.loginuid.map(|u| u.to_string().into_bytes());
    let loginuid_path = c"/proc/self/loginuid";
    // SAFETY: the closure makes only open/write/close calls on memory prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(p) = &procs {
                write_file(p, b"0")?;
            }
            if let Some(u) = &loginuid {
                write_file(loginuid_path, u)?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// open/write/close only: safe between fork and exec.
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: NUL-terminated path, a buffer of the given length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}

/// Run `cmd` to completion with stdout and stderr captured.
pub fn measure(mut cmd: Command) -> io::Result<Outcome> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let (out, err) = collect(&mut child);
    let (status, cpu_s) = wait4(child.id())?;
    let wall_s = start.elapsed().as_secs_f64();
    Ok(Outcome {
        wall_s,
        cpu_s,
        status,
        stdout: out,
        stderr: err,
    })
}

/// Read both pipes to the end (stderr on a thread, so neither can fill up and stall).
fn collect(child: &mut Child) -> (String, String) {
    let mut err_pipe = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let mut out = String::new();
    if let Some(p) = child.stdout.as_mut() {
        let _ = p.read_to_string(&mut out);
    }
    (out, reader.join().unwrap_or_default())
}

/// Reap `pid`; returns (exit code or 128+signal, CPU seconds of it and its waited-for tree).
pub fn wait4(pid: u32) -> io::Result<(i32, f64)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data, filled by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, secs(ru.ru_utime) + secs(ru.ru_stime)))
}

/// CPU seconds (user + system) and peak RSS (KiB) of a running process, from /proc.
pub fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces: utime and stime are the 12th and
    // 13th of them.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = (f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) as f64;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some((ticks / hz, hwm))
}
