//! The watched command: started inside the run's cgroup (it joins before exec, so nothing it
//! does is missed) and held there until the sensors are attached, its signals forwarded, and
//! what it left behind found.

use std::{
    ffi::{CString, OsString},
    fs, io,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
    process::Stdio,
};

use nix::{fcntl::OFlag, sys::signal::Signal, unistd::Pid};

use super::user::Credentials;
use crate::{event, kernel::cgroup::RunCgroup};

/// The command, forked as soon as the run's cgroup exists and parked inside it until the
/// sensors are attached ([`Parked::release`]).
///
/// Moving a process between cgroups waits for an RCU grace period (the kernel write-locks
/// `cgroup_threadgroup_rwsem`): 5-20 ms here, a third of buildwatch's start-up when it was
/// done after the sensors were loaded. Parked, the child pays it while the kernel verifies
/// the programs. It runs nothing of the command's until released: it waits on a pipe in
/// `pre_exec`, and if buildwatch drops the gate (an error, or buildwatch is killed) it exits
/// without running the command.
pub struct Parked {
    gate: Option<OwnedFd>,
    spawner: Option<std::thread::JoinHandle<io::Result<tokio::process::Child>>>,
}

/// Fork `command` into `cgroup` and park it. With `stdout_to_stderr` its standard output goes
/// to buildwatch's standard error (stdout then carries only the event stream). With
/// `refuse_32bit` its processes may not make 32-bit syscalls ([`refuse_32bit_syscalls`]).
pub fn park(
    command: &[OsString],
    cgroup: &RunCgroup,
    stdout_to_stderr: bool,
    user: Option<Credentials>,
    refuse_32bit: bool,
) -> io::Result<Parked> {
    let procs = cgroup.procs_file_cstring();
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    if let Some(user) = &user {
        cmd.envs(user.env());
    }
    if stdout_to_stderr {
        let stderr = io::stderr().as_fd().try_clone_to_owned()?;
        cmd.stdout(Stdio::from(stderr));
    }
    let (wait_end, gate) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let (r, w) = (wait_end.as_raw_fd(), gate.as_raw_fd());
    // SAFETY: the closure only makes async-signal-safe calls (open/write/read/close, prctl,
    // setgroups/setresgid/setresuid) on memory prepared before fork or on its own stack.
    unsafe {
        cmd.pre_exec(move || {
            join_cgroup(&procs)?;
            wait_at_gate(r, w)?;
            if refuse_32bit {
                refuse_32bit_syscalls()?;
            }
            match &user {
                Some(user) => user.apply(),
                None => Ok(()),
            }
        });
    }
    // `spawn` returns once the child has exec'd (or failed to), which is after the release:
    // it runs on its own thread, inside the runtime (tokio's child reaper needs it).
    let runtime = tokio::runtime::Handle::current();
    let spawner = std::thread::Builder::new()
        .name("bw-spawn".into())
        .spawn(move || {
            let _guard = runtime.enter();
            let child = cmd.spawn();
            drop(wait_end);
            child
        })?;
    Ok(Parked {
        gate: Some(gate),
        spawner: Some(spawner),
    })
}

impl Parked {
    /// Let the command run; its result is `spawn`'s (not found, not executable, ...).
    pub fn release(mut self) -> io::Result<tokio::process::Child> {
        if let Some(gate) = self.gate.take() {
            // A child that is already gone (it could not join the cgroup) breaks the pipe;
            // its own error comes back from the spawner.
            let _ = nix::unistd::write(&gate, b"g");
        }
        self.join()
    }

    fn join(&mut self) -> io::Result<tokio::process::Child> {
        match self.spawner.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the thread starting the command panicked")),
            None => Err(io::Error::other("the command was already started")),
        }
    }
}

impl Drop for Parked {
    /// Not released: close the gate, so the child exits without running the command, and wait
    /// for it (the run's cgroup can only be removed once it is empty).
    fn drop(&mut self) {
        self.gate = None;
        if self.spawner.is_some() {
            let _ = self.join();
        }
    }
}

/// Runs in the forked child after it joined the cgroup: wait for buildwatch's go. End of file
/// (buildwatch dropped the gate or died) means: do not run the command.
fn wait_at_gate(r: RawFd, w: RawFd) -> io::Result<()> {
    // SAFETY: plain syscalls on descriptors this process owns and a local buffer.
    unsafe {
        // Our copy of the gate's write end must go, or end of file could never come.
        libc::close(w);
        let mut byte = 0u8;
        loop {
            let n = libc::read(r, (&raw mut byte).cast(), 1);
            if n == 1 && byte == b'g' {
                libc::close(r);
                return Ok(());
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io::Error::from_raw_os_error(libc::ECANCELED));
        }
    }
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

/// Runs in the forked child before exec, while it is still root: a seccomp filter that kills
/// the process (SIGSYS) on any syscall not made through the 64-bit entry.
///
/// The kernel's syscall tracepoints ignore 32-bit syscalls on x86-64: `int 0x80` from any
/// process, or a 32-bit binary, opens, renames, signals or ptraces without a single event.
/// buildwatch cannot see them, so the command's tree may not make them. The filter is
/// inherited by every descendant and no process, root included, can remove it; the kill is a
/// finding (`syscall-32bit-killed`). Installed with root's CAP_SYS_ADMIN, it needs no
/// no_new_privs, so setuid tools (sudo) in the build still work. If it cannot be installed,
/// the command does not run.
fn refuse_32bit_syscalls() -> io::Result<()> {
    // struct seccomp_data { int nr; __u32 arch; … }
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    // x32 syscalls come through the 64-bit entry with this bit in their number (kernels
    // built with CONFIG_X86_X32_ABI); the tracepoints ignore them too. Numbers from 2^31 up
    // are not x32: -1 is how a ptrace tracer skips a syscall (and any other fails ENOSYS).
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const NEGATIVE: u32 = 0x8000_0000;
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        // Jump offsets count from the next instruction.
        op(LD_W_ABS, 0, 0, ARCH),
        op(JEQ_K, 0, 4, AUDIT_ARCH_X86_64),
        op(LD_W_ABS, 0, 0, NR),
        op(JGE_K, 1, 0, NEGATIVE),
        op(JGE_K, 1, 0, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        op(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with a filter that outlives the call; async-signal-safe.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &raw const prog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
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
