//! The file sensor: opens, renames and links (names made for a file without opening it), and
//! working-directory changes.

use monitor_common::sensors;

use super::{Probe, Spec};

pub const SPEC: Spec = Spec {
    id: sensors::FILE,
    what: "opens, renames and links, unlinks and mode changes, and working-directory changes",
    tracepoints: &[
        Probe("sys_enter_open", "syscalls", "sys_enter_open"),
        Probe("sys_exit_open_any", "syscalls", "sys_exit_open"),
        Probe("sys_enter_openat", "syscalls", "sys_enter_openat"),
        Probe("sys_exit_open_any", "syscalls", "sys_exit_openat"),
        Probe("sys_enter_openat2", "syscalls", "sys_enter_openat2"),
        Probe("sys_exit_open_any", "syscalls", "sys_exit_openat2"),
        Probe(
            "sys_enter_open_by_handle_at",
            "syscalls",
            "sys_enter_open_by_handle_at",
        ),
        Probe(
            "sys_exit_open_any",
            "syscalls",
            "sys_exit_open_by_handle_at",
        ),
        Probe("io_uring_submit_req", "io_uring", "io_uring_submit_req"),
        Probe("sys_enter_chdir", "syscalls", "sys_enter_chdir"),
        Probe("sys_exit_chdir", "syscalls", "sys_exit_chdir"),
        Probe("sys_enter_fchdir", "syscalls", "sys_enter_fchdir"),
        Probe("sys_exit_fchdir", "syscalls", "sys_exit_fchdir"),
        Probe("sys_enter_rename", "syscalls", "sys_enter_rename"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_rename"),
        Probe("sys_enter_renameat", "syscalls", "sys_enter_renameat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_renameat"),
        Probe("sys_enter_renameat2", "syscalls", "sys_enter_renameat2"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_renameat2"),
        Probe("sys_enter_link", "syscalls", "sys_enter_link"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_link"),
        Probe("sys_enter_linkat", "syscalls", "sys_enter_linkat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_linkat"),
        Probe("sys_enter_symlink", "syscalls", "sys_enter_symlink"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_symlink"),
        Probe("sys_enter_symlinkat", "syscalls", "sys_enter_symlinkat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_symlinkat"),
        Probe("sys_enter_unlink_chmod", "syscalls", "sys_enter_unlink"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_unlink"),
        Probe("sys_enter_unlink_chmod", "syscalls", "sys_enter_unlinkat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_unlinkat"),
        Probe("sys_enter_unlink_chmod", "syscalls", "sys_enter_chmod"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_chmod"),
        Probe("sys_enter_unlink_chmod", "syscalls", "sys_enter_fchmodat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_fchmodat"),
        Probe("sys_enter_unlink_chmod", "syscalls", "sys_enter_fchmodat2"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_fchmodat2"),
        Probe("sys_enter_unlink_chmod", "syscalls", "sys_enter_fchmod"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_fchmod"),
    ],
    sock_addr: &[],
    skb: &[],
};
