//! The exit-status contract, in one place. buildwatch passes the watched command's own status
//! through unless one of these applies; they are chosen not to collide with a shell's
//! (126/127 mean what they mean to a shell, 128+N is a signal death).

use std::process::ExitStatus;

/// Findings reached `fail_on`, or the run cannot be vouched for (events lost under
/// `fail_on_lost`, ...).
pub const POLICY_VIOLATION: i32 = 86;
/// buildwatch itself failed (bad rules or policy, setup); the command did not run unwatched.
pub const INTERNAL: i32 = 125;
/// The command was found but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// buildwatch was called wrongly (an unknown option, a missing command, a bad value):
/// sysexits' EX_USAGE, which make (2), npm, pip (1) and cargo (101) do not return, so a
/// pipeline can tell a mistyped buildwatch line from a failing build.
pub const USAGE: i32 = 64;

const _: () = assert!(POLICY_VIOLATION < INTERNAL);

/// The command's status, or 128+N when signal N killed it (as shells report it).
pub fn of_status(status: &ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(INTERNAL)
}

/// A mode's result as a process exit status: buildwatch's own failure is [`INTERNAL`].
pub fn of_result(r: anyhow::Result<i32>, report: impl FnOnce(&anyhow::Error)) -> i32 {
    r.unwrap_or_else(|e| {
        report(&e);
        INTERNAL
    })
}
