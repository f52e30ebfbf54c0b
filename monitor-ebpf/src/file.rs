//! file sensor: open/openat/openat2 (path read at syscall exit, when the pages are resident,
//! together with the fd or errno) and chdir/fchdir so userspace can track each process's cwd.

use core::ptr::write_unaligned;

use aya_ebpf::{
    helpers::generated::{
        bpf_loop, bpf_probe_read_kernel_str, bpf_probe_read_user, bpf_send_signal,
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap},
    programs::TracePointContext,
};
use monitor_common::{
    AT_FDCWD, Chdir, EventKind, FILENAME_NAME, Fchdir, FileId, GUARD_OWNERS, GUARDED_MAX,
    GuardOwners, IORING_OP_FSETXATTR, IORING_OP_FTRUNCATE, IORING_OP_LINKAT, IORING_OP_LISTEN,
    IORING_OP_OPENAT, IORING_OP_OPENAT2, IORING_OP_RENAMEAT, IORING_OP_SETXATTR, IORING_OP_SOCKET,
    IORING_OP_SYMLINKAT, IORING_OP_UNLINKAT, ListenCall, NAME_MAX, Open, PATH_MAX, RELINK_CHMOD,
    RELINK_LINK, RELINK_RENAME, RELINK_SETXATTR, RELINK_SYMLINK, RELINK_TRUNCATE, RELINK_UNLINK,
    REQ_F_FIXED_FILE, Relink, SUMMARIZED_MAX, SUMMARY_DIRS, SUMMARY_ENABLED, SUMMARY_FILE,
    SUMMARY_PATH_MAX, SUMMARY_TRIPPED, SocketCall, StashedArgs, URING_FD, URING_FTRUNC_LEN,
    URING_LINK_LIKE_RENAME, URING_OPEN_DFD, URING_OPEN_FILENAME, URING_OPEN_HOW,
    URING_RENAME_FLAGS, URING_RENAME_NEW_DFD, URING_RENAME_NEWPATH, URING_RENAME_OLD_DFD,
    URING_RENAME_OLDPATH, URING_SOCKET_DOMAIN, URING_SOCKET_PROTOCOL, URING_SOCKET_TYPE,
    URING_UNLINK_DFD, URING_UNLINK_FILENAME, URING_UNLINK_FLAGS, URING_XATTR_FILENAME,
    URING_XATTR_KNAME, counters, flags,
};

use crate::emit::{
    ARG0, ARG1, ARG2, NR, RET, SCRATCH_SIZE, check, count, emit, header, in_scope, offset, opened,
    output_scratch, read_kernel, read_user_path, scratch, stash, syscall_args, unstash,
};

const SENSOR: u32 = monitor_common::sensors::FILE;
const O_ACCMODE: u32 = 3;
const O_RDONLY: u32 = 0;
const O_WRONLY: u32 = 1;
const O_PATH: u32 = 0o10_000_000;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const SIGKILL: u32 = 9;

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_openat2(&ctx));
    0
}

/// The exit of open, openat and openat2 (their enters stashed what differs): one program,
/// verified once, attached three times.
#[tracepoint]
pub fn sys_exit_open_any(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_exit_open(&ctx));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_chdir")]
pub fn sys_exit_chdir(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_exit_chdir(&ctx));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_fchdir")]
pub fn sys_exit_fchdir(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_exit_fchdir(&ctx));
    0
}

#[tracepoint]
pub fn sys_enter_open_by_handle_at(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_by_handle(&ctx));
    0
}

/// open_by_handle_at(mount_fd, handle, flags): a file opened by its handle, with no path
/// (CAP_DAC_READ_SEARCH; the primitive of container escapes). Its exit is the opens' one.
fn try_enter_by_handle(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    unsafe {
        stash(
            SENSOR,
            &StashedArgs {
                ptr: 0,
                arg0: ctx.read_at::<i64>(ARG0)? as i32 as i64,
                arg1: ctx.read_at(ARG2)?,
                arg2: 0,
                flags: flags::SYSCALL_BY_HANDLE,
                live: 0,
                _pad: [0; 2],
            },
        );
    }
    Ok(0)
}

fn try_enter_openat2(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let how: u64 = unsafe { ctx.read_at(ARG2)? };
    let mut fm = [0u64; 2];
    let mut fl = flags::SYSCALL_AT | flags::SYSCALL_OPENAT2;
    if unsafe { bpf_probe_read_user(fm.as_mut_ptr().cast(), 16, how as *const _) } < 0 {
        count(SENSOR, counters::READ_ERROR);
        fl |= flags::READ_FAILED;
    }
    unsafe {
        stash(
            SENSOR,
            &StashedArgs {
                ptr: ctx.read_at(ARG1)?,
                arg0: ctx.read_at::<i64>(ARG0)? as i32 as i64,
                arg1: fm[0],
                arg2: fm[1],
                flags: fl,
                live: 0,
                _pad: [0; 2],
            },
        );
    }
    Ok(0)
}

/// Credential files block mode guards, by identity, with the tools that own them. Written
/// once before the command starts, then frozen.
#[map]
static GUARDED: HashMap<FileId, GuardOwners> = HashMap::with_max_entries(GUARDED_MAX, 0);

/// Is (dev, ino) a guarded file, and the current process none of its owners (by the names
/// its execs gave it)?
#[inline(always)]
fn stranger(dev: u32, ino: u64) -> bool {
    let id = FileId {
        dev: u64::from(dev),
        ino,
    };
    let Some(owners) = (unsafe { GUARDED.get(&id) }) else {
        return false;
    };
    // The names it was executed under (`npm` before `env` made it `node`), recorded at each
    // exec and inherited at fork: not the current `comm`, which a process can set itself.
    let tgid = (unsafe { aya_ebpf::helpers::generated::bpf_get_current_pid_tgid() } >> 32) as u32;
    let Some(names) = (unsafe { crate::exec::EXEC_NAMES.get(&tgid) }) else {
        return true;
    };
    let mut i = 0;
    while i < GUARD_OWNERS {
        if i < owners.n as usize {
            let owner = u128::from_ne_bytes(owners.comm[i]);
            let mut j = 0;
            while j < crate::exec::EXEC_NAMES_KEPT {
                if u128::from_ne_bytes(names[j]) == owner {
                    return false;
                }
                j += 1;
            }
        }
        i += 1;
    }
    true
}

/// Entry [`SUMMARY_ENABLED`]: summarizing is on; [`SUMMARY_TRIPPED`]: the run made a name
/// that could redirect a summarized path, so it is off for good.
#[map]
static SUMMARY: Array<u32> = Array::with_max_entries(2, 0);

/// Read-only opens summarized, per process (tgid); taken by its exit record.
#[map]
pub static SUMMARIZED: HashMap<u32, u64> =
    HashMap::with_max_entries(SUMMARIZED_MAX, crate::emit::SPARSE);

#[inline(always)]
fn summarizing() -> bool {
    SUMMARY.get(SUMMARY_ENABLED).copied() == Some(1)
        && SUMMARY.get(SUMMARY_TRIPPED).copied() != Some(1)
}

/// A new name was made where a summarized path could now lead: report every read from now.
#[inline(always)]
fn trip_summary() {
    if let Some(p) = SUMMARY.get_ptr_mut(SUMMARY_TRIPPED) {
        unsafe { *p = 1 };
    }
}

#[inline(always)]
fn starts_with(p: *const u8, len: usize, pat: &[u8]) -> bool {
    if len < pat.len() {
        return false;
    }
    let mut i = 0;
    while i < pat.len() {
        if unsafe { *p.wrapping_add(i) } != pat[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Is the path (`len` bytes at `p`, in the scratch buffer) under a summarized directory, or
/// the loader's cache, with no `/.` anywhere (no `..`, no hidden name)?
#[inline(always)]
fn summarized_path(p: *const u8, len: usize) -> bool {
    if len >= SUMMARY_PATH_MAX {
        return false;
    }
    let under = (len == SUMMARY_FILE.len() && starts_with(p, len, SUMMARY_FILE))
        || starts_with(p, len, SUMMARY_DIRS[0])
        || starts_with(p, len, SUMMARY_DIRS[1])
        || starts_with(p, len, SUMMARY_DIRS[2])
        || starts_with(p, len, SUMMARY_DIRS[3])
        || starts_with(p, len, SUMMARY_DIRS[4])
        || starts_with(p, len, SUMMARY_DIRS[5])
        || starts_with(p, len, SUMMARY_DIRS[6])
        || starts_with(p, len, SUMMARY_DIRS[7]);
    if !under {
        return false;
    }
    // The scan runs in bpf_loop: the verifier checks one step, not every iteration of a
    // bounded loop (that cost every run ~40 ms of start-up).
    let mut scan = DotScan {
        base: p as u64,
        len: len as u64,
        found: 0,
    };
    unsafe {
        bpf_loop(
            SUMMARY_PATH_MAX as u32 - 1,
            dot_step as *mut core::ffi::c_void,
            (&raw mut scan).cast(),
            0,
        )
    };
    scan.found == 0
}

/// State of the `/.` scan, on the caller's stack, shared with [`dot_step`].
#[repr(C)]
struct DotScan {
    base: u64,
    len: u64,
    found: u64,
}

/// Bytes `i` and `i + 1` of the path: is it `/.`? Returns 1 to stop.
#[inline(never)]
extern "C" fn dot_step(i: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let s = unsafe { &mut *ctx.cast::<DotScan>() };
    if i + 1 >= s.len {
        return 1;
    }
    let p = s.base as *const u8;
    let i = (i as usize) & (SUMMARY_PATH_MAX - 1);
    if unsafe { *p.wrapping_add(i) } == b'/' && unsafe { *p.wrapping_add(i + 1) } == b'.' {
        s.found = 1;
        return 1;
    }
    0
}

/// Could a new name at this path (`len` bytes at `p`) redirect a summarized path? Relative
/// names could be anywhere; absolute ones under /usr, /lib… or /etc/ld.so*.
#[inline(always)]
fn name_could_redirect(p: *const u8, len: usize) -> bool {
    if len == 0 || unsafe { *p } != b'/' {
        return true;
    }
    starts_with(p, len, b"/usr")
        || starts_with(p, len, b"/lib")
        || starts_with(p, len, b"/etc/ld.so")
}

/// Count a summarized read for the current process. False when it cannot be counted (the
/// map is full, or another thread is adding the process): then the read is reported.
#[inline(always)]
fn count_summarized() -> bool {
    let tgid = (unsafe { aya_ebpf::helpers::generated::bpf_get_current_pid_tgid() } >> 32) as u32;
    if let Some(p) = SUMMARIZED.get_ptr_mut(&tgid) {
        // An atomic add (BPF_ATOMIC_ADD): threads of one process count at once.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                p, 1,
            )
        };
        return true;
    }
    // BPF_NOEXIST
    SUMMARIZED.insert(&tgid, &1, 1).is_ok()
}

/// `args` passed through the end of the scratch buffer (`buf`), so the verifier reads them
/// back as values it does not know. Made per syscall number, the fields are constants the
/// verifier tracks (and marks precise where a branch tests them): each syscall's path through
/// the rest of the program was then verified on its own, which tripled the open exit's
/// verification (19 → 64 ms of buildwatch's start-up).
#[inline(always)]
fn opaque(buf: *mut u8, args: StashedArgs) -> StashedArgs {
    const AT: usize = SCRATCH_SIZE - size_of::<StashedArgs>();
    let slot = buf.wrapping_add(AT).cast::<StashedArgs>();
    unsafe {
        core::ptr::write_volatile(slot, args);
        core::ptr::read_volatile(slot)
    }
}

/// x86-64's numbers of open and openat: their exits read the arguments from the registers
/// ([`syscall_args`]); openat2 (its `how` is in user memory) and open_by_handle_at keep their
/// sys_enter programs.
const NR_OPEN: i32 = 2;
const NR_OPENAT: i32 = 257;

/// The arguments of the open that ends: from the registers for open and openat, else what
/// the syscall's enter program stashed (None, counted as `stash_missing`, when it did not).
#[inline(always)]
fn open_args(ctx: &TracePointContext) -> Result<Option<StashedArgs>, i64> {
    let nr: i32 = unsafe { ctx.read_at(NR)? };
    if nr != NR_OPEN && nr != NR_OPENAT {
        return Ok(unstash(SENSOR));
    }
    let a = syscall_args();
    Ok(Some(if nr == NR_OPENAT {
        StashedArgs {
            ptr: a[1],
            arg0: a[0] as i32 as i64,
            arg1: a[2],
            arg2: a[3],
            flags: flags::SYSCALL_AT,
            live: 0,
            _pad: [0; 2],
        }
    } else {
        StashedArgs {
            ptr: a[0],
            arg0: AT_FDCWD as i64,
            arg1: a[1],
            arg2: a[2],
            flags: flags::SYSCALL_OPEN,
            live: 0,
            _pad: [0; 2],
        }
    }))
}

fn try_exit_open(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let Some(args) = open_args(ctx)? else {
        return Ok(0);
    };
    let ret: i64 = unsafe { ctx.read_at(RET)? };
    let buf = scratch().ok_or(0i64)?;
    let args = opaque(buf, args);
    const BODY: usize = size_of::<Open>();
    // open_by_handle_at passes a file handle, not a path: nothing to read.
    let by_handle = args.flags & flags::SYSCALL_BY_HANDLE == flags::SYSCALL_BY_HANDLE;
    let (path_len, fl) = if by_handle {
        (0, 0)
    } else {
        read_user_path(SENSOR, unsafe { buf.add(BODY) }, args.ptr)
    };
    let (mut dev, mut ino, mut fl) = (0, 0, fl);
    let open_flags = args.arg1 as u32;
    if ret >= 0
        && let Some(o) = opened(ret)
    {
        (dev, ino) = (o.dev, o.ino);
        // Writing a cgroup file outside the run moves a process out of sight (cgroup.procs),
        // or freezes or kills another cgroup, buildwatch's own included. The write has not
        // happened yet: SIGKILL now, and the process never returns to user space to make it.
        let writable = open_flags & O_ACCMODE != O_RDONLY && open_flags & O_PATH == 0;
        if o.cgroup_outside && writable && !crate::emit::agent_mode() {
            fl |= flags::CGROUP_OUTSIDE;
            if unsafe { bpf_send_signal(SIGKILL) } == 0 {
                fl |= flags::KILLED;
            }
        }
        // Block mode: a credential file opened for reading by a tool that does not own it.
        // The file is open but not a byte has been read: SIGKILL now, before the process
        // returns to user space.
        let readable = open_flags & O_ACCMODE != O_WRONLY && open_flags & O_PATH == 0;
        if readable && crate::net::block_mode() && stranger(o.dev, o.ino) {
            if unsafe { bpf_send_signal(SIGKILL) } == 0 {
                fl |= flags::KILLED;
            }
        }
    }
    // A read-only open under a system directory (a header, a library) is counted, not
    // reported, unless it reached a guarded credential file (by identity: a symlink or
    // hard link there leads to it) or something about it is unusual.
    if fl == 0
        // Not openat2 (RESOLVE_IN_ROOT makes an absolute path relative) nor
        // open_by_handle_at (no path): both carry the OPENAT2 bit.
        && args.flags & flags::SYSCALL_OPENAT2 == 0
        && open_flags & O_ACCMODE == O_RDONLY
        && open_flags & (O_CREAT | O_TRUNC) == 0
        && summarizing()
        && (ret < 0
            || (ino != 0
                && unsafe {
                    GUARDED.get(&FileId {
                        dev: u64::from(dev),
                        ino,
                    })
                }
                .is_none()))
        && summarized_path(unsafe { buf.add(BODY) }, path_len)
        && count_summarized()
    {
        return Ok(0);
    }
    let body = Open {
        header: header(EventKind::Open, args.flags | fl),
        ret,
        ino,
        dev,
        dirfd: args.arg0 as i32,
        open_flags: args.arg1 as u32,
        mode: args.arg2 as u32,
        path_len: path_len as u16,
        _pad: [0; 3],
    };
    unsafe { write_unaligned(buf.cast::<Open>(), body) };
    output_scratch(SENSOR, buf, BODY + path_len);
    Ok(0)
}

/// The exit of every rename, link, symlink, unlink, chmod, truncate and setxattr call. No
/// enter program: the call's arguments come from the registers saved at its entry
/// ([`syscall_args`]), told apart by the syscall number the tracepoint carries (x86-64's).
#[tracepoint]
pub fn sys_exit_relink(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_exit_relink(&ctx));
    0
}

#[derive(Clone, Copy)]
enum Layout {
    /// (old, new): rename, link, symlink.
    Plain,
    /// (olddfd, old, newdfd, new[, flags]).
    At,
    /// (old, newdfd, new): symlinkat.
    NewAt,
    /// (path, third) — `third` goes into `call_flags` (a mode).
    One,
    /// (path): unlink(2), its only argument.
    OnePath,
    /// (dfd, path, third).
    OneAt,
    /// (fd, third): no path.
    Fd,
    /// (path, length): truncate(2); the length, saturated to u32, in `call_flags`.
    Trunc,
    /// (fd, length): ftruncate(2).
    FTrunc,
    /// (path, name, …): setxattr, lsetxattr.
    Xattr,
    /// (fd, name, …): fsetxattr.
    FXattr,
    /// (dfd, path, at_flags, name, …): setxattrat.
    XattrAt,
}

/// What a relink call's record needs from its arguments `a` (x86-64's syscall numbers), in
/// the stash's shape; None for a syscall this program does not describe.
#[inline(always)]
fn relink_args(nr: i32, a: &[u64; 5]) -> Option<StashedArgs> {
    let (op, layout, with_flags) = match nr {
        82 => (RELINK_RENAME, Layout::Plain, false),
        264 => (RELINK_RENAME, Layout::At, false),
        316 => (RELINK_RENAME, Layout::At, true),
        86 => (RELINK_LINK, Layout::Plain, false),
        265 => (RELINK_LINK, Layout::At, true),
        88 => (RELINK_SYMLINK, Layout::Plain, false),
        266 => (RELINK_SYMLINK, Layout::NewAt, false),
        87 => (RELINK_UNLINK, Layout::OnePath, false),
        263 => (RELINK_UNLINK, Layout::OneAt, false),
        90 => (RELINK_CHMOD, Layout::One, false),
        91 => (RELINK_CHMOD, Layout::Fd, false),
        268 | 452 => (RELINK_CHMOD, Layout::OneAt, false),
        76 => (RELINK_TRUNCATE, Layout::Trunc, false),
        77 => (RELINK_TRUNCATE, Layout::FTrunc, false),
        188 | 189 => (RELINK_SETXATTR, Layout::Xattr, false),
        190 => (RELINK_SETXATTR, Layout::FXattr, false),
        463 => (RELINK_SETXATTR, Layout::XattrAt, false),
        _ => return None,
    };
    const CWD: u64 = AT_FDCWD as u64;
    let (old_dirfd, old, new_dirfd, new) = match layout {
        Layout::Plain => (CWD, a[0], CWD, a[1]),
        Layout::At => (a[0], a[1], a[2], a[3]),
        Layout::NewAt => (CWD, a[0], a[1], a[2]),
        Layout::One | Layout::OnePath => (CWD, a[0], CWD, 0),
        Layout::OneAt => (a[0], a[1], CWD, 0),
        Layout::Fd | Layout::FTrunc => (a[0], 0, CWD, 0),
        Layout::Trunc => (CWD, a[0], CWD, 0),
        Layout::Xattr => (CWD, a[0], CWD, a[1]),
        Layout::FXattr => (a[0], 0, CWD, a[1]),
        Layout::XattrAt => (a[0], a[1], CWD, a[3]),
    };
    let call_flags = match layout {
        Layout::One | Layout::Fd => a[1] as u32,
        Layout::Trunc | Layout::FTrunc => a[1].min(u32::MAX as u64) as u32,
        Layout::OneAt => a[2] as u32,
        _ if with_flags => a[4] as u32,
        _ => 0,
    };
    Some(StashedArgs {
        ptr: old,
        arg0: (old_dirfd as u32 as i64) | ((new_dirfd as u32 as i64) << 32),
        arg1: op as u64 | (call_flags as u64) << 32,
        arg2: new,
        flags: 0,
        live: 0,
        _pad: [0; 2],
    })
}

fn try_exit_relink(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let nr: i32 = unsafe { ctx.read_at(NR)? };
    let Some(args) = relink_args(nr, &syscall_args()) else {
        // Attached to a syscall it does not describe: nothing of it can be reported.
        count(SENSOR, counters::PROGRAM_ERROR);
        return Ok(0);
    };
    let ret: i64 = unsafe { ctx.read_at(RET)? };
    let buf = scratch().ok_or(0i64)?;
    let args = opaque(buf, args);
    const BODY: usize = size_of::<Relink>();
    let op = args.arg1 as u32;
    let (old_len, fl_old) = if args.ptr == 0 {
        (0, 0)
    } else {
        read_user_path(SENSOR, unsafe { buf.add(BODY) }, args.ptr)
    };
    let old_len = old_len & (PATH_MAX - 1);
    let (new_len, fl_new) = if args.arg2 == 0 {
        (0, 0)
    } else {
        read_user_path(SENSOR, unsafe { buf.add(BODY + old_len) }, args.arg2)
    };
    let new_len = new_len & (PATH_MAX - 1);
    if ret == 0
        && op <= RELINK_SYMLINK
        && name_could_redirect(unsafe { buf.add(BODY + old_len) }, new_len)
    {
        trip_summary();
    }
    let body = Relink {
        header: header(EventKind::Relink, fl_old | fl_new),
        ret,
        op,
        old_dirfd: args.arg0 as i32,
        new_dirfd: (args.arg0 >> 32) as i32,
        call_flags: (args.arg1 >> 32) as u32,
        old_len: old_len as u16,
        new_len: new_len as u16,
        _pad: 0,
    };
    unsafe { write_unaligned(buf.cast::<Relink>(), body) };
    output_scratch(SENSOR, buf, BODY + old_len + new_len);
    Ok(0)
}

/// An open submitted through io_uring (no syscall tracepoint sees it): the path is the
/// kernel's copy, taken when the request was prepared (`io_open.filename`). Reported at
/// submission; its fd comes later in the completion, so the record has no result. A raw or
/// packet socket asked for through io_uring (IORING_OP_SOCKET) is reported here too, from the
/// prepared request (`io_socket`), as if from socket(2) but without a result; so is a listen
/// (IORING_OP_LISTEN), without its descriptor.
#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_uring_submit(&ctx));
    0
}

fn try_uring_submit(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let opcode: u8 = unsafe { ctx.read_at(32)? };
    if opcode == IORING_OP_SOCKET {
        let req: u64 = unsafe { ctx.read_at(16)? };
        uring_socket(req as *const u8);
        return Ok(0);
    }
    if opcode == IORING_OP_LISTEN {
        emit(
            SENSOR,
            ListenCall {
                header: header(EventKind::Listen, flags::NO_RESULT),
                fd: -1,
                backlog: 0,
            },
        );
        return Ok(0);
    }
    if opcode == IORING_OP_RENAMEAT
        || opcode == IORING_OP_SYMLINKAT
        || opcode == IORING_OP_LINKAT
        || opcode == IORING_OP_UNLINKAT
    {
        if opcode != IORING_OP_UNLINKAT {
            // A new name made where no relink tracepoint sees it: summarizing stops.
            trip_summary();
        }
        let req: u64 = unsafe { ctx.read_at(16)? };
        uring_relink(req as *const u8, opcode);
        return Ok(0);
    }
    if opcode == IORING_OP_SETXATTR
        || opcode == IORING_OP_FSETXATTR
        || opcode == IORING_OP_FTRUNCATE
    {
        let req: u64 = unsafe { ctx.read_at(16)? };
        let req_flags: u64 = unsafe { ctx.read_at(40)? };
        uring_file_op(req as *const u8, opcode, req_flags & REQ_F_FIXED_FILE != 0);
        return Ok(0);
    }
    if opcode != IORING_OP_OPENAT && opcode != IORING_OP_OPENAT2 {
        return Ok(0);
    }
    let req: u64 = unsafe { ctx.read_at(16)? };
    let req = req as *const u8;
    // Biased offsets: stored +1, since some are 0.
    let off = |i| offset(i).map(|o| o - 1);
    let (Some(name_off), Some(dfd_off), Some(how_off), Some(fname_off)) = (
        off(URING_OPEN_FILENAME),
        off(URING_OPEN_DFD),
        off(URING_OPEN_HOW),
        off(FILENAME_NAME),
    ) else {
        return Ok(0);
    };
    let filename: u64 = read_kernel(req.wrapping_add(name_off)).unwrap_or(0);
    let dirfd: i32 = read_kernel(req.wrapping_add(dfd_off)).unwrap_or(AT_FDCWD);
    let open_flags: u64 = read_kernel(req.wrapping_add(how_off)).unwrap_or(0);
    let mode: u64 = read_kernel(req.wrapping_add(how_off + 8)).unwrap_or(0);
    let name: u64 = if filename == 0 {
        0
    } else {
        read_kernel((filename as *const u8).wrapping_add(fname_off)).unwrap_or(0)
    };
    let buf = scratch().ok_or(0i64)?;
    const BODY: usize = size_of::<Open>();
    let mut fl = flags::SYSCALL_URING | flags::NO_RESULT;
    if opcode == IORING_OP_OPENAT2 {
        fl |= flags::SYSCALL_OPENAT2;
    }
    let n = unsafe {
        bpf_probe_read_kernel_str(buf.add(BODY).cast(), PATH_MAX as u32, name as *const _)
    };
    let path_len = if n > 0 {
        (n as usize - 1) & (PATH_MAX - 1)
    } else {
        count(SENSOR, counters::READ_ERROR);
        fl |= flags::READ_FAILED;
        0
    };
    let body = Open {
        header: header(EventKind::Open, fl),
        ret: 0,
        ino: 0,
        dev: 0,
        dirfd,
        open_flags: open_flags as u32,
        mode: mode as u32,
        path_len: path_len as u16,
        _pad: [0; 3],
    };
    unsafe { write_unaligned(buf.cast::<Open>(), body) };
    output_scratch(SENSOR, buf, BODY + path_len);
    Ok(0)
}

/// IORING_OP_SOCKET: reported like socket(2) when raw or packet.
#[inline(always)]
/// A rename, link, symlink or unlink submitted through io_uring: the paths are the kernel's
/// copies (`struct filename`, taken when the request was prepared), reported at submission as
/// a [`Relink`] without a result.
fn uring_relink(req: *const u8, opcode: u8) {
    let off = |i| offset(i).map(|o| o - 1);
    let (op, old_dfd, new_dfd, old_path, new_path, call_flags) = if opcode == IORING_OP_UNLINKAT {
        (
            RELINK_UNLINK,
            off(URING_UNLINK_DFD),
            None,
            off(URING_UNLINK_FILENAME),
            None,
            off(URING_UNLINK_FLAGS),
        )
    } else {
        let op = if opcode == IORING_OP_RENAMEAT {
            RELINK_RENAME
        } else if opcode == IORING_OP_LINKAT {
            RELINK_LINK
        } else {
            RELINK_SYMLINK
        };
        if op != RELINK_RENAME && offset(URING_LINK_LIKE_RENAME) != Some(1) {
            return;
        }
        (
            op,
            off(URING_RENAME_OLD_DFD),
            off(URING_RENAME_NEW_DFD),
            off(URING_RENAME_OLDPATH),
            off(URING_RENAME_NEWPATH),
            off(URING_RENAME_FLAGS),
        )
    };
    let (Some(old_dfd), Some(old_path), Some(call_flags), Some(fname_off)) =
        (old_dfd, old_path, call_flags, off(FILENAME_NAME))
    else {
        return;
    };
    let Some(buf) = scratch() else {
        return;
    };
    const BODY: usize = size_of::<Relink>();
    let (old_len, fl_old) = uring_filename(req, old_path, fname_off, unsafe { buf.add(BODY) });
    let old_len = old_len & (PATH_MAX - 1);
    let (new_len, fl_new) = match new_path {
        Some(p) => uring_filename(req, p, fname_off, unsafe { buf.add(BODY + old_len) }),
        None => (0, 0),
    };
    let new_len = new_len & (PATH_MAX - 1);
    let body = Relink {
        header: header(EventKind::Relink, flags::NO_RESULT | fl_old | fl_new),
        ret: 0,
        op,
        old_dirfd: read_kernel(req.wrapping_add(old_dfd)).unwrap_or(AT_FDCWD),
        new_dirfd: new_dfd
            .and_then(|o| read_kernel(req.wrapping_add(o)))
            .unwrap_or(AT_FDCWD),
        call_flags: read_kernel(req.wrapping_add(call_flags)).unwrap_or(0),
        old_len: old_len as u16,
        new_len: new_len as u16,
        _pad: 0,
    };
    unsafe { write_unaligned(buf.cast::<Relink>(), body) };
    output_scratch(SENSOR, buf, BODY + old_len + new_len);
}

/// The name the `struct filename` at `req + field` holds (`name` at `fname_off` in it), read
/// into `at`: its length and read flags.
#[inline(always)]
fn uring_filename(req: *const u8, field: usize, fname_off: usize, at: *mut u8) -> (usize, u16) {
    let f: u64 = read_kernel(req.wrapping_add(field)).unwrap_or(0);
    let p: u64 = if f == 0 {
        0
    } else {
        read_kernel((f as *const u8).wrapping_add(fname_off)).unwrap_or(0)
    };
    if p == 0 {
        return (0, flags::READ_FAILED);
    }
    let n = unsafe { bpf_probe_read_kernel_str(at.cast(), PATH_MAX as u32, p as *const _) };
    if n > 0 {
        ((n as usize - 1) & (PATH_MAX - 1), 0)
    } else {
        count(SENSOR, counters::READ_ERROR);
        (0, flags::READ_FAILED)
    }
}

/// An extended attribute set (IORING_OP_SETXATTR, IORING_OP_FSETXATTR) or a file truncated
/// (IORING_OP_FTRUNCATE) through io_uring: reported at submission as the syscalls' [`Relink`]
/// without a result, from the prepared request (the kernel's copies of the path and the
/// attribute's name; the descriptor the request names, which the file lookup later uses).
fn uring_file_op(req: *const u8, opcode: u8, fixed_file: bool) {
    let off = |i| offset(i).map(|o| o - 1);
    let Some(buf) = scratch() else {
        return;
    };
    const BODY: usize = size_of::<Relink>();
    let mut fl = flags::NO_RESULT;
    let (op, old_dirfd, old_len, new_len, call_flags) = if opcode == IORING_OP_FTRUNCATE {
        let (Some(fd), Some(len)) = (off(URING_FD), off(URING_FTRUNC_LEN)) else {
            return;
        };
        let length: i64 = read_kernel(req.wrapping_add(len)).unwrap_or(0);
        let fd: i32 = read_kernel(req.wrapping_add(fd)).unwrap_or(-1);
        // Saturated to u32, as for ftruncate(2).
        let length = (length as u64).min(u32::MAX as u64) as u32;
        (RELINK_TRUNCATE, fd, 0, 0, length)
    } else {
        let (Some(kname), Some(fname_off)) = (off(URING_XATTR_KNAME), off(FILENAME_NAME)) else {
            return;
        };
        let (dirfd, old_len) = if opcode == IORING_OP_SETXATTR {
            // Looked up from the working directory (io_setxattr: AT_FDCWD).
            let Some(filename) = off(URING_XATTR_FILENAME) else {
                return;
            };
            let (len, read) = uring_filename(req, filename, fname_off, unsafe { buf.add(BODY) });
            fl |= read;
            (AT_FDCWD, len)
        } else {
            let Some(fd) = off(URING_FD) else {
                return;
            };
            (read_kernel(req.wrapping_add(fd)).unwrap_or(-1), 0)
        };
        let old_len = old_len & (PATH_MAX - 1);
        // `struct xattr_name` holds the name first.
        let k: u64 = read_kernel(req.wrapping_add(kname)).unwrap_or(0);
        let n = if k == 0 {
            -1
        } else {
            unsafe {
                bpf_probe_read_kernel_str(
                    buf.add(BODY + old_len).cast(),
                    NAME_MAX as u32,
                    k as *const _,
                )
            }
        };
        let new_len = if n > 0 {
            (n as usize - 1) & (NAME_MAX - 1)
        } else {
            count(SENSOR, counters::READ_ERROR);
            fl |= flags::READ_FAILED;
            0
        };
        (RELINK_SETXATTR, dirfd, old_len, new_len, 0)
    };
    if fixed_file && old_len == 0 {
        fl |= flags::FIXED_FILE;
    }
    let body = Relink {
        header: header(EventKind::Relink, fl),
        ret: 0,
        op,
        old_dirfd,
        new_dirfd: AT_FDCWD,
        call_flags,
        old_len: old_len as u16,
        new_len: new_len as u16,
        _pad: 0,
    };
    unsafe { write_unaligned(buf.cast::<Relink>(), body) };
    output_scratch(SENSOR, buf, BODY + old_len + new_len);
}

fn uring_socket(req: *const u8) {
    let off = |i| offset(i).map(|o| o - 1);
    let (Some(domain), Some(sock_type), Some(protocol)) = (
        off(URING_SOCKET_DOMAIN),
        off(URING_SOCKET_TYPE),
        off(URING_SOCKET_PROTOCOL),
    ) else {
        return;
    };
    let (Some(family), Some(sock_type), Some(protocol)) = (
        read_kernel::<i32>(req.wrapping_add(domain)),
        read_kernel::<i32>(req.wrapping_add(sock_type)),
        read_kernel::<i32>(req.wrapping_add(protocol)),
    ) else {
        count(SENSOR, counters::READ_ERROR);
        return;
    };
    if !crate::net::raw_socket(family as i64, sock_type as i64) {
        return;
    }
    emit(
        SENSOR,
        SocketCall {
            header: header(EventKind::Socket, flags::NO_RESULT),
            ret: 0,
            family: family as u32,
            sock_type: sock_type as u32,
            protocol: protocol as u32,
            _pad: 0,
        },
    );
}

fn try_exit_chdir(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    // chdir(path): from the registers ([`syscall_args`]).
    let path = syscall_args()[0];
    let ret: i64 = unsafe { ctx.read_at(RET)? };
    let buf = scratch().ok_or(0i64)?;
    const BODY: usize = size_of::<Chdir>();
    let (path_len, fl) = read_user_path(SENSOR, unsafe { buf.add(BODY) }, path);
    let body = Chdir {
        header: header(EventKind::Chdir, fl),
        ret,
        path_len: path_len as u16,
        _pad: [0; 3],
    };
    unsafe { write_unaligned(buf.cast::<Chdir>(), body) };
    output_scratch(SENSOR, buf, BODY + path_len);
    Ok(0)
}

fn try_exit_fchdir(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    // fchdir(fd)
    let fd = syscall_args()[0];
    emit(
        SENSOR,
        Fchdir {
            header: header(EventKind::Fchdir, 0),
            ret: unsafe { ctx.read_at(RET)? },
            fd: fd as i32,
            _pad: 0,
        },
    );
    Ok(0)
}
