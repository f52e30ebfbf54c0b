//! process-memory sensor: ptrace attach requests and process_vm_readv/writev, the two syscalls
//! that read or rewrite another process's memory without going through /proc (the file sensor
//! sees /proc/PID/mem). Only attaching ptrace requests are stashed: PEEK/POKE and friends act
//! on a tracee that was attached first, so the attach already tells the story, and a debugger
//! stepping through a program would otherwise flood the ring.

use aya_ebpf::{
    helpers::generated::{bpf_get_current_pid_tgid, bpf_send_signal},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    EventKind, PTRACE_ATTACH, PTRACE_SEIZE, PTRACE_TRACEME, StashedArgs, TargetCall, VM_READ,
    VM_WRITE, flags,
};

use crate::{
    emit::{ARG0, ARG1, RET, check, emit, header, in_scope, stash, take_stash, unstash},
    net::block_mode,
};

/// In block mode, SIGKILL the caller now: it dies before the call returns to user space (the
/// call itself still runs once; what the process would do with its result never happens).
/// The flag for the record.
#[inline(always)]
fn kill_in_block_mode() -> u16 {
    if block_mode() && unsafe { bpf_send_signal(9) } == 0 {
        flags::KILLED
    } else {
        0
    }
}

const SENSOR: u32 = monitor_common::sensors::PROCMEM;

#[tracepoint(category = "syscalls", name = "sys_enter_ptrace")]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_ptrace(&ctx));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_ptrace")]
pub fn sys_exit_ptrace(ctx: TracePointContext) -> u32 {
    if in_scope()
        && let Some(args) = take_stash()
    {
        check(&ctx, SENSOR, finish(&ctx, EventKind::Ptrace, &args));
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_readv")]
pub fn sys_enter_process_vm_readv(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_vm(&ctx, VM_READ));
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_writev")]
pub fn sys_enter_process_vm_writev(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_vm(&ctx, VM_WRITE));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_process_vm_readv")]
pub fn sys_exit_process_vm_readv(ctx: TracePointContext) -> u32 {
    exit_vm(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_process_vm_writev")]
pub fn sys_exit_process_vm_writev(ctx: TracePointContext) -> u32 {
    exit_vm(&ctx);
    0
}

fn try_enter_ptrace(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let request: i64 = unsafe { ctx.read_at(ARG0)? };
    if request != PTRACE_ATTACH && request != PTRACE_SEIZE && request != PTRACE_TRACEME {
        return Ok(0);
    }
    let pid: i64 = unsafe { ctx.read_at(ARG1)? };
    // Attaching to another process; PTRACE_TRACEME only offers the caller to its parent.
    let killed = if request == PTRACE_TRACEME {
        0
    } else {
        kill_in_block_mode()
    };
    stash(
        SENSOR,
        &StashedArgs {
            arg0: request,
            arg1: pid as u64,
            flags: killed,
            ..StashedArgs::default()
        },
    );
    Ok(0)
}

fn try_enter_vm(ctx: &TracePointContext, op: i64) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let pid: u64 = unsafe { ctx.read_at(ARG0)? };
    // Another process's memory (a process may read its own).
    let own = pid as u32 == (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let killed = if own { 0 } else { kill_in_block_mode() };
    stash(
        SENSOR,
        &StashedArgs {
            arg0: op,
            arg1: pid,
            flags: killed,
            ..StashedArgs::default()
        },
    );
    Ok(0)
}

fn exit_vm(ctx: &TracePointContext) {
    if in_scope()
        && let Some(args) = unstash(SENSOR)
    {
        check(ctx, SENSOR, finish(ctx, EventKind::ProcessVm, &args));
    }
}

fn finish(ctx: &TracePointContext, kind: EventKind, args: &StashedArgs) -> Result<(), i64> {
    let ret: i64 = unsafe { ctx.read_at(RET)? };
    emit(
        SENSOR,
        TargetCall {
            header: header(kind, args.flags & flags::KILLED),
            ret,
            op: args.arg0,
            // pid_t is 32 bits; the tracepoint widens it to 8 bytes.
            target_pid: args.arg1 as i32,
            _pad: 0,
        },
    );
    Ok(())
}
