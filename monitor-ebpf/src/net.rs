//! net sensor: connect(2) for every address family with its result (EINPROGRESS included), and
//! the destinations of UDP datagrams sent with an explicit address (cgroup sendmsg hooks, which
//! also see sendmmsg and v4-mapped destinations on dual-stack sockets).
//!
//! For IPv4 and IPv6 the destination comes from the cgroup connect hooks, which see the
//! kernel's own copy of the address: a second thread rewriting the caller's sockaddr while a
//! blocking connect is in flight cannot change what is reported. The hooks also see connects
//! no connect(2) makes (io_uring, TCP Fast Open through sendmsg): those are reported at once,
//! without a result.

use aya_ebpf::{
    helpers::generated::{bpf_get_socket_cookie, bpf_probe_read_user},
    macros::{cgroup_sock_addr, map, tracepoint},
    maps::{Array, HashMap, LpmTrie, LruHashMap, lpm_trie::Key},
    programs::{SockAddrContext, TracePointContext},
};
use monitor_common::{
    ALLOW_MAX, ALLOW_PORTS, AllowPorts, Connect, DNS_PORT, DOT_PORT, DnsProxy, EventKind,
    ListenCall, OPENED_MAX, Opened4, Opened6, OrigDest, REDIRECTED_MAX, RESOLVERS_MAX,
    SOCKADDR_MAX, SendTo, SocketCall, StashedArgs, counters, flags,
};

use crate::emit::{
    ARG0, ARG1, ARG2, EVENTS, RET, cgroup_header, check, count, emit, header, in_scope,
    in_scope_hook, live_stash, stash, take_stash, unstash, wakeup_flags,
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

/// listen(2): reported at entry (whether it works is for userspace to see in /proc).
#[tracepoint(category = "syscalls", name = "sys_enter_listen")]
pub fn sys_enter_listen(ctx: TracePointContext) -> u32 {
    if in_scope() {
        let fd: i64 = unsafe { ctx.read_at(ARG0) }.unwrap_or(-1);
        let backlog: i64 = unsafe { ctx.read_at(ARG1) }.unwrap_or(0);
        emit(
            SENSOR,
            ListenCall {
                header: header(EventKind::Listen, 0),
                fd: fd as i32,
                backlog: backlog as i32,
            },
        );
    }
    0
}

const AF_PACKET: i64 = 17;
const SOCK_RAW: i64 = 3;
const SOCK_PACKET: i64 = 10;

#[tracepoint(category = "syscalls", name = "sys_enter_socket")]
pub fn sys_enter_socket(ctx: TracePointContext) -> u32 {
    check(&ctx, SENSOR, try_enter_socket(&ctx));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_socket")]
pub fn sys_exit_socket(ctx: TracePointContext) -> u32 {
    if in_scope()
        && let Some(args) = take_stash()
        && args.flags & flags::STASH_SOCKET != 0
    {
        let ret: i64 = unsafe { ctx.read_at(RET) }.unwrap_or(0);
        emit(
            SENSOR,
            SocketCall {
                header: header(EventKind::Socket, 0),
                ret,
                family: args.arg0 as u32,
                sock_type: args.arg1 as u32,
                protocol: args.arg2 as u32,
                _pad: 0,
            },
        );
    }
    0
}

/// A packet socket, or a raw IPv4/IPv6 one: the sockets reported (from socket(2) here, from
/// io_uring in the file sensor's submit hook).
#[inline(always)]
pub fn raw_socket(family: i64, sock_type: i64) -> bool {
    let base = sock_type & 0xf;
    let inet = family == AF_INET as i64 || family == AF_INET6 as i64;
    family == AF_PACKET || (inet && (base == SOCK_RAW || base == SOCK_PACKET))
}

/// Only packet sockets and raw IPv4/IPv6 sockets are stashed (and reported): every other
/// socket is ordinary, netlink's SOCK_RAW included (glibc's getaddrinfo opens one).
fn try_enter_socket(ctx: &TracePointContext) -> Result<u32, i64> {
    if !in_scope() {
        return Ok(0);
    }
    let family: i64 = unsafe { ctx.read_at(ARG0)? };
    let sock_type: i64 = unsafe { ctx.read_at(ARG1)? };
    if !raw_socket(family, sock_type) {
        return Ok(0);
    }
    stash(
        SENSOR,
        &StashedArgs {
            arg0: family,
            arg1: sock_type as u64,
            arg2: unsafe { ctx.read_at::<i64>(ARG2)? } as u64,
            flags: flags::STASH_SOCKET,
            ..StashedArgs::default()
        },
    );
    Ok(0)
}

/// Entry 0: 1 in block mode (egress outside the allowlist is refused), 0 to watch only. Set
/// once before the command starts, then frozen.
#[map]
static EGRESS_MODE: Array<u32> = Array::with_max_entries(1, 0);

/// Block mode is on: egress outside the allowlist is refused, and what no socket hook can
/// refuse (ptrace, reading another process's memory, sudo and su) is killed.
#[inline(always)]
pub fn block_mode() -> bool {
    EGRESS_MODE.get(0).copied() == Some(1)
}
/// The egress allowlist, by address prefix (IPv4 in network order; IPv6 likewise), with the
/// ports each prefix allows. Loopback and the run's resolvers are in it when the policy says.
#[map]
static ALLOW4: LpmTrie<[u8; 4], AllowPorts> = LpmTrie::with_max_entries(ALLOW_MAX, 0);
#[map]
static ALLOW6: LpmTrie<[u8; 16], AllowPorts> = LpmTrie::with_max_entries(ALLOW_MAX, 0);

/// Block mode's DNS proxy (entry 0): set once before the command starts, then frozen.
#[map]
static DNS_PROXY: Array<DnsProxy> = Array::with_max_entries(1, 0);
/// The run's resolvers: their port 53 goes to the proxy. Written once, then frozen.
#[map]
static RESOLVERS4: HashMap<[u8; 4], u8> = HashMap::with_max_entries(RESOLVERS_MAX, 0);
#[map]
static RESOLVERS6: HashMap<[u8; 16], u8> = HashMap::with_max_entries(RESOLVERS_MAX, 0);
/// Destinations the proxy opened: an allowed name's answer named the address (port 0: any
/// port). Written by buildwatch during the run, before the answer reaches the client.
#[map]
static OPENED4: HashMap<Opened4, u8> = HashMap::with_max_entries(OPENED_MAX, crate::emit::SPARSE);
#[map]
static OPENED6: HashMap<Opened6, u8> = HashMap::with_max_entries(OPENED_MAX, crate::emit::SPARSE);
/// Upstream resolvers on ports other than 53 (port 0: any): refused, allowlisted or not, so
/// the run cannot ask them past the proxy. Written once, then frozen.
#[map]
static DENY4: HashMap<Opened4, u8> = HashMap::with_max_entries(RESOLVERS_MAX, 0);
#[map]
static DENY6: HashMap<Opened6, u8> = HashMap::with_max_entries(RESOLVERS_MAX, 0);

/// Where each redirected socket meant to go, by socket cookie: its replies are shown as
/// coming from there (resolvers check the source of an answer).
#[map]
static REDIRECTED: LruHashMap<u64, OrigDest> = LruHashMap::with_max_entries(REDIRECTED_MAX, 0);

/// What block mode does with a destination.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Refuse,
    /// Port 53 of one of the run's resolvers: to the DNS proxy instead.
    Redirect,
}

/// The IPv4 address of an IPv4 or IPv4-mapped IPv6 destination.
#[inline(always)]
fn as_v4(family: u16, addr: &[u8; 16]) -> Option<[u8; 4]> {
    let mapped = family == AF_INET6
        && addr[..10].iter().all(|&b| b == 0)
        && addr[10] == 0xff
        && addr[11] == 0xff;
    if family == AF_INET || mapped {
        let at = if mapped { 12 } else { 0 };
        Some([addr[at], addr[at + 1], addr[at + 2], addr[at + 3]])
    } else {
        None
    }
}

/// Block mode's judgement of a destination. With the DNS proxy on, port 53 of the run's
/// resolvers goes to the proxy and every other port-53 or DNS-over-TLS destination is
/// refused, allowlisted or not, as are the proxy's upstreams on their own ports. Otherwise a destination passes when an allowlist prefix covers
/// it with its port, or an allowed DNS answer opened it. An IPv4-mapped IPv6 address (a
/// dual-stack socket reaching IPv4) is judged as the IPv4 address.
#[inline(always)]
fn judge(family: u16, addr: &[u8; 16], port: u16) -> Verdict {
    if !block_mode() {
        return Verdict::Allow;
    }
    let v4 = as_v4(family, addr);
    if (port == DNS_PORT || port == DOT_PORT) && proxy().is_some() {
        let resolver = match v4 {
            Some(a) => unsafe { RESOLVERS4.get(&a) }.is_some(),
            None => unsafe { RESOLVERS6.get(addr) }.is_some(),
        };
        return if port == DNS_PORT && resolver {
            Verdict::Redirect
        } else {
            Verdict::Refuse
        };
    }
    let denied = match v4 {
        Some(a) => {
            let k = Opened4 {
                addr: a,
                port,
                _pad: 0,
            };
            unsafe { DENY4.get(&k).is_some() || DENY4.get(&Opened4 { port: 0, ..k }).is_some() }
        }
        None => {
            let k = Opened6 {
                addr: *addr,
                port,
                _pad: 0,
            };
            unsafe { DENY6.get(&k).is_some() || DENY6.get(&Opened6 { port: 0, ..k }).is_some() }
        }
    };
    if denied {
        return Verdict::Refuse;
    }
    let entry = match v4 {
        Some(a) => ALLOW4.get(&Key::new(32, a)),
        None => ALLOW6.get(&Key::new(128, *addr)),
    };
    if let Some(p) = entry {
        if p.any != 0 {
            return Verdict::Allow;
        }
        let mut i = 0;
        while i < ALLOW_PORTS {
            if i < p.n as usize && p.ports[i] == port {
                return Verdict::Allow;
            }
            i += 1;
        }
    }
    let opened = match v4 {
        Some(a) => {
            let any = Opened4 {
                addr: a,
                port: 0,
                _pad: 0,
            };
            let exact = Opened4 { port, ..any };
            unsafe { OPENED4.get(&any).is_some() || OPENED4.get(&exact).is_some() }
        }
        None => {
            let any = Opened6 {
                addr: *addr,
                port: 0,
                _pad: 0,
            };
            let exact = Opened6 { port, ..any };
            unsafe { OPENED6.get(&any).is_some() || OPENED6.get(&exact).is_some() }
        }
    };
    if opened {
        Verdict::Allow
    } else {
        Verdict::Refuse
    }
}

/// The DNS proxy's address, when it is on.
#[inline(always)]
fn proxy() -> Option<DnsProxy> {
    match DNS_PROXY.get(0) {
        Some(p) if p.on != 0 => Some(*p),
        _ => None,
    }
}

/// Send this socket to the DNS proxy instead of `addr:port`, remembering where it meant to
/// go. An IPv6 socket is sent to the proxy's IPv4-mapped address (a socket restricted to IPv6
/// cannot reach it: its DNS fails, closed).
#[inline(always)]
fn redirect(ctx: &SockAddrContext, family: u16, addr: &[u8; 16], port: u16) {
    let Some(p) = proxy() else {
        return;
    };
    let sa = unsafe { &mut *ctx.sock_addr };
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let orig = OrigDest {
        family,
        port,
        addr: *addr,
    };
    if REDIRECTED.insert(&cookie, &orig, 0).is_err() {
        count(SENSOR, counters::STASH_FULL);
    }
    if family == AF_INET {
        sa.user_ip4 = u32::from_ne_bytes(p.addr4);
    } else {
        sa.user_ip6 = [
            0,
            0,
            u32::from_ne_bytes([0, 0, 0xff, 0xff]),
            u32::from_ne_bytes(p.addr4),
        ];
    }
    sa.user_port = u32::from(p.port.to_be());
}

/// A reply to a redirected socket from the proxy: shown as from where the socket meant to go.
#[inline(always)]
fn restore(ctx: &SockAddrContext, family: u16) {
    let Some(p) = proxy() else {
        return;
    };
    let sa = unsafe { &mut *ctx.sock_addr };
    if u16::from_be(sa.user_port as u16) != p.port {
        return;
    }
    let from = hook_addr(sa, family);
    if as_v4(family, &from) != Some(p.addr4) {
        return;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let Some(orig) = (unsafe { REDIRECTED.get(&cookie) }) else {
        return;
    };
    if family == AF_INET {
        sa.user_ip4 = u32::from_ne_bytes([orig.addr[0], orig.addr[1], orig.addr[2], orig.addr[3]]);
    } else if orig.family == AF_INET {
        // A dual-stack socket sent to a mapped address: the IPv4 path recorded it as IPv4;
        // its reply shows the mapped form.
        sa.user_ip6 = [
            0,
            0,
            u32::from_ne_bytes([0, 0, 0xff, 0xff]),
            u32::from_ne_bytes([orig.addr[0], orig.addr[1], orig.addr[2], orig.addr[3]]),
        ];
    } else {
        let mut words = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            words[i] = u32::from_ne_bytes([
                orig.addr[i * 4],
                orig.addr[i * 4 + 1],
                orig.addr[i * 4 + 2],
                orig.addr[i * 4 + 3],
            ]);
            i += 1;
        }
        sa.user_ip6 = words;
    }
    sa.user_port = u32::from(orig.port.to_be());
}

#[cgroup_sock_addr(recvmsg4)]
pub fn recvmsg4(ctx: SockAddrContext) -> i32 {
    if block_mode() {
        restore(&ctx, AF_INET);
    }
    1
}

#[cgroup_sock_addr(recvmsg6)]
pub fn recvmsg6(ctx: SockAddrContext) -> i32 {
    if block_mode() {
        restore(&ctx, AF_INET6);
    }
    1
}

#[cgroup_sock_addr(bind4)]
pub fn bind4(ctx: SockAddrContext) -> i32 {
    record_bind(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(bind6)]
pub fn bind6(ctx: SockAddrContext) -> i32 {
    record_bind(&ctx, AF_INET6);
    1
}

/// A bind of a watched process's socket: the local address and port it asks for (a listener
/// on the network is a bind shell's first step). Never refused.
fn record_bind(ctx: &SockAddrContext, family: u16) {
    if !in_scope_hook() {
        return;
    }
    // Each context field read on its own, at a constant offset (the verifier refuses a
    // context pointer the compiler moved).
    let sa = ctx.sock_addr;
    let rd = |p: *const u32| unsafe { core::ptr::read_volatile(p) };
    let mut addr = [0u8; 16];
    if family == AF_INET {
        addr[..4].copy_from_slice(&rd(unsafe { &raw const (*sa).user_ip4 }).to_ne_bytes());
    } else {
        let w = unsafe {
            [
                rd(&raw const (*sa).user_ip6[0]),
                rd(&raw const (*sa).user_ip6[1]),
                rd(&raw const (*sa).user_ip6[2]),
                rd(&raw const (*sa).user_ip6[3]),
            ]
        };
        addr[..4].copy_from_slice(&w[0].to_ne_bytes());
        addr[4..8].copy_from_slice(&w[1].to_ne_bytes());
        addr[8..12].copy_from_slice(&w[2].to_ne_bytes());
        addr[12..].copy_from_slice(&w[3].to_ne_bytes());
    }
    let port = u16::from_be(rd(unsafe { &raw const (*sa).user_port }) as u16);
    let protocol = rd(unsafe { &raw const (*sa).protocol });
    emit(
        SENSOR,
        SendTo {
            header: cgroup_header(EventKind::Bind, 0),
            family,
            port,
            protocol,
            addr,
        },
    );
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    if record_connect(&ctx, AF_INET) { 0 } else { 1 }
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    if record_connect(&ctx, AF_INET6) { 0 } else { 1 }
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    if record_sendmsg(&ctx, AF_INET) { 0 } else { 1 }
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    if record_sendmsg(&ctx, AF_INET6) { 0 } else { 1 }
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
                flags: flags::STASH_CONNECT,
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
    if args.flags & flags::KERNEL_ADDR != 0 {
        // The connect hook left the kernel's copy: (family, port, address) packed below.
        let family = (args.arg1 >> 48) as u16;
        let port = (args.arg1 >> 32) as u16;
        unsafe {
            (*ev).ret = ret;
            (*ev).fd = args.arg0 as i32;
            (*ev).addr = [0; SOCKADDR_MAX];
            (*ev).addrlen = sockaddr(&mut (*ev).addr, family, port, args.ptr, args.arg2);
            let mut fl = flags::KERNEL_ADDR;
            if args.flags & flags::STASH_REFUSED != 0 {
                fl |= flags::REFUSED;
            }
            if args.flags & flags::STASH_REDIRECTED != 0 {
                fl |= flags::REDIRECTED;
            }
            (*ev).header = header(EventKind::Connect, fl);
        }
        entry.submit(wakeup_flags(size_of::<Connect>()));
        return Ok(0);
    }
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

/// Write a sockaddr_in / sockaddr_in6 for (family, port in host order, address: the first 8
/// bytes in `lo`, the next 8 in `hi`, as the hook packed them) into `out`; its length.
#[inline(always)]
fn sockaddr(out: &mut [u8; SOCKADDR_MAX], family: u16, port: u16, lo: u64, hi: u64) -> u32 {
    out[0..2].copy_from_slice(&family.to_ne_bytes());
    out[2..4].copy_from_slice(&port.to_be_bytes());
    if family == AF_INET {
        out[4..8].copy_from_slice(&lo.to_ne_bytes()[..4]);
        16
    } else {
        // sin6_flowinfo stays 0; the address at 8..24; sin6_scope_id 0.
        out[8..16].copy_from_slice(&lo.to_ne_bytes());
        out[16..24].copy_from_slice(&hi.to_ne_bytes());
        28
    }
}

/// The destination address a cgroup sock_addr hook sees (IPv4 in the first 4 bytes).
#[inline(always)]
fn hook_addr(sa: &aya_ebpf::bindings::bpf_sock_addr, family: u16) -> [u8; 16] {
    let mut addr = [0u8; 16];
    if family == AF_INET {
        addr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    } else {
        for (i, word) in sa.user_ip6.iter().enumerate() {
            addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
    }
    addr
}

/// The kernel's copy of a connect's destination: handed to the connect(2) in flight on this
/// thread, or reported now when there is none (io_uring, TCP Fast Open).
/// Whether block mode refuses it (then the hook returns 0: the call fails with EPERM).
#[inline(always)]
fn record_connect(ctx: &SockAddrContext, family: u16) -> bool {
    if !in_scope_hook() {
        return false;
    }
    let sa = unsafe { &*ctx.sock_addr };
    let addr = hook_addr(sa, family);
    // user_port holds the port in network byte order in its low 16 bits.
    let port = u16::from_be(sa.user_port as u16);
    let verdict = judge(family, &addr, port);
    let refuse = verdict == Verdict::Refuse;
    let redirected = verdict == Verdict::Redirect;
    if redirected {
        redirect(ctx, family, &addr, port);
    }
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&addr[..8]);
    hi.copy_from_slice(&addr[8..]);
    let (lo, hi) = (u64::from_ne_bytes(lo), u64::from_ne_bytes(hi));
    if let Some(slot) = live_stash()
        && unsafe { (*slot).flags } & flags::STASH_CONNECT != 0
    {
        unsafe {
            (*slot).flags |= flags::KERNEL_ADDR;
            if refuse {
                (*slot).flags |= flags::STASH_REFUSED;
            }
            if redirected {
                (*slot).flags |= flags::STASH_REDIRECTED;
            }
            (*slot).ptr = lo;
            (*slot).arg2 = hi;
            (*slot).arg1 =
                ((*slot).arg1 & 0xffff_ffff) | (port as u64) << 32 | (family as u64) << 48;
        }
        return refuse;
    }
    let Some(mut entry) = EVENTS.reserve::<Connect>(0) else {
        count(SENSOR, counters::RINGBUF_FULL);
        return refuse;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).ret = 0;
        (*ev).fd = -1;
        (*ev).addr = [0; SOCKADDR_MAX];
        (*ev).addrlen = sockaddr(&mut (*ev).addr, family, port, lo, hi);
        let mut fl = flags::KERNEL_ADDR | flags::NO_RESULT;
        if refuse {
            fl |= flags::REFUSED;
        }
        if redirected {
            fl |= flags::REDIRECTED;
        }
        (*ev).header = cgroup_header(EventKind::Connect, fl);
    }
    entry.submit(wakeup_flags(size_of::<Connect>()));
    refuse
}

#[inline(always)]
fn record_sendmsg(ctx: &SockAddrContext, family: u16) -> bool {
    if !in_scope_hook() {
        return false;
    }
    let sa = unsafe { &*ctx.sock_addr };
    let addr = hook_addr(sa, family);
    // user_port holds the port in network byte order in its low 16 bits.
    let port = u16::from_be(sa.user_port as u16);
    let verdict = judge(family, &addr, port);
    let refuse = verdict == Verdict::Refuse;
    let fl = match verdict {
        Verdict::Refuse => flags::REFUSED,
        Verdict::Redirect => {
            redirect(ctx, family, &addr, port);
            flags::REDIRECTED
        }
        Verdict::Allow => 0,
    };
    emit(
        SENSOR,
        SendTo {
            header: cgroup_header(EventKind::SendTo, fl),
            family,
            port,
            protocol: sa.protocol,
            addr,
        },
    );
    refuse
}
