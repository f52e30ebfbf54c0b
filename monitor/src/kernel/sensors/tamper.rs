//! The tamper sensor: bpf(2) calls from the watched tree, reported before they take effect.

use monitor_common::sensors;

use super::{Probe, Spec};

pub const SPEC: Spec = Spec {
    id: sensors::TAMPER,
    what: "bpf(2) calls that could blind the sensors",
    tracepoints: &[Probe("sys_enter_bpf", "syscalls", "sys_enter_bpf")],
    sock_addr: &[],
    skb: &[],
};
