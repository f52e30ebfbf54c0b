//! Wire format between the kernel programs (`monitor-ebpf`) and userspace (`monitor`).
//!
//! Every ring-buffer record starts with an [`EventHeader`]; its `kind` says which body follows.
//! Fixed-size bodies are written in place into a ring-buffer reservation. Bodies that carry
//! strings (exec, open, chdir) end in a variable-length tail whose lengths are given in the body;
//! those records are assembled in a per-CPU scratch buffer and copied with `bpf_ringbuf_output`
//! so a 20-byte path costs 20 bytes of ring, not `PATH_MAX`.
//!
//! Rules for these types: `#[repr(C)]`, no `bool`, no implicit padding (explicit `_pad` fields),
//! and a size assertion per type so a layout change cannot slip through unnoticed.

#![no_std]

use core::mem::size_of;

/// Bump when a wire type changes layout; userspace refuses objects built for another version.
pub const WIRE_VERSION: u32 = 4;

/// Most DNS payload bytes a [`DnsPacket`] carries (a power of two); longer payloads are cut
/// and flagged [`flags::PAYLOAD_TRUNCATED`].
pub const DNS_PAYLOAD_MAX: usize = 2048;
/// The DNS port the capture filters on.
pub const DNS_PORT: u16 = 53;

/// Indexes of the kernel's `TASK_OFFSETS` map: byte offsets of kernel structure members,
/// `task_struct`'s and those on the way from a task to an open file's inode.
pub const TASK_EXIT_CODE: u32 = 0;
pub const TASK_GROUP_LEADER: u32 = 1;
pub const TASK_START_BOOTTIME: u32 = 2;
/// `task_struct.files`
pub const TASK_FILES: u32 = 3;
/// `files_struct.fdt`
pub const FILES_FDT: u32 = 4;
/// `fdtable.fd`
pub const FDTABLE_FD: u32 = 5;
/// `file.f_inode`
pub const FILE_INODE: u32 = 6;
/// `inode.i_ino`
pub const INODE_INO: u32 = 7;
/// `inode.i_sb`
pub const INODE_SB: u32 = 8;
/// `super_block.s_dev`
pub const SB_DEV: u32 = 9;
/// `file.f_path` + `path.dentry`
pub const FILE_DENTRY: u32 = 10;
/// `dentry.d_parent`
pub const DENTRY_PARENT: u32 = 11;
/// `dentry.d_inode`
pub const DENTRY_INODE: u32 = 12;
/// `super_block.s_magic`
pub const SB_MAGIC: u32 = 13;
/// `task_struct.mm`
pub const TASK_MM: u32 = 14;
/// `mm_struct.exe_file`
pub const MM_EXE_FILE: u32 = 15;
/// `mm_struct.arg_start`
pub const MM_ARG_START: u32 = 16;
/// `mm_struct.arg_end`
pub const MM_ARG_END: u32 = 17;
/// `inode.i_nlink`
pub const INODE_NLINK: u32 = 18;
/// `dentry.d_name` + `qstr.name`
pub const DENTRY_NAME: u32 = 19;
/// `io_kiocb.cmd` + `io_open.filename`, plus 1 (it may be 0: stored biased)
pub const URING_OPEN_FILENAME: u32 = 20;
/// `io_kiocb.cmd` + `io_open.dfd`, plus 1
pub const URING_OPEN_DFD: u32 = 21;
/// `io_kiocb.cmd` + `io_open.how` (`open_how.flags` first, then `mode`), plus 1
pub const URING_OPEN_HOW: u32 = 22;
/// `filename.name`, plus 1
pub const FILENAME_NAME: u32 = 23;
/// `io_kiocb.cmd` + `io_socket.domain`, plus 1
pub const URING_SOCKET_DOMAIN: u32 = 24;
/// `io_kiocb.cmd` + `io_socket.type`, plus 1
pub const URING_SOCKET_TYPE: u32 = 25;
/// `io_kiocb.cmd` + `io_socket.protocol`, plus 1
pub const URING_SOCKET_PROTOCOL: u32 = 26;
/// `inode.i_mode`, plus 1 (it is 0 in today's kernels: stored biased)
pub const INODE_MODE: u32 = 27;
/// `inode.i_rdev`
pub const INODE_RDEV: u32 = 28;
/// `mm_struct.env_start`
pub const MM_ENV_START: u32 = 29;
/// `mm_struct.env_end`
pub const MM_ENV_END: u32 = 30;
/// `io_kiocb.cmd` + `io_rename.{old_dfd, new_dfd, oldpath, newpath, flags}`, plus 1 (0:
/// unknown, and io_uring renames and links are then not reported).
pub const URING_RENAME_OLD_DFD: u32 = 31;
pub const URING_RENAME_NEW_DFD: u32 = 32;
pub const URING_RENAME_OLDPATH: u32 = 33;
pub const URING_RENAME_NEWPATH: u32 = 34;
pub const URING_RENAME_FLAGS: u32 = 35;
/// 1 when `io_link` (IORING_OP_LINKAT, IORING_OP_SYMLINKAT) has `io_rename`'s layout, so the
/// offsets above read it too.
pub const URING_LINK_LIKE_RENAME: u32 = 36;
/// `io_kiocb.cmd` + `io_unlink.{dfd, flags, filename}`, plus 1.
pub const URING_UNLINK_DFD: u32 = 37;
pub const URING_UNLINK_FLAGS: u32 = 38;
pub const URING_UNLINK_FILENAME: u32 = 39;
/// `io_kiocb.cqe` + `io_cqe.fd`, plus 1: the descriptor a request on an open file names
/// (IORING_OP_FSETXATTR, IORING_OP_FTRUNCATE), set when the request is prepared.
pub const URING_FD: u32 = 40;
/// `io_kiocb.cmd` + `io_xattr.filename`, plus 1: IORING_OP_SETXATTR's path.
pub const URING_XATTR_FILENAME: u32 = 41;
/// `io_kiocb.cmd` + `io_xattr.ctx` + `kernel_xattr_ctx.kname`, plus 1: the kernel's copy of
/// the attribute's name (`struct xattr_name`, the name first).
pub const URING_XATTR_KNAME: u32 = 42;
/// `io_kiocb.cmd` + `io_ftrunc.len`, plus 1.
pub const URING_FTRUNC_LEN: u32 = 43;
pub const TASK_OFFSET_COUNT: u32 = 44;
/// io_uring opcodes the sensors read (linux/io_uring.h).
pub const IORING_OP_OPENAT: u8 = 18;
pub const IORING_OP_OPENAT2: u8 = 28;
/// io_uring opcodes that make a new name: IORING_OP_RENAMEAT, IORING_OP_SYMLINKAT,
/// IORING_OP_LINKAT.
pub const IORING_OP_RENAMEAT: u8 = 35;
pub const IORING_OP_UNLINKAT: u8 = 36;
pub const IORING_OP_SYMLINKAT: u8 = 38;
pub const IORING_OP_LINKAT: u8 = 39;
/// io_uring opcodes that set an extended attribute (since 5.19): fsetxattr(2) and
/// setxattr(2) without the syscall.
pub const IORING_OP_FSETXATTR: u8 = 41;
pub const IORING_OP_SETXATTR: u8 = 42;
pub const IORING_OP_SOCKET: u8 = 45;
/// IORING_OP_LISTEN (since 6.11): listen(2) without the syscall.
pub const IORING_OP_LISTEN: u8 = 57;
/// IORING_OP_FTRUNCATE (since 6.9): ftruncate(2) without the syscall.
pub const IORING_OP_FTRUNCATE: u8 = 55;
/// `io_kiocb.flags` (the submit tracepoint's `flags`): the request's file is a registered
/// one (IOSQE_FIXED_FILE), so its `fd` is an index into the ring's table, not a descriptor.
pub const REQ_F_FIXED_FILE: u64 = 1;
/// Longest file name (one path component) the kernel side copies, with its NUL.
pub const NAME_MAX: usize = 256;
/// `CGROUP2_SUPER_MAGIC` (linux/magic.h).
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
/// Most directory levels the cgroup-escape check walks up from a cgroup v2 file.
pub const CGROUP_MAX_DEPTH: usize = 16;

/// Most cgroups watched at once (the `SCOPE` map's size).
pub const SCOPE_MAX_CGROUPS: u32 = 4096;

/// Prefixes each of the egress allowlist tries (`ALLOW4`, `ALLOW6`) holds.
pub const ALLOW_MAX: u32 = 4096;
/// Ports one allowlist prefix can name (more ports: more entries are not possible for one
/// prefix, so the loader says so).
pub const ALLOW_PORTS: usize = 8;

/// What an allowlist prefix allows (the value of `ALLOW4` / `ALLOW6`): any port, or the
/// first `n` of `ports`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowPorts {
    pub any: u8,
    pub n: u8,
    pub ports: [u16; ALLOW_PORTS],
}
/// Block mode's DNS proxy: the `DNS_PROXY` map's one entry. With `on`, the run's port-53
/// traffic to its resolvers (UDP and TCP) is redirected to `addr4:port` (loopback, where
/// buildwatch answers), and every other port-53 or DNS-over-TLS destination is refused.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsProxy {
    pub on: u32,
    /// IPv4, network order.
    pub addr4: [u8; 4],
    pub port: u16,
    pub _pad: u16,
}

/// Resolver addresses (per family) whose port-53 traffic goes to the DNS proxy.
pub const RESOLVERS_MAX: u32 = 64;
/// Destinations allowed DNS answers opened during a block-mode run (per family).
pub const OPENED_MAX: u32 = 65536;
/// Sockets whose redirected destination is remembered (for the source of their replies).
pub const REDIRECTED_MAX: u32 = 16384;
/// DNS over TLS.
pub const DOT_PORT: u16 = 853;

/// A destination an allowed DNS answer opened (`OPENED4` key): the address (network order)
/// and the allowlist entry's port, 0 for any.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opened4 {
    pub addr: [u8; 4],
    pub port: u16,
    pub _pad: u16,
}

/// The IPv6 form of [`Opened4`] (`OPENED6` key).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opened6 {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: u16,
}

/// Where a redirected socket meant to go (`REDIRECTED` value, by socket cookie): its
/// replies are shown as coming from there. `addr` as [`Opened6`] (IPv4 in the first 4
/// bytes when `family` is AF_INET); `port` in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrigDest {
    pub family: u16,
    pub port: u16,
    pub addr: [u8; 16],
}

/// Credential files block mode guards (the `GUARDED` map).
pub const GUARDED_MAX: u32 = 4096;
/// Tools one guarded file may name as its owners.
pub const GUARD_OWNERS: usize = 16;

/// A file's identity as the kernel sees it: `super_block.s_dev` and the inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// The tools (kernel `comm`, NUL-padded) that may open a guarded file for reading: the first
/// `n` of `comm`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardOwners {
    pub n: u32,
    pub _pad: u32,
    pub comm: [[u8; 16]; GUARD_OWNERS],
}

impl Default for GuardOwners {
    fn default() -> Self {
        Self {
            n: 0,
            _pad: 0,
            comm: [[0; 16]; GUARD_OWNERS],
        }
    }
}

/// Most distinct cgroup levels (depths below the v2 root) the watched cgroups may sit at: the
/// scope check looks up the task's ancestor at each (a handful of lookups, and a loop the
/// verifier checks in a few hundred instructions, where one over every possible level cost
/// each program about a millisecond to verify).
pub const SCOPE_MAX_LEVELS: usize = 8;

/// The `SCOPE_LEVELS` map's one entry: where to look for watched cgroups.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ScopeLevels {
    /// Nonzero: every task is in scope (host-wide).
    pub all: u32,
    /// How many of `levels` are in use.
    pub count: u32,
    /// The distinct levels the watched cgroups sit at.
    pub levels: [u32; SCOPE_MAX_LEVELS],
    /// Nonzero: the tgid never in scope, whatever its cgroup (the agent itself: watching its
    /// own reading of the ring would feed itself).
    pub ignore_tgid: u32,
    /// Nonzero: the host agent. Scope is the watched cgroups and nothing else: no process is
    /// followed by lineage, and nothing that leaves them (a login shell moved into its
    /// session, a container's first process into its scope) is killed, as a run's would be.
    pub agent: u32,
}

/// Longest path the kernel side copies (Linux `PATH_MAX`, including the NUL).
pub const PATH_MAX: usize = 4096;
/// Most argv entries an exec event carries before setting [`flags::ARGV_TRUNCATED`].
pub const ARGV_MAX_ARGS: usize = 64;
/// Most argv bytes (NUL separators included) an exec event carries.
pub const ARGV_MAX_BYTES: usize = 4096;
/// Most bytes of a new image's environment an exec event carries (userspace keeps only the
/// variables that matter, never the whole environment).
pub const ENV_MAX_BYTES: usize = 16384;
/// Size of `struct sockaddr_storage`-like copies taken from connect(2).
pub const SOCKADDR_MAX: usize = 112;

/// Event kinds. Discriminants are part of the wire format: never reuse or renumber one.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// execve/execveat entered: filename and argv (body [`ExecEnter`]).
    ExecEnter = 1,
    /// execve/execveat returned (body [`ExecDone`]); ret 0 means the new image runs, and then
    /// the record carries the kernel's facts about it.
    ExecExit = 2,
    /// A new process (not a thread) was created (body [`Fork`]).
    Fork = 3,
    /// The last thread of a process exited (body [`Exit`]).
    Exit = 4,
    /// open/openat/openat2 returned (body [`Open`] + path).
    Open = 5,
    /// chdir returned (body [`Chdir`] + path).
    Chdir = 6,
    /// fchdir returned (body [`Fchdir`]).
    Fchdir = 7,
    /// connect returned (body [`Connect`]).
    Connect = 8,
    /// A UDP datagram was sent to an explicit destination (body [`SendTo`]).
    SendTo = 9,
    /// Reserved for the stream: events the kernel could not deliver. Never sent by the kernel;
    /// userspace synthesises it from [`counters`].
    Lost = 10,
    /// ptrace(2) with an attaching request returned (body [`TargetCall`], `op` = the request):
    /// PTRACE_ATTACH, PTRACE_SEIZE or PTRACE_TRACEME. Other requests act on a tracee already
    /// attached and are not reported.
    Ptrace = 11,
    /// process_vm_readv/process_vm_writev returned (body [`TargetCall`], `op` = [`VM_READ`] or
    /// [`VM_WRITE`]).
    ProcessVm = 12,
    /// A TCP segment or UDP datagram to or from port 53 of a socket in the watched cgroup (body
    /// [`DnsPacket`] + payload).
    DnsPacket = 13,
    /// bpf(2) was entered (body [`BpfCall`]): sent before the call takes effect, since a
    /// bpf(2) caller with root can detach the sensors or rewrite their maps.
    Bpf = 14,
    /// socket(2) returned for a raw or packet socket (body [`SocketCall`]): one that can forge
    /// or sniff packets below TCP and UDP. Other sockets are not reported.
    Socket = 15,
    /// rename/renameat/renameat2, link/linkat or symlink/symlinkat returned (body [`Relink`] +
    /// both paths): a name made for a file without opening it.
    Relink = 16,
    /// kill/tkill/tgkill entered with a signal for buildwatch, its guardian or its process
    /// group, for every process, or for the caller's own group; or pidfd_open of buildwatch
    /// or its guardian (body [`SignalCall`]). Sent before the signal is delivered.
    Signal = 17,
    /// A process of the run found outside every watched cgroup (body [`Escape`]): it left by a
    /// way the open check did not stop (clone3 with CLONE_INTO_CGROUP, a daemon moving it).
    /// It is still watched, and killed.
    Escape = 18,
    /// bind(2) of an IPv4 or IPv6 socket (cgroup bind4/bind6 hook: the kernel's copy of the
    /// address; body [`SendTo`], its fields meaning the local address asked for and the
    /// socket's protocol). Sent before the bind takes effect.
    Bind = 19,
    /// A successful exec's standard descriptors and environment (body [`ExecFacts`] + the
    /// environment), sent before its [`EventKind::ExecExit`].
    ExecFacts = 20,
    /// listen(2) entered, or IORING_OP_LISTEN submitted (with [`flags::NO_RESULT`], fd -1)
    /// (body [`ListenCall`]). A socket that listens without a bind(2) gets its port from the
    /// kernel (autobind), where no bind hook runs.
    Listen = 21,
}

impl EventKind {
    pub const fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::ExecEnter,
            2 => Self::ExecExit,
            3 => Self::Fork,
            4 => Self::Exit,
            5 => Self::Open,
            6 => Self::Chdir,
            7 => Self::Fchdir,
            8 => Self::Connect,
            9 => Self::SendTo,
            10 => Self::Lost,
            11 => Self::Ptrace,
            12 => Self::ProcessVm,
            13 => Self::DnsPacket,
            14 => Self::Bpf,
            15 => Self::Socket,
            16 => Self::Relink,
            17 => Self::Signal,
            18 => Self::Escape,
            19 => Self::Bind,
            20 => Self::ExecFacts,
            21 => Self::Listen,
            _ => return None,
        })
    }
}

/// Bits of [`EventHeader::flags`].
pub mod flags {
    /// The filename/path tail was cut at [`crate::PATH_MAX`].
    pub const PATH_TRUNCATED: u16 = 1 << 0;
    /// argv was cut (too many args or too many bytes).
    pub const ARGV_TRUNCATED: u16 = 1 << 1;
    /// A user-memory read failed; the affected string is empty or partial.
    pub const READ_FAILED: u16 = 1 << 2;
    /// The event is from execveat (otherwise execve), or openat2 / open for [`crate::Open`].
    pub const SYSCALL_AT: u16 = 1 << 3;
    /// [`crate::Open`] came from openat2.
    pub const SYSCALL_OPENAT2: u16 = 1 << 4;
    /// [`crate::Open`] came from open(2) (no dirfd).
    pub const SYSCALL_OPEN: u16 = 1 << 5;
    /// [`crate::Open`] came from an io_uring request (both bits, never set together by a
    /// syscall): IORING_OP_OPENAT, or IORING_OP_OPENAT2 with [`SYSCALL_OPENAT2`] too.
    /// Reported at submission, with [`NO_RESULT`]: the fd comes later, in the completion.
    pub const SYSCALL_URING: u16 = SYSCALL_OPEN | SYSCALL_AT;
    /// [`crate::Open`] came from open_by_handle_at (both bits, never set together by
    /// another call): there is no path in the call, only a file handle (`path_len` 0).
    pub const SYSCALL_BY_HANDLE: u16 = SYSCALL_OPEN | SYSCALL_OPENAT2;
    /// [`crate::Exit::code`] is not known (the kernel offset of `task_struct.exit_code` was not found).
    pub const EXIT_CODE_UNKNOWN: u16 = 1 << 6;
    /// [`crate::DnsPacket`]: the payload was cut at [`crate::DNS_PAYLOAD_MAX`].
    pub const PAYLOAD_TRUNCATED: u16 = 1 << 7;
    /// [`crate::DnsPacket`]: received by the watched socket (otherwise sent).
    pub const INGRESS: u16 = 1 << 8;
    /// [`crate::Open`]: a cgroup v2 file outside the watched cgroups was opened for writing
    /// (moving a process out of the run, freezing or killing another cgroup).
    pub const CGROUP_OUTSIDE: u16 = 1 << 9;
    /// The kernel program sent SIGKILL to the calling process: it dies before the syscall
    /// returns to user space.
    pub const KILLED: u16 = 1 << 10;
    /// [`crate::Connect`]: the address is the kernel's own copy (from the cgroup connect
    /// hook), not re-read from the caller's memory.
    pub const KERNEL_ADDR: u16 = 1 << 11;
    /// [`crate::Relink`] from io_uring only (shares its value with the connect-only
    /// [`KERNEL_ADDR`]): the request's file is a registered one (IOSQE_FIXED_FILE), and
    /// `old_dirfd` is its index in the ring's table, not a descriptor.
    pub const FIXED_FILE: u16 = 1 << 11;
    /// [`crate::Connect`]: reported by the connect hook without a connect(2) around it
    /// (io_uring, TCP Fast Open through sendmsg): no result, no fd.
    pub const NO_RESULT: u16 = 1 << 12;
    /// In [`crate::StashedArgs::flags`] only: the stashed syscall is connect(2).
    pub const STASH_CONNECT: u16 = 1 << 13;
    /// [`crate::Connect`], [`crate::SendTo`] only (shares its value with the stash-only
    /// [`STASH_CONNECT`]): block mode refused the destination; the call failed with EPERM.
    pub const REFUSED: u16 = 1 << 13;
    /// In the stash of a connect(2) only (shares its value with the record-only
    /// [`PATH_TRUNCATED`]): the connect hook refused the destination.
    pub const STASH_REFUSED: u16 = 1 << 0;
    /// In [`crate::StashedArgs::flags`] only: the stashed syscall is socket(2).
    pub const STASH_SOCKET: u16 = 1 << 14;
    /// [`crate::Connect`], [`crate::SendTo`] only (shares its value with the stash-only
    /// [`STASH_SOCKET`]): block mode redirected this port-53 destination to buildwatch's DNS
    /// proxy.
    pub const REDIRECTED: u16 = 1 << 14;
    /// In the stash of a connect(2) only (shares its value with the record-only
    /// [`ARGV_TRUNCATED`]): the connect hook redirected the destination to the DNS proxy.
    pub const STASH_REDIRECTED: u16 = 1 << 1;
    /// [`crate::ExecDone`]: the new image's argv was cut at [`crate::ARGV_MAX_BYTES`].
    pub const IMAGE_ARGV_TRUNCATED: u16 = 1 << 15;
    /// In [`crate::StashedArgs::flags`] only (shares its value with the record-only
    /// [`IMAGE_ARGV_TRUNCATED`]): the stashed syscall is pidfd_send_signal(2).
    pub const STASH_PIDFD_SIGNAL: u16 = 1 << 15;
}

/// The sensors: units of kernel programs and maps that attach, detach and count on their own.
/// Discriminants index [`counters`] and are part of the wire format.
pub mod sensors {
    pub const EXEC: u32 = 0;
    pub const FILE: u32 = 1;
    pub const NET: u32 = 2;
    pub const DNS: u32 = 3;
    pub const PROCMEM: u32 = 4;
    pub const TAMPER: u32 = 5;
    pub const COUNT: u32 = 6;
    /// Names by discriminant, as userspace reports them.
    pub const NAMES: [&str; COUNT as usize] = ["exec", "file", "net", "dns", "procmem", "tamper"];
}

/// The per-CPU counter array `COUNTERS`: one row per sensor, one column per reason, at
/// [`counters::index`]`(sensor, reason)`.
pub mod counters {
    /// A ring-buffer reservation or output failed: the event is lost.
    pub const RINGBUF_FULL: u32 = 0;
    /// Reading user or kernel memory failed (the event was still sent, flagged READ_FAILED).
    pub const READ_ERROR: u32 = 1;
    /// The enter→exit argument stash was full: the syscall's event is lost.
    pub const STASH_FULL: u32 = 2;
    /// A syscall exit had no stashed enter (e.g. programs attached mid-syscall).
    pub const STASH_MISSING: u32 = 3;
    /// A program returned early on a failed helper call (its event, if any, is lost).
    pub const PROGRAM_ERROR: u32 = 4;
    pub const REASONS: u32 = 5;
    /// Names by reason, as userspace reports them.
    pub const NAMES: [&str; REASONS as usize] = [
        "ringbuf_full",
        "read_error",
        "stash_full",
        "stash_missing",
        "program_error",
    ];
    pub const COUNT: u32 = super::sensors::COUNT * REASONS;

    pub const fn index(sensor: u32, reason: u32) -> u32 {
        sensor * REASONS + reason
    }
}

impl EventKind {
    /// The sensor whose programs send this kind.
    pub const fn sensor(self) -> u32 {
        match self {
            Self::ExecEnter
            | Self::ExecExit
            | Self::ExecFacts
            | Self::Fork
            | Self::Exit
            | Self::Lost => sensors::EXEC,
            Self::Open | Self::Chdir | Self::Fchdir | Self::Relink => sensors::FILE,
            Self::Connect | Self::SendTo | Self::Socket | Self::Bind | Self::Listen => sensors::NET,
            Self::Ptrace | Self::ProcessVm => sensors::PROCMEM,
            Self::DnsPacket => sensors::DNS,
            Self::Bpf | Self::Signal | Self::Escape => sensors::TAMPER,
        }
    }
}

/// `AT_FDCWD` as the syscalls see it.
pub const AT_FDCWD: i32 = -100;
/// `CLONE_THREAD`, `CLONE_PARENT` from linux/sched.h.
pub const CLONE_THREAD: u64 = 0x0001_0000;
pub const CLONE_PARENT: u64 = 0x0000_8000;

/// ptrace(2) requests the ptrace sensor reports (linux/ptrace.h).
pub const PTRACE_TRACEME: i64 = 0;
pub const PTRACE_ATTACH: i64 = 16;
pub const PTRACE_SEIZE: i64 = 0x4206;
/// [`TargetCall::op`] of a [`EventKind::ProcessVm`] record.
pub const VM_READ: i64 = 0;
pub const VM_WRITE: i64 = 1;

/// Starts every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// [`EventKind`] discriminant.
    pub kind: u16,
    /// [`flags`] bits.
    pub flags: u16,
    /// Thread id of the current task.
    pub tid: u32,
    /// Process id (tgid) of the current task.
    pub pid: u32,
    /// The low 32 bits of the task's cgroup v2 id: the cgroup directory's inode number, which
    /// the kernel allocates below 2^31 (the high half is a generation that changes only after
    /// that range wrapped), so it names a live cgroup.
    pub cgroup: u32,
    /// `bpf_ktime_get_boot_ns()` at the event.
    pub ts_ns: u64,
    /// Boot-clock start time of the current process (its thread-group leader), read from the
    /// kernel's task: with `pid`, the process's identity. 0 when unknown (cgroup programs).
    pub start_ns: u64,
}

/// execve/execveat at entry. Tail: `filename_len` bytes of filename (no NUL), then `argv_len`
/// bytes of argv, each argument followed by a NUL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecEnter {
    pub header: EventHeader,
    /// execveat's dirfd (AT_FDCWD for execve).
    pub dirfd: i32,
    /// execveat's flags (AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW).
    pub at_flags: u32,
    pub filename_len: u16,
    pub argv_len: u16,
    /// Number of argv entries present in the tail.
    pub argc: u16,
    pub _pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Fork {
    pub header: EventHeader,
    /// pid of the new process (equal to its tgid: threads are not reported).
    pub child_pid: u32,
    pub _pad: u32,
    pub clone_flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Exit {
    pub header: EventHeader,
    /// `task_struct.exit_code`: wait(2) status (exit status << 8, or the signal number).
    pub code: i32,
    /// Read-only opens under [`SUMMARY_DIRS`] counted instead of reported (see `SUMMARY`).
    pub reads_summarized: u32,
}

/// open/openat/openat2 at exit. Tail: `path_len` bytes of the path as passed (no NUL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Open {
    pub header: EventHeader,
    pub ret: i64,
    /// The opened file's inode number, read from the new descriptor in the kernel's fd table
    /// (0: the open failed or the read did not succeed).
    pub ino: u64,
    /// Its filesystem's device, kernel encoding (`major << 20 | minor`).
    pub dev: u32,
    pub dirfd: i32,
    pub open_flags: u32,
    pub mode: u32,
    pub path_len: u16,
    pub _pad: [u16; 3],
}

/// chdir at exit. Tail: `path_len` bytes of the path as passed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Chdir {
    pub header: EventHeader,
    pub ret: i64,
    pub path_len: u16,
    pub _pad: [u16; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Fchdir {
    pub header: EventHeader,
    pub ret: i64,
    pub fd: i32,
    pub _pad: u32,
}

/// connect at exit, with the destination copied from user memory.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Connect {
    pub header: EventHeader,
    pub ret: i64,
    pub fd: i32,
    /// addrlen as passed to connect(2).
    pub addrlen: u32,
    /// The first `min(addrlen, SOCKADDR_MAX)` bytes of the sockaddr.
    pub addr: [u8; SOCKADDR_MAX],
}

impl Default for Connect {
    fn default() -> Self {
        Self {
            header: EventHeader::default(),
            ret: 0,
            fd: 0,
            addrlen: 0,
            addr: [0; SOCKADDR_MAX],
        }
    }
}

/// A UDP send with an explicit destination (cgroup sendmsg4/sendmsg6 hook).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SendTo {
    pub header: EventHeader,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Destination port, host byte order.
    pub port: u16,
    pub protocol: u32,
    /// IPv4 in the first 4 bytes (network order) or the IPv6 address.
    pub addr: [u8; 16],
}

/// A syscall that acts on another process, at exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetCall {
    pub header: EventHeader,
    /// The syscall's return value (bytes moved for process_vm_*).
    pub ret: i64,
    /// ptrace request, or [`VM_READ`] / [`VM_WRITE`].
    pub op: i64,
    /// The target pid as the caller named it (in the caller's pid namespace).
    pub target_pid: i32,
    pub _pad: u32,
}

/// [`Relink::op`]: which call made the name.
pub const RELINK_RENAME: u32 = 0;
pub const RELINK_LINK: u32 = 1;
pub const RELINK_SYMLINK: u32 = 2;
/// unlink(2), unlinkat(2): the old path is the name removed, `call_flags` unlinkat's flags.
pub const RELINK_UNLINK: u32 = 3;
/// chmod(2), fchmodat(2), fchmodat2(2), fchmod(2): the old path is the file (none for fchmod:
/// `old_dirfd` is its descriptor), `call_flags` the new mode.
pub const RELINK_CHMOD: u32 = 4;
/// setxattr(2), lsetxattr(2), fsetxattr(2), setxattrat(2): the old path is the file (none for
/// fsetxattr: `old_dirfd` is its descriptor), the new path slot holds the attribute's name.
pub const RELINK_SETXATTR: u32 = 5;
/// truncate(2), ftruncate(2): the old path is the file (none for ftruncate: `old_dirfd` is its
/// descriptor), `call_flags` the new length (u32::MAX for anything longer).
pub const RELINK_TRUNCATE: u32 = 6;

/// A rename, hard link or symlink at exit. Tail: `old_len` bytes of the old path (for a
/// symlink: its content as given), then `new_len` bytes of the new path, both as passed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Relink {
    pub header: EventHeader,
    pub ret: i64,
    /// [`RELINK_RENAME`], [`RELINK_LINK`] or [`RELINK_SYMLINK`].
    pub op: u32,
    pub old_dirfd: i32,
    pub new_dirfd: i32,
    /// renameat2 / linkat flags.
    pub call_flags: u32,
    pub old_len: u16,
    pub new_len: u16,
    pub _pad: u32,
}

/// socket(2) at exit, for raw and packet sockets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketCall {
    pub header: EventHeader,
    pub ret: i64,
    pub family: u32,
    /// The type with its flags (SOCK_NONBLOCK, SOCK_CLOEXEC).
    pub sock_type: u32,
    pub protocol: u32,
    pub _pad: u32,
}

/// listen(2) at entry: the socket's descriptor and the backlog asked for. From io_uring the
/// descriptor is not read (-1): userspace finds the process's listening sockets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ListenCall {
    pub header: EventHeader,
    pub fd: i32,
    pub backlog: i32,
}

/// execve/execveat at return. On success, facts about the new image from the kernel (not the
/// caller's memory): its executable (`mm->exe_file`) and its argv as the new process's stack
/// holds it (`mm->arg_start..arg_end`, resident: the kernel just wrote it). Tail: `name_len`
/// bytes of the executable's file name (its last path component: `memfd:NAME` for a memfd),
/// then `argv_len` bytes of argv, NUL-separated.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecDone {
    pub header: EventHeader,
    pub ret: i64,
    /// The executable's inode number; 0: not known (the exec failed, or a read did not work).
    pub ino: u64,
    /// Its filesystem's device, kernel encoding.
    pub dev: u32,
    /// Its link count: 0 for a deleted file or a memfd.
    pub nlink: u32,
    /// Its filesystem's magic (the low 32 bits).
    pub magic: u32,
    pub name_len: u16,
    pub argv_len: u16,
}

/// A new image's standard descriptors and environment, from `sched_process_exec` (inside a
/// successful exec, just before its [`ExecDone`]). A record of its own: in the exec exit
/// program these made the verifier's work ten times longer. Tail: `env_len` bytes of the
/// environment (`mm->env_start..env_end`), NUL-separated.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecFacts {
    pub header: EventHeader,
    /// What descriptors 0, 1 and 2 are, from the kernel's fd table.
    pub stdio: [StdFd; 3],
    pub env_len: u16,
    /// 1: the environment was longer than [`ENV_MAX_BYTES`] and was cut.
    pub env_truncated: u16,
    pub _pad: u32,
}

/// One of a new image's standard descriptors, as the kernel's fd table has it at exec: which
/// file (a pipe's inode links its writer and its reader), and what kind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFd {
    /// The inode number. `mode` 0: nothing open there, or it could not be read.
    pub ino: u64,
    /// Its filesystem's device (pipefs, sockfs… for pipes and sockets), kernel encoding.
    pub dev: u32,
    /// For a character device: which (kernel encoding, major << 20 | minor).
    pub rdev: u32,
    /// `i_mode`: the file type (S_IFMT bits) and permissions.
    pub mode: u16,
    /// [`STDFD_READ_FAILED`] when a read on the way failed.
    pub flags: u16,
    pub _pad: u32,
}

/// [`StdFd::flags`]: the descriptor's file could not be read (its table, its inode).
pub const STDFD_READ_FAILED: u16 = 1;

/// [`SignalCall::call`].
pub const SIGNAL_KILL: u32 = 0;
pub const SIGNAL_TKILL: u32 = 1;
pub const SIGNAL_TGKILL: u32 = 2;
pub const SIGNAL_PIDFD_OPEN: u32 = 3;
/// rt_sigqueueinfo(2) (sigqueue(3)): a signal for a process by pid, with data.
pub const SIGNAL_SIGQUEUE: u32 = 4;
/// rt_tgsigqueueinfo(2): the same, for a thread.
pub const SIGNAL_TGSIGQUEUE: u32 = 5;
/// pidfd_send_signal(2), seen where the kernel generates the signal (the target comes from
/// the pidfd, a pidfd_open one or a `/proc/PID` directory: only the kernel knows whose).
pub const SIGNAL_PIDFD_SEND: u32 = 6;
/// Most entries of the `PROTECTED` map: buildwatch, its guardian and their process group.
pub const PROTECTED_MAX: u32 = 16;

/// A process of the run outside every watched cgroup, at its first watched call there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Escape {
    pub header: EventHeader,
    /// The cgroup it is in now (v2 id).
    pub cgroup_id: u64,
}

/// Most processes of one run followed by lineage at once (the `TRACKED` map).
pub const TRACKED_MAX: u32 = 65_536;

/// Directories whose read-only opens the file sensor counts per process instead of
/// reporting one by one, when the `SUMMARY` map says so (run mode, unless `--all-reads`):
/// compilers and interpreters read thousands of headers and libraries there, and no rule
/// looks at a read of them. The count is in the process's exit record.
pub const SUMMARY_DIRS: [&[u8]; 8] = [
    b"/usr/include/",
    b"/usr/lib/",
    b"/usr/lib64/",
    b"/usr/share/",
    b"/usr/local/include/",
    b"/usr/local/lib/",
    b"/lib/",
    b"/lib64/",
];
/// A file summarized like the [`SUMMARY_DIRS`] (the dynamic loader reads it at every exec).
pub const SUMMARY_FILE: &[u8] = b"/etc/ld.so.cache";
/// Paths at most this long are summarized (the sensor scans them for `/.`).
pub const SUMMARY_PATH_MAX: usize = 256;
/// `SUMMARY` entry: 1 when summarizing is on (written by userspace, then frozen).
pub const SUMMARY_ENABLED: u32 = 0;
/// `SUMMARY` entry: set by the kernel, for good, once a process of the run made a new name
/// that could lie under a summarized directory (a rename, link or symlink whose new path is
/// relative or under /usr, /lib or /etc/ld.so*): every read is reported from then on.
pub const SUMMARY_TRIPPED: u32 = 1;
/// Processes with summarized reads at once (the `SUMMARIZED` map); past it, reads are reported.
pub const SUMMARIZED_MAX: u32 = 65_536;

/// A signal (or a pidfd) aimed at buildwatch, at entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SignalCall {
    pub header: EventHeader,
    /// [`SIGNAL_KILL`] …
    pub call: u32,
    /// The pid (or process group, negative, for kill) as the caller named it.
    pub target: i32,
    /// The signal (0 for pidfd_open).
    pub signal: u32,
    /// The target is in `PROTECTED` (buildwatch, its guardian, or -their process group).
    pub protected: u32,
}

/// bpf(2) at entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BpfCall {
    pub header: EventHeader,
    /// The command (`enum bpf_cmd`).
    pub cmd: u32,
    pub _pad: u32,
}

/// A DNS packet seen by the cgroup_skb programs. Tail: `payload_len` bytes of the transport
/// payload (for TCP the segment's bytes, length prefixes included). `pid`/`tid` in the header
/// are the sender for egress and 0 for ingress (received packets run in no process's context).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DnsPacket {
    pub header: EventHeader,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Host byte order.
    pub sport: u16,
    pub dport: u16,
    /// 4 or 6.
    pub ip_version: u8,
    /// IPPROTO_UDP (17) or IPPROTO_TCP (6).
    pub protocol: u8,
    pub payload_len: u16,
    /// Payload length before truncation.
    pub orig_len: u32,
    /// TCP sequence number of the segment's first payload byte (0 for UDP).
    pub tcp_seq: u32,
}

/// Arguments stashed at syscall entry for the exit handler (kernel-internal, never sent).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StashedArgs {
    pub ptr: u64,
    pub arg0: i64,
    pub arg1: u64,
    pub arg2: u64,
    pub flags: u16,
    /// 1 from sys_enter until sys_exit takes the arguments: the entry stays in the map for
    /// the thread's life and is rewritten in place, so a syscall costs no map insert/delete.
    pub live: u16,
    pub _pad: [u16; 2],
}

const _: () = assert!(size_of::<EventHeader>() == 32);
const _: () = assert!(size_of::<ExecEnter>() == 48);
const _: () = assert!(size_of::<Fork>() == 48);
const _: () = assert!(size_of::<Exit>() == 40);
const _: () = assert!(size_of::<Open>() == 72);
const _: () = assert!(size_of::<Chdir>() == 48);
const _: () = assert!(size_of::<Fchdir>() == 48);
const _: () = assert!(size_of::<Connect>() == 160);
const _: () = assert!(size_of::<SendTo>() == 56);
const _: () = assert!(size_of::<TargetCall>() == 56);
const _: () = assert!(size_of::<BpfCall>() == 40);
const _: () = assert!(size_of::<ExecDone>() == 64);
const _: () = assert!(size_of::<ExecFacts>() == 112);
const _: () = assert!(size_of::<StdFd>() == 24);
const _: () = assert!(size_of::<Relink>() == 64);
const _: () = assert!(size_of::<SignalCall>() == 48);
const _: () = assert!(size_of::<Escape>() == 40);
const _: () = assert!(size_of::<SocketCall>() == 56);
const _: () = assert!(size_of::<DnsPacket>() == 80);
const _: () = assert!(size_of::<StashedArgs>() == 40);
const _: () = assert!(size_of::<ScopeLevels>() == 48);
