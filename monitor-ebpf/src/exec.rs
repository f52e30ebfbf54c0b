//! exec sensor: execve/execveat attempts with filename and argv, their results, process
//! creation (not threads) and process exit with the wait status.

use core::ptr::write_unaligned;

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm,
        generated::{
            bpf_get_current_task, bpf_loop, bpf_probe_read_kernel, bpf_probe_read_kernel_str,
            bpf_probe_read_user, bpf_probe_read_user_str,
        },
    },
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use monitor_common::{
    ARGV_MAX_ARGS, ARGV_MAX_BYTES, AT_FDCWD, CLONE_THREAD, DENTRY_NAME, ENV_MAX_BYTES, EventKind,
    ExecDone, ExecEnter, ExecFacts, Exit, FILE_DENTRY, FILE_INODE, Fork, INODE_INO, INODE_MODE,
    INODE_NLINK, INODE_RDEV, INODE_SB, MM_ARG_END, MM_ARG_START, MM_ENV_END, MM_ENV_START,
    MM_EXE_FILE, NAME_MAX, SB_DEV, SB_MAGIC, STDFD_READ_FAILED, StdFd, TASK_EXIT_CODE, TASK_MM,
    counters, flags,
};

use crate::emit::{
    ARG0, ARG1, ARG2, ARG4, RET, TASK_OFFSETS, check, count, emit, escape_possible, fd_file,
    forget_stash, header, in_scope, offset, output_scratch, read_kernel, read_user_path, scratch,
    track, untrack,
};

const SENSOR: u32 = monitor_common::sensors::EXEC;

/// linux/sched.h
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// How many exec names of a process are kept.
pub const EXEC_NAMES_KEPT: usize = 8;

/// The names (kernel `comm`) a process of the run got from its last execs, latest first. A
/// tool started through `#!/usr/bin/env node`, or a version manager's shims, runs as `node`
/// or `python3` but was executed under its own name a few execs before: what block mode's
/// credential guard asks, and only it: kept in block mode only. An entry goes when its process
/// exits. Not preallocated: an LRU map is, and its 8 MB took 9 ms of every run's start-up. A
/// process it has no names for (the map was full: 65,536 live processes) is a stranger to
/// every guarded file: the guard fails closed, and its kill is reported. No event is lost.
#[map]
pub static EXEC_NAMES: HashMap<u32, [[u8; 16]; EXEC_NAMES_KEPT]> =
    HashMap::with_max_entries(65536, crate::emit::SPARSE);

/// After a successful exec: the current name goes first, the oldest kept goes.
#[inline(always)]
fn note_exec_name() {
    if !crate::net::block_mode() {
        return;
    }
    let Ok(now) = bpf_get_current_comm() else {
        return;
    };
    let tgid = (unsafe { aya_ebpf::helpers::generated::bpf_get_current_pid_tgid() } >> 32) as u32;
    let mut names = unsafe { EXEC_NAMES.get(&tgid) }
        .copied()
        .unwrap_or([[0; 16]; EXEC_NAMES_KEPT]);
    let mut i = EXEC_NAMES_KEPT - 1;
    while i > 0 {
        names[i] = names[i - 1];
        i -= 1;
    }
    names[0] = now;
    let _ = EXEC_NAMES.insert(&tgid, &names, 0);
}

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_exec_enter(&ctx, false));
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_exec_enter(&ctx, true));
    0
}

/// The exit of execve and execveat: one program, attached twice.
#[tracepoint]
pub fn sys_exit_exec_any(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_exec_exit(&ctx));
    0
}

#[tracepoint(category = "task", name = "task_newtask")]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_task_newtask(&ctx));
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_process_exit(&ctx));
    0
}

fn try_exec_enter(ctx: &TracePointContext, at: bool) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let (dirfd, filename, argv, at_flags): (i32, u64, u64, u32) = unsafe {
        if at {
            (
                ctx.read_at::<i64>(ARG0)? as i32,
                ctx.read_at::<u64>(ARG1)?,
                ctx.read_at::<u64>(ARG2)?,
                ctx.read_at::<i64>(ARG4)? as u32,
            )
        } else {
            (
                AT_FDCWD,
                ctx.read_at::<u64>(ARG0)?,
                ctx.read_at::<u64>(ARG1)?,
                0,
            )
        }
    };
    let buf = scratch().ok_or(0i64)?;
    const BODY: usize = size_of::<ExecEnter>();

    let (filename_len, mut fl) = read_user_path(SENSOR, unsafe { buf.add(BODY) }, filename);
    if at {
        fl |= flags::SYSCALL_AT;
    }
    let argv_base = unsafe { buf.add(BODY + filename_len) };

    // argv: each argument NUL-terminated, packed, read by bpf_loop so the kernel verifies one
    // step instead of every iteration of an unrolled or bounded loop.
    let mut walk = ArgvWalk {
        argv,
        base: argv_base as u64,
        off: 0,
        argc: 0,
        fl: fl as u64,
    };
    unsafe {
        bpf_loop(
            ARGV_MAX_ARGS as u32,
            argv_step as *mut core::ffi::c_void,
            (&raw mut walk).cast(),
            0,
        )
    };
    let (off, argc) = (walk.off as usize, walk.argc as usize);
    let mut fl = walk.fl as u16;
    let argv_len = off & (2 * ARGV_MAX_BYTES - 1);
    if argc == ARGV_MAX_ARGS {
        // A 65th pointer that is not NULL means more arguments than we carry (if the 64th
        // was cut instead, the flag is already set).
        let mut p: u64 = 0;
        let r = unsafe {
            bpf_probe_read_user(
                (&raw mut p).cast(),
                8,
                (argv as *const u64).wrapping_add(ARGV_MAX_ARGS).cast(),
            )
        };
        if r == 0 && p != 0 {
            fl |= flags::ARGV_TRUNCATED;
        }
    }
    let body = ExecEnter {
        header: header(EventKind::ExecEnter, fl),
        dirfd,
        at_flags,
        filename_len: filename_len as u16,
        argv_len: argv_len as u16,
        argc: argc as u16,
        _pad: 0,
    };
    unsafe { write_unaligned(buf.cast::<ExecEnter>(), body) };
    output_scratch(SENSOR, buf, BODY + filename_len + argv_len);
    Ok(0)
}

/// State of the argv walk, on the caller's stack, shared with [`argv_step`].
#[repr(C)]
struct ArgvWalk {
    argv: u64,
    /// Start of the argv area in the scratch buffer.
    base: u64,
    off: u64,
    argc: u64,
    fl: u64,
}

/// One argv entry. Each read may write a whole ARGV_MAX_BYTES past its masked start (the
/// scratch buffer has that slack), so neither destination nor size depends on `off` exactly.
/// Returns 1 to stop.
#[inline(never)]
extern "C" fn argv_step(i: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let w = unsafe { &mut *ctx.cast::<ArgvWalk>() };
    let mut p: u64 = 0;
    let r = unsafe {
        bpf_probe_read_user(
            (&raw mut p).cast(),
            8,
            (w.argv as *const u64).wrapping_add(i as usize).cast(),
        )
    };
    if r < 0 {
        count(SENSOR, counters::READ_ERROR);
        w.fl |= flags::READ_FAILED as u64;
        return 1;
    }
    if p == 0 {
        return 1;
    }
    let off = w.off as usize;
    if off >= ARGV_MAX_BYTES {
        w.fl |= flags::ARGV_TRUNCATED as u64;
        return 1;
    }
    let dst = (w.base as *mut u8).wrapping_add(off & (ARGV_MAX_BYTES - 1));
    let n = unsafe { bpf_probe_read_user_str(dst.cast(), ARGV_MAX_BYTES as u32, p as *const _) };
    if n <= 0 {
        count(SENSOR, counters::READ_ERROR);
        w.fl |= flags::READ_FAILED as u64;
        return 1;
    }
    w.argc += 1;
    let off = off + n as usize;
    if off > ARGV_MAX_BYTES {
        // The string ran past the room: keep what fits, cut with a NUL as the last byte.
        unsafe { *(w.base as *mut u8).wrapping_add(ARGV_MAX_BYTES - 1) = 0 };
        w.fl |= flags::ARGV_TRUNCATED as u64;
        w.off = ARGV_MAX_BYTES as u64;
        return 1;
    }
    w.off = off as u64;
    0
}

fn try_exec_exit(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let ret: i64 = unsafe { ctx.read_at(RET)? };
    let buf = scratch().ok_or(0i64)?;
    const BODY: usize = size_of::<ExecDone>();
    let mut body = ExecDone {
        header: header(EventKind::ExecExit, 0),
        ret,
        ..ExecDone::default()
    };
    if ret == 0 {
        note_exec_name();
        image_facts(&mut body, buf);
        // In block mode sudo and su are killed before the new image runs an instruction of
        // its own: the name is the executed file's (the kernel's dentry), not the caller's.
        if crate::net::block_mode() && privileged_tool(buf.wrapping_add(BODY), body.name_len) {
            if unsafe { aya_ebpf::helpers::generated::bpf_send_signal(9) } == 0 {
                body.header.flags |= flags::KILLED;
            }
        }
    }
    let len = BODY + body.name_len as usize + body.argv_len as usize;
    unsafe { write_unaligned(buf.cast::<ExecDone>(), body) };
    output_scratch(SENSOR, buf, len);
    Ok(0)
}

/// Inside a successful exec (the new image's task, before the syscall returns): its standard
/// descriptors and its environment, as a record of their own.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_exec_facts());
    0
}

fn try_exec_facts() -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let buf = scratch().ok_or(0i64)?;
    const BODY: usize = size_of::<ExecFacts>();
    let mut body = ExecFacts {
        header: header(EventKind::ExecFacts, 0),
        ..ExecFacts::default()
    };
    // Descriptors 0-2 through bpf_loop: one step verified, not three copies of every path.
    unsafe {
        bpf_loop(
            3,
            std_fd_step as *mut core::ffi::c_void,
            (&raw mut body.stdio).cast(),
            0,
        )
    };
    // The environment, as the new stack holds it (the kernel just wrote it there).
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let env = offset(TASK_MM)
        .and_then(|o| read_kernel::<u64>(task.wrapping_add(o)))
        .and_then(|mm| {
            let mm = mm as *const u8;
            Some((
                read_kernel::<u64>(mm.wrapping_add(offset(MM_ENV_START)?))?,
                read_kernel::<u64>(mm.wrapping_add(offset(MM_ENV_END)?))?,
            ))
        });
    if let Some((start, end)) = env
        && end > start
    {
        let mut elen = (end - start) as usize;
        if elen > ENV_MAX_BYTES - 1 {
            elen = ENV_MAX_BYTES - 1;
            body.env_truncated = 1;
        }
        let elen = elen & (ENV_MAX_BYTES - 1);
        if elen > 0
            && unsafe {
                bpf_probe_read_user(
                    buf.wrapping_add(BODY).cast(),
                    elen as u32,
                    start as *const _,
                )
            } == 0
        {
            body.env_len = elen as u16;
        } else {
            count(SENSOR, counters::READ_ERROR);
        }
    }
    unsafe { write_unaligned(buf.cast::<ExecFacts>(), body) };
    output_scratch(SENSOR, buf, BODY + body.env_len as usize);
    Ok(0)
}

/// bpf_loop step `i` (0..3): descriptor `i` into the `[StdFd; 3]` at `ctx`.
#[inline(never)]
extern "C" fn std_fd_step(i: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let out = ctx.cast::<StdFd>().wrapping_add((i & 3).min(2) as usize);
    let fact = std_fd(i as i64 & 3);
    unsafe { core::ptr::write_unaligned(out, fact) };
    0
}

/// What descriptor `fd` (0, 1 or 2) of the current task is: its inode's number, device, mode
/// and (for a character device) rdev. Nothing open there: all 0.
#[inline(always)]
fn std_fd(fd: i64) -> StdFd {
    let mut out = StdFd::default();
    let Some(file) = fd_file(fd) else {
        out.flags = STDFD_READ_FAILED;
        return out;
    };
    if file.is_null() {
        return out;
    }
    let facts = (|| {
        let inode: u64 = read_kernel(file.wrapping_add(offset(FILE_INODE)?))?;
        let inode = inode as *const u8;
        let mode: u16 = read_kernel(inode.wrapping_add(offset(INODE_MODE)? - 1))?;
        let ino: u64 = read_kernel(inode.wrapping_add(offset(INODE_INO)?))?;
        let sb: u64 = read_kernel(inode.wrapping_add(offset(INODE_SB)?))?;
        let dev: u32 = read_kernel((sb as *const u8).wrapping_add(offset(SB_DEV)?))?;
        let rdev: u32 = offset(INODE_RDEV)
            .and_then(|o| read_kernel(inode.wrapping_add(o)))
            .unwrap_or(0);
        Some((mode, ino, dev, rdev))
    })();
    match facts {
        Some((mode, ino, dev, rdev)) => {
            out.mode = mode;
            out.ino = ino;
            out.dev = dev;
            out.rdev = rdev;
        }
        None => out.flags = STDFD_READ_FAILED,
    }
    out
}

/// Is the executed file `sudo` or `su` (by its name, `len` bytes at `name`)?
#[inline(always)]
fn privileged_tool(name: *const u8, len: u16) -> bool {
    let byte = |i: usize| unsafe { *name.wrapping_add(i) };
    match len {
        2 => byte(0) == b's' && byte(1) == b'u',
        4 => byte(0) == b's' && byte(1) == b'u' && byte(2) == b'd' && byte(3) == b'o',
        _ => false,
    }
}

/// The new image's executable and argv, from the task's new mm, into `body` and the tail of
/// `buf`. What cannot be read stays empty (0 / no bytes).
#[inline(always)]
fn image_facts(body: &mut ExecDone, buf: *mut u8) {
    const BODY: usize = size_of::<ExecDone>();
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let Some(mm) = offset(TASK_MM).and_then(|o| read_kernel::<u64>(task.wrapping_add(o))) else {
        return;
    };
    let mm = mm as *const u8;
    // The executable.
    if let Some(file) = offset(MM_EXE_FILE).and_then(|o| read_kernel::<u64>(mm.wrapping_add(o))) {
        let file = file as *const u8;
        let inode = offset(FILE_INODE).and_then(|o| read_kernel::<u64>(file.wrapping_add(o)));
        if let Some(inode) = inode.map(|i| i as *const u8) {
            let sb = offset(INODE_SB).and_then(|o| read_kernel::<u64>(inode.wrapping_add(o)));
            if let (Some(ino), Some(nlink), Some(sb)) = (
                offset(INODE_INO).and_then(|o| read_kernel::<u64>(inode.wrapping_add(o))),
                offset(INODE_NLINK).and_then(|o| read_kernel::<u32>(inode.wrapping_add(o))),
                sb,
            ) {
                let sb = sb as *const u8;
                body.ino = ino;
                body.nlink = nlink;
                body.dev = offset(SB_DEV)
                    .and_then(|o| read_kernel::<u32>(sb.wrapping_add(o)))
                    .unwrap_or(0);
                body.magic = offset(SB_MAGIC)
                    .and_then(|o| read_kernel::<u64>(sb.wrapping_add(o)))
                    .unwrap_or(0) as u32;
            }
        }
        let name = offset(FILE_DENTRY)
            .and_then(|o| read_kernel::<u64>(file.wrapping_add(o)))
            .and_then(|d| {
                offset(DENTRY_NAME)
                    .and_then(|o| read_kernel::<u64>((d as *const u8).wrapping_add(o)))
            });
        if let Some(name) = name {
            let n = unsafe {
                bpf_probe_read_kernel_str(
                    buf.wrapping_add(BODY).cast(),
                    NAME_MAX as u32,
                    name as *const _,
                )
            };
            if n > 0 {
                body.name_len = ((n as usize - 1) & (NAME_MAX - 1)) as u16;
            }
        }
    }
    // argv, as the new stack holds it.
    let (Some(start), Some(end)) = (
        offset(MM_ARG_START).and_then(|o| read_kernel::<u64>(mm.wrapping_add(o))),
        offset(MM_ARG_END).and_then(|o| read_kernel::<u64>(mm.wrapping_add(o))),
    ) else {
        return;
    };
    if end <= start {
        return;
    }
    let mut len = (end - start) as usize;
    if len > ARGV_MAX_BYTES {
        len = ARGV_MAX_BYTES;
        body.header.flags |= flags::IMAGE_ARGV_TRUNCATED;
    }
    let len = len & (2 * ARGV_MAX_BYTES - 1);
    let dst = buf.wrapping_add(BODY + (body.name_len as usize & (NAME_MAX - 1)));
    if len > 0 && unsafe { bpf_probe_read_user(dst.cast(), len as u32, start as *const _) } == 0 {
        body.argv_len = len as u16;
    } else {
        count(SENSOR, counters::READ_ERROR);
    }
}

fn try_task_newtask(ctx: &TracePointContext) -> Result<u32, i64> {
    // task_newtask runs in the parent: its cgroup is the child's too.
    if !in_scope() {
        return Ok(0);
    }
    let clone_flags: u64 = unsafe { ctx.read_at(32)? };
    if clone_flags & CLONE_THREAD != 0 {
        return Ok(0);
    }
    let child_pid: i32 = unsafe { ctx.read_at(8)? };
    // The child was executed under its parent's names until it execs itself.
    let parent = (unsafe { aya_ebpf::helpers::generated::bpf_get_current_pid_tgid() } >> 32) as u32;
    if crate::net::block_mode()
        && let Some(names) = unsafe { EXEC_NAMES.get(&parent) }.copied()
    {
        let _ = EXEC_NAMES.insert(&(child_pid as u32), &names, 0);
    }
    // Followed by lineage too: a child made in another cgroup (clone3 with
    // CLONE_INTO_CGROUP) is still the run's.
    track(SENSOR, child_pid as u32);
    if clone_flags & CLONE_INTO_CGROUP != 0 {
        escape_possible();
    }
    emit(
        SENSOR,
        Fork {
            header: header(EventKind::Fork, 0),
            child_pid: child_pid as u32,
            _pad: 0,
            clone_flags,
        },
    );
    Ok(0)
}

fn try_process_exit(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    // Fires for every exiting thread: its stash entry goes with it.
    forget_stash();
    let group_dead: u8 = unsafe { ctx.read_at(32)? };
    if group_dead == 0 {
        return Ok(0);
    }
    untrack();
    let tgid = (unsafe { aya_ebpf::helpers::generated::bpf_get_current_pid_tgid() } >> 32) as u32;
    if crate::net::block_mode() {
        let _ = EXEC_NAMES.remove(&tgid);
    }
    let reads_summarized = unsafe { crate::file::SUMMARIZED.get(&tgid) }
        .copied()
        .unwrap_or(0)
        .min(u64::from(u32::MAX)) as u32;
    if reads_summarized != 0 {
        let _ = crate::file::SUMMARIZED.remove(&tgid);
    }
    let offset = TASK_OFFSETS.get(TASK_EXIT_CODE).copied().unwrap_or(0);
    let mut code: i32 = 0;
    let mut fl = 0;
    if offset == 0 {
        fl |= flags::EXIT_CODE_UNKNOWN;
    } else {
        let task = unsafe { bpf_get_current_task() };
        let r = unsafe {
            bpf_probe_read_kernel(
                (&raw mut code).cast(),
                4,
                (task as *const u8).wrapping_add(offset as usize).cast(),
            )
        };
        if r < 0 {
            count(SENSOR, counters::READ_ERROR);
            fl |= flags::EXIT_CODE_UNKNOWN;
        }
    }
    emit(
        SENSOR,
        Exit {
            header: header(EventKind::Exit, fl),
            code,
            reads_summarized,
        },
    );
    Ok(0)
}
