//! Turns raw ring-buffer records into typed kernel events. Records are produced by our own
//! kernel programs, but every string in them is data the watched code controls, and a length
//! field could be wrong after a layout mismatch: everything is bounds-checked, nothing panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use monitor_common as wire;

/// A decoded kernel event. Strings are raw bytes (Linux paths and argv need not be UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    pub tid: u32,
    pub pid: u32,
    /// Boot-clock nanoseconds.
    pub ts_ns: u64,
    /// The process's start time (boot clock), 0 when the kernel side could not tell.
    pub start_ns: u64,
    /// The low 32 bits of the task's cgroup id (its directory's inode number).
    pub cgroup: u32,
    pub flags: u16,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    ExecEnter {
        at: bool,
        dirfd: i32,
        at_flags: u32,
        filename: Vec<u8>,
        argv: Vec<Vec<u8>>,
    },
    ExecExit {
        ret: i64,
        /// The new image as the kernel knows it (a successful exec only).
        image: Option<Image>,
    },
    Fork {
        child: u32,
        clone_flags: u64,
    },
    Exit {
        /// wait(2) status, None when the kernel could not tell.
        status: Option<i32>,
        /// Read-only opens under system directories counted, not reported.
        reads_summarized: u32,
    },
    Open {
        syscall: OpenSyscall,
        ret: i64,
        /// The opened file's (device, inode) from the kernel's fd table; (0, 0) unknown.
        file: FileId,
        dirfd: i32,
        open_flags: u32,
        mode: u32,
        path: Vec<u8>,
    },
    Chdir {
        ret: i64,
        path: Vec<u8>,
    },
    Fchdir {
        ret: i64,
        fd: i32,
    },
    Connect {
        ret: i64,
        fd: i32,
        addr: SockAddr,
        /// Seen by the kernel's connect hook with no connect(2) around it (io_uring, TCP Fast
        /// Open): `ret` and `fd` mean nothing.
        no_result: bool,
        /// Block mode refused the destination (the call failed with EPERM).
        refused: bool,
        /// Block mode sent it to the DNS proxy instead.
        redirected: bool,
    },
    SendTo {
        addr: SockAddr,
        protocol: u32,
        refused: bool,
        redirected: bool,
    },
    /// A successful exec's standard descriptors and environment.
    ExecFacts(Box<ExecFactsBody>),
    /// A bind of an IPv4/IPv6 socket: the local address asked for.
    Bind {
        addr: SockAddr,
        protocol: u32,
    },
    /// listen(2) entered (fd, backlog), or IORING_OP_LISTEN submitted (`uring`, no fd).
    Listen {
        fd: i32,
        backlog: i32,
        uring: bool,
    },
    /// An attaching ptrace request; `target` as the caller named it.
    Ptrace {
        ret: i64,
        request: i64,
        target: i32,
        /// Block mode killed the caller before the call returned.
        killed: bool,
    },
    /// A packet to or from port 53. `tcp_seq` is the sequence number of the first payload byte
    /// (TCP only); `orig_len` the payload's length before the kernel cut it to `payload`.
    DnsPacket {
        ingress: bool,
        tcp: bool,
        src: std::net::SocketAddr,
        dst: std::net::SocketAddr,
        tcp_seq: u32,
        orig_len: u32,
        payload: Vec<u8>,
    },
    /// process_vm_readv (`write` false) or process_vm_writev.
    /// A rename, hard link or symlink: `old` (a symlink's content, as given) and `new`, as
    /// passed, with their directory fds.
    Relink {
        ret: i64,
        op: u32,
        old_dirfd: i32,
        new_dirfd: i32,
        /// renameat2/linkat/unlinkat flags; for a chmod, the mode.
        call_flags: u32,
        old: Vec<u8>,
        new: Vec<u8>,
        /// Submitted through io_uring: reported at submission, no result.
        no_result: bool,
        /// io_uring on a registered file: `old_dirfd` is its index in the ring's table.
        fixed_file: bool,
    },
    /// A process of the run found outside every watched cgroup.
    Escape {
        cgroup_id: u64,
        killed: bool,
    },
    /// A signal or pidfd aimed at buildwatch (or every process, or the caller's group).
    Signal {
        call: u32,
        target: i32,
        signal: u32,
        protected: bool,
    },
    /// A raw or packet socket was asked for.
    Socket {
        ret: i64,
        family: u32,
        sock_type: u32,
        protocol: u32,
        /// Asked for through io_uring: reported at submission, no result.
        no_result: bool,
    },
    /// bpf(2) entered (before it takes effect).
    Bpf {
        cmd: u32,
    },
    ProcessVm {
        ret: i64,
        write: bool,
        target: i32,
        /// Block mode killed the caller before the call returned.
        killed: bool,
    },
}

/// A new process image as the kernel knows it after a successful exec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// The executable (`mm->exe_file`); unknown when a read failed.
    pub file: FileId,
    /// Its link count: 0 for a deleted file or a memfd.
    pub nlink: u32,
    /// Its file name (last path component): `memfd:NAME` for a memfd.
    pub name: Vec<u8>,
    /// argv as the new stack holds it (empty when it could not be read).
    pub argv: Vec<Vec<u8>>,
    pub argv_truncated: bool,
    /// Block mode killed it before it ran (sudo, su).
    pub killed: bool,
}

/// A successful exec's standard descriptors and environment (before its exit record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecFactsBody {
    /// Descriptors 0, 1 and 2 of the new image, from the kernel's fd table.
    pub stdio: [StdFdFact; 3],
    /// Its environment as the new stack holds it (NUL-separated; cut when `env_truncated`).
    pub env: Vec<u8>,
    pub env_truncated: bool,
}

/// One standard descriptor of a new image, as the kernel had it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StdFdFact {
    pub file: FileId,
    /// `i_mode` (0: nothing open there, or `failed`).
    pub mode: u16,
    /// For a character device: which (kernel encoding).
    pub rdev: u32,
    /// A read on the way failed: unknown.
    pub failed: bool,
}

/// A file as the kernel knows it: its filesystem's device (kernel encoding, `major << 20 |
/// minor`) and inode number. `ino == 0`: unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u32,
    pub ino: u64,
}

impl FileId {
    pub fn known(self) -> bool {
        self.ino != 0
    }

    /// The device as `stat(2)` reports it (`st_dev`).
    pub fn st_dev(self) -> u64 {
        libc::makedev(self.dev >> 20, self.dev & 0xf_ffff)
    }

    /// Whether `stat` (of a path, now) is this file.
    pub fn is(self, stat: &libc::stat) -> bool {
        self.known() && stat.st_ino == self.ino && stat.st_dev == self.st_dev()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenSyscall {
    Open,
    Openat,
    Openat2,
    /// IORING_OP_OPENAT / IORING_OP_OPENAT2, reported at submission (no fd yet).
    UringOpenat,
    UringOpenat2,
    /// open_by_handle_at: no path in the call.
    OpenByHandleAt,
}

impl OpenSyscall {
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Openat => "openat",
            Self::Openat2 => "openat2",
            Self::UringOpenat => "io_uring_openat",
            Self::UringOpenat2 => "io_uring_openat2",
            Self::OpenByHandleAt => "open_by_handle_at",
        }
    }
}

/// A socket address as passed to connect(2) / sendmsg(2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    /// IPv4, or an IPv4-mapped IPv6 address shown as IPv4 (`mapped` says which).
    Inet { ip: IpAddr, port: u16, mapped: bool },
    /// A filesystem path, or an abstract name (leading NUL) shown with a leading `@`.
    Unix { path: Vec<u8>, abstract_ns: bool },
    /// AF_UNSPEC (dissolves a UDP association) or a family we do not decode.
    Other { family: u16 },
    /// addrlen too short for the family.
    Truncated { family: u16 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
    #[error("{kind:?} record of {len} bytes is shorter than its body or tail")]
    Truncated { kind: wire::EventKind, len: usize },
}

/// Marker for wire types that are plain integers/arrays: valid for any bit pattern.
trait Wire: Copy {}
impl Wire for wire::EventHeader {}
impl Wire for wire::ExecDone {}
impl Wire for wire::ExecFacts {}
impl Wire for wire::ExecEnter {}
impl Wire for wire::Fork {}
impl Wire for wire::Exit {}
impl Wire for wire::Open {}
impl Wire for wire::Chdir {}
impl Wire for wire::Fchdir {}
impl Wire for wire::Connect {}
impl Wire for wire::SendTo {}
impl Wire for wire::TargetCall {}
impl Wire for wire::BpfCall {}
impl Wire for wire::SocketCall {}
impl Wire for wire::ListenCall {}
impl Wire for wire::Relink {}
impl Wire for wire::SignalCall {}
impl Wire for wire::Escape {}
impl Wire for wire::DnsPacket {}

fn read<T: Wire>(buf: &[u8]) -> Option<T> {
    if buf.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked above, T is repr(C) plain data valid for any bit pattern
    // (the Wire marker), and read_unaligned makes no alignment assumption.
    Some(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// `len` bytes after the fixed body, or a truncation error.
fn tail(buf: &[u8], body: usize, len: usize, kind: wire::EventKind) -> Result<&[u8], DecodeError> {
    buf.get(body..body + len).ok_or(DecodeError::Truncated {
        kind,
        len: buf.len(),
    })
}

pub fn decode(buf: &[u8]) -> Result<KernelEvent, DecodeError> {
    use wire::EventKind as K;
    let h: wire::EventHeader = read(buf).ok_or(DecodeError::Short(buf.len()))?;
    let kind = K::from_u16(h.kind).ok_or(DecodeError::UnknownKind(h.kind))?;
    let short = DecodeError::Truncated {
        kind,
        len: buf.len(),
    };
    let body = match kind {
        K::ExecEnter => {
            let b: wire::ExecEnter = read(buf).ok_or(short)?;
            let fname_len = b.filename_len as usize;
            let body = size_of::<wire::ExecEnter>();
            let filename = tail(buf, body, fname_len, kind)?.to_vec();
            let argv_bytes = tail(buf, body + fname_len, b.argv_len as usize, kind)?;
            Body::ExecEnter {
                at: h.flags & wire::flags::SYSCALL_AT != 0,
                dirfd: b.dirfd,
                at_flags: b.at_flags,
                filename,
                argv: split_argv(argv_bytes, b.argc as usize),
            }
        }
        K::ExecExit => {
            let b: wire::ExecDone = read(buf).ok_or(short)?;
            let body = size_of::<wire::ExecDone>();
            let name = tail(buf, body, b.name_len as usize, kind)?.to_vec();
            let mut argv = tail(buf, body + name.len(), b.argv_len as usize, kind)?;

            let mut argv_truncated = h.flags & wire::flags::IMAGE_ARGV_TRUNCATED != 0;
            // The same limits as at entry: the last argument cut to leave room for its NUL,
            // at most ARGV_MAX_ARGS arguments.
            if argv_truncated && argv.last().is_some_and(|&c| c != 0) {
                argv = &argv[..argv.len() - 1];
            }
            let mut args = split_argv(argv, usize::MAX);
            if args.len() > wire::ARGV_MAX_ARGS {
                args.truncate(wire::ARGV_MAX_ARGS);
                argv_truncated = true;
            }
            Body::ExecExit {
                ret: b.ret,
                image: (b.ret == 0).then_some(Image {
                    file: FileId {
                        dev: b.dev,
                        ino: b.ino,
                    },
                    nlink: b.nlink,
                    name,
                    argv: args,
                    argv_truncated,
                    killed: h.flags & wire::flags::KILLED != 0,
                }),
            }
        }
        K::ExecFacts => {
            let b: wire::ExecFacts = read(buf).ok_or(short)?;
            let body = size_of::<wire::ExecFacts>();
            let env = tail(buf, body, b.env_len as usize, kind)?.to_vec();
            Body::ExecFacts(Box::new(ExecFactsBody {
                stdio: b.stdio.map(|f| StdFdFact {
                    file: FileId {
                        dev: f.dev,
                        ino: f.ino,
                    },
                    mode: f.mode,
                    rdev: f.rdev,
                    failed: f.flags & wire::STDFD_READ_FAILED != 0,
                }),
                env,
                env_truncated: b.env_truncated != 0,
            }))
        }
        K::Fork => {
            let b: wire::Fork = read(buf).ok_or(short)?;
            Body::Fork {
                child: b.child_pid,
                clone_flags: b.clone_flags,
            }
        }
        K::Exit => {
            let b: wire::Exit = read(buf).ok_or(short)?;
            let known = h.flags & wire::flags::EXIT_CODE_UNKNOWN == 0;
            Body::Exit {
                status: known.then_some(b.code),
                reads_summarized: b.reads_summarized,
            }
        }
        K::Open => {
            let b: wire::Open = read(buf).ok_or(short)?;
            let path = tail(buf, size_of::<wire::Open>(), b.path_len as usize, kind)?.to_vec();
            let uring = h.flags & wire::flags::SYSCALL_URING == wire::flags::SYSCALL_URING;
            let by_handle =
                h.flags & wire::flags::SYSCALL_BY_HANDLE == wire::flags::SYSCALL_BY_HANDLE;
            let syscall = if by_handle {
                OpenSyscall::OpenByHandleAt
            } else if uring && h.flags & wire::flags::SYSCALL_OPENAT2 != 0 {
                OpenSyscall::UringOpenat2
            } else if uring {
                OpenSyscall::UringOpenat
            } else if h.flags & wire::flags::SYSCALL_OPENAT2 != 0 {
                OpenSyscall::Openat2
            } else if h.flags & wire::flags::SYSCALL_OPEN != 0 {
                OpenSyscall::Open
            } else {
                OpenSyscall::Openat
            };
            Body::Open {
                syscall,
                ret: b.ret,
                file: FileId {
                    dev: b.dev,
                    ino: b.ino,
                },
                dirfd: b.dirfd,
                open_flags: b.open_flags,
                mode: b.mode,
                path,
            }
        }
        K::Chdir => {
            let b: wire::Chdir = read(buf).ok_or(short)?;
            let path = tail(buf, size_of::<wire::Chdir>(), b.path_len as usize, kind)?.to_vec();
            Body::Chdir { ret: b.ret, path }
        }
        K::Fchdir => {
            let b: wire::Fchdir = read(buf).ok_or(short)?;
            Body::Fchdir {
                ret: b.ret,
                fd: b.fd,
            }
        }
        K::Connect => {
            let b: wire::Connect = read(buf).ok_or(short)?;
            let n = (b.addrlen as usize).min(wire::SOCKADDR_MAX);
            Body::Connect {
                ret: b.ret,
                fd: b.fd,
                addr: parse_sockaddr(&b.addr[..n]),
                no_result: h.flags & wire::flags::NO_RESULT != 0,
                refused: h.flags & wire::flags::REFUSED != 0,
                redirected: h.flags & wire::flags::REDIRECTED != 0,
            }
        }
        K::Bind => {
            let b: wire::SendTo = read(buf).ok_or(short)?;
            Body::Bind {
                addr: hook_addr(&b),
                protocol: b.protocol,
            }
        }
        K::Listen => {
            let b: wire::ListenCall = read(buf).ok_or(short)?;
            Body::Listen {
                fd: b.fd,
                backlog: b.backlog,
                uring: h.flags & wire::flags::NO_RESULT != 0,
            }
        }
        K::SendTo => {
            let b: wire::SendTo = read(buf).ok_or(short)?;
            Body::SendTo {
                addr: hook_addr(&b),
                protocol: b.protocol,
                refused: h.flags & wire::flags::REFUSED != 0,
                redirected: h.flags & wire::flags::REDIRECTED != 0,
            }
        }
        K::Ptrace => {
            let b: wire::TargetCall = read(buf).ok_or(short)?;
            Body::Ptrace {
                ret: b.ret,
                request: b.op,
                target: b.target_pid,
                killed: h.flags & wire::flags::KILLED != 0,
            }
        }
        K::ProcessVm => {
            let b: wire::TargetCall = read(buf).ok_or(short)?;
            Body::ProcessVm {
                ret: b.ret,
                write: b.op == wire::VM_WRITE,
                target: b.target_pid,
                killed: h.flags & wire::flags::KILLED != 0,
            }
        }
        K::Escape => {
            let b: wire::Escape = read(buf).ok_or(short)?;
            Body::Escape {
                cgroup_id: b.cgroup_id,
                killed: h.flags & wire::flags::KILLED != 0,
            }
        }
        K::Signal => {
            let b: wire::SignalCall = read(buf).ok_or(short)?;
            Body::Signal {
                call: b.call,
                target: b.target,
                signal: b.signal,
                protected: b.protected != 0,
            }
        }
        K::Relink => {
            let b: wire::Relink = read(buf).ok_or(short)?;
            let body = size_of::<wire::Relink>();
            let old = tail(buf, body, b.old_len as usize, kind)?.to_vec();
            let new = tail(buf, body + old.len(), b.new_len as usize, kind)?.to_vec();
            Body::Relink {
                ret: b.ret,
                op: b.op,
                old_dirfd: b.old_dirfd,
                new_dirfd: b.new_dirfd,
                call_flags: b.call_flags,
                old,
                new,
                no_result: h.flags & wire::flags::NO_RESULT != 0,
                fixed_file: h.flags & wire::flags::NO_RESULT != 0
                    && h.flags & wire::flags::FIXED_FILE != 0,
            }
        }
        K::Socket => {
            let b: wire::SocketCall = read(buf).ok_or(short)?;
            Body::Socket {
                ret: b.ret,
                family: b.family,
                sock_type: b.sock_type,
                protocol: b.protocol,
                no_result: h.flags & wire::flags::NO_RESULT != 0,
            }
        }
        K::Bpf => {
            let b: wire::BpfCall = read(buf).ok_or(short)?;
            Body::Bpf { cmd: b.cmd }
        }
        K::DnsPacket => {
            let b: wire::DnsPacket = read(buf).ok_or(short)?;
            let payload = tail(
                buf,
                size_of::<wire::DnsPacket>(),
                b.payload_len as usize,
                kind,
            )?
            .to_vec();
            let ip = |a: [u8; 16]| match b.ip_version {
                4 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                _ => IpAddr::V6(Ipv6Addr::from(a)),
            };
            Body::DnsPacket {
                ingress: h.flags & wire::flags::INGRESS != 0,
                tcp: b.protocol == 6,
                src: (ip(b.saddr), b.sport).into(),
                dst: (ip(b.daddr), b.dport).into(),
                tcp_seq: b.tcp_seq,
                orig_len: b.orig_len,
                payload,
            }
        }
        K::Lost => return Err(DecodeError::UnknownKind(h.kind)),
    };
    Ok(KernelEvent {
        tid: h.tid,
        pid: h.pid,
        ts_ns: h.ts_ns,
        start_ns: h.start_ns,
        cgroup: h.cgroup,
        flags: h.flags,
        body,
    })
}

/// argv is packed as NUL-terminated strings; a cut last string may lack its NUL.
fn split_argv(bytes: &[u8], argc: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = bytes
        .split_inclusive(|&b| b == 0)
        .map(|s| s.strip_suffix(&[0]).unwrap_or(s).to_vec())
        .collect();
    out.truncate(argc);
    out
}

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The address a cgroup hook record (sendmsg, bind) carries: family, port, 16 address bytes.
fn hook_addr(b: &wire::SendTo) -> SockAddr {
    let ip = if b.family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(b.addr[0], b.addr[1], b.addr[2], b.addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(b.addr))
    };
    inet(ip, b.port)
}

fn inet(ip: IpAddr, port: u16) -> SockAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SockAddr::Inet {
                ip: IpAddr::V4(v4),
                port,
                mapped: true,
            },
            None => SockAddr::Inet {
                ip,
                port,
                mapped: false,
            },
        },
        IpAddr::V4(_) => SockAddr::Inet {
            ip,
            port,
            mapped: false,
        },
    }
}

/// Decode a sockaddr as user space passed it (family in host order, port in network order).
pub fn parse_sockaddr(b: &[u8]) -> SockAddr {
    let Some(fam) = b.get(..2) else {
        return SockAddr::Truncated { family: 0 };
    };
    let family = u16::from_ne_bytes([fam[0], fam[1]]);
    let port = || b.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]]));
    match family {
        AF_INET => match (port(), b.get(4..8)) {
            (Some(port), Some(a)) => inet(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), port),
            _ => SockAddr::Truncated { family },
        },
        AF_INET6 => match (port(), b.get(8..24)) {
            (Some(port), Some(a)) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(a);
                inet(IpAddr::V6(Ipv6Addr::from(octets)), port)
            }
            _ => SockAddr::Truncated { family },
        },
        AF_UNIX => {
            let path = &b[2..];
            if path.first() == Some(&0) {
                // Abstract names are length-delimited and may contain NULs.
                SockAddr::Unix {
                    path: path[1..].to_vec(),
                    abstract_ns: true,
                }
            } else {
                let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                SockAddr::Unix {
                    path: path[..end].to_vec(),
                    abstract_ns: false,
                }
            }
        }
        _ => SockAddr::Other { family },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: wire::EventKind, flags: u16) -> wire::EventHeader {
        wire::EventHeader {
            kind: kind as u16,
            flags,
            tid: 11,
            pid: 10,
            cgroup: 0,
            ts_ns: 99,
            start_ns: 77,
        }
    }

    fn bytes_of<T: Wire>(v: &T) -> Vec<u8> {
        // SAFETY: Wire types are plain data without padding.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn exec_enter_round_trip_with_non_utf8_and_cut_argv() {
        let filename = b"/usr/bin/\xffx";
        let argv = b"prog\0-c\0cut-without-nul";
        let body = wire::ExecEnter {
            header: header(wire::EventKind::ExecEnter, wire::flags::ARGV_TRUNCATED),
            dirfd: wire::AT_FDCWD,
            at_flags: 0,
            filename_len: filename.len() as u16,
            argv_len: argv.len() as u16,
            argc: 3,
            _pad: 0,
        };
        let mut rec = bytes_of(&body);
        rec.extend_from_slice(filename);
        rec.extend_from_slice(argv);
        let ev = decode(&rec).unwrap();
        assert_eq!((ev.pid, ev.tid, ev.ts_ns), (10, 11, 99));
        assert_eq!(
            ev.body,
            Body::ExecEnter {
                at: false,
                dirfd: -100,
                at_flags: 0,
                filename: filename.to_vec(),
                argv: vec![
                    b"prog".to_vec(),
                    b"-c".to_vec(),
                    b"cut-without-nul".to_vec()
                ],
            }
        );
    }

    #[test]
    fn lying_lengths_are_errors_not_panics() {
        let body = wire::Open {
            header: header(wire::EventKind::Open, 0),
            ret: 3,
            path_len: 4000,
            ..Default::default()
        };
        let mut rec = bytes_of(&body);
        rec.extend_from_slice(b"/etc/passwd");
        assert!(matches!(decode(&rec), Err(DecodeError::Truncated { .. })));
        // Every prefix of a valid record decodes or errors; none panics.
        for n in 0..rec.len() {
            let _ = decode(&rec[..n]);
        }
        assert_eq!(decode(&[0u8; 3]), Err(DecodeError::Short(3)));
        let mut unknown = bytes_of(&header(wire::EventKind::Exit, 0));
        unknown[0] = 0xEE;
        assert!(matches!(decode(&unknown), Err(DecodeError::UnknownKind(_))));
    }

    #[test]
    fn target_calls() {
        let rec = wire::TargetCall {
            header: header(wire::EventKind::Ptrace, 0),
            ret: -1,
            op: wire::PTRACE_SEIZE,
            target_pid: 4242,
            _pad: 0,
        };
        assert_eq!(
            decode(&bytes_of(&rec)).unwrap().body,
            Body::Ptrace {
                ret: -1,
                request: wire::PTRACE_SEIZE,
                target: 4242,
                killed: false,
            }
        );
        let vm = wire::TargetCall {
            header: header(wire::EventKind::ProcessVm, 0),
            ret: 64,
            op: wire::VM_WRITE,
            target_pid: 7,
            _pad: 0,
        };
        let bytes = bytes_of(&vm);
        assert_eq!(
            decode(&bytes).unwrap().body,
            Body::ProcessVm {
                ret: 64,
                write: true,
                target: 7,
                killed: false,
            }
        );
        assert!(matches!(
            decode(&bytes[..40]),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn sockaddrs() {
        let mut v4 = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1];
        v4.extend_from_slice(&[0; 8]);
        assert_eq!(
            parse_sockaddr(&v4),
            SockAddr::Inet {
                ip: "127.0.0.1".parse().unwrap(),
                port: 8080,
                mapped: false
            }
        );
        let mut v6 = vec![10u8, 0, 0, 53, 0, 0, 0, 0];
        v6.extend_from_slice(&"::ffff:10.200.0.1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0; 4]);
        assert_eq!(
            parse_sockaddr(&v6),
            SockAddr::Inet {
                ip: "10.200.0.1".parse().unwrap(),
                port: 53,
                mapped: true
            }
        );
        assert_eq!(
            parse_sockaddr(&v6[..20]),
            SockAddr::Truncated { family: 10 }
        );
        assert_eq!(
            parse_sockaddr(b"\x01\0/run/x.sock\0junk"),
            SockAddr::Unix {
                path: b"/run/x.sock".to_vec(),
                abstract_ns: false
            }
        );
        assert_eq!(
            parse_sockaddr(b"\x01\0\0name\0with-nul"),
            SockAddr::Unix {
                path: b"name\0with-nul".to_vec(),
                abstract_ns: true
            }
        );
        assert_eq!(parse_sockaddr(&[0]), SockAddr::Truncated { family: 0 });
        assert_eq!(parse_sockaddr(&[0, 0]), SockAddr::Other { family: 0 });
    }
}
