//! The event stream's schema: one JSON object per line, versioned by `schema`. Documented in
//! docs/events.md; a change to a field's meaning or type bumps [`SCHEMA`].
//!
//! Strings: paths and argv are bytes on Linux. A field whose bytes are valid UTF-8 is written
//! as-is. Otherwise the field is written escaped — each invalid byte as `\xNN`, each backslash
//! as `\\` — and its name is listed in the event's `escaped` array, so the original bytes can be
//! recovered exactly ([`unescape`]) and the field stays a string for every consumer.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub mod json;
mod stats;
pub use stats::{DrainStats, KernelStats, PipelineStats, QueueStats, SinkStats};

pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: u32,
    /// Position in this stream, from 1.
    pub seq: u64,
    /// Wall-clock time (RFC 3339, UTC, nanoseconds).
    pub time: String,
    /// Kernel boot-clock nanoseconds: orders events exactly within one boot.
    pub ts_ns: u64,
    /// (A static name when made live: no allocation per event.)
    pub kind: Cow<'static, str>,
    pub pid: u32,
    /// When the process started (kernel boot-clock nanoseconds): with `pid`, its identity
    /// (a pid can be reused; a start time cannot). Absent when unknown.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub start_ns: u64,
    pub tid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    /// The process's executable as last exec'd (absolute path), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<std::sync::Arc<str>>,
    /// Parent first, then its parent…, at most [`MAX_ANCESTRY`] entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestry: Vec<Ancestor>,
    /// The cgroup the event happened in, and what it is (the agent names it; a run's events,
    /// all in the run's own cgroup, leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<std::sync::Arc<crate::context::cgroups::CgroupInfo>>,
    #[serde(flatten)]
    pub detail: Detail,
    /// Fields written with `\xNN` / `\\` escaping (see module docs), e.g. `exec.argv`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escaped: Vec<String>,
}

pub const MAX_ANCESTRY: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<std::sync::Arc<str>>,
}

/// Kind-specific fields, written under the kind's name (`"exec": {...}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Exec(Exec),
    Fork(Fork),
    Exit(Exit),
    Open(Open),
    Chdir(Chdir),
    Connect(Connect),
    Send(Send),
    Ptrace(Ptrace),
    ProcessVm(ProcessVm),
    Bpf(Bpf),
    Socket(Socket),
    Rename(Relink),
    Link(Relink),
    Unlink(Unlink),
    Chmod(Chmod),
    Truncate(Truncate),
    Setxattr(Setxattr),
    Bind(Bind),
    Listen(Listen),
    Signal(Signal),
    Escape(Escape),
    Dns(Dns),
    Straggler(Straggler),
    Lost(Lost),
    /// First record of a `buildwatch run` stream: what was run.
    Run(Run),
    /// Last record of a `buildwatch run` stream: how the command ended.
    RunEnd(RunEnd),
}

impl Detail {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exec(_) => "exec",
            Self::Fork(_) => "fork",
            Self::Exit(_) => "exit",
            Self::Open(_) => "open",
            Self::Chdir(_) => "chdir",
            Self::Connect(_) => "connect",
            Self::Send(_) => "send",
            Self::Ptrace(_) => "ptrace",
            Self::ProcessVm(_) => "process_vm",
            Self::Bpf(_) => "bpf",
            Self::Socket(_) => "socket",
            Self::Rename(_) => "rename",
            Self::Link(_) => "link",
            Self::Unlink(_) => "unlink",
            Self::Chmod(_) => "chmod",
            Self::Truncate(_) => "truncate",
            Self::Setxattr(_) => "setxattr",
            Self::Bind(_) => "bind",
            Self::Listen(_) => "listen",
            Self::Signal(_) => "signal",
            Self::Escape(_) => "escape",
            Self::Dns(_) => "dns",
            Self::Straggler(_) => "straggler",
            Self::Lost(_) => "lost",
            Self::Run(_) => "run",
            Self::RunEnd(_) => "run_end",
        }
    }
}

/// A syscall's outcome: the raw return value and, when it failed, the errno name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub ret: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Cow<'static, str>>,
}

impl Outcome {
    pub fn from_ret(ret: i64) -> Self {
        let error = (ret < 0).then(|| errno_name(ret.saturating_neg()));
        Self { ret, error }
    }
}

/// `ENOENT`, `EACCES`…; `E<N>` for a number Linux does not name. Names of errnos up to 4095
/// (every one the kernel returns) are made once and then borrowed: a failed syscall costs no
/// allocation for its name, and no lock.
pub fn errno_name(errno: i64) -> Cow<'static, str> {
    use std::sync::OnceLock;
    static NAMES: [OnceLock<&'static str>; 4096] = [const { OnceLock::new() }; 4096];
    let name = |errno: i64| match i32::try_from(errno).map(nix::errno::Errno::from_raw) {
        Ok(e) if e != nix::errno::Errno::UnknownErrno => format!("{e:?}"),
        _ => format!("E{errno}"),
    };
    match usize::try_from(errno).ok().and_then(|i| NAMES.get(i)) {
        Some(slot) => Cow::Borrowed(slot.get_or_init(|| Box::leak(name(errno).into_boxed_str()))),
        None => Cow::Owned(name(errno)),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    pub syscall: Cow<'static, str>,
    /// The filename exactly as passed to the syscall.
    pub filename: String,
    /// The executed file: `filename` made absolute (against cwd or dirfd) when that names the
    /// file the kernel executed; otherwise what /proc said the image is; `/memfd:NAME
    /// (deleted)` for a memfd.
    pub path: String,
    /// The executed file had no name left (deleted, or a memfd): the kernel's link count.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// `path` could not be confirmed against the file the kernel executed (it changed, or the
    /// process was gone before buildwatch could look).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub path_unverified: bool,
    /// For a successful exec, as the new process's stack holds it (the kernel's copy).
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_failed: bool,
    pub cwd: String,
    /// The package whose install or build script this is, when buildwatch could tell (set on
    /// the exec that enters the script; descendants inherit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
    /// ret 0: the new program runs; otherwise the exec failed and the old image continues.
    /// Block mode killed the new image before it ran (sudo, su).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub killed: bool,
    /// What the new program's standard input, output and error are (from the kernel's fd
    /// table at exec): which pipe feeds which process, what file it writes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<Box<Stdio>>,
    /// The variables of the new program's environment that change what code it runs
    /// (`LD_PRELOAD`, `NODE_OPTIONS`, `PYTHONSTARTUP`…) and npm's lifecycle variables, from
    /// the kernel's copy; never the whole environment. Values cut at 4 KiB (a variable given twice: both values, space-separated).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    /// The environment was longer than buildwatch reads (16 KiB): variables past it are not
    /// in `env`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub env_truncated: bool,
    /// Names of the variables in the new program's environment that hold secrets (the
    /// policy's `secrets:`; the default names `AWS_SECRET_ACCESS_KEY`, `*_TOKEN`, …), sorted;
    /// never their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A new program's descriptors 0, 1 and 2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stdio {
    pub stdin: StdStream,
    pub stdout: StdStream,
    pub stderr: StdStream,
}

/// One standard descriptor: `kind` is pipe (an anonymous pipe or a FIFO), socket, tty, null
/// (/dev/null), char (another character device), file, dir, none (closed) or unknown (it
/// could not be read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdStream {
    pub kind: Cow<'static, str>,
    /// For a pipe or socket: its inode (`pipe:[INO]` in /proc/PID/fd); for a file, its inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    /// For a file this run opened for writing: its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    /// The new process; `pid` of the event is its parent.
    pub child: u32,
    pub clone_flags: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Exit status when the process called exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Signal number when a signal killed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
    /// Read-only opens under system directories (/usr/include, /usr/lib, …) this process made
    /// that were counted here instead of reported one by one (`run --all-reads` reports them).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub reads_summarized: u32,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Exit {
    /// From a wait(2) status; None (unknown) gives an empty record.
    pub fn from_status(status: Option<i32>) -> Self {
        let mut e = Self {
            code: None,
            signal: None,
            signal_name: None,
            core_dumped: false,
            reads_summarized: 0,
        };
        if let Some(s) = status {
            let sig = s & 0x7f;
            if sig == 0 {
                e.code = Some((s >> 8) & 0xff);
            } else {
                e.signal = Some(sig);
                e.signal_name = signal_name(sig);
                e.core_dumped = s & 0x80 != 0;
            }
        }
        e
    }
}

pub fn signal_name(sig: i32) -> Option<String> {
    nix::sys::signal::Signal::try_from(sig)
        .ok()
        .map(|s| s.as_str().to_owned())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    pub syscall: Cow<'static, str>,
    /// Absolute, normalised path (lexical: `..` is applied before symlinks are followed).
    pub path: String,
    /// The path as passed to the syscall, when it differs from `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// The canonical file (symlinks resolved) when it differs from `path`; resolved by
    /// userspace after the open, so it reflects the filesystem at processing time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Access mode and notable flags: read, write, create, truncate, append, excl, directory…
    /// (Borrowed from static names when decoded live: no allocation per name.)
    pub flags: Vec<Cow<'static, str>>,
    pub flags_raw: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    /// The path was relative to a directory fd buildwatch could not resolve.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unresolved: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_failed: bool,
    /// A cgroup v2 file outside the watched cgroups, opened for writing (the kernel's view of
    /// the file, not the path).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cgroup_outside: bool,
    /// The kernel killed the process before the call returned (it never used the file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub killed: bool,
    /// An io_uring open, reported when it was submitted: its result comes later (`ret` 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_unknown: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chdir {
    /// New working directory (absolute) on success, the requested one on failure.
    pub path: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connect {
    pub fd: i32,
    #[serde(flatten)]
    pub dest: Destination,
    /// Seen by the kernel's connect hook without a connect(2) around it (io_uring, TCP Fast
    /// Open through sendmsg): the attempt is certain, its result is not known (`ret` 0, `fd`
    /// -1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_unknown: bool,
    /// Block mode refused the destination: the call failed with EPERM, nothing was sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// Block mode sent this port-53 connection to its DNS proxy instead (which answers by
    /// the DNS-layer policy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redirected: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A socket destination. `family` is inet, inet6, unix, or `af<N>` for others.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// An IPv4-mapped IPv6 address, shown as IPv4.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub v4_mapped: bool,
    /// Unix socket path; abstract names start with `@`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The name this run's DNS answers resolved to `address` (the latest, when several did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    pub protocol: String,
    #[serde(flatten)]
    pub dest: Destination,
    /// Block mode refused the destination: the datagram was not sent (EPERM).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// Block mode sent this port-53 datagram to its DNS proxy instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redirected: bool,
}

/// setxattr(2) and its variants: an extended attribute set on a file (file capabilities live
/// in `security.capability`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setxattr {
    /// The file, absolute (for fsetxattr: what its descriptor names, when known).
    pub path: String,
    /// The attribute's name.
    pub name: String,
    /// Submitted through io_uring: reported at submission (`ret` 0), its result not known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_unknown: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// bind(2) of an IPv4 or IPv6 socket: the local address and port asked for (the kernel's
/// copy), before the bind takes effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// tcp, udp, or ip-proto-N.
    pub protocol: String,
    #[serde(flatten)]
    pub local: Destination,
}

/// listen(2), or IORING_OP_LISTEN: the socket that listens, as the kernel's socket tables in
/// /proc showed it when the event was processed (a socket listening without a bind(2) got its
/// port from the kernel, where no bind hook runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listen {
    /// tcp, unix, or unknown (the socket had gone, or is not in the tables).
    pub protocol: String,
    /// `family` inet, inet6, unix or unknown; `address` and `port` for TCP, `path` for Unix.
    #[serde(flatten)]
    pub local: Destination,
    /// The descriptor listen(2) was given (absent for io_uring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i32>,
    /// Submitted through io_uring.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uring: bool,
    /// The socket had gone from /proc's tables: the address is the process's last TCP bind.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_bind: bool,
}

/// The process a ptrace or process_vm call acted on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// As the caller named it: in the caller's pid namespace.
    pub pid: i32,
    /// Its executable: from the process table for a process of the run, otherwise read from
    /// /proc when the event was processed (absent when it had already gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
}

/// ptrace(2) with an attaching request (other requests are not reported).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ptrace {
    /// attach, seize or traceme.
    pub request: String,
    /// Absent for traceme (its tracer is the parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Block mode killed the caller before the call returned to user space.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub killed: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// process_vm_readv / process_vm_writev: `ret` is the number of bytes moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessVm {
    /// read or write.
    pub op: String,
    pub target: Target,
    /// Block mode killed the caller before the call returned to user space.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub killed: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A process of the run found outside every watched cgroup, at its first watched call there:
/// it left by a way the open check does not stop (clone3 with CLONE_INTO_CGROUP, a daemon
/// moving it). buildwatch follows the run's processes by lineage too, so it is still seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escape {
    /// The cgroup (v2 id) it is in now.
    pub cgroup_id: u64,
    /// The kernel sent it SIGKILL before the call returned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub killed: bool,
}

/// kill/tkill/tgkill/rt_sigqueueinfo/rt_tgsigqueueinfo (reported as entered, before delivery)
/// with a signal for buildwatch, its guardian or their process group, for every process
/// (`kill -1`) or for the caller's own process group; pidfd_open of buildwatch or its
/// guardian; or pidfd_send_signal to one of them (reported as the kernel generates it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo, pidfd_open or
    /// pidfd_send_signal.
    pub call: String,
    /// The pid, or process group (negative), as the caller named it.
    pub target: i32,
    /// buildwatch (buildwatch, its guardian or their process group), every-process or
    /// own-group.
    pub aimed_at: String,
    /// 0 for pidfd_open.
    pub signal: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_name: Option<String>,
}

/// A name made for a file without opening it: a rename (`rename` events) or a hard or
/// symbolic link (`link` events). For rules, `to` is the file written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relink {
    pub syscall: Cow<'static, str>,
    /// The file renamed or linked, absolute; for a symlink, its content as given (`symbolic`).
    pub from: String,
    /// The new name, absolute.
    pub to: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub symbolic: bool,
    /// Submitted through io_uring: reported at submission (`ret` 0), its result not known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_unknown: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// unlink(2) or unlinkat(2): a name removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlink {
    pub syscall: Cow<'static, str>,
    /// The name removed, absolute.
    pub path: String,
    /// `path` with the symlinks of its directories resolved, when that differs (resolved by
    /// buildwatch after the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// unlinkat with AT_REMOVEDIR: a directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
    /// Submitted through io_uring: reported at submission (`ret` 0), its result not known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_unknown: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// truncate(2) or ftruncate(2): a file cut to a length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncate {
    pub syscall: Cow<'static, str>,
    /// The file, absolute (for ftruncate: what its descriptor names, when known, else `fd:N`).
    pub path: String,
    /// `path` with symlinks resolved, when that differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The new length in bytes (4294967295 for that or more).
    pub length: u64,
    /// Submitted through io_uring: reported at submission (`ret` 0), its result not known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_unknown: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// chmod(2), fchmodat(2), fchmodat2(2) or fchmod(2): a file's mode set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chmod {
    pub syscall: Cow<'static, str>,
    /// The file, absolute (for fchmod: what its descriptor names, when known).
    pub path: String,
    /// `path` with symlinks resolved, when that differs (resolved by buildwatch after the
    /// call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The new mode, in octal (`4755`).
    pub mode: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// socket(2) for a raw or packet socket (other sockets are not reported): one that can forge
/// or sniff packets below TCP and UDP (a forged DNS answer, a covert channel, a sniffer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Socket {
    /// packet, inet, inet6, or `af<N>`.
    pub family: String,
    /// raw, packet, dgram, …
    #[serde(rename = "type")]
    pub sock_type: String,
    pub protocol: u32,
    /// Asked for through io_uring (IORING_OP_SOCKET), reported when submitted: its result
    /// comes later (`ret` 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_unknown: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// bpf(2), reported as it is entered: the call may still fail. With root, bpf(2) can detach
/// buildwatch's programs or rewrite their maps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bpf {
    /// The command's name (`map_update_elem`, `link_detach`, ...; `cmd_N` when unknown).
    pub cmd: String,
    pub cmd_raw: u32,
}

/// One DNS message sent or received by the run, over UDP or TCP port 53.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// query or response.
    pub direction: String,
    /// udp or tcp.
    pub protocol: String,
    /// The server: destination of a query, source of a response.
    pub resolver: String,
    pub resolver_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
    /// The (first) question's name in presentation format, `\DDD` for unusual bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<Answer>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub answers_dropped: usize,
    /// The TC flag: the server wants the client to retry over TCP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tc: bool,
    /// The packet was longer than buildwatch captures; the message may be incomplete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Why the message could not be parsed (then only the addresses are known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<String>,
    /// A response that answers no query of this run (same id, client port, server and
    /// question): forged or injected. Its answers name no address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsolicited: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// The package whose install or build script a process runs (best effort; see `enrich`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// npm or pip.
    pub manager: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The step: npm's lifecycle event (`preinstall`, `install`, `postinstall`, `prepare`…),
    /// or pip's build phase (the PEP 517 hook: `build_wheel`, `prepare_metadata_for_build_wheel`…;
    /// or the `setup.py` command: `egg_info`, `bdist_wheel`, `install`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// One resource record of a DNS answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub name: String,
    /// Record type mnemonic (A, AAAA, CNAME, TXT…) or `TYPE<N>`.
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    /// Address for A/AAAA, target name for CNAME; absent for other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// A process still in the run's cgroup when the command exited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Straggler {
    pub cmdline: Vec<String>,
    /// "killed" or "kept".
    pub action: String,
}

/// Events that never reached the stream. `pid` is 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    pub count: u64,
    /// The sensor whose events they were, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    /// Where they were lost: `ringbuf_full` (the kernel ring was full), `stash_full` (the
    /// kernel's syscall-argument map was full), `queue_full` (the queue after the ring reader
    /// was full), `drain_skipped` (still in the ring when the end-of-run drain ran out),
    /// `decode_error` (a record buildwatch could not decode) or `dns_tcp_discarded` (a DNS TCP
    /// stream that could not be reassembled).
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub command: Vec<String>,
    pub cwd: String,
    /// Process id of the command.
    pub pid: u32,
    /// buildwatch's version.
    pub version: String,
    /// The system's resolvers (nameserver lines of /etc/resolv.conf as buildwatch saw it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<String>,
    /// Block mode's DNS proxy: the run's queries to its resolvers went here (the `resolver`
    /// their DNS events show).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_proxy: Option<String>,
    /// `--allow-32bit-syscalls`: the command's processes could make 32-bit syscalls, which no
    /// event shows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_32bit_syscalls: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEnd {
    /// What `buildwatch run` passes on as the command's status: its exit code, or 128+N when
    /// signal N killed it.
    pub exit_code: i32,
    #[serde(flatten)]
    pub status: Exit,
    /// What watching cost buildwatch itself, up to this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorUsage>,
    /// buildwatch's queues, sinks and kernel counters, up to this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineStats>,
    /// Why buildwatch cannot vouch for the run, beyond lost events (its guardian was killed,
    /// ...). Each is a reason the verdict fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unverified: Vec<String>,
}

/// buildwatch's own resource use during a run (getrusage(RUSAGE_SELF): its threads, not the
/// command's processes, and not the kernel programs, whose time is charged to the syscalls
/// they watch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorUsage {
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    /// Peak resident set size of buildwatch's own memory since it started (VmHWM).
    pub max_rss_kib: u64,
}

impl MonitorUsage {
    /// This process's usage so far.
    pub fn of_self() -> Option<Self> {
        let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
        let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1000 + t.tv_usec() as u64 / 1000;
        Some(Self {
            cpu_user_ms: ms(u.user_time()),
            cpu_system_ms: ms(u.system_time()),
            // ru_maxrss is no good here: exec keeps the larger of it and the forked image's
            // peak, so buildwatch started by a big process (a CI agent, the bench) would
            // report that process's memory. VmHWM belongs to this program's own memory.
            max_rss_kib: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| status_kib(&s, "VmHWM:"))
                .unwrap_or(u.max_rss() as u64),
        })
    }
}

/// A `Name:   1234 kB` line of /proc/PID/status, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix(name))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Render bytes as a string, escaping (and recording `field` in `escaped`) only when they are
/// not valid UTF-8.
pub fn text(bytes: &[u8], field: &str, escaped: &mut Vec<String>) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_owned();
    }
    if !escaped.iter().any(|f| f == field) {
        escaped.push(field.to_owned());
    }
    escape(bytes)
}

/// `\xNN` for bytes that are not UTF-8, `\\` for backslash; everything else as is.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Inverse of [`escape`]. Returns None for text that `escape` cannot have produced.
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1)? {
            b'\\' => {
                out.push(b'\\');
                i += 2;
            }
            b'x' => {
                let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn own_peak_memory_is_vmhwm() {
        let status =
            "Name:\tbuildwatch\nVmPeak:\t  300000 kB\nVmHWM:\t   25432 kB\nVmRSS:\t 20000 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(25_432));
        assert_eq!(status_kib("VmHWM:\t garbage\n", "VmHWM:"), None);
        assert_eq!(status_kib("", "VmHWM:"), None);
        // The live process: between what it used just before and its peak just after (the
        // test binary was exec'd by cargo, whose larger peak ru_maxrss would carry).
        let status = || std::fs::read_to_string("/proc/self/status").unwrap();
        let before = status_kib(&status(), "VmRSS:").unwrap();
        let u = MonitorUsage::of_self().unwrap();
        let after = status_kib(&status(), "VmHWM:").unwrap();
        assert!(
            (before..=after).contains(&u.max_rss_kib),
            "{before} {u:?} {after}"
        );
    }

    #[test]
    fn utf8_is_untouched_and_not_marked() {
        let mut esc = Vec::new();
        assert_eq!(
            text("sed 's/\\./x/'".as_bytes(), "exec.argv", &mut esc),
            "sed 's/\\./x/'"
        );
        assert!(esc.is_empty());
    }

    #[test]
    fn invalid_utf8_is_escaped_losslessly() {
        let mut esc = Vec::new();
        let raw = b"/tmp/a\\b\xff\xfe\xc3\xa9.txt";
        let s = text(raw, "open.path", &mut esc);
        assert_eq!(s, "/tmp/a\\\\b\\xff\\xfeé.txt");
        assert_eq!(esc, vec!["open.path".to_string()]);
        assert_eq!(unescape(&s).unwrap(), raw.to_vec());
        text(b"\x80", "open.path", &mut esc);
        assert_eq!(esc.len(), 1, "a field is listed once");
    }

    #[test]
    fn escape_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        assert_eq!(unescape(&escape(&all)).unwrap(), all);
        assert_eq!(unescape("bad\\q"), None);
        assert_eq!(unescape("cut\\x4"), None);
    }

    #[test]
    fn errno_names_are_linux_names_or_numbers() {
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(errno_name(4095), "E4095");
        assert_eq!(errno_name(99_999), "E99999");
        // Not ENOENT by truncation to 32 bits.
        assert_eq!(errno_name((1 << 32) + 2), "E4294967298");
        assert_eq!(
            Outcome::from_ret(i64::MIN).error.as_deref(),
            Some("E9223372036854775807")
        );
    }

    #[test]
    fn wait_status_decoding() {
        assert_eq!(Exit::from_status(Some(3 << 8)).code, Some(3));
        let killed = Exit::from_status(Some(9));
        assert_eq!(
            (killed.signal, killed.signal_name.as_deref()),
            (Some(9), Some("SIGKILL"))
        );
        assert!(Exit::from_status(Some(0x80 | 11)).core_dumped);
        assert_eq!(Exit::from_status(None).code, None);
    }

    /// An open event of `cat` under `sh`, failed with ENOENT (the tests' common sample).
    pub(crate) fn sample_open(path: &str) -> Event {
        Event {
            schema: SCHEMA,
            seq: 1,
            time: "2026-11-25T00:00:00.000000001Z".into(),
            ts_ns: 5,
            kind: "open".into(),
            pid: 10,
            start_ns: 7,
            tid: 10,
            ppid: Some(1),
            exe: Some("/usr/bin/cat".into()),
            ancestry: vec![Ancestor {
                pid: 1,
                exe: Some("/bin/sh".into()),
            }],
            cgroup: None,
            detail: Detail::Open(Open {
                syscall: "openat".into(),
                path: path.into(),
                requested: None,
                target: None,
                flags: vec!["read".into()],
                flags_raw: 0,
                mode: None,
                path_truncated: false,
                unresolved: false,
                read_failed: false,
                cgroup_outside: false,
                killed: false,
                result_unknown: false,
                outcome: Outcome::from_ret(-2),
            }),
            escaped: vec![],
        }
    }

    #[test]
    fn event_json_shape_round_trips() {
        let ev = sample_open("/etc/passwd");
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["open"]["path"], "/etc/passwd");
        assert_eq!(json["open"]["error"], "ENOENT");
        assert_eq!(json["open"]["ret"], -2);
        assert_eq!(json["kind"], "open");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, ev);
    }
}
