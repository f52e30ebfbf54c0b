//! `buildwatch doctor`: checks, one by one, what `buildwatch run` needs on this machine, and
//! proves the whole path works by watching a tiny command. Exits non-zero when `run` cannot work.

use std::{process::Command, time::Duration};

use crate::{
    ingest::decode::{self, Body},
    kernel::{
        cgroup::{self, RunCgroup},
        kbtf, loader, tracefs,
    },
};

enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: &str) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                self.failed = true;
                "FAIL"
            }
        };
        println!("[{tag}] {what}: {detail}");
    }
}

/// Returns the process exit code: 0 when `run` can work, 1 otherwise.
pub async fn doctor() -> i32 {
    let mut r = Report { failed: false };
    let uname = nix::sys::utsname::uname();
    if let Ok(u) = &uname {
        r.line(Level::Ok, "kernel", &u.release().to_string_lossy());
    }

    if nix::unistd::geteuid().is_root() {
        r.line(Level::Ok, "privileges", "running as root");
    } else {
        r.line(
            Level::Fail,
            "privileges",
            "not root: loading eBPF and creating cgroups need root",
        );
    }

    match kbtf::task_exit_code_offset() {
        Ok(off) => r.line(
            Level::Ok,
            "kernel BTF",
            &format!("{} (task_struct.exit_code at {off})", kbtf::VMLINUX_BTF),
        ),
        Err(e) => r.line(
            Level::Warn,
            "kernel BTF",
            &format!("{e}; exit codes of child processes will be unknown"),
        ),
    }

    let was_mounted = tracefs::is_mounted();
    match tracefs::ensure_mounted() {
        Ok(()) if was_mounted => r.line(Level::Ok, "tracefs", "mounted"),
        Ok(()) => r.line(
            Level::Ok,
            "tracefs",
            "was not mounted; mounted it at /sys/kernel/tracing",
        ),
        Err(e) => r.line(Level::Fail, "tracefs", &e.to_string()),
    }

    match cgroup::v2_mount() {
        Ok(m) => r.line(
            Level::Ok,
            "cgroup v2",
            &format!("mounted at {}", m.display()),
        ),
        Err(e) => r.line(Level::Fail, "cgroup v2", &e.to_string()),
    }

    let mut cg = match RunCgroup::create() {
        Ok(cg) => {
            r.line(
                Level::Ok,
                "run cgroup",
                &format!("created {}", cg.path().display()),
            );
            cg
        }
        Err(e) => {
            r.line(Level::Fail, "run cgroup", &e.to_string());
            return finish(r);
        }
    };

    match loader::Sensors::attach(loader::Scope::Cgroup(&cg), 1 << 20) {
        Ok(mut sensors) => {
            r.line(
                Level::Ok,
                "eBPF programs",
                "tracepoint and cgroup_sock_addr programs loaded and attached",
            );
            match sees_exec(&mut sensors, &cg).await {
                Ok(()) => r.line(
                    Level::Ok,
                    "end to end",
                    "an exec inside the run's cgroup was seen",
                ),
                Err(e) => r.line(Level::Fail, "end to end", &e),
            }
        }
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            r.line(Level::Fail, "eBPF programs", &msg);
        }
    }
    if let Err(e) = cg.remove() {
        r.line(Level::Warn, "run cgroup", &format!("could not remove: {e}"));
    }
    finish(r)
}

fn finish(r: Report) -> i32 {
    if r.failed {
        println!("buildwatch run cannot work here: fix the FAIL lines above");
        1
    } else {
        println!("buildwatch run can work here");
        0
    }
}

/// Start /bin/true in the cgroup and look for its exec in the ring buffer.
async fn sees_exec(sensors: &mut loader::Sensors, cg: &RunCgroup) -> Result<(), String> {
    let mut reader =
        crate::ingest::reader::EventReader::new(sensors.take_events().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let procs = cg.procs_file_cstring();
    let mut cmd = Command::new("/bin/true");
    // SAFETY: see run::join_cgroup.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            crate::mode::run::join_cgroup(&procs)
        });
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running /bin/true in the cgroup: {e}"))?;
    if !status.success() {
        return Err(format!("/bin/true failed: {status}"));
    }
    for _ in 0..50 {
        let mut seen = false;
        reader.drain(|rec| {
            if let Ok(ev) = decode::decode(rec)
                && let Body::ExecEnter { filename, .. } = ev.body
            {
                seen |= filename == b"/bin/true";
            }
        });
        if seen {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("no exec event arrived within 500 ms".into())
}
