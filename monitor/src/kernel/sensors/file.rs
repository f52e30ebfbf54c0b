//! The file sensor: opens and working-directory changes.

use monitor_common::sensors;

use super::{Probe, Spec};

pub const SPEC: Spec = Spec {
    id: sensors::FILE,
    what: "opens and working-directory changes",
    tracepoints: &[
        Probe("sys_enter_open", "syscalls", "sys_enter_open"),
        Probe("sys_exit_open", "syscalls", "sys_exit_open"),
        Probe("sys_enter_openat", "syscalls", "sys_enter_openat"),
        Probe("sys_exit_openat", "syscalls", "sys_exit_openat"),
        Probe("sys_enter_openat2", "syscalls", "sys_enter_openat2"),
        Probe("sys_exit_openat2", "syscalls", "sys_exit_openat2"),
        Probe("sys_enter_chdir", "syscalls", "sys_enter_chdir"),
        Probe("sys_exit_chdir", "syscalls", "sys_exit_chdir"),
        Probe("sys_enter_fchdir", "syscalls", "sys_enter_fchdir"),
        Probe("sys_exit_fchdir", "syscalls", "sys_exit_fchdir"),
    ],
    sock_addr: &[],
    skb: &[],
};
