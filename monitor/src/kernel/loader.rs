//! Loads the eBPF object (every sensor's programs, verified by the kernel) and attaches or
//! detaches each sensor on its own. The maps every sensor shares are handed out once each: the
//! ring buffer (to ingest), the counters (to ingest), the scope (to the mode). Everything
//! attached is owned by [`Kernel`]: dropping it (or the process dying) closes the file
//! descriptors and the kernel detaches the programs.

use std::{fs, os::fd::AsFd};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSockAddr, TracePoint, cgroup_skb::CgroupSkbLinkId,
        cgroup_sock_addr::CgroupSockAddrLinkId, trace_point::TracePointLinkId,
    },
};
use aya_log::EbpfLogger;
use monitor_common::counters;

use crate::{
    event::KernelStats,
    kernel::{
        scope::ScopeMap,
        sensors::{self, Probe, Spec},
        tracefs,
    },
};

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
    #[error("freezing the loss counters against bpf(2) writes: {0}")]
    Freeze(#[source] std::io::Error),
    #[error("this buildwatch was built without its eBPF programs (BUILDWATCH_NO_EBPF)")]
    NoPrograms,
    #[error("block mode: {0}")]
    Egress(String),
    #[error("mapping the event ring: {0}")]
    Ring(String),
}

/// A program's attachment, kept so its sensor can detach on its own.
enum Link {
    TracePoint(&'static str, TracePointLinkId),
    SockAddr(&'static str, CgroupSockAddrLinkId),
    Skb(&'static str, CgroupSkbLinkId),
}

/// The kernel side, loaded: every sensor's programs verified, the shared maps created. Each
/// sensor is attached and detached on its own ([`Kernel::attach`], [`Kernel::detach`]).
/// Dropping it (or the process dying) detaches everything.
pub struct Kernel {
    ebpf: Ebpf,
    /// Reads the programs' aya-log records, when asked for (see [`KernelLog`]).
    logger: Option<EbpfLogger<KernelLog>>,
    /// Attachments per sensor, in `sensors::ALL` order.
    links: Vec<Vec<Link>>,
}

impl Kernel {
    /// Load and verify every sensor's programs. Nothing is attached yet, and the scope is
    /// empty: programs that run see no task in scope until one is added.
    pub fn load(ring_bytes: u32) -> Result<Self, LoadError> {
        if EBPF_OBJECT.is_empty() {
            return Err(LoadError::NoPrograms);
        }
        tracefs::ensure_mounted().map_err(LoadError::Tracefs)?;
        // Reading the kernel's BTF (~6 MB) takes about as long as verifying the programs:
        // do both at once; the offset goes into its map before any program is attached.
        let task_offsets = std::thread::spawn(crate::kernel::kbtf::task_offsets);
        // The programs' error paths log through aya-log only when someone will read it: else
        // the level is 0 and the verifier prunes the logging code.
        let log = tracing::enabled!(target: "kernel", tracing::Level::DEBUG);
        let level = if log { aya_log::Level::Error as u8 } else { 0 };
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", ring_bytes)
            .override_global(aya_log::LEVEL, &level, false)
            .load(EBPF_OBJECT)?;
        let logger = if log {
            EbpfLogger::init_with_logger(&mut ebpf, KernelLog)
                .map_err(|e| tracing::warn!("kernel diagnostics unavailable: {e}"))
                .ok()
        } else {
            None
        };
        load_programs(&mut ebpf)?;
        let task = task_offsets
            .join()
            .unwrap_or_else(|_| Err("reading kernel BTF panicked".into()))
            .unwrap_or_else(|e| {
                tracing::warn!("exit codes and start times of watched processes unavailable: {e}");
                Default::default()
            });
        const OFFSETS: &str = "TASK_OFFSETS";
        let map = ebpf
            .map_mut(OFFSETS)
            .ok_or(LoadError::MissingMap(OFFSETS))?;
        let mut offsets: Array<_, u32> = Array::try_from(map).map_err(map_error(OFFSETS))?;
        if task.file.is_none() && task.exit_code != 0 {
            tracing::warn!(
                "kernel BTF lacks the task → file → inode members: opened files carry no \
                 identity, and symlink targets are worked out on every open"
            );
        }
        let file = task.file.unwrap_or_default();
        if task.dentry.is_none() && task.exit_code != 0 {
            tracing::warn!(
                "kernel BTF lacks the file → dentry members: writes to cgroup files outside \
                 the run are not caught"
            );
        }
        let dentry = task.dentry.unwrap_or_default();
        if task.image.is_none() && task.exit_code != 0 {
            tracing::warn!(
                "kernel BTF lacks the task → mm members: executables and argv come from the \
                 caller's memory alone"
            );
        }
        let image = task.image.unwrap_or_default();
        // Stored +1 (they may be 0, which the programs read as unknown); 0 when unknown.
        let uring = task.uring.map_or([0; 4], |u| {
            [u.open_filename, u.open_dfd, u.open_how, u.filename_name].map(|o| o + 1)
        });
        let uring_socket = task
            .uring
            .and_then(|u| u.socket)
            .map_or([0; 3], |s| s.map(|o| o + 1));
        let uring_rename = task
            .uring
            .and_then(|u| u.rename)
            .map_or([0; 5], |s| s.map(|o| o + 1));
        let uring_unlink = task
            .uring
            .and_then(|u| u.unlink)
            .map_or([0; 3], |s| s.map(|o| o + 1));
        let link_like_rename = u32::from(task.uring.is_some_and(|u| u.link_like_rename));
        let uring_fd = task.uring.and_then(|u| u.fd).map_or(0, |o| o + 1);
        let uring_xattr = task
            .uring
            .and_then(|u| u.xattr)
            .map_or([0; 2], |s| s.map(|o| o + 1));
        let uring_ftrunc_len = task.uring.and_then(|u| u.ftrunc_len).map_or(0, |o| o + 1);
        use monitor_common as c;
        for (index, value) in [
            (c::TASK_EXIT_CODE, task.exit_code),
            (c::TASK_GROUP_LEADER, task.group_leader),
            (c::TASK_START_BOOTTIME, task.start_boottime),
            (c::TASK_FILES, file.task_files),
            (c::FILES_FDT, file.files_fdt),
            (c::FDTABLE_FD, file.fdtable_fd),
            (c::FILE_INODE, file.file_inode),
            (c::INODE_INO, file.inode_ino),
            (c::INODE_SB, file.inode_sb),
            (c::SB_DEV, file.sb_dev),
            (c::FILE_DENTRY, dentry.file_dentry),
            (c::DENTRY_PARENT, dentry.dentry_parent),
            (c::DENTRY_INODE, dentry.dentry_inode),
            (c::SB_MAGIC, dentry.sb_magic),
            (c::TASK_MM, image.task_mm),
            (c::MM_EXE_FILE, image.mm_exe_file),
            (c::MM_ARG_START, image.mm_arg_start),
            (c::MM_ARG_END, image.mm_arg_end),
            (c::INODE_NLINK, image.inode_nlink),
            (c::DENTRY_NAME, image.dentry_name),
            // Stored +1 (i_mode is the inode's first member); 0 when unknown.
            (
                c::INODE_MODE,
                if task.image.is_some() {
                    image.inode_mode + 1
                } else {
                    0
                },
            ),
            (c::INODE_RDEV, image.inode_rdev),
            (c::MM_ENV_START, image.mm_env_start),
            (c::MM_ENV_END, image.mm_env_end),
            (c::URING_OPEN_FILENAME, uring[0]),
            (c::URING_OPEN_DFD, uring[1]),
            (c::URING_OPEN_HOW, uring[2]),
            (c::FILENAME_NAME, uring[3]),
            (c::URING_SOCKET_DOMAIN, uring_socket[0]),
            (c::URING_SOCKET_TYPE, uring_socket[1]),
            (c::URING_SOCKET_PROTOCOL, uring_socket[2]),
            (c::URING_RENAME_OLD_DFD, uring_rename[0]),
            (c::URING_RENAME_NEW_DFD, uring_rename[1]),
            (c::URING_RENAME_OLDPATH, uring_rename[2]),
            (c::URING_RENAME_NEWPATH, uring_rename[3]),
            (c::URING_RENAME_FLAGS, uring_rename[4]),
            (c::URING_LINK_LIKE_RENAME, link_like_rename),
            (c::URING_UNLINK_DFD, uring_unlink[0]),
            (c::URING_UNLINK_FLAGS, uring_unlink[1]),
            (c::URING_UNLINK_FILENAME, uring_unlink[2]),
            (c::URING_FD, uring_fd),
            (c::URING_XATTR_FILENAME, uring_xattr[0]),
            (c::URING_XATTR_KNAME, uring_xattr[1]),
            (c::URING_FTRUNC_LEN, uring_ftrunc_len),
        ] {
            offsets.set(index, &value, 0).map_err(map_error(OFFSETS))?;
        }
        Ok(Self {
            ebpf,
            logger,
            links: sensors::ALL.iter().map(|_| Vec::new()).collect(),
        })
    }

    /// Attach one sensor: its tracepoints, and its cgroup programs on `anchor` (the run's
    /// cgroup; they see that cgroup and everything below it).
    pub fn attach(&mut self, sensor: &Spec, anchor: &fs::File) -> Result<(), LoadError> {
        let mut links = Vec::new();
        let result = (|| {
            for Probe(name, category, tp) in sensor.tracepoints {
                let prog: &mut TracePoint = program(&mut self.ebpf, name)?;
                let id = prog.attach(category, tp).map_err(program_error(name))?;
                links.push(Link::TracePoint(name, id));
            }
            for name in sensor.sock_addr {
                let prog: &mut CgroupSockAddr = program(&mut self.ebpf, name)?;
                // A bpf_link always composes with other programs on the cgroup; the kernel
                // rejects attach flags on link creation, so the mode must be Single (flags 0).
                let id = prog
                    .attach(anchor.as_fd(), CgroupAttachMode::Single)
                    .map_err(program_error(name))?;
                links.push(Link::SockAddr(name, id));
            }
            for (name, attach_type) in sensor.skb {
                let prog: &mut CgroupSkb = program(&mut self.ebpf, name)?;
                let id = prog
                    .attach(anchor.as_fd(), *attach_type, CgroupAttachMode::Single)
                    .map_err(program_error(name))?;
                links.push(Link::Skb(name, id));
            }
            Ok(())
        })();
        self.links[sensor.id as usize].extend(links);
        if result.is_err() {
            // All or nothing: a half-attached sensor would report a partial picture.
            self.detach(sensor);
        }
        result
    }

    /// Attach every sensor.
    pub fn attach_all(&mut self, anchor: &fs::File) -> Result<(), LoadError> {
        for spec in sensors::ALL {
            self.attach(spec, anchor)?;
        }
        Ok(())
    }

    /// Detach one sensor's programs (the others keep running).
    pub fn detach(&mut self, sensor: &Spec) {
        for link in std::mem::take(&mut self.links[sensor.id as usize]) {
            let result = match link {
                Link::TracePoint(name, id) => {
                    program::<TracePoint>(&mut self.ebpf, name).map(|p| p.detach(id))
                }
                Link::SockAddr(name, id) => {
                    program::<CgroupSockAddr>(&mut self.ebpf, name).map(|p| p.detach(id))
                }
                Link::Skb(name, id) => {
                    program::<CgroupSkb>(&mut self.ebpf, name).map(|p| p.detach(id))
                }
            };
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("detaching the {} sensor: {e}", sensor.name()),
                Err(e) => tracing::warn!("detaching the {} sensor: {e}", sensor.name()),
            }
        }
    }

    /// Whether a sensor is attached.
    pub fn attached(&self, sensor: &Spec) -> bool {
        !self.links[sensor.id as usize].is_empty()
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
        // (fork, setsid, prctl, close, read, close_range, _exit) on their own stack.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                // A name to be found by: `pgrep -x bw-detach` (the bench waits for it). Set
                // before the second fork, so the releaser has it before buildwatch goes on.
                libc::prctl(libc::PR_SET_NAME, c"bw-detach".as_ptr());
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

    /// The ring buffer every sensor writes to, mapped for reading (its data once, see
    /// `ingest::ring`). Can be taken once.
    pub fn take_events(&mut self) -> Result<crate::ingest::ring::EventRing, LoadError> {
        const NAME: &str = "EVENTS";
        match self.ebpf.take_map(NAME) {
            Some(aya::maps::Map::RingBuf(data)) => crate::ingest::ring::EventRing::new(data)
                .map_err(|e| LoadError::Ring(e.to_string())),
            Some(_) => Err(LoadError::Ring(format!("{NAME} is not a ring buffer"))),
            None => Err(LoadError::MissingMap(NAME)),
        }
    }

    /// The kernel-side counters of every sensor, frozen against writes through bpf(2) (root
    /// in the run could otherwise zero them and hide a loss; the programs still count). Can
    /// be taken once.
    pub fn take_counters(&mut self) -> Result<Counters, LoadError> {
        let map = self
            .ebpf
            .take_map("COUNTERS")
            .ok_or(LoadError::MissingMap("COUNTERS"))?;
        if let aya::maps::Map::PerCpuArray(data) = &map {
            freeze(data.fd().as_fd()).map_err(LoadError::Freeze)?;
        }
        Ok(Counters {
            map: PerCpuArray::try_from(map).map_err(map_error("COUNTERS"))?,
            logger: self.logger.take(),
        })
    }

    /// Name the pids (and, negated, process groups) a signal from the run must be reported
    /// for: buildwatch, its guardian and their process group.
    pub fn protect(&mut self, targets: &[i32]) -> Result<(), LoadError> {
        const NAME: &str = "PROTECTED";
        let map = self.ebpf.map_mut(NAME).ok_or(LoadError::MissingMap(NAME))?;
        let mut map: aya::maps::HashMap<_, i32, u8> =
            aya::maps::HashMap::try_from(map).map_err(map_error(NAME))?;
        for t in targets {
            map.insert(t, &1, 0).map_err(map_error(NAME))?;
        }
        Ok(())
    }

    /// Follow `pid` (a process of the run) by lineage, or stop (`follow` false: a process
    /// buildwatch itself moves out of the run, a kept straggler).
    pub fn track(&mut self, pid: u32, follow: bool) -> Result<(), LoadError> {
        const NAME: &str = "TRACKED";
        let map = self.ebpf.map_mut(NAME).ok_or(LoadError::MissingMap(NAME))?;
        let mut map: aya::maps::HashMap<_, u32, u8> =
            aya::maps::HashMap::try_from(map).map_err(map_error(NAME))?;
        if follow {
            map.insert(&pid, &1, 0).map_err(map_error(NAME))?;
        } else {
            // Gone already: nothing to stop.
            let _ = map.remove(&pid);
        }
        Ok(())
    }

    /// The set of watched cgroups. Can be taken once.
    pub fn take_scope(&mut self) -> Result<ScopeMap, LoadError> {
        ScopeMap::new(&mut self.ebpf)
    }

    /// The agent's doorbell for cgroup changes: a program on cgroup:cgroup_mkdir,
    /// cgroup_rmdir and cgroup_rename counts every change, so the agent walks the tree only
    /// when something changed. Attached until the kernel side is dropped. Can be taken once.
    pub fn watch_cgroup_changes(&mut self) -> Result<CgroupChanges, LoadError> {
        const NAME: &str = "cgroup_changed";
        let prog: &mut TracePoint = program(&mut self.ebpf, NAME)?;
        prog.load().map_err(program_error(NAME))?;
        for tp in ["cgroup_mkdir", "cgroup_rmdir", "cgroup_rename"] {
            prog.attach("cgroup", tp).map_err(program_error(NAME))?;
        }
        const MAP: &str = "CGROUP_CHANGES";
        let map = self.ebpf.take_map(MAP).ok_or(LoadError::MissingMap(MAP))?;
        Ok(CgroupChanges(Array::try_from(map).map_err(map_error(MAP))?))
    }

    /// Block mode: egress outside `allow` is refused in the kernel from now on (the maps are
    /// frozen). The number of networks written.
    pub fn block_egress(
        &mut self,
        allow: &[super::egress::Allow],
        proxy: Option<&super::egress::ProxySetup>,
    ) -> Result<(usize, Option<super::egress::Opener>), LoadError> {
        super::egress::block(&mut self.ebpf, allow, proxy)
    }

    /// Count read-only opens under the system directories per process instead of reporting
    /// them ([`monitor_common::SUMMARY_DIRS`]). The switch is frozen on; the handle tells at
    /// the end whether the run turned it off (see [`monitor_common::SUMMARY_TRIPPED`]).
    pub fn summarize_reads(&mut self) -> Result<ReadSummary, LoadError> {
        use std::os::fd::AsFd;
        const NAME: &str = "SUMMARY";
        let mut map = self
            .ebpf
            .take_map(NAME)
            .ok_or(LoadError::MissingMap(NAME))?;
        {
            let mut a: Array<&mut aya::maps::MapData, u32> =
                Array::try_from(&mut map).map_err(map_error(NAME))?;
            a.set(monitor_common::SUMMARY_ENABLED, &1, 0)
                .map_err(map_error(NAME))?;
        }
        let aya::maps::Map::Array(data) = &map else {
            return Err(LoadError::MissingMap(NAME));
        };
        freeze(data.fd().as_fd()).map_err(LoadError::Freeze)?;
        let map = Array::try_from(map).map_err(map_error(NAME))?;
        Ok(ReadSummary { map })
    }

    /// Block mode's credential guard (see [`super::egress::guard`]).
    pub fn guard_files(&mut self, files: &[(u64, u64, Vec<String>)]) -> Result<usize, LoadError> {
        super::egress::guard(&mut self.ebpf, files)
    }
}

/// The kernel's read summary switch (see [`Kernel::summarize_reads`]).
pub struct ReadSummary {
    map: Array<aya::maps::MapData, u32>,
}

impl ReadSummary {
    /// Did the run make a new name where a summarized path could lead (summarizing stopped)?
    pub fn tripped(&self) -> bool {
        self.map
            .get(&monitor_common::SUMMARY_TRIPPED, 0)
            .is_ok_and(|v| v == 1)
    }
}

/// BPF_MAP_FREEZE: from now on no bpf(2) caller, root included, can change the map; the
/// programs still can. (aya freezes only `.rodata` itself.)
pub(crate) fn freeze(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const BPF_MAP_FREEZE: libc::c_long = 22;
    // union bpf_attr: the map_fd is its first member for this command.
    let mut attr = [0u64; 16];
    attr[0] = fd.as_raw_fd() as u32 as u64;
    // SAFETY: a zeroed bpf_attr of the size passed, with map_fd set.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_FREEZE,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The programs that take the verifier longest, longest first (`BPF_PROG_LOAD` times from
/// strace, 2026-12): loaded first, so that neither loader thread is left with one at the end.
const HEAVIEST: [&str; 8] = [
    "sys_exit_open_any",
    "sys_enter_execve",
    "sched_process_exec",
    "io_uring_submit_req",
    "sys_exit_exec_any",
    "sys_enter_execveat",
    "task_newtask",
    "sys_exit_relink",
];

/// Load (and have the kernel verify) every sensor's programs, on two threads: verification is
/// most of buildwatch's start-up, and it runs in the calling thread. A program may serve
/// several tracepoints (one exit program for every rename and link call): it is loaded once.
fn load_programs(ebpf: &mut Ebpf) -> Result<(), LoadError> {
    let mut wanted = std::collections::HashSet::new();
    for spec in sensors::ALL {
        wanted.extend(spec.programs());
    }
    for name in &wanted {
        if ebpf.program(name).is_none() {
            return Err(LoadError::MissingProgram(name));
        }
    }
    let mut progs: Vec<(&str, &mut aya::programs::Program)> = ebpf
        .programs_mut()
        .filter(|(name, _)| wanted.contains(name))
        .collect();
    // One queue for both threads, the longest to verify taken first (a fixed split left one
    // thread idle while the other verified the open exit): the rest by name, so a run is
    // repeatable. A program missing from HEAVIEST only costs balance.
    let weight = |name: &str| {
        HEAVIEST
            .iter()
            .position(|h| *h == name)
            .unwrap_or(HEAVIEST.len())
    };
    progs.sort_by(|(a, _), (b, _)| weight(b).cmp(&weight(a)).then(b.cmp(a)));
    let queue = std::sync::Mutex::new(progs);
    let load = || -> Result<(), LoadError> {
        loop {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some((name, prog)) = next else {
                return Ok(());
            };
            let result = match prog {
                aya::programs::Program::TracePoint(p) => p.load(),
                aya::programs::Program::CgroupSockAddr(p) => p.load(),
                aya::programs::Program::CgroupSkb(p) => p.load(),
                _ => continue,
            };
            let name: &'static str = wanted.get(name).copied().unwrap_or("?");
            if let Err(e) = result {
                // The other thread stops at its next program.
                queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
                return Err(program_error(name)(e));
            }
        }
    };
    let loaded = std::thread::scope(|s| {
        let other = s.spawn(load);
        let mine = load();
        let theirs = other
            .join()
            .unwrap_or_else(|_| Err(LoadError::MissingProgram("(a loader thread panicked)")));
        mine.and(theirs)
    });
    // The second thread's allocations went to a malloc arena of its own, which keeps them
    // after they are freed: about 2 MB of resident memory for the rest of the run. Give it
    // back.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    loaded
}

/// How many cgroups were made, removed or renamed since the agent's doorbell was attached
/// ([`Kernel::watch_cgroup_changes`]).
pub struct CgroupChanges(Array<MapData, u64>);

impl CgroupChanges {
    /// The count now; `None` when the map cannot be read (then walk anyway).
    pub fn count(&self) -> Option<u64> {
        self.0.get(&0, 0).ok()
    }
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

/// The kernel programs' counters: one row per sensor, one column per reason; and their
/// diagnostics, read at the same time.
pub struct Counters {
    map: PerCpuArray<MapData, u64>,
    logger: Option<EbpfLogger<KernelLog>>,
}

impl Counters {
    /// Every counter above 0, summed over CPUs (and the programs' diagnostics since the last
    /// read, into tracing).
    pub fn read(&mut self) -> KernelStats {
        if let Some(l) = &mut self.logger {
            l.flush();
        }
        let mut stats = KernelStats::default();
        for spec in sensors::ALL {
            for (reason, name) in counters::NAMES.iter().enumerate() {
                let idx = counters::index(spec.id, reason as u32);
                let n: u64 = self.map.get(&idx, 0).map(|v| v.iter().sum()).unwrap_or(0);
                if n > 0 {
                    stats
                        .sensors
                        .entry(spec.name().into())
                        .or_default()
                        .insert((*name).into(), n);
                }
            }
        }
        stats
    }
}

/// Where the programs' aya-log records go: tracing, at debug level under the target `kernel`
/// (`BUILDWATCH_LOG=kernel=debug` shows them; by default they are not even compiled in).
pub struct KernelLog;

impl log::Log for KernelLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        tracing::debug!(target: "kernel", "{}", record.args());
    }
    fn flush(&self) {}
}
