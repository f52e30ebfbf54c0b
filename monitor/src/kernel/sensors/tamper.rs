//! The tamper sensor: bpf(2) calls from the watched tree, and signals or pidfds aimed at
//! buildwatch, its guardian or their process group, reported before they take effect.

use monitor_common::sensors;

use super::{Probe, Spec};

pub const SPEC: Spec = Spec {
    id: sensors::TAMPER,
    what: "bpf(2) calls, and signals or pidfds aimed at buildwatch",
    tracepoints: &[
        Probe("sys_enter_bpf", "syscalls", "sys_enter_bpf"),
        Probe("sys_enter_kill", "syscalls", "sys_enter_kill"),
        Probe("sys_enter_tkill", "syscalls", "sys_enter_tkill"),
        Probe("sys_enter_tgkill", "syscalls", "sys_enter_tgkill"),
        Probe("sys_enter_pidfd_open", "syscalls", "sys_enter_pidfd_open"),
        Probe(
            "sys_enter_rt_sigqueueinfo",
            "syscalls",
            "sys_enter_rt_sigqueueinfo",
        ),
        Probe(
            "sys_enter_rt_tgsigqueueinfo",
            "syscalls",
            "sys_enter_rt_tgsigqueueinfo",
        ),
        Probe(
            "sys_enter_pidfd_send_signal",
            "syscalls",
            "sys_enter_pidfd_send_signal",
        ),
        Probe(
            "sys_exit_pidfd_send_signal",
            "syscalls",
            "sys_exit_pidfd_send_signal",
        ),
        Probe("signal_generate", "signal", "signal_generate"),
        Probe("cgroup_attach_task", "cgroup", "cgroup_attach_task"),
    ],
    sock_addr: &[],
    skb: &[],
};
