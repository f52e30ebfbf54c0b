//! The watched command is forked early and parked in the run's cgroup while the sensors load
//! (the cgroup move costs an RCU grace period; parked, it overlaps the program verification).
//! Parked, it must run nothing of the command's: released, it runs; dropped (buildwatch failed
//! or died), it exits without running the command and leaves the cgroup empty. Needs root
//! (skipped without it locally, a failure under CI=true).

mod common;

use std::{
    ffi::OsString,
    path::Path,
    time::{Duration, Instant},
};

use common::root_or_skip;
use monitor::{kernel::cgroup::RunCgroup, mode::run::park};

fn touch(marker: &Path) -> Vec<OsString> {
    vec!["/usr/bin/touch".into(), marker.into()]
}

/// Waits until the parked child has joined `cg` (it does so on its own, concurrently).
fn wait_joined(cg: &RunCgroup) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = cg.pids();
        if !pids.is_empty() || Instant::now() > deadline {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_parked_command_runs_only_when_released() {
    if !root_or_skip() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("bw-parked-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cg = RunCgroup::create().unwrap();

        // Dropped without release: in the cgroup while parked, never runs the command, and
        // gone afterwards (so the cgroup can be removed).
        let dropped = dir.join("dropped");
        let parked = park(&touch(&dropped), &cg, false, None, true).unwrap();
        assert_eq!(
            wait_joined(&cg).len(),
            1,
            "the parked child is in the run's cgroup"
        );
        std::thread::sleep(Duration::from_millis(200));
        assert!(!dropped.exists(), "a parked command ran before release");
        drop(parked);
        assert!(!dropped.exists(), "a dropped parked command ran");
        assert!(
            cg.pids().is_empty(),
            "the dropped child is still in the cgroup: {:?}",
            cg.pids()
        );

        // Released: runs, inside the cgroup, and exits 0.
        let released = dir.join("released");
        let parked = park(&touch(&released), &cg, false, None, true).unwrap();
        let pids = wait_joined(&cg);
        assert_eq!(pids.len(), 1);
        assert!(!released.exists());
        let mut child = parked.release().unwrap();
        assert_eq!(
            child.id(),
            Some(pids[0]),
            "the command is the parked process"
        );
        assert!(child.wait().await.unwrap().success());
        assert!(released.exists(), "a released command did not run");

        // A command that cannot be found is reported by release, as spawn would.
        let parked = park(
            &["/nonexistent/bw-no-such-command".into()],
            &cg,
            false,
            None,
            true,
        )
        .unwrap();
        let err = parked.release().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
