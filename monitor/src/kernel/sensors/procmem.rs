//! The process-memory sensor: ptrace attach and process_vm_readv/writev.

use monitor_common::sensors;

use super::{Probe, Spec};

pub const SPEC: Spec = Spec {
    id: sensors::PROCMEM,
    what: "ptrace attach and process_vm_readv/writev",
    tracepoints: &[
        Probe("sys_enter_ptrace", "syscalls", "sys_enter_ptrace"),
        Probe("sys_exit_ptrace", "syscalls", "sys_exit_ptrace"),
        Probe(
            "sys_enter_process_vm_readv",
            "syscalls",
            "sys_enter_process_vm_readv",
        ),
        Probe(
            "sys_exit_process_vm_readv",
            "syscalls",
            "sys_exit_process_vm_readv",
        ),
        Probe(
            "sys_enter_process_vm_writev",
            "syscalls",
            "sys_enter_process_vm_writev",
        ),
        Probe(
            "sys_exit_process_vm_writev",
            "syscalls",
            "sys_exit_process_vm_writev",
        ),
    ],
    sock_addr: &[],
    skb: &[],
};
