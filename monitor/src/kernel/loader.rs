//! Loads the kernel programs, configures them for one scope and attaches them, grouped into
//! sensors (exec, file, net). Everything attached here is owned by [`Sensors`]: dropping it (or
//! the process dying) closes the file descriptors and the kernel detaches the programs.

use std::os::fd::AsFd;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, TracePoint},
};
use monitor_common::counters;

use crate::kernel::{cgroup::RunCgroup, tracefs};

/// The compiled kernel programs, built by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// Default ring size: 8 MiB carried >500k events/s with batched wake-ups without loss here.
pub const DEFAULT_RING_BYTES: u32 = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("program {0} missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("tracefs: {0}")]
    Tracefs(#[source] std::io::Error),
    #[error("this buildwatch was built without its eBPF programs (BUILDWATCH_NO_EBPF)")]
    NoPrograms,
}

/// What the sensors watch.
pub enum Scope<'a> {
    /// One run's cgroup and everything below it.
    Cgroup(&'a RunCgroup),
}

/// A syscall/scheduler tracepoint program: (program name, category, tracepoint).
struct Probe(&'static str, &'static str, &'static str);

/// The exec sensor: exec attempts and results, process creation and exit.
const EXEC_PROBES: &[Probe] = &[
    Probe("sys_enter_execve", "syscalls", "sys_enter_execve"),
    Probe("sys_enter_execveat", "syscalls", "sys_enter_execveat"),
    Probe("sys_exit_execve", "syscalls", "sys_exit_execve"),
    Probe("sys_exit_execveat", "syscalls", "sys_exit_execveat"),
    Probe("task_newtask", "task", "task_newtask"),
    Probe("sched_process_exit", "sched", "sched_process_exit"),
];

/// The file sensor: opens and working-directory changes.
const FILE_PROBES: &[Probe] = &[
    Probe("sys_enter_open", "syscalls", "sys_enter_open"),
    Probe("sys_exit_open", "syscalls", "sys_exit_open"),
    Probe("sys_enter_openat", "syscalls", "sys_enter_openat"),
    Probe("sys_exit_openat", "syscalls", "sys_exit_openat"),
    Probe("sys_enter_openat2", "syscalls", "sys_enter_openat2"),
    Probe("sys_exit_openat2", "syscalls", "sys_exit_openat2"),
    Probe("sys_enter_chdir", "syscalls", "sys_enter_chdir"),
    Probe("sys_exit_chdir", "syscalls", "sys_exit_chdir"),
    Probe("sys_enter_fchdir", "syscalls", "sys_enter_fchdir"),
    Probe("sys_exit_fchdir", "syscalls", "sys_exit_fchdir"),
];

/// The net sensor's tracepoints; its UDP destinations come from cgroup hooks (`NET_CGROUP`).
const NET_PROBES: &[Probe] = &[
    Probe("sys_enter_connect", "syscalls", "sys_enter_connect"),
    Probe("sys_exit_connect", "syscalls", "sys_exit_connect"),
];
const NET_CGROUP: &[&str] = &["sendmsg4", "sendmsg6"];
/// The DNS sensor: packets to and from port 53 on the run's sockets.
const DNS_SKB: &[(&str, CgroupSkbAttachType)] = &[
    ("dns_egress", CgroupSkbAttachType::Egress),
    ("dns_ingress", CgroupSkbAttachType::Ingress),
];

/// The process-memory sensor: ptrace attach and process_vm_readv/writev.
const PROCMEM_PROBES: &[Probe] = &[
    Probe("sys_enter_ptrace", "syscalls", "sys_enter_ptrace"),
    Probe("sys_exit_ptrace", "syscalls", "sys_exit_ptrace"),
    Probe(
        "sys_enter_process_vm_readv",
        "syscalls",
        "sys_enter_process_vm_readv",
    ),
    Probe(
        "sys_exit_process_vm_readv",
        "syscalls",
        "sys_exit_process_vm_readv",
    ),
    Probe(
        "sys_enter_process_vm_writev",
        "syscalls",
        "sys_enter_process_vm_writev",
    ),
    Probe(
        "sys_exit_process_vm_writev",
        "syscalls",
        "sys_exit_process_vm_writev",
    ),
];

pub struct Sensors {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
}

impl Sensors {
    /// Load, configure and attach every sensor for `scope`.
    pub fn attach(scope: Scope<'_>, ring_bytes: u32) -> Result<Self, LoadError> {
        if EBPF_OBJECT.is_empty() {
            return Err(LoadError::NoPrograms);
        }
        tracefs::ensure_mounted().map_err(LoadError::Tracefs)?;
        let (cgroup_id, level, cgroup) = match scope {
            Scope::Cgroup(cg) => (cg.id(), cg.level(), cg),
        };
        // Reading the kernel's BTF (~6 MB) takes about as long as verifying the programs:
        // do both at once; the offset goes into its map before any program is attached.
        let exit_code_offset = std::thread::spawn(crate::kernel::kbtf::task_exit_code_offset);
        let mut ebpf = EbpfLoader::new()
            .override_global("TARGET_CGROUP_ID", &cgroup_id, true)
            .override_global("TARGET_CGROUP_LEVEL", &level, true)
            .map_max_entries("EVENTS", ring_bytes)
            .load(EBPF_OBJECT)?;

        for Probe(name, ..) in tracepoints() {
            let prog: &mut TracePoint = program(&mut ebpf, name)?;
            prog.load().map_err(program_error(name))?;
        }
        for name in NET_CGROUP {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            prog.load().map_err(program_error(name))?;
        }
        for (name, _) in DNS_SKB {
            let prog: &mut CgroupSkb = program(&mut ebpf, name)?;
            prog.load().map_err(program_error(name))?;
        }
        let offset = exit_code_offset
            .join()
            .unwrap_or_else(|_| Err("reading kernel BTF panicked".into()))
            .unwrap_or_else(|e| {
                tracing::warn!("exit codes of watched processes unavailable: {e}");
                0
            });
        const OFFSETS: &str = "EXIT_CODE_OFFSET";
        let map = ebpf
            .map_mut(OFFSETS)
            .ok_or(LoadError::MissingMap(OFFSETS))?;
        let mut offsets: Array<_, u32> = Array::try_from(map).map_err(map_error(OFFSETS))?;
        offsets.set(0, &offset, 0).map_err(map_error(OFFSETS))?;

        for Probe(name, category, tp) in tracepoints() {
            let prog: &mut TracePoint = program(&mut ebpf, name)?;
            prog.attach(category, tp).map_err(program_error(name))?;
        }
        let cgroup_file = cgroup.open_dir().map_err(LoadError::Tracefs)?;
        for name in NET_CGROUP {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            // A bpf_link always composes with other programs on the cgroup; the kernel rejects
            // attach flags on link creation, so the mode must be Single (flags 0).
            prog.attach(cgroup_file.as_fd(), CgroupAttachMode::Single)
                .map_err(program_error(name))?;
        }
        for (name, attach_type) in DNS_SKB {
            let prog: &mut CgroupSkb = program(&mut ebpf, name)?;
            prog.attach(cgroup_file.as_fd(), *attach_type, CgroupAttachMode::Single)
                .map_err(program_error(name))?;
        }

        let counters_map = ebpf
            .take_map("COUNTERS")
            .ok_or(LoadError::MissingMap("COUNTERS"))?;
        let counters = PerCpuArray::try_from(counters_map).map_err(map_error("COUNTERS"))?;
        Ok(Self { ebpf, counters })
    }

    /// Detach every program without waiting for it. Releasing a syscall tracepoint's perf
    /// event waits for an RCU grace period, serially under a kernel mutex: ~70 ms each on
    /// Linux 6.18, ~2 s for all of them, which every run would otherwise add to the build's
    /// wall time. So a detached grandchild takes the last references and closes them while
    /// buildwatch exits; the programs are gone within seconds. Meanwhile they are inert: they
    /// report only tasks in the run's cgroup, which is removed next. If fork fails, the
    /// programs are detached here, slowly.
    pub fn detach_in_background(self) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return drop(self);
        }
        let (r, w) = (fds[0], fds[1]);
        // SAFETY: between fork and _exit the children call only async-signal-safe functions
        // (fork, setsid, close, read, close_range, _exit) on their own stack.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                if libc::fork() == 0 {
                    libc::setsid();
                    // Standard streams at once, so nobody reading buildwatch's output waits.
                    for fd in [w, 0, 1, 2] {
                        libc::close(fd);
                    }
                    // Hold the last references until the parent has dropped its own (EOF);
                    // whoever closes last pays for the release.
                    let mut b = 0u8;
                    loop {
                        let n = libc::read(r, (&raw mut b).cast(), 1);
                        if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                            break;
                        }
                    }
                    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                    libc::_exit(0);
                }
                libc::_exit(0);
            }
            libc::close(r);
            if pid > 0 {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        // With the grandchild holding references, dropping ours is quick.
        drop(self);
        // SAFETY: our write end; closing it tells the grandchild to release.
        unsafe { libc::close(w) };
    }

    /// The ring buffer every sensor writes to. Can be taken once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(LoadError::MissingMap("EVENTS"))?;
        RingBuf::try_from(map).map_err(map_error("EVENTS"))
    }

    /// Kernel-side counters summed over CPUs.
    pub fn counters(&self) -> KernelCounters {
        let sum = |idx: u32| -> u64 {
            self.counters
                .get(&idx, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        };
        KernelCounters {
            ringbuf_full: sum(counters::RINGBUF_FULL),
            read_errors: sum(counters::READ_ERROR),
            stash_full: sum(counters::STASH_FULL),
            stash_missing: sum(counters::STASH_MISSING),
        }
    }
}

fn tracepoints() -> impl Iterator<Item = &'static Probe> {
    EXEC_PROBES
        .iter()
        .chain(FILE_PROBES)
        .chain(NET_PROBES)
        .chain(PROCMEM_PROBES)
}

fn map_error(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

fn program_error(program: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> LoadError {
    move |source| LoadError::Program { program, source }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?;
    prog.try_into().map_err(program_error(name))
}

/// Counters the kernel programs keep about events they could not deliver or read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    /// Events dropped because the ring buffer was full.
    pub ringbuf_full: u64,
    /// User-memory reads that failed (the event was sent, flagged).
    pub read_errors: u64,
    /// Syscalls whose event was lost because the enter→exit stash was full.
    pub stash_full: u64,
    /// Syscall exits without a stashed entry (attached mid-syscall).
    pub stash_missing: u64,
}

impl KernelCounters {
    /// Events that never reached userspace.
    pub fn lost(&self) -> u64 {
        self.ringbuf_full + self.stash_full
    }
}
