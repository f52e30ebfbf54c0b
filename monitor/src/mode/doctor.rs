//! `buildwatch doctor`: checks, one by one, what `buildwatch run` needs on this machine, and
//! proves the whole path works by watching a tiny command. Exits non-zero when `run` cannot work.

use std::{
    path::Path,
    process::Command,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use crate::{
    detect::analyzer::Analyzer,
    ingest::reader::Reader,
    kernel::{
        cgroup::{self, RunCgroup},
        kbtf, loader, sensors, tracefs,
    },
    output::{bus::Bus, encode::Format, sink::Channel},
    pipeline::Pipeline,
    policy::config::{self, PolicyArgs},
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
        crate::outln!("[{tag}] {what}: {detail}");
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

    match kbtf::task_offsets() {
        Ok(o) => r.line(
            Level::Ok,
            "kernel BTF",
            &format!(
                "{} (task_struct: exit_code at {}, group_leader at {}, start_boottime at {}; \
                 open files' device and inode: {})",
                kbtf::VMLINUX_BTF,
                o.exit_code,
                o.group_leader,
                o.start_boottime,
                if o.file.is_some() {
                    "readable"
                } else {
                    "not readable"
                }
            ),
        ),
        Err(e) => r.line(
            Level::Warn,
            "kernel BTF",
            &format!(
                "{e}; exit codes will be unknown, and a reused pid will be told apart only by \
                 its fork"
            ),
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

    let cg = match RunCgroup::create() {
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
            return finish(r, None);
        }
    };

    let mut kernel = match loader::Kernel::load(1 << 20) {
        Ok(k) => {
            r.line(
                Level::Ok,
                "eBPF object",
                "every sensor's programs loaded and verified",
            );
            k
        }
        Err(e) => {
            r.line(Level::Fail, "eBPF object", &chain(&e));
            return finish(r, Some(cg));
        }
    };
    let scope = kernel
        .take_scope()
        .map_err(|e| e.to_string())
        .and_then(|mut s| {
            s.add(cg.id(), cg.level()).map_err(|e| e.to_string())?;
            Ok(s)
        });
    match &scope {
        Ok(_) => r.line(
            Level::Ok,
            "scope",
            "the test cgroup is in the live scope map",
        ),
        Err(e) => r.line(Level::Fail, "scope", e),
    }
    match cg.open_dir() {
        Ok(anchor) => {
            for spec in sensors::ALL {
                let attachments = spec.programs().count();
                let n = spec
                    .programs()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                match kernel.attach(spec, &anchor) {
                    Ok(()) => r.line(
                        Level::Ok,
                        &format!("sensor {}", spec.name()),
                        &format!(
                            "{n} program(s) attached at {attachments} point(s): {}",
                            spec.what
                        ),
                    ),
                    Err(e) => r.line(Level::Fail, &format!("sensor {}", spec.name()), &chain(&e)),
                }
            }
        }
        Err(e) => r.line(Level::Fail, "run cgroup", &format!("cannot open: {e}")),
    }
    if scope.is_ok() && sensors::ALL.iter().all(|s| kernel.attached(s)) {
        match sees_exec(&mut kernel, &cg).await {
            Ok(()) => r.line(
                Level::Ok,
                "end to end",
                "an exec inside the test cgroup went through ring reader, decode, context and \
                 output",
            ),
            Err(e) => r.line(Level::Fail, "end to end", &e),
        }
    }
    // Block mode: its allowlist maps take an entry and freeze (the doctor's test cgroup only;
    // the hooks are the net sensor's, attached above). Watch mode works without it.
    if kernel.attached(sensors::ALL[monitor_common::sensors::NET as usize]) {
        let loopback = crate::kernel::egress::Allow {
            net: "127.0.0.0/8".parse().expect("a network"),
            port: None,
        };
        // The DNS proxy's maps too: its redirect set and frozen, one destination opened.
        let proxy = crate::kernel::egress::ProxySetup {
            addr: std::net::Ipv4Addr::new(127, 53, 0, 1),
            port: 53,
            resolvers: vec![std::net::Ipv4Addr::new(127, 0, 0, 53).into()],
            upstream: vec![(std::net::Ipv4Addr::new(127, 0, 0, 53), 5353).into()],
        };
        let opened = kernel
            .block_egress(&[loopback], Some(&proxy))
            .map_err(anyhow::Error::from)
            .and_then(|(_, opener)| {
                opener
                    .ok_or_else(|| anyhow::anyhow!("no opener"))?
                    .open("10.200.0.1".parse().expect("an address"), Some(443))
                    .map_err(anyhow::Error::msg)
            })
            .and_then(|()| {
                // The credential guard's map: one entry (an identity no file has), frozen.
                kernel
                    .guard_files(&[(0, 0, vec!["aws".into()])])
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            });
        match opened {
            Ok(()) => r.line(
                Level::Ok,
                "block mode",
                "the egress allowlist, the DNS proxy's redirect and the credential guard were \
                 written and frozen, and an answer's address could be opened; the connect and \
                 sendmsg hooks can refuse and redirect (--block, mode: block)",
            ),
            Err(e) => r.line(
                Level::Warn,
                "block mode",
                &format!("not available here ({e:#}); watch mode is not affected"),
            ),
        }
    }
    // The read summary's switch: written and frozen (run mode turns it on unless --all-reads).
    if kernel.attached(sensors::ALL[monitor_common::sensors::FILE as usize]) {
        match kernel.summarize_reads() {
            Ok(s) if !s.tripped() => r.line(
                Level::Ok,
                "read summary",
                "reads of system directories can be counted per process in the kernel \
                 (--all-reads lists them)",
            ),
            Ok(_) => r.line(
                Level::Warn,
                "read summary",
                "the switch reads as tripped at start",
            ),
            Err(e) => r.line(
                Level::Warn,
                "read summary",
                &format!("not available here ({e}); every read is reported"),
            ),
        }
    }
    drop(kernel);
    finish(r, Some(cg))
}

/// An error with its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn finish(mut r: Report, cg: Option<RunCgroup>) -> i32 {
    if let Some(mut cg) = cg
        && let Err(e) = cg.remove()
    {
        r.line(Level::Warn, "run cgroup", &format!("could not remove: {e}"));
    }
    if r.failed {
        crate::outln!("buildwatch run cannot work here: fix the FAIL lines above");
        1
    } else {
        crate::outln!("buildwatch run can work here");
        0
    }
}

/// Start /bin/true in the cgroup and wait for its exec event to come out of the pipeline a
/// run uses (ring reader → decode → context → detect → bus → a sink).
async fn sees_exec(kernel: &mut loader::Kernel, cg: &RunCgroup) -> Result<(), String> {
    let ring = kernel.take_events().map_err(|e| e.to_string())?;
    let counters = kernel.take_counters().map_err(|e| e.to_string())?;
    let setup = config::setup(&PolicyArgs::default(), Path::new("/"))?;
    let (tx, rx) = mpsc::channel();
    let mut bus = Bus::new();
    bus.add("doctor", Format::JsonLines, Box::new(Channel(tx)));
    let bus = Arc::new(bus);
    let pipeline = Pipeline::start(Analyzer::new(setup.rules, setup.policy), bus.clone(), true)
        .map_err(|e| e.to_string())?;
    let reader = Reader::start(ring, counters, pipeline.downstream()).map_err(|e| e.to_string())?;
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
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        if let Ok(batch) = rx.recv_timeout(Duration::from_millis(50)) {
            seen = batch.split(|&b| b == b'\n').any(|line| {
                let ev: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
                ev["kind"] == "exec" && ev["exec"]["path"] == "/bin/true"
            });
        }
    }
    reader.stop();
    pipeline.finish();
    bus.close(|_| true, Instant::now() + Duration::from_secs(1));
    if seen {
        Ok(())
    } else {
        Err("no exec event came out of the pipeline within 2 s".into())
    }
}
