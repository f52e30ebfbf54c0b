//! tracefs must be mounted for tracepoint programs to attach; a fresh boot may not have it.

use std::{io, path::Path};

const TRACEFS: &str = "/sys/kernel/tracing";

/// Whether tracepoint ids can be read, mounting tracefs at its usual place when it is missing.
pub fn ensure_mounted() -> io::Result<()> {
    if is_mounted() {
        return Ok(());
    }
    // The tracepoint attach path also accepts /sys/kernel/debug/tracing, but mounting tracefs
    // directly needs no debugfs.
    nix::mount::mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| io::Error::other(format!("mounting tracefs at {TRACEFS}: {e}")))?;
    if is_mounted() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "tracefs mounted at {TRACEFS} but has no events/"
        )))
    }
}

pub fn is_mounted() -> bool {
    Path::new(TRACEFS).join("events/syscalls").is_dir()
}
