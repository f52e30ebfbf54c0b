//! The exec sensor: exec attempts and results, process creation and exit.

use monitor_common::sensors;

use super::{Probe, Spec};

pub const SPEC: Spec = Spec {
    id: sensors::EXEC,
    what: "exec attempts and results, process creation and exit",
    tracepoints: &[
        Probe("sys_enter_execve", "syscalls", "sys_enter_execve"),
        Probe("sys_enter_execveat", "syscalls", "sys_enter_execveat"),
        Probe("sys_exit_exec_any", "syscalls", "sys_exit_execve"),
        Probe("sys_exit_exec_any", "syscalls", "sys_exit_execveat"),
        Probe("task_newtask", "task", "task_newtask"),
        Probe("sched_process_exit", "sched", "sched_process_exit"),
        Probe("sched_process_exec", "sched", "sched_process_exec"),
    ],
    sock_addr: &[],
    skb: &[],
};
