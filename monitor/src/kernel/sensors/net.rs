//! The net sensor: connect(2) results from tracepoints, destinations from the cgroup connect
//! hooks (the kernel's copy of the address; io_uring and TCP Fast Open connects too) and
//! unconnected UDP destinations from the cgroup sendmsg hooks.

use monitor_common::sensors;

use super::{Probe, Spec};

pub const SPEC: Spec = Spec {
    id: sensors::NET,
    what: "connections, UDP destinations, binds and raw or packet sockets",
    tracepoints: &[
        Probe("sys_enter_connect", "syscalls", "sys_enter_connect"),
        Probe("sys_exit_connect", "syscalls", "sys_exit_connect"),
        Probe("sys_enter_socket", "syscalls", "sys_enter_socket"),
        Probe("sys_enter_listen", "syscalls", "sys_enter_listen"),
        Probe("sys_exit_socket", "syscalls", "sys_exit_socket"),
    ],
    sock_addr: &[
        "connect4", "connect6", "sendmsg4", "sendmsg6", "recvmsg4", "recvmsg6", "bind4", "bind6",
    ],
    skb: &[],
};
