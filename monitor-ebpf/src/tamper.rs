//! tamper sensor: calls from the watched tree that could blind buildwatch, reported at entry,
//! before they take effect. bpf(2): with root, a caller can detach the sensors' programs or
//! rewrite their maps (the loss counters are frozen against that; the scope map cannot be).
//! Signals for buildwatch, its guardian or their process group, for every process (kill -1),
//! or for the caller's own group, and pidfd_open of buildwatch or its guardian (a handle to
//! signal it with later): a stopped or killed buildwatch sees nothing. pidfd_send_signal(2)
//! names its target by a descriptor (from pidfd_open, or a `/proc/PID` directory opened like
//! any other), so it is judged where the kernel generates the signal, with the pid the kernel
//! resolved.

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use monitor_common::{
    BpfCall, EventKind, PROTECTED_MAX, SIGNAL_KILL, SIGNAL_PIDFD_OPEN, SIGNAL_PIDFD_SEND,
    SIGNAL_SIGQUEUE, SIGNAL_TGKILL, SIGNAL_TGSIGQUEUE, SIGNAL_TKILL, SignalCall, StashedArgs,
    flags,
};

use crate::emit::{
    ARG0, ARG1, ARG2, check, emit, escape_possible, header, in_scope, live_stash, stash,
    take_stash, tracked,
};

/// Pids to protect (buildwatch, its guardian) and, negated, their process group, as the
/// targets kill(2) would name them. Written by userspace before the command starts.
#[map]
static PROTECTED: HashMap<i32, u8> = HashMap::with_max_entries(PROTECTED_MAX, 0);

const SENSOR: u32 = monitor_common::sensors::TAMPER;

#[tracepoint(category = "syscalls", name = "sys_enter_bpf")]
pub fn sys_enter_bpf(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_bpf(&ctx));
    0
}

fn try_enter_bpf(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let cmd: i64 = unsafe { ctx.read_at(ARG0)? };
    emit(
        SENSOR,
        BpfCall {
            header: header(EventKind::Bpf, 0),
            cmd: cmd as u32,
            _pad: 0,
        },
    );
    Ok(0)
}

#[tracepoint]
pub fn sys_enter_kill(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_signal(&ctx, SIGNAL_KILL, ARG0, ARG1));
    0
}

#[tracepoint]
pub fn sys_enter_tkill(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_signal(&ctx, SIGNAL_TKILL, ARG0, ARG1));
    0
}

#[tracepoint]
pub fn sys_enter_tgkill(ctx: TracePointContext) -> u32 {
    // tgkill(tgid, tid, sig): the process is the tgid.
    check(&ctx, SENSOR, try_signal(&ctx, SIGNAL_TGKILL, ARG0, ARG2));
    0
}

#[tracepoint]
pub fn sys_enter_rt_sigqueueinfo(ctx: TracePointContext) -> u32 {
    // rt_sigqueueinfo(tgid, sig, info)
    check(&ctx, SENSOR, try_signal(&ctx, SIGNAL_SIGQUEUE, ARG0, ARG1));
    0
}

#[tracepoint]
pub fn sys_enter_rt_tgsigqueueinfo(ctx: TracePointContext) -> u32 {
    // rt_tgsigqueueinfo(tgid, tid, sig, info)
    check(
        &ctx,
        SENSOR,
        try_signal(&ctx, SIGNAL_TGSIGQUEUE, ARG0, ARG2),
    );
    0
}

/// pidfd_send_signal(pidfd, sig, info, flags): only the kernel knows whose the descriptor is.
/// Stashed here; `signal_generate`, inside the call, sees the target the kernel resolved.
#[tracepoint]
pub fn sys_enter_pidfd_send_signal(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_pidfd_send(&ctx));
    0
}

fn try_enter_pidfd_send(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let signal = unsafe { ctx.read_at::<i64>(ARG1)? } as u32;
    if signal == 0 {
        return Ok(0);
    }
    stash(
        SENSOR,
        &StashedArgs {
            arg1: signal as u64,
            flags: flags::STASH_PIDFD_SIGNAL,
            ..StashedArgs::default()
        },
    );
    Ok(0)
}

#[tracepoint]
pub fn sys_exit_pidfd_send_signal(_ctx: TracePointContext) -> u32 {
    // Generated or refused, the call is over (a signal the kernel refused, for want of
    // permission, was never generated: nothing to report).
    let _ = take_stash();
    0
}

/// The kernel generates a signal for a task. Reported only inside a stashed
/// pidfd_send_signal of the run, for a protected target.
#[tracepoint]
pub fn signal_generate(ctx: TracePointContext) -> u32 {
    // field:int sig; offset:8   field:pid_t pid; offset:36
    let Some(slot) = live_stash() else {
        return 0;
    };
    if unsafe { (*slot).flags } & flags::STASH_PIDFD_SIGNAL == 0 {
        return 0;
    }
    let (Ok(signal), Ok(target)) = (unsafe { ctx.read_at::<i32>(8) }, unsafe {
        ctx.read_at::<i32>(36)
    }) else {
        return 0;
    };
    if unsafe { PROTECTED.get(&target) }.is_none() {
        return 0;
    }
    emit(
        SENSOR,
        SignalCall {
            header: header(EventKind::Signal, 0),
            call: SIGNAL_PIDFD_SEND,
            target,
            signal: signal as u32,
            protected: 1,
        },
    );
    0
}

#[tracepoint]
pub fn sys_enter_pidfd_open(ctx: TracePointContext) -> u32 {
    check(
        &ctx,
        SENSOR,
        try_signal(&ctx, SIGNAL_PIDFD_OPEN, ARG0, usize::MAX),
    );
    0
}

fn try_signal(
    ctx: &TracePointContext,
    call: u32,
    target_at: usize,
    sig_at: usize,
) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let target = unsafe { ctx.read_at::<i64>(target_at)? } as i32;
    let signal = if sig_at == usize::MAX {
        0
    } else {
        (unsafe { ctx.read_at::<i64>(sig_at)? }) as u32
    };
    let protected = unsafe { PROTECTED.get(&target) }.is_some();
    // kill(2) only: -1 is every process, 0 the caller's own group.
    let wide = call == SIGNAL_KILL && (target == -1 || target == 0);
    let report = if call == SIGNAL_PIDFD_OPEN {
        protected
    } else {
        signal != 0 && (protected || wide)
    };
    if !report {
        return Ok(0);
    }
    emit(
        SENSOR,
        SignalCall {
            header: header(EventKind::Signal, 0),
            call,
            target,
            signal,
            protected: protected as u32,
        },
    );
    Ok(0)
}

/// A task moved to another cgroup (cgroup.procs, by whoever wrote it). If it is a process of
/// the run, it may now be outside the run's cgroups: from now on tasks outside them are looked
/// up by lineage (see `emit::in_scope`).
#[tracepoint]
pub fn cgroup_attach_task(ctx: TracePointContext) -> u32 {
    // field:int pid; offset:24
    if let Ok(pid) = unsafe { ctx.read_at::<i32>(24) }
        && tracked(pid as u32)
    {
        escape_possible();
    }
    0
}
