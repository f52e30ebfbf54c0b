//! The watched code acting against buildwatch, as root in a CI job can: bpf(2) calls are
//! events and critical findings, reported before they take effect, and the loss counters
//! cannot be rewritten through bpf(2).

use buildwatch_tests::*;

const TRIGGER: &str = env!("CARGO_BIN_EXE_bw-trigger");

/// Root in the run finds buildwatch's loss counters and writes zeros into them (how a flood
/// that lost a credential read would be hidden from `fail_on_lost`): the write is refused,
/// and the bpf(2) calls are a critical finding.
#[test]
fn loss_counters_cannot_be_zeroed_and_bpf_calls_are_critical() {
    if !require_bpf() {
        return;
    }
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
