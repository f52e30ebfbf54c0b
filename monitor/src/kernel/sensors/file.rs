//! The file sensor: opens, renames and links (names made for a file without opening it), and
//! working-directory changes.

use monitor_common::sensors;

use super::{Probe, Spec};

pub const SPEC: Spec = Spec {
    id: sensors::FILE,
    what: "opens, renames and links, unlinks, mode and attribute changes, and working-directory changes",
    tracepoints: &[
        // The exits of open and openat, chdir and fchdir, and of the rename, link, symlink,
        // unlink, chmod, truncate and setxattr calls, read the syscall's arguments from the registers saved at its
        // entry: no enter program runs on these, in scope or out.
        Probe("sys_exit_open_any", "syscalls", "sys_exit_open"),
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
        Probe("sys_exit_chdir", "syscalls", "sys_exit_chdir"),
        Probe("sys_exit_fchdir", "syscalls", "sys_exit_fchdir"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_rename"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_renameat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_renameat2"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_link"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_linkat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_symlink"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_symlinkat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_unlink"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_unlinkat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_chmod"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_fchmodat"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_fchmodat2"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_fchmod"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_truncate"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_ftruncate"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_setxattr"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_lsetxattr"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_fsetxattr"),
        Probe("sys_exit_relink", "syscalls", "sys_exit_setxattrat"),
    ],
    sock_addr: &[],
    skb: &[],
};
