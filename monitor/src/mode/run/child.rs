//! The watched command: started inside the run's cgroup (it joins before exec, so nothing it
//! does is missed), its signals forwarded, and what it left behind found.

use std::{
    ffi::{CString, OsString},
    fs, io,
    os::fd::AsFd,
    process::Stdio,
};

use nix::{sys::signal::Signal, unistd::Pid};

use crate::{event, kernel::cgroup::RunCgroup};

/// Start `command` in `cgroup`. With `stdout_to_stderr` its standard output goes to
/// buildwatch's standard error (stdout then carries only the event stream).
pub fn spawn(
    command: &[OsString],
    cgroup: &RunCgroup,
    stdout_to_stderr: bool,
) -> io::Result<tokio::process::Child> {
    let procs = cgroup.procs_file_cstring();
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    if stdout_to_stderr {
        let stderr = io::stderr().as_fd().try_clone_to_owned()?;
        cmd.stdout(Stdio::from(stderr));
    }
    // SAFETY: the closure only makes async-signal-safe calls (open/write/close) on memory
    // prepared before fork.
    unsafe {
        cmd.pre_exec(move || join_cgroup(&procs));
    }
    cmd.spawn()
}

/// Runs in the forked child before exec: move ourselves into the run's cgroup. If this fails
/// the spawn fails; the command never runs unwatched.
pub fn join_cgroup(procs: &CString) -> io::Result<()> {
    // SAFETY: plain syscalls on a valid NUL-terminated path and a local buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != 1 {
            return Err(err);
        }
    }
    Ok(())
}

pub fn forward(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
}

/// A process's command line from /proc (the process is still alive: it outlived the command).
pub fn cmdline(pid: u32, escaped: &mut Vec<String>) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .map(|s| event::text(s, "straggler.cmdline", escaped))
        .collect()
}
