//! net sensor: connect(2) for every address family with its result (EINPROGRESS included), and
//! the destinations of UDP datagrams sent with an explicit address (cgroup sendmsg hooks, which
//! also see sendmmsg and v4-mapped destinations on dual-stack sockets).

use aya_ebpf::{
    helpers::generated::bpf_probe_read_user,
    macros::{cgroup_sock_addr, tracepoint},
    programs::{SockAddrContext, TracePointContext},
};
use monitor_common::{Connect, EventKind, SOCKADDR_MAX, SendTo, StashedArgs, counters, flags};

use crate::emit::{
    ARG0, ARG1, ARG2, EVENTS, RET, cgroup_header, check, count, emit, header, in_scope, stash,
    unstash, wakeup_flags,
};

const SENSOR: u32 = monitor_common::sensors::NET;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_connect(&ctx));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_exit_connect(&ctx));
    0
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    record_sendmsg(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    record_sendmsg(&ctx, AF_INET6);
    1
}

fn try_enter_connect(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    unsafe {
        stash(
            SENSOR,
            &StashedArgs {
                ptr: ctx.read_at(ARG1)?,
                arg0: ctx.read_at::<i64>(ARG0)? as i32 as i64,
                arg1: ctx.read_at::<i64>(ARG2)? as u32 as u64,
                ..StashedArgs::default()
            },
        );
    }
    Ok(0)
}

fn try_exit_connect(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let Some(args) = unstash(SENSOR) else {
        return Ok(0);
    };
    let ret: i64 = unsafe { ctx.read_at(RET)? };
    let Some(mut entry) = EVENTS.reserve::<Connect>(0) else {
        count(SENSOR, counters::RINGBUF_FULL);
        return Ok(0);
    };
    // Written field by field into the reservation: the body is too large for comfort on the
    // 512-byte BPF stack, and every byte must be initialised (reservations are not zeroed).
    let ev = entry.as_mut_ptr();
    let addrlen = args.arg1 as u32;
    let mut fl = 0;
    unsafe {
        (*ev).ret = ret;
        (*ev).fd = args.arg0 as i32;
        (*ev).addrlen = addrlen;
        (*ev).addr = [0; SOCKADDR_MAX];
        let n = if addrlen as usize > SOCKADDR_MAX {
            SOCKADDR_MAX
        } else {
            addrlen as usize
        };
        if n > 0
            && bpf_probe_read_user(
                (*ev).addr.as_mut_ptr().cast(),
                n as u32,
                args.ptr as *const _,
            ) < 0
        {
            count(SENSOR, counters::READ_ERROR);
            fl |= flags::READ_FAILED;
        }
        (*ev).header = header(EventKind::Connect, fl);
    }
    entry.submit(wakeup_flags(size_of::<Connect>()));
    Ok(0)
}

#[inline(always)]
fn record_sendmsg(ctx: &SockAddrContext, family: u16) {
    if !in_scope() {
        return;
    }
    let sa = unsafe { &*ctx.sock_addr };
    let mut addr = [0u8; 16];
    if family == AF_INET {
        addr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    } else {
        for (i, word) in sa.user_ip6.iter().enumerate() {
            addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
    }
    emit(
        SENSOR,
        SendTo {
            header: cgroup_header(EventKind::SendTo, 0),
            family,
            // user_port holds the port in network byte order in its low 16 bits.
            port: u16::from_be(sa.user_port as u16),
            protocol: sa.protocol,
            addr,
        },
    );
}
