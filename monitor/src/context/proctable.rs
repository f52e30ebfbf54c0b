//! Process table and enrichment: follows fork/exec/exit/chdir/open to know, for every process
//! in the watched tree, its executable, argv, cwd, parent and open directory fds; resolves
//! relative paths; and turns kernel events into stream [`Event`]s carrying that context.

use std::{
    borrow::Cow,
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    os::unix::ffi::OsStrExt,
    path::Path,
};

use monitor_common::{AT_FDCWD, CLONE_PARENT, flags as wf};

use crate::{
    context::{
        paths,
        process::{Id, IntMap, Live, ProcInfo, Processes},
    },
    event::{self, Ancestor, Detail, Event, MAX_ANCESTRY, Outcome, text},
    ingest::decode::{
        Body, ExecFactsBody, FileId, Image, KernelEvent, OpenSyscall, SockAddr, StdFdFact,
    },
};

/// Where the table falls back to for facts it did not see happen (a process that predates the
/// sensors, a dirfd from dup(2)). Real code reads /proc; tests substitute a fixed view.
pub trait ProcSource {
    fn cwd(&self, pid: u32) -> Option<Vec<u8>>;
    fn fd_path(&self, pid: u32, fd: i32) -> Option<Vec<u8>>;
    fn exe(&self, pid: u32) -> Option<Vec<u8>>;
    fn ppid(&self, pid: u32) -> Option<u32>;
    /// (st_dev, st_ino) of what `path` names now, following symlinks (and /proc's magic
    /// links).
    fn identity(&self, path: &[u8]) -> Option<(u64, u64)>;
    /// Canonical path of an existing file (symlinks resolved), and whether what that path
    /// names now is `file` (the file the kernel opened; unknown `file`: false).
    fn canonical(&self, path: &[u8], file: FileId) -> (Option<Vec<u8>>, bool);
    /// The socket `fd` of `pid` names, listening (fd < 0: any socket `pid` holds).
    fn listening(&self, _pid: u32, _fd: i32) -> Option<super::sockets::Listening> {
        None
    }
}

/// The live system's /proc.
pub struct LiveProc;

impl ProcSource for LiveProc {
    fn listening(&self, pid: u32, fd: i32) -> Option<super::sockets::Listening> {
        super::sockets::listening(pid, fd)
    }
    fn cwd(&self, pid: u32) -> Option<Vec<u8>> {
        link(&format!("/proc/{pid}/cwd"))
    }
    fn fd_path(&self, pid: u32, fd: i32) -> Option<Vec<u8>> {
        link(&format!("/proc/{pid}/fd/{fd}")).filter(|p| p.first() == Some(&b'/'))
    }
    fn exe(&self, pid: u32) -> Option<Vec<u8>> {
        link(&format!("/proc/{pid}/exe"))
    }
    fn identity(&self, path: &[u8]) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(std::ffi::OsStr::from_bytes(path)).ok()?;
        Some((m.dev(), m.ino()))
    }
    fn ppid(&self, pid: u32) -> Option<u32> {
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        // comm may contain spaces and parentheses: fields start after the last ')'.
        let rest = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
        let rest = std::str::from_utf8(rest).ok()?;
        rest.split_whitespace().nth(1)?.parse().ok()
    }
    fn canonical(&self, path: &[u8], file: FileId) -> (Option<Vec<u8>>, bool) {
        // One openat2(RESOLVE_NO_SYMLINKS) tells whether any component is a symlink; almost
        // none is, and then the (already normalised) path is its own canonical form. Only
        // ELOOP, or a kernel without openat2, pays for realpath's readlink per component.
        match no_symlinks(path) {
            Some(Ok(stat)) => return (Some(path.to_vec()), file.is(&stat)),
            Some(Err(())) => {}
            None => return (None, false),
        }
        let p = Path::new(std::ffi::OsStr::from_bytes(path));
        let Ok(c) = std::fs::canonicalize(p) else {
            return (None, false);
        };
        let verified = std::fs::metadata(&c).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            file.known() && m.dev() == file.st_dev() && m.ino() == file.ino
        });
        (Some(c.into_os_string().into_vec()), verified)
    }
}

/// Whether `path` exists with no symlink anywhere in it: Some(Ok(its stat)) yes, Some(Err)
/// there is one (or openat2 is unavailable: ask realpath), None it does not exist (any more).
fn no_symlinks(path: &[u8]) -> Option<Result<libc::stat, ()>> {
    let Ok(c) = std::ffi::CString::new(path) else {
        return None;
    };
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: a NUL-terminated path and an open_how of the size passed; the returned fd is
    // ours, stat'ed and closed at once.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: as above; stat is plain data filled by fstat.
        let stat = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            let ok = libc::fstat(fd as i32, &mut st) == 0;
            libc::close(fd as i32);
            if !ok {
                st.st_ino = 0;
            }
            st
        };
        return Some(Ok(stat));
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => None,
        _ => Some(Err(())),
    }
}

fn link(path: &str) -> Option<Vec<u8>> {
    std::fs::read_link(path)
        .ok()
        .map(|p| p.into_os_string().into_vec())
}

use std::os::unix::ffi::OsStringExt;

/// An exec attempt waiting for its result.
struct PendingExec {
    pid: u32,
    at: bool,
    filename: Vec<u8>,
    path: Vec<u8>,
    argv: Vec<Vec<u8>>,
    cwd: Vec<u8>,
    flags: u16,
}

const O_ACCMODE: u32 = 0o3;
const O_CLOEXEC: u32 = 0o2000000;

/// Queries awaiting their response, and addresses resolved, kept at most (then forgotten
/// wholesale: an attacker flooding queries must not grow buildwatch without bound).
const MAX_PENDING_QUERIES: usize = 65_536;
const MAX_NAMES: usize = 65_536;

/// (client, server, message id).
type QueryKey = (SocketAddr, SocketAddr, u16);
/// A question: name (lower case), type.
type Question = (String, String);

#[derive(Default)]
struct DnsState {
    /// (client, server, id) → the querying pid and its question (name, lower case; type).
    /// Kept after the answer (a resolver may answer a retried query twice) until the map is
    /// cleared for size.
    pending: HashMap<QueryKey, (u32, Option<Question>)>,
    /// Address → the question name whose answer gave it.
    names: HashMap<IpAddr, String>,
    tcp: crate::context::dns::tcp::Reassembler,
    tcp_discarded: u64,
}

pub struct ProcTable<S: ProcSource = LiveProc> {
    dns: DnsState,
    procs: Processes,
    pending: IntMap<u32, PendingExec>,
    source: S,
    /// Wall-clock nanoseconds minus boot-clock nanoseconds.
    boot_to_unix_ns: i128,
    seq: u64,
    /// The last whole second formatted and its text up to the '.', reused while events
    /// arrive within the same second.
    second: (i64, String),
    /// Symlink targets already worked out, by (the file the kernel opened, keyed hash of the
    /// path): see [`ProcTable::target_of`].
    targets: HashMap<(FileId, u64), Option<Vec<u8>>>,
    /// Keys the path hashes (random per run: the watched code cannot aim collisions).
    path_hasher: std::hash::RandomState,
    /// Files opened for writing, by the file the kernel opened: the path of a new program's
    /// standard output when a shell redirected it there (`base64 -d > x` opens x in the
    /// shell; the program only inherits the descriptor).
    written_ids: HashMap<FileId, Vec<u8>>,
    /// Standard descriptors and environment of an exec in progress, by pid, until its exit
    /// record.
    pending_facts: IntMap<u32, Box<ExecFactsBody>>,
    /// Which variables hold secrets (the policy's `secrets:`), for an exec's `secret_env`.
    pub secrets: crate::detect::secrets::SecretNames,
    /// Socket tables read for listens in the current second: (second, count). A process
    /// calling listen(2) in a loop does not make buildwatch read /proc without end.
    listen_lookups: (u64, u32),
    /// Each live process's last TCP bind (address, port), for a listen whose socket has gone.
    last_bind: IntMap<u32, (std::net::IpAddr, u16)>,
}

/// Socket-table lookups for listens per second, at most; past it a listen's socket is
/// `unknown` (which the listener rules treat as reachable).
const LISTEN_LOOKUPS_PER_S: u32 = 64;

/// Variables of a new program's environment an exec event keeps: those that make it load or
/// run other code, and npm's lifecycle variables.
pub const ENV_KEPT: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "NODE_OPTIONS",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "BASH_ENV",
    "ENV",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "npm_lifecycle_event",
    "npm_package_name",
    "npm_package_version",
];

/// Bytes of a kept variable's value an exec event carries.
const ENV_VALUE_MAX: usize = 4096;

/// The kept variables of a NUL-separated environment (values cut at [`ENV_VALUE_MAX`]).
fn env_kept(env: &[u8], escaped: &mut Vec<String>) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for entry in env.split(|&b| b == 0) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&entry[..eq]) else {
            continue;
        };
        if !ENV_KEPT.contains(&name) {
            continue;
        }
        // A variable given twice: the loader takes the last LD_PRELOAD, getenv the first;
        // both are kept (joined by a space, which both separate on).
        let value = &entry[eq + 1..];
        let value = &value[..value.len().min(ENV_VALUE_MAX)];
        let value = text(value, "exec.env", escaped);
        out.entry(name.to_owned())
            .and_modify(|v: &mut String| {
                if v.len() < ENV_VALUE_MAX {
                    v.push(' ');
                    v.push_str(&value);
                }
            })
            .or_insert(value);
    }
    out
}

/// Secret variables an exec event names at most.
const SECRET_ENV_MAX: usize = 32;

/// The names of the variables of a NUL-separated environment that hold secrets, sorted, at
/// most [`SECRET_ENV_MAX`].
fn env_secrets(env: &[u8], names: &crate::detect::secrets::SecretNames) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in env.split(|&b| b == 0) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&entry[..eq]) else {
            continue;
        };
        if names.holds(name, &entry[eq + 1..]) && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
            if out.len() == SECRET_ENV_MAX {
                break;
            }
        }
    }
    out.sort();
    out
}

/// Most entries [`ProcTable::written_ids`] holds; when full it starts over.
const WRITTEN_IDS_MAX: usize = 65_536;

/// Most entries [`ProcTable::targets`] holds; when full it starts over (a few MB at most).
const TARGETS_MAX: usize = 65_536;

impl<S: ProcSource> ProcTable<S> {
    pub fn new(source: S, boot_to_unix_ns: i128) -> Self {
        Self {
            dns: DnsState::default(),
            procs: Processes::default(),
            pending: IntMap::default(),
            source,
            boot_to_unix_ns,
            seq: 0,
            second: (i64::MIN, String::new()),
            targets: HashMap::new(),
            path_hasher: std::hash::RandomState::new(),
            written_ids: HashMap::new(),
            pending_facts: IntMap::default(),
            secrets: Default::default(),
            listen_lookups: (0, 0),
            last_bind: IntMap::default(),
        }
    }

    /// What a new program's standard descriptors are, for its exec event.
    fn stdio(&self, facts: &[StdFdFact; 3], escaped: &mut Vec<String>) -> event::Stdio {
        let one = |f: &StdFdFact, name: &str, escaped: &mut Vec<String>| {
            const S_IFMT: u16 = 0o170_000;
            let (kind, ino, path): (&'static str, Option<u64>, Option<String>) = if f.failed {
                ("unknown", None, None)
            } else {
                match f.mode & S_IFMT {
                    0 => ("none", None, None),
                    0o010_000 => ("pipe", Some(f.file.ino), None),
                    0o140_000 => ("socket", Some(f.file.ino), None),
                    0o040_000 => ("dir", None, None),
                    0o020_000 => {
                        let (major, minor) = (f.rdev >> 20, f.rdev & 0xf_ffff);
                        match (major, minor) {
                            (1, 3) => ("null", None, None),
                            (4 | 5, _) | (136..=143, _) => ("tty", None, None),
                            _ => ("char", None, None),
                        }
                    }
                    0o100_000 => (
                        "file",
                        Some(f.file.ino),
                        self.written_ids
                            .get(&f.file)
                            .map(|p| text(p, name, escaped)),
                    ),
                    _ => ("other", None, None),
                }
            };
            event::StdStream {
                kind: kind.into(),
                ino,
                path,
            }
        };
        event::Stdio {
            stdin: one(&facts[0], "exec.stdio.stdin.path", escaped),
            stdout: one(&facts[1], "exec.stdio.stdout.path", escaped),
            stderr: one(&facts[2], "exec.stdio.stderr.path", escaped),
        }
    }

    /// The executed file's path, checked against the kernel's image: (path, deleted, the path
    /// could not be confirmed). A memfd is `/memfd:NAME (deleted)`, as /proc shows it. A path
    /// worked out from the call (filename, dirfd) is kept when it names the executed inode;
    /// otherwise /proc/PID/exe is used if the process still runs that image.
    fn image_path(&self, resolved: &[u8], image: &Image, pid: u32) -> (Vec<u8>, bool, bool) {
        let deleted = image.file.known() && image.nlink == 0;
        if image.name.starts_with(b"memfd:") && image.nlink == 0 {
            return ([b"/", &image.name[..], b" (deleted)"].concat(), true, false);
        }
        if !image.file.known() {
            return (resolved.to_vec(), false, false);
        }
        let names_it = |p: &[u8]| {
            self.source
                .identity(p)
                .is_some_and(|(dev, ino)| dev == image.file.st_dev() && ino == image.file.ino)
        };
        if !deleted && names_it(resolved) {
            return (resolved.to_vec(), false, false);
        }
        let proc_exe = format!("/proc/{pid}/exe");
        if names_it(proc_exe.as_bytes())
            && let Some(link) = self.source.exe(pid)
        {
            let link = link
                .strip_suffix(b" (deleted)")
                .map(<[u8]>::to_vec)
                .unwrap_or(link);
            return (link, deleted, false);
        }
        (resolved.to_vec(), deleted, true)
    }

    /// Where `path`, just opened as `file`, leads if a symlink is on the way: None when
    /// nothing is (or it cannot be told).
    ///
    /// Working this out costs syscalls (openat2, fstat; realpath's readlinks for a symlink):
    /// done for every open, it was half the stage's time at 500,000 opens/s. The answer is
    /// kept by the file the kernel says was opened (device and inode from its fd table) with
    /// the path, and only when the path, resolved now, still names that file: a path that
    /// later leads elsewhere (a symlink swapped in) opens another inode and is worked out
    /// again. Without the kernel's identity nothing is kept.
    fn target_of(&mut self, path: &[u8], file: FileId) -> Option<Vec<u8>> {
        use std::hash::BuildHasher;
        let key = (file, self.path_hasher.hash_one(path));
        if file.known()
            && let Some(target) = self.targets.get(&key)
        {
            return target.clone();
        }
        let (canonical, verified) = self.source.canonical(path, file);
        let target = canonical.filter(|c| c != path);
        if verified {
            if self.targets.len() >= TARGETS_MAX {
                self.targets.clear();
            }
            self.targets.insert(key, target.clone());
        }
        target
    }

    /// [`format_time`], with the date and time of day computed once per second.
    fn time(&mut self, unix_ns: i128) -> String {
        let (secs, nanos) = split_ns(unix_ns);
        if self.second.0 != secs {
            self.second = (secs, second_text(secs));
        }
        let mut out = String::with_capacity(self.second.1.len() + 10);
        out.push_str(&self.second.1);
        push_fraction(&mut out, nanos);
        out
    }

    /// A boot-clock time as the stream writes times (RFC 3339, UTC).
    pub fn unix_time(&mut self, boot_ns: u64) -> String {
        self.time(boot_ns as i128 + self.boot_to_unix_ns)
    }

    /// Register the run's root process (started by buildwatch, so its fork is not seen).
    /// What the stream says about it comes from its first event, as in a replay.
    pub fn add_root(&mut self, pid: u32, cwd: &[u8]) {
        let info = ProcInfo {
            pid,
            ..ProcInfo::default()
        };
        let live = Live {
            cwd: cwd.to_vec(),
            ..Live::default()
        };
        self.procs.insert(info, live, None, false);
    }

    /// The process model this table keeps (shared with the rules).
    pub fn processes(&self) -> &Processes {
        &self.procs
    }

    pub fn processes_mut(&mut self) -> &mut Processes {
        &mut self.procs
    }

    /// Apply one kernel event to the table and produce the stream events it gives.
    pub fn handle(&mut self, ev: KernelEvent, out: &mut Vec<Event>) {
        if let Body::DnsPacket { .. } = ev.body {
            return self.dns_packet(ev, out);
        }
        let pid = ev.pid;
        let id = self.ensure(pid, ev.start_ns);
        let mut escaped = Vec::new();
        let detail = match ev.body {
            Body::ExecEnter {
                at,
                dirfd,
                filename,
                argv,
                ..
            } => {
                let base = if filename.first() == Some(&b'/') {
                    Some(Vec::new())
                } else if dirfd == AT_FDCWD {
                    Some(self.procs.live(id).cwd.clone())
                } else {
                    self.fd_path(id, dirfd)
                };
                let path = match base {
                    // execveat(fd, "", AT_EMPTY_PATH) executes the fd itself.
                    Some(base) if filename.is_empty() => base,
                    Some(base) => paths::resolve(&base, &filename),
                    None => filename.clone(),
                };
                let cwd = self.procs.live(id).cwd.clone();
                self.pending.insert(
                    ev.tid,
                    PendingExec {
                        pid,
                        at,
                        filename,
                        path,
                        argv,
                        cwd,
                        flags: ev.flags,
                    },
                );
                return;
            }
            Body::ExecFacts(facts) => {
                if self.pending_facts.len() < 4096 || self.pending_facts.contains_key(&pid) {
                    self.pending_facts.insert(pid, facts);
                }
                return;
            }
            Body::ExecExit { ret, image } => {
                let key = if self.pending.contains_key(&ev.tid) {
                    Some(ev.tid)
                } else {
                    // A successful exec from a non-leader thread returns in the leader's tid.
                    self.pending
                        .iter()
                        .find(|(_, p)| p.pid == pid)
                        .map(|(k, _)| *k)
                };
                let Some(mut p) = key.and_then(|k| self.pending.remove(&k)) else {
                    return;
                };
                let facts = self.pending_facts.remove(&pid);
                let (mut deleted, mut path_unverified) = (false, false);
                let killed = image.as_ref().is_some_and(|i| i.killed);
                if let Some(image) = &image {
                    (p.path, deleted, path_unverified) = self.image_path(&p.path, image, pid);
                    // argv as the new stack holds it: what the caller's pages said at entry
                    // may have been unreadable (not faulted in) or rewritten since.
                    if !image.argv.is_empty() {
                        p.argv = image.argv.clone();
                        p.flags &= !wf::READ_FAILED;
                        if image.argv_truncated {
                            p.flags |= wf::ARGV_TRUNCATED;
                        }
                    }
                }
                if ret == 0 {
                    let live = self.procs.live_mut(id);
                    live.set_exe(Some(p.path.clone()));
                    live.fds.retain(|_, (_, cloexec)| !*cloexec);
                }
                Detail::Exec(event::Exec {
                    syscall: if p.at { "execveat" } else { "execve" }.into(),
                    filename: text(&p.filename, "exec.filename", &mut escaped),
                    path: text(&p.path, "exec.path", &mut escaped),
                    deleted,
                    path_unverified,
                    argv: p
                        .argv
                        .iter()
                        .map(|a| text(a, "exec.argv", &mut escaped))
                        .collect(),
                    argv_truncated: p.flags & wf::ARGV_TRUNCATED != 0,
                    read_failed: p.flags & wf::READ_FAILED != 0,
                    cwd: text(&p.cwd, "exec.cwd", &mut escaped),
                    package: None,
                    killed,
                    env: facts
                        .as_ref()
                        .filter(|_| ret == 0)
                        .map(|f| env_kept(&f.env, &mut escaped))
                        .unwrap_or_default(),
                    env_truncated: ret == 0 && facts.as_ref().is_some_and(|f| f.env_truncated),
                    secret_env: facts
                        .as_ref()
                        .filter(|_| ret == 0)
                        .map(|f| env_secrets(&f.env, &self.secrets))
                        .unwrap_or_default(),
                    stdio: facts
                        .as_ref()
                        .filter(|_| ret == 0)
                        .map(|f| Box::new(self.stdio(&f.stdio, &mut escaped))),
                    outcome: Outcome::from_ret(ret),
                })
            }
            Body::Fork { child, clone_flags } => {
                self.procs.fork(id, child, clone_flags & CLONE_PARENT != 0);
                Detail::Fork(event::Fork { child, clone_flags })
            }
            Body::Exit {
                status,
                reads_summarized,
            } => {
                self.pending.retain(|_, p| p.pid != pid);
                self.pending_facts.remove(&pid);
                self.last_bind.remove(&pid);
                // Keep what ancestry needs (exe, parent); the table drops the rest once no
                // descendant needs it.
                self.procs.live_mut(id).fds = IntMap::default();
                Detail::Exit(event::Exit {
                    reads_summarized,
                    ..event::Exit::from_status(status)
                })
            }
            Body::Open {
                syscall,
                ret,
                file,
                dirfd,
                open_flags,
                mode,
                path: requested,
            } => {
                let by_handle = matches!(syscall, OpenSyscall::OpenByHandleAt);
                let (path, unresolved) = if by_handle {
                    // No path in the call: what the new descriptor names, from /proc, now.
                    match (ret >= 0)
                        .then(|| self.source.fd_path(pid, ret as i32))
                        .flatten()
                    {
                        Some(p) => (p, false),
                        None => (Vec::new(), true),
                    }
                } else {
                    self.resolve_at(id, dirfd, &requested)
                };
                // An io_uring open is reported at submission: its fd is not known yet.
                let result_unknown = matches!(
                    syscall,
                    OpenSyscall::UringOpenat | OpenSyscall::UringOpenat2
                );
                if ret >= 0 && !result_unknown {
                    let cloexec = open_flags & O_CLOEXEC != 0;
                    self.procs
                        .live_mut(id)
                        .fds
                        .insert(ret as i32, (path.clone(), cloexec));
                }
                // /proc/self, /proc/PID/cwd, /dev/fd… resolve differently in buildwatch's own
                // context than in the process's: no target for them.
                let target = if ret >= 0 && !unresolved && !per_process_view(&path) {
                    self.target_of(&path, file)
                } else {
                    None
                };
                let creates = open_flags & libc::O_CREAT as u32 != 0
                    || open_flags & libc::O_TMPFILE as u32 == libc::O_TMPFILE as u32;
                if ret >= 0 && file.ino != 0 && open_flags & libc::O_ACCMODE as u32 != 0 {
                    if self.written_ids.len() >= WRITTEN_IDS_MAX {
                        self.written_ids.clear();
                    }
                    self.written_ids
                        .insert(file, target.clone().unwrap_or_else(|| path.clone()));
                }
                Detail::Open(event::Open {
                    syscall: syscall.name().into(),
                    path: text(&path, "open.path", &mut escaped),
                    requested: (requested != path && !by_handle)
                        .then(|| text(&requested, "open.requested", &mut escaped)),
                    target: target.map(|t| text(&t, "open.target", &mut escaped)),
                    flags: open_flag_names(open_flags),
                    flags_raw: open_flags,
                    mode: creates.then_some(mode),
                    path_truncated: ev.flags & wf::PATH_TRUNCATED != 0,
                    unresolved,
                    read_failed: ev.flags & wf::READ_FAILED != 0,
                    cgroup_outside: ev.flags & wf::CGROUP_OUTSIDE != 0,
                    killed: ev.flags & wf::KILLED != 0,
                    result_unknown,
                    outcome: Outcome::from_ret(ret),
                })
            }
            Body::Chdir { ret, path } => {
                let new = paths::resolve(&self.procs.live(id).cwd, &path);
                if ret == 0 {
                    self.procs.live_mut(id).cwd = new.clone();
                }
                Detail::Chdir(event::Chdir {
                    path: text(&new, "chdir.path", &mut escaped),
                    outcome: Outcome::from_ret(ret),
                })
            }
            Body::Fchdir { ret, fd } => {
                let dir = self.fd_path(id, fd);
                if ret == 0 {
                    let cwd = dir.clone().or_else(|| self.source.cwd(pid));
                    if let Some(cwd) = cwd {
                        self.procs.live_mut(id).cwd = cwd;
                    }
                }
                let shown = dir.unwrap_or_else(|| format!("fd:{fd}").into_bytes());
                Detail::Chdir(event::Chdir {
                    path: text(&shown, "chdir.path", &mut escaped),
                    outcome: Outcome::from_ret(ret),
                })
            }
            Body::Connect {
                ret,
                fd,
                addr,
                no_result,
                refused,
                redirected,
            } => Detail::Connect(event::Connect {
                fd,
                dest: self.named(destination(&addr, &mut escaped)),
                result_unknown: no_result,
                refused,
                redirected,
                outcome: Outcome::from_ret(ret),
            }),
            Body::SendTo {
                addr,
                protocol,
                refused,
                redirected,
            } => Detail::Send(event::Send {
                refused,
                redirected,
                protocol: match protocol {
                    17 => "udp".into(),
                    136 => "udplite".into(),
                    n => format!("ip-proto-{n}"),
                },
                dest: self.named(destination(&addr, &mut escaped)),
            }),
            Body::Bind { addr, protocol } => Detail::Bind(event::Bind {
                protocol: match protocol {
                    6 => {
                        if let SockAddr::Inet { ip, port, .. } = &addr {
                            self.last_bind.insert(pid, (*ip, *port));
                        }
                        "tcp".into()
                    }
                    17 => "udp".into(),
                    n => format!("ip-proto-{n}"),
                },
                local: destination(&addr, &mut escaped),
            }),
            Body::Listen { fd, backlog, uring } => {
                let second = ev.ts_ns / 1_000_000_000;
                if self.listen_lookups.0 != second {
                    self.listen_lookups = (second, 0);
                }
                self.listen_lookups.1 += 1;
                // The socket as /proc shows it; when it has gone already (a listener closed at
                // once), the process's last TCP bind, which the bind hook saw.
                let found = (self.listen_lookups.1 <= LISTEN_LOOKUPS_PER_S)
                    .then(|| self.source.listening(pid, fd))
                    .flatten();
                let from_bind = found.is_none() && self.last_bind.contains_key(&pid);
                let found = found.or_else(|| {
                    self.last_bind
                        .get(&pid)
                        .map(|&(ip, port)| super::sockets::Listening::Tcp(ip, port))
                });
                let mut local = event::Destination {
                    family: "unknown".into(),
                    ..Default::default()
                };
                let protocol = match found {
                    Some(super::sockets::Listening::Tcp(ip, port)) => {
                        local.family = if ip.is_ipv4() { "inet" } else { "inet6" }.into();
                        local.address = Some(ip.to_string());
                        local.port = Some(port);
                        "tcp"
                    }
                    Some(super::sockets::Listening::Unix(path)) => {
                        local.family = "unix".into();
                        local.path = Some(text(&path, "listen.path", &mut escaped));
                        "unix"
                    }
                    None => "unknown",
                };
                Detail::Listen(event::Listen {
                    protocol: protocol.into(),
                    local,
                    fd: (!uring).then_some(fd),
                    backlog: (!uring).then_some(backlog),
                    uring,
                    from_bind,
                })
            }
            Body::DnsPacket { .. } => unreachable!("handled above"),
            Body::Ptrace {
                ret,
                request,
                target,
                killed,
            } => Detail::Ptrace(event::Ptrace {
                request: ptrace_request_name(request),
                target: (request != monitor_common::PTRACE_TRACEME)
                    .then(|| self.target(target, &mut escaped)),
                killed,
                outcome: Outcome::from_ret(ret),
            }),
            Body::Escape { cgroup_id, killed } => {
                Detail::Escape(event::Escape { cgroup_id, killed })
            }
            Body::Signal {
                call,
                target,
                signal,
                protected,
            } => Detail::Signal(event::Signal {
                call: match call {
                    monitor_common::SIGNAL_KILL => "kill",
                    monitor_common::SIGNAL_TKILL => "tkill",
                    monitor_common::SIGNAL_TGKILL => "tgkill",
                    monitor_common::SIGNAL_PIDFD_OPEN => "pidfd_open",
                    monitor_common::SIGNAL_SIGQUEUE => "rt_sigqueueinfo",
                    monitor_common::SIGNAL_TGSIGQUEUE => "rt_tgsigqueueinfo",
                    monitor_common::SIGNAL_PIDFD_SEND => "pidfd_send_signal",
                    _ => "unknown",
                }
                .into(),
                target,
                aimed_at: if protected {
                    "buildwatch"
                } else if target == -1 {
                    "every-process"
                } else {
                    "own-group"
                }
                .into(),
                signal,
                signal_name: (signal != 0)
                    .then(|| event::signal_name(signal as i32))
                    .flatten(),
            }),
            Body::Relink {
                ret,
                op,
                old_dirfd,
                old,
                new,
                no_result,
                fixed_file,
                ..
            } if op == monitor_common::RELINK_SETXATTR => {
                let path = if old.is_empty() {
                    self.by_fd_path(id, old_dirfd, fixed_file)
                } else {
                    self.resolve_at(id, old_dirfd, &old).0
                };
                Detail::Setxattr(event::Setxattr {
                    path: text(&path, "setxattr.path", &mut escaped),
                    name: text(&new, "setxattr.name", &mut escaped),
                    result_unknown: no_result,
                    outcome: Outcome::from_ret(ret),
                })
            }
            Body::Relink {
                ret,
                op,
                old_dirfd,
                call_flags,
                old,
                no_result,
                fixed_file,
                ..
            } if op == monitor_common::RELINK_UNLINK
                || op == monitor_common::RELINK_CHMOD
                || op == monitor_common::RELINK_TRUNCATE =>
            {
                let by_fd = op != monitor_common::RELINK_UNLINK && old.is_empty();
                let (path, syscall) = if by_fd {
                    let p = self.by_fd_path(id, old_dirfd, fixed_file);
                    let name = if op == monitor_common::RELINK_CHMOD {
                        "fchmod"
                    } else {
                        "ftruncate"
                    };
                    (p, name)
                } else {
                    (self.resolve_at(id, old_dirfd, &old).0, "")
                };
                // Where the name leads through symlinks: the file itself for a chmod (it
                // follows them), its directory for an unlink (the name is gone).
                let target = if per_process_view(&path) || path.first() != Some(&b'/') {
                    None
                } else if op != monitor_common::RELINK_UNLINK
                    && let (Some(c), _) = self.source.canonical(&path, FileId::default())
                {
                    Some(c)
                } else {
                    let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    let (dir, name) = path.split_at(cut);
                    let dir: &[u8] = if dir.is_empty() { b"/" } else { dir };
                    self.source
                        .canonical(dir, FileId::default())
                        .0
                        .map(|mut d| {
                            if d.last() == Some(&b'/') {
                                d.pop();
                            }
                            d.extend_from_slice(name);
                            d
                        })
                }
                .filter(|t| *t != path);
                let target = target.map(|t| text(&t, "file.target", &mut escaped));
                if op == monitor_common::RELINK_UNLINK {
                    Detail::Unlink(event::Unlink {
                        syscall: "unlink".into(),
                        target,
                        path: text(&path, "unlink.path", &mut escaped),
                        dir: call_flags & libc::AT_REMOVEDIR as u32 != 0,
                        result_unknown: no_result,
                        outcome: Outcome::from_ret(ret),
                    })
                } else if op == monitor_common::RELINK_TRUNCATE {
                    Detail::Truncate(event::Truncate {
                        syscall: if syscall.is_empty() {
                            "truncate"
                        } else {
                            syscall
                        }
                        .into(),
                        target,
                        path: text(&path, "truncate.path", &mut escaped),
                        length: call_flags.into(),
                        result_unknown: no_result,
                        outcome: Outcome::from_ret(ret),
                    })
                } else {
                    Detail::Chmod(event::Chmod {
                        syscall: if syscall.is_empty() { "chmod" } else { syscall }.into(),
                        target,
                        path: text(&path, "chmod.path", &mut escaped),
                        mode: format!("{:04o}", call_flags & 0o7777),
                        outcome: Outcome::from_ret(ret),
                    })
                }
            }
            Body::Relink {
                ret,
                op,
                old_dirfd,
                new_dirfd,
                old,
                new,
                no_result,
                ..
            } => {
                let symbolic = op == monitor_common::RELINK_SYMLINK;
                let from = if symbolic {
                    old
                } else {
                    self.resolve_at(id, old_dirfd, &old).0
                };
                let to = self.resolve_at(id, new_dirfd, &new).0;
                let syscall = match op {
                    monitor_common::RELINK_RENAME => "rename",
                    monitor_common::RELINK_LINK => "link",
                    _ => "symlink",
                };
                let r = event::Relink {
                    syscall: syscall.into(),
                    from: text(&from, "relink.from", &mut escaped),
                    to: text(&to, "relink.to", &mut escaped),
                    symbolic,
                    result_unknown: no_result,
                    outcome: Outcome::from_ret(ret),
                };
                if op == monitor_common::RELINK_RENAME {
                    Detail::Rename(r)
                } else {
                    Detail::Link(r)
                }
            }
            Body::Socket {
                ret,
                family,
                sock_type,
                protocol,
                no_result,
            } => Detail::Socket(event::Socket {
                family: match family {
                    2 => "inet".into(),
                    10 => "inet6".into(),
                    17 => "packet".into(),
                    n => format!("af{n}"),
                },
                sock_type: match sock_type & 0xf {
                    1 => "stream".into(),
                    2 => "dgram".into(),
                    3 => "raw".into(),
                    5 => "seqpacket".into(),
                    10 => "packet".into(),
                    n => format!("type{n}"),
                },
                protocol,
                result_unknown: no_result,
                outcome: Outcome::from_ret(ret),
            }),
            Body::Bpf { cmd } => Detail::Bpf(event::Bpf {
                cmd: bpf_cmd_name(cmd),
                cmd_raw: cmd,
            }),
            Body::ProcessVm {
                ret,
                write,
                target,
                killed,
            } => Detail::ProcessVm(event::ProcessVm {
                killed,
                op: if write { "write" } else { "read" }.into(),
                target: self.target(target, &mut escaped),
                outcome: Outcome::from_ret(ret),
            }),
        };
        let e = self.envelope(pid, ev.tid, ev.ts_ns, detail, escaped);
        out.push(e);
    }

    /// Wrap a detail in the common fields, with the process context of `pid` (the running
    /// process with that pid: the context stage has just matched the record to it).
    pub fn envelope(
        &mut self,
        pid: u32,
        tid: u32,
        ts_ns: u64,
        detail: Detail,
        mut escaped: Vec<String>,
    ) -> Event {
        self.seq += 1;
        let id = (pid != 0).then(|| self.procs.find(pid, 0)).flatten();
        let (mut exe, mut ppid, mut start_ns) = (None, None, 0);
        let mut ancestry = Vec::new();
        if let Some(id) = id {
            let info = self.procs.info(id);
            start_ns = info.start_ns;
            ppid = info.ppid;
            exe = self.procs.live(id).exe_for("exe", &mut escaped);
            let mut cur = self.procs.parent(id);
            while let Some(a) = cur {
                if ancestry.len() == MAX_ANCESTRY {
                    break;
                }
                let exe = self.procs.live(a).exe_for("ancestry.exe", &mut escaped);
                ancestry.push(Ancestor {
                    pid: self.procs.info(a).pid,
                    exe,
                });
                cur = self.procs.parent(a).filter(|p| *p != id);
            }
        }
        Event {
            schema: event::SCHEMA,
            seq: self.seq,
            time: self.time(ts_ns as i128 + self.boot_to_unix_ns),
            ts_ns,
            kind: Cow::Borrowed(detail.kind()),
            pid,
            start_ns,
            tid,
            ppid,
            exe,
            ancestry,
            cgroup: None,
            detail,
            escaped,
        }
    }

    /// The process a record is about. One the table has not seen start (the root before its
    /// exec, or after a lost fork) is made from what /proc still knows; one whose start time
    /// differs from the table's is a new process with a reused pid.
    fn ensure(&mut self, pid: u32, start_ns: u64) -> Id {
        if let Some(id) = self.procs.find(pid, start_ns) {
            if start_ns != 0 {
                self.procs.learn_start(id, start_ns);
            }
            return id;
        }
        let ppid = self.source.ppid(pid);
        let info = ProcInfo {
            pid,
            start_ns,
            ppid,
            ..ProcInfo::default()
        };
        let mut live = Live {
            cwd: self.source.cwd(pid).unwrap_or_else(|| b"/".to_vec()),
            ..Live::default()
        };
        live.set_exe(self.source.exe(pid));
        let parent = ppid.and_then(|pp| self.procs.running(pp));
        self.procs.insert(info, live, parent, false)
    }

    fn named(&self, mut d: event::Destination) -> event::Destination {
        d.domain = d
            .address
            .as_deref()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .and_then(|ip| self.dns.names.get(&ip).cloned());
        d
    }

    /// DNS packets: reassembled (TCP), parsed, tied to the querying process (a response
    /// arrives in no process's context: it goes to whoever sent the query with that id from
    /// that port), and their answers remembered so later connects carry the name.
    fn dns_packet(&mut self, ev: KernelEvent, out: &mut Vec<Event>) {
        let Body::DnsPacket {
            ingress,
            tcp,
            src,
            dst,
            tcp_seq,
            orig_len,
            payload,
        } = ev.body
        else {
            return;
        };
        let cut = orig_len as usize > payload.len();
        let (client, server) = if ingress { (dst, src) } else { (src, dst) };
        let mut messages = Vec::new();
        if tcp {
            let seg = self.dns.tcp.push(src, dst, tcp_seq, &payload, !cut);
            messages.extend(seg.messages.into_iter().map(|m| (m, false)));
            if seg.discarded {
                self.dns.tcp_discarded += 1;
            }
        } else {
            messages.push((payload, cut));
        }
        for (msg, truncated) in messages {
            let parsed = crate::context::dns::parse(&msg);
            let id = parsed.as_ref().ok().map(|m| m.id);
            let question = parsed
                .as_ref()
                .ok()
                .and_then(|m| Some((m.qname.as_ref()?.to_ascii_lowercase(), m.qtype.clone()?)));
            let response = parsed.as_ref().is_ok_and(|m| m.response);
            // A response answers a query only if this run sent one with the same id, from
            // the same port, to the same server, with the same question. Anything else is
            // unsolicited (forged, or injected from a raw socket): its answers name nothing.
            // A response the run sends (a DNS server of its own) names nothing either: its
            // client's copy does, if the client is in the run and asked.
            let (pid, solicited) = if ingress {
                match id.and_then(|id| self.dns.pending.get(&(client, server, id))) {
                    Some((pid, asked)) => (*pid, asked.is_some() && *asked == question),
                    None => (0, false),
                }
            } else if response {
                (ev.pid, false)
            } else {
                if let Some(id) = id {
                    if self.dns.pending.len() >= MAX_PENDING_QUERIES {
                        self.dns.pending.clear();
                    }
                    self.dns
                        .pending
                        .insert((client, server, id), (ev.pid, question.clone()));
                }
                (ev.pid, true)
            };
            let mut d = event::Dns {
                direction: if ingress { "response" } else { "query" }.into(),
                protocol: if tcp { "tcp" } else { "udp" }.into(),
                resolver: server.ip().to_string(),
                resolver_port: server.port(),
                id,
                qname: None,
                qtype: None,
                rcode: None,
                answers: Vec::new(),
                answers_dropped: 0,
                tc: false,
                truncated,
                malformed: None,
                unsolicited: false,
            };
            match parsed {
                Ok(m) => {
                    if m.response {
                        d.rcode = Some(m.rcode.clone());
                        d.unsolicited = ingress && !solicited;
                        if let Some(q) = m.qname.as_ref().filter(|_| solicited) {
                            for ip in m.resolved() {
                                if self.dns.names.len() >= MAX_NAMES {
                                    self.dns.names.clear();
                                }
                                self.dns.names.insert(ip, q.clone());
                            }
                        }
                    }
                    d.direction = if m.response { "response" } else { "query" }.into();
                    d.qname = m.qname;
                    d.qtype = m.qtype;
                    d.answers = m.answers;
                    d.answers_dropped = m.answers_dropped;
                    d.tc = m.tc;
                }
                Err(e) => d.malformed = Some(e),
            }
            if pid != 0 {
                self.ensure(pid, 0);
            }
            // A response arrives in no thread's context: it is credited to the querying pid.
            let tid = if ingress { pid } else { ev.tid };
            let e = self.envelope(pid, tid, ev.ts_ns, Detail::Dns(d), Vec::new());
            out.push(e);
        }
    }

    /// TCP segments whose partial DNS message had to be dropped (gap, cut or overflow).
    pub fn dns_tcp_discarded(&self) -> u64 {
        self.dns.tcp_discarded
    }

    /// The process a ptrace/process_vm call named: ours if it is in the table and alive,
    /// otherwise whatever /proc says about that pid now.
    fn target(&self, pid: i32, escaped: &mut Vec<String>) -> event::Target {
        let exe =
            u32::try_from(pid)
                .ok()
                .filter(|&p| p > 0)
                .and_then(|p| match self.procs.running(p) {
                    Some(id) => self.procs.live(id).exe.clone(),
                    None => self.source.exe(p),
                });
        event::Target {
            pid,
            exe: exe.map(|e| text(&e, "target.exe", escaped)),
        }
    }

    fn fd_path(&self, id: Id, fd: i32) -> Option<Vec<u8>> {
        self.procs
            .live(id)
            .fds
            .get(&fd)
            .map(|(path, _)| path.clone())
            .or_else(|| self.source.fd_path(self.procs.info(id).pid, fd))
    }

    /// What a call on descriptor `fd` names: its path when known, else `fd:N`; `fixed:N` for
    /// an io_uring request on the ring's registered file N (not a descriptor of the process).
    fn by_fd_path(&self, id: Id, fd: i32, fixed_file: bool) -> Vec<u8> {
        if fixed_file {
            return format!("fixed:{fd}").into_bytes();
        }
        self.fd_path(id, fd)
            .unwrap_or_else(|| format!("fd:{fd}").into_bytes())
    }

    /// Absolute path for a path relative to `dirfd`; `true` when the directory was unknown.
    fn resolve_at(&self, id: Id, dirfd: i32, path: &[u8]) -> (Vec<u8>, bool) {
        if path.first() == Some(&b'/') {
            return (paths::resolve(b"/", path), false);
        }
        let base = if dirfd == AT_FDCWD {
            Some(self.procs.live(id).cwd.clone())
        } else {
            self.fd_path(id, dirfd)
        };
        match base {
            Some(base) => (paths::resolve(&base, path), false),
            None => (path.to_vec(), true),
        }
    }
}

fn destination(addr: &SockAddr, escaped: &mut Vec<String>) -> event::Destination {
    let mut d = event::Destination::default();
    match addr {
        SockAddr::Inet { ip, port, mapped } => {
            d.family = if ip.is_ipv4() { "inet" } else { "inet6" }.into();
            d.address = Some(ip.to_string());
            d.port = Some(*port);
            d.v4_mapped = *mapped;
        }
        SockAddr::Unix { path, abstract_ns } => {
            d.family = "unix".into();
            let mut p = Vec::with_capacity(path.len() + 1);
            if *abstract_ns {
                p.push(b'@');
            }
            p.extend_from_slice(path);
            d.path = Some(text(&p, "connect.path", escaped));
        }
        SockAddr::Other { family } => d.family = family_name(*family),
        SockAddr::Truncated { family } => {
            d.family = family_name(*family);
            d.truncated = true;
        }
    }
    d
}

fn ptrace_request_name(r: i64) -> String {
    match r {
        monitor_common::PTRACE_ATTACH => "attach".into(),
        monitor_common::PTRACE_SEIZE => "seize".into(),
        monitor_common::PTRACE_TRACEME => "traceme".into(),
        n => format!("request-{n}"),
    }
}

fn family_name(f: u16) -> String {
    match f {
        0 => "unspec".into(),
        1 => "unix".into(),
        2 => "inet".into(),
        10 => "inet6".into(),
        16 => "netlink".into(),
        n => format!("af{n}"),
    }
}

/// Human-readable open(2) flags: the access mode first, then notable modifiers.
/// Paths whose meaning depends on the process that resolves them.
fn per_process_view(path: &[u8]) -> bool {
    path.starts_with(b"/proc/") || path.starts_with(b"/dev/fd/") || path == b"/proc"
}

pub fn open_flag_names(f: u32) -> Vec<Cow<'static, str>> {
    // One allocation per event, sized for the usual handful of names.
    let mut v: Vec<Cow<'static, str>> = Vec::with_capacity(6);
    let mode: &[&'static str] = match f & O_ACCMODE {
        0 => &["read"],
        1 => &["write"],
        2 => &["read", "write"],
        _ => &["path"],
    };
    v.extend(mode.iter().map(|m| Cow::Borrowed(*m)));
    let named: [(i32, &str); 9] = [
        (libc::O_CREAT, "create"),
        (libc::O_TRUNC, "truncate"),
        (libc::O_APPEND, "append"),
        (libc::O_EXCL, "excl"),
        (libc::O_DIRECTORY, "directory"),
        (libc::O_NOFOLLOW, "nofollow"),
        (libc::O_PATH, "path"),
        (libc::O_CLOEXEC, "cloexec"),
        (libc::O_NONBLOCK, "nonblock"),
    ];
    for (bit, name) in named {
        if f & bit as u32 != 0 && !v.iter().any(|n| n == name) {
            v.push(Cow::Borrowed(name));
        }
    }
    if f & libc::O_TMPFILE as u32 == libc::O_TMPFILE as u32 {
        v.retain(|n| n != "directory");
        v.push(Cow::Borrowed("tmpfile"));
    }
    v
}

/// RFC 3339 UTC with nanoseconds.
pub fn format_time(unix_ns: i128) -> String {
    let (secs, nanos) = split_ns(unix_ns);
    let mut out = second_text(secs);
    push_fraction(&mut out, nanos);
    out
}

/// Seconds and nanoseconds of a Unix time in nanoseconds, in i64 arithmetic while it fits
/// (until 2262): an i128 division is a library call, and this runs for every event.
fn split_ns(unix_ns: i128) -> (i64, u32) {
    match i64::try_from(unix_ns) {
        Ok(ns) => (
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000) as u32,
        ),
        Err(_) => (
            unix_ns.div_euclid(1_000_000_000) as i64,
            unix_ns.rem_euclid(1_000_000_000) as u32,
        ),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of a Unix second: the part [`ProcTable::time`] reuses.
fn second_text(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// `nanos` (below a second) as nine digits, then `Z`. Written digit by digit: this runs
/// for every event (`format!` here cost ~15% of the reader's time at high event rates).
fn push_fraction(out: &mut String, mut nanos: u32) {
    let mut digits = *b"000000000Z";
    for d in digits[..9].iter_mut().rev() {
        *d = b'0' + (nanos % 10) as u8;
        nanos /= 10;
    }
    out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Wall clock minus boot clock, to turn kernel timestamps into wall-clock time.
pub fn boot_to_unix_offset() -> i128 {
    use nix::time::{ClockId, clock_gettime};
    let ns = |c| clock_gettime(c).map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128);
    match (ns(ClockId::CLOCK_REALTIME), ns(ClockId::CLOCK_BOOTTIME)) {
        (Ok(real), Ok(boot)) => real - boot,
        _ => 0,
    }
}

/// `enum bpf_cmd` (linux/bpf.h) by number.
fn bpf_cmd_name(cmd: u32) -> String {
    const NAMES: [&str; 37] = [
        "map_create",
        "map_lookup_elem",
        "map_update_elem",
        "map_delete_elem",
        "map_get_next_key",
        "prog_load",
        "obj_pin",
        "obj_get",
        "prog_attach",
        "prog_detach",
        "prog_test_run",
        "prog_get_next_id",
        "map_get_next_id",
        "prog_get_fd_by_id",
        "map_get_fd_by_id",
        "obj_get_info_by_fd",
        "prog_query",
        "raw_tracepoint_open",
        "btf_load",
        "btf_get_fd_by_id",
        "task_fd_query",
        "map_lookup_and_delete_elem",
        "map_freeze",
        "btf_get_next_id",
        "map_lookup_batch",
        "map_lookup_and_delete_batch",
        "map_update_batch",
        "map_delete_batch",
        "link_create",
        "link_update",
        "link_get_fd_by_id",
        "link_get_next_id",
        "enable_stats",
        "iter_create",
        "link_detach",
        "prog_bind_map",
        "token_create",
    ];
    NAMES
        .get(cmd as usize)
        .map_or_else(|| format!("cmd_{cmd}"), |n| (*n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A /proc stand-in: the table must not depend on the machine in pure tests.
    struct FakeProc {
        links: std::cell::RefCell<HashMap<Vec<u8>, Vec<u8>>>,
        canonical_calls: std::cell::Cell<u32>,
    }

    impl FakeProc {
        fn new(links: HashMap<Vec<u8>, Vec<u8>>) -> Self {
            Self {
                links: links.into(),
                canonical_calls: 0.into(),
            }
        }
    }

    impl ProcSource for FakeProc {
        fn cwd(&self, _: u32) -> Option<Vec<u8>> {
            None
        }
        fn fd_path(&self, pid: u32, fd: i32) -> Option<Vec<u8>> {
            (pid == 1 && fd == 9).then(|| b"/from/proc".to_vec())
        }
        fn exe(&self, pid: u32) -> Option<Vec<u8>> {
            (pid == 4000).then(|| b"/opt/runner/worker".to_vec())
        }
        fn ppid(&self, _: u32) -> Option<u32> {
            None
        }
        fn identity(&self, _: &[u8]) -> Option<(u64, u64)> {
            None
        }
        fn canonical(&self, path: &[u8], file: FileId) -> (Option<Vec<u8>>, bool) {
            self.canonical_calls.set(self.canonical_calls.get() + 1);
            let c = self
                .links
                .borrow()
                .get(path)
                .cloned()
                .unwrap_or_else(|| path.to_vec());
            (Some(c), file.known())
        }
    }

    fn ev(pid: u32, body: Body) -> KernelEvent {
        KernelEvent {
            tid: pid,
            pid,
            ts_ns: 1,
            start_ns: 0,
            cgroup: 0,
            flags: 0,
            body,
        }
    }

    fn open(dirfd: i32, path: &str, ret: i64) -> Body {
        Body::Open {
            syscall: OpenSyscall::Openat,
            ret,
            file: FileId::default(),
            dirfd,
            open_flags: 0,
            mode: 0,
            path: path.as_bytes().to_vec(),
        }
    }

    fn table() -> ProcTable<FakeProc> {
        let mut links = HashMap::new();
        links.insert(b"/work/link".to_vec(), b"/home/u/.aws/credentials".to_vec());
        let mut t = ProcTable::new(FakeProc::new(links), 0);
        t.add_root(1, b"/work");
        t
    }

    /// What the stage does with a record: context, then the process model's update.
    fn run(t: &mut ProcTable<FakeProc>, e: KernelEvent) -> Vec<Event> {
        let mut v = Vec::new();
        t.handle(e, &mut v);
        for e in &v {
            t.processes_mut().apply(e);
            t.processes_mut().retire(e);
        }
        v
    }

    fn exec(t: &mut ProcTable<FakeProc>, pid: u32, file: &str, ret: i64) -> Vec<Event> {
        let body = Body::ExecEnter {
            at: false,
            dirfd: AT_FDCWD,
            at_flags: 0,
            filename: file.as_bytes().to_vec(),
            argv: vec![file.as_bytes().to_vec()],
        };
        assert!(
            run(t, ev(pid, body)).is_empty(),
            "exec is reported with its result"
        );
        run(t, ev(pid, Body::ExecExit { ret, image: None }))
    }

    fn open_detail(e: &Event) -> &event::Open {
        match &e.detail {
            Detail::Open(o) => o,
            d => panic!("not an open: {d:?}"),
        }
    }

    #[test]
    fn relative_paths_follow_chdir_and_dirfds() {
        let mut t = table();
        let e = run(&mut t, ev(1, open(AT_FDCWD, "a.txt", 3)));
        assert_eq!(open_detail(&e[0]).path, "/work/a.txt");
        assert_eq!(open_detail(&e[0]).requested.as_deref(), Some("a.txt"));

        run(
            &mut t,
            ev(
                1,
                Body::Chdir {
                    ret: 0,
                    path: b"sub/../dir".to_vec(),
                },
            ),
        );
        let e = run(&mut t, ev(1, open(AT_FDCWD, "./b", 4)));
        assert_eq!(open_detail(&e[0]).path, "/work/dir/b");

        // A failed chdir changes nothing.
        run(
            &mut t,
            ev(
                1,
                Body::Chdir {
                    ret: -2,
                    path: b"/nope".to_vec(),
                },
            ),
        );
        // fd 5 is a directory opened by the process; openat relative to it.
        run(&mut t, ev(1, open(AT_FDCWD, "/etc", 5)));
        let e = run(&mut t, ev(1, open(5, "ssl/x", 6)));
        assert_eq!(open_detail(&e[0]).path, "/etc/ssl/x");
        // An fd the table never saw falls back to /proc; an unknown one is flagged.
        let e = run(&mut t, ev(1, open(9, "y", 7)));
        assert_eq!(open_detail(&e[0]).path, "/from/proc/y");
        let e = run(&mut t, ev(1, open(42, "z", -9)));
        assert!(open_detail(&e[0]).unresolved);
        assert_eq!(open_detail(&e[0]).outcome.error.as_deref(), Some("EBADF"));

        run(&mut t, ev(1, Body::Fchdir { ret: 0, fd: 5 }));
        let e = run(&mut t, ev(1, open(AT_FDCWD, "c", 8)));
        assert_eq!(open_detail(&e[0]).path, "/etc/c");
    }

    #[test]
    fn ptrace_and_process_vm_name_their_target() {
        let mut t = table();
        exec(&mut t, 1, "/usr/bin/node", 0);
        let ptrace = |request, target, ret| Body::Ptrace {
            ret,
            request,
            target,
            killed: false,
        };
        let target = |e: &Event| match &e.detail {
            Detail::Ptrace(p) => p.target.clone(),
            Detail::ProcessVm(v) => Some(v.target.clone()),
            d => panic!("not a target call: {d:?}"),
        };
        // A process of the run: its exe from the table.
        let e = run(&mut t, ev(1, ptrace(monitor_common::PTRACE_SEIZE, 1, 0)));
        assert_eq!(target(&e[0]).unwrap().exe.as_deref(), Some("/usr/bin/node"));
        // Outside the run: from /proc.
        let e = run(
            &mut t,
            ev(1, ptrace(monitor_common::PTRACE_ATTACH, 4000, -1)),
        );
        let Detail::Ptrace(p) = &e[0].detail else {
            unreachable!()
        };
        assert_eq!(p.request, "attach");
        assert_eq!(p.outcome.error.as_deref(), Some("EPERM"));
        assert_eq!(
            p.target.as_ref().unwrap().exe.as_deref(),
            Some("/opt/runner/worker")
        );
        // traceme has no target; hostile pids are kept as given, with no exe.
        let e = run(&mut t, ev(1, ptrace(monitor_common::PTRACE_TRACEME, 77, 0)));
        assert_eq!(target(&e[0]), None);
        let e = run(
            &mut t,
            ev(
                1,
                Body::ProcessVm {
                    ret: -3,
                    write: true,
                    target: -5,
                    killed: false,
                },
            ),
        );
        assert_eq!(e[0].kind, "process_vm");
        assert_eq!(target(&e[0]), Some(event::Target { pid: -5, exe: None }));
    }

    #[test]
    fn live_canonical_sees_symlinks_at_any_depth() {
        let dir = std::env::temp_dir().join(format!("bw-canon-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real/sub")).unwrap();
        std::fs::write(dir.join("real/sub/f"), "x").unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("via")).unwrap();
        std::os::unix::fs::symlink(dir.join("real/sub/f"), dir.join("real/link")).unwrap();
        let b = |p: &std::path::Path| p.as_os_str().as_bytes().to_vec();
        let real = b(&dir.join("real/sub/f"));
        // No symlink: the path itself. One in the middle or at the end: resolved.
        let meta = std::fs::metadata(dir.join("real/sub/f")).unwrap();
        let file = {
            use std::os::unix::fs::MetadataExt;
            let dev = meta.dev();
            let (major, minor) = (libc::major(dev), libc::minor(dev));
            FileId {
                dev: major << 20 | minor,
                ino: meta.ino(),
            }
        };
        let other = FileId {
            ino: file.ino + 1,
            ..file
        };
        let canonical = |p: &[u8], f| LiveProc.canonical(p, f);
        // No symlink: the path itself. One in the middle or at the end: resolved. Verified
        // only when the path now names the file given.
        assert_eq!(canonical(&real, file), (Some(real.clone()), true));
        assert_eq!(canonical(&real, other), (Some(real.clone()), false));
        assert_eq!(
            canonical(&real, FileId::default()),
            (Some(real.clone()), false)
        );
        let via = b(&dir.join("via/sub/f"));
        assert_eq!(canonical(&via, file), (Some(real.clone()), true));
        assert_eq!(canonical(&via, other), (Some(real.clone()), false));
        let link = b(&dir.join("real/link"));
        assert_eq!(canonical(&link, file), (Some(real.clone()), true));
        assert_eq!(
            canonical(&b(&dir.join("real/missing")), file),
            (None, false)
        );
        assert_eq!(canonical(b"/nonexistent-bw/x", file), (None, false));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlink_target_is_recorded() {
        let mut t = table();
        let e = run(&mut t, ev(1, open(AT_FDCWD, "link", 3)));
        let o = open_detail(&e[0]);
        assert_eq!(o.path, "/work/link");
        assert_eq!(o.target.as_deref(), Some("/home/u/.aws/credentials"));
    }

    /// A symlink target is worked out once per (opened file, path): a path swapped to a
    /// symlink afterwards opens another inode and is worked out again, and opens without the
    /// kernel's identity of the file are never answered from memory.
    #[test]
    fn secret_env_names_the_secret_variables_and_nothing_else() {
        let env = b"PATH=/usr/bin\0GITHUB_TOKEN=ghp_0123456789abcdef\0AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\0\
NPM_TOKEN=short\0API_KEY=https://vault.example.com/x\0GITHUB_TOKEN=ghp_again0123456789\0=x\0\xff_KEY=0123456789abcdef\0";
        let config = crate::detect::secrets::SecretsConfig::default();
        let names = crate::detect::secrets::SecretNames::new(&config);
        // Sorted, once each; too short a value, a URL and a name that is not UTF-8 are not
        // secrets.
        assert_eq!(
            env_secrets(env, &names),
            vec!["AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"]
        );
        let ignoring = crate::detect::secrets::SecretsConfig {
            ignore: vec!["GITHUB_*".into()],
            ..config.clone()
        };
        assert_eq!(
            env_secrets(env, &crate::detect::secrets::SecretNames::new(&ignoring)),
            vec!["AWS_SECRET_ACCESS_KEY"]
        );
        let many: Vec<u8> = (0..100)
            .flat_map(|i| format!("V{i:03}_TOKEN=0123456789abcdef\0").into_bytes())
            .collect();
        assert_eq!(env_secrets(&many, &names).len(), SECRET_ENV_MAX);
    }

    #[test]
    fn targets_are_kept_by_the_file_the_kernel_opened() {
        let mut t = table();
        let open_as = |path: &str, ino: u64| Body::Open {
            syscall: OpenSyscall::Openat,
            ret: 3,
            file: FileId {
                dev: 1 << 20 | 1,
                ino,
            },
            dirfd: AT_FDCWD,
            open_flags: 0,
            mode: 0,
            path: path.as_bytes().to_vec(),
        };
        let target = |t: &mut ProcTable<FakeProc>, body| {
            let e = run(t, ev(1, body));
            open_detail(&e[0]).target.clone()
        };
        let calls = |t: &ProcTable<FakeProc>| t.source.canonical_calls.get();
        assert_eq!(target(&mut t, open_as("/work/a", 10)), None);
        assert_eq!(target(&mut t, open_as("/work/a", 10)), None);
        assert_eq!(
            calls(&t),
            1,
            "the second open of the same file was worked out again"
        );
        // /work/a becomes a symlink to the credentials: the open reaches another inode.
        t.source
            .links
            .borrow_mut()
            .insert(b"/work/a".to_vec(), b"/home/u/.aws/credentials".to_vec());
        assert_eq!(
            target(&mut t, open_as("/work/a", 77)).as_deref(),
            Some("/home/u/.aws/credentials")
        );
        assert_eq!(calls(&t), 2);
        // The same inode by another path is another question.
        assert_eq!(target(&mut t, open_as("/work/b", 10)), None);
        assert_eq!(calls(&t), 3);
        // No identity from the kernel: asked every time.
        target(&mut t, open_as("/work/a", 0));
        target(&mut t, open_as("/work/a", 0));
        assert_eq!(calls(&t), 5);
    }

    #[test]
    fn tree_exec_and_ancestry() {
        let mut t = table();
        exec(&mut t, 1, "/bin/sh", 0);
        run(
            &mut t,
            ev(
                1,
                Body::Fork {
                    child: 2,
                    clone_flags: 0x11,
                },
            ),
        );
        // PATH search: the failed attempts are reported as failures, the winner as success.
        let failed = exec(&mut t, 2, "/usr/local/bin/node", -2);
        match &failed[0].detail {
            Detail::Exec(x) => {
                assert_eq!(x.outcome.error.as_deref(), Some("ENOENT"));
                assert_eq!(x.outcome.ret, -2);
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(
            failed[0].exe.as_deref(),
            Some("/bin/sh"),
            "failed exec keeps the old image"
        );
        exec(&mut t, 2, "/usr/bin/node", 0);
        run(
            &mut t,
            ev(
                2,
                Body::Fork {
                    child: 3,
                    clone_flags: 0x11,
                },
            ),
        );
        exec(&mut t, 3, "curl", 0);
        let e = run(&mut t, ev(3, open(AT_FDCWD, "/etc/hosts", 3)));
        assert_eq!(e[0].exe.as_deref(), Some("/work/curl"));
        assert_eq!(e[0].ppid, Some(2));
        let chain: Vec<_> = e[0]
            .ancestry
            .iter()
            .map(|a| (a.pid, a.exe.clone().unwrap()))
            .collect();
        assert_eq!(
            chain,
            vec![(2, "/usr/bin/node".into()), (1, "/bin/sh".into())]
        );

        // Children inherit cwd; an exited parent still shows in ancestry.
        let exit = run(
            &mut t,
            ev(
                2,
                Body::Exit {
                    status: Some(9),
                    reads_summarized: 0,
                },
            ),
        );
        match &exit[0].detail {
            Detail::Exit(x) => assert_eq!(x.signal_name.as_deref(), Some("SIGKILL")),
            d => panic!("{d:?}"),
        }
        let e = run(&mut t, ev(3, open(AT_FDCWD, "rel", 4)));
        assert_eq!(open_detail(&e[0]).path, "/work/rel");
        assert_eq!(e[0].ancestry[0].exe.as_deref(), Some("/usr/bin/node"));
    }

    #[test]
    fn cloexec_fds_close_on_exec() {
        let mut t = table();
        let cloexec = Body::Open {
            syscall: OpenSyscall::Openat,
            ret: 5,
            file: FileId::default(),
            dirfd: AT_FDCWD,
            open_flags: O_CLOEXEC,
            mode: 0,
            path: b"/etc".to_vec(),
        };
        run(&mut t, ev(1, cloexec));
        run(&mut t, ev(1, open(AT_FDCWD, "/usr", 6)));
        exec(&mut t, 1, "/bin/true", 0);
        let e = run(&mut t, ev(1, open(6, "lib", 7)));
        assert_eq!(open_detail(&e[0]).path, "/usr/lib");
        let e = run(&mut t, ev(1, open(5, "x", -9)));
        assert!(open_detail(&e[0]).unresolved, "fd 5 was O_CLOEXEC");
    }

    #[test]
    fn flags_and_time() {
        assert_eq!(open_flag_names(0), ["read"]);
        assert_eq!(
            open_flag_names((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32),
            ["write", "create", "truncate"]
        );
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_time(1_795_564_800_000_000_123),
            "2026-11-25T00:00:00.000000123Z"
        );
        assert_eq!(
            format_time(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            format_time(1_795_610_096_987_654_321),
            "2026-11-25T12:34:56.987654321Z"
        );
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999999999Z");
        // Beyond year 9999 (hostile or broken clocks): text, no panic.
        // The per-second cache gives the same text, across a second boundary too.
        let mut t = ProcTable::new(FakeProc::new(HashMap::new()), 0);
        for ns in [
            1_795_610_096_987_654_321,
            1_795_610_096_000_000_001,
            1_795_610_097_000_000_000,
            -1,
        ] {
            assert_eq!(t.time(ns), format_time(ns));
        }
        let far = format_time(i128::from(i64::MAX) * 1_000);
        assert!(far.len() > 30 && far.ends_with('Z'), "{far}");
    }
}
