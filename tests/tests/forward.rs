//! Forwarding to a real rsyslog (Debian's, with gnutls) over RFC 5425 TLS on loopback, with a
//! CA the test makes: records survive the receiver going away and coming back, and a
//! certificate that does not check out sends nothing.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use buildwatch_tests::{agent_support::*, forward_support::*, *};

/// rsyslogd in the foreground, receiving syslog over TLS on a loopback port into `out`.
struct Rsyslog {
    child: Option<Child>,
    conf: PathBuf,
    port: u16,
}

impl Rsyslog {
    fn start(dir: &Path, ca_dir: &Path, port: u16, out: &Path) -> Self {
        let work = dir.join("rsyslog-work");
        fs::create_dir_all(&work).unwrap();
        let conf = dir.join("rsyslog.conf");
        fs::write(&conf, rsyslog_conf(&work, ca_dir, port, out)).unwrap();
        let mut r = Self {
            child: None,
            conf,
            port,
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let pid = self.conf.with_extension("pid");
        let _ = fs::remove_file(&pid);
        let child = Command::new("/usr/sbin/rsyslogd")
            .args(["-n", "-f"])
            .arg(&self.conf)
            .arg("-i")
            .arg(&pid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd (scripts/setup.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "rsyslogd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.down();
    }
}

/// Record id → how often it arrived.
fn received_ids(out: &Path) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for l in fs::read_to_string(out).unwrap_or_default().lines() {
        if let Some(rest) = l.split("[buildwatch@32473 id=\"").nth(1) {
            let id = rest.split('"').next().unwrap().to_owned();
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

#[test]
fn syslog_over_tls_delivers_everything_across_a_receiver_restart() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("fwd-syslog");
    let ca = make_ca(&dir.join("ca"), "good");
    let port = free_port();
    let received = dir.join("received.log");
    let mut rsyslog = Rsyslog::start(dir.path(), &dir.join("ca"), port, &received);
    let base = format!("bw-fwd-{}", std::process::id());
    let svc = TestCgroup::new(&format!("{base}/app.service"));
    let copy = dir.join("copy.jsonl");
    let mut agent = Agent::start(
        &dir,
        &format!(
            "scope:\n  - \"{base}/*\"\nlisten: 127.0.0.1:0\noutputs:\n  - type: syslog\n    address: 127.0.0.1:{port}\n    server_name: localhost\n    ca: {}\n    spool: {}\n    records: [events]\n    events: [exec]\n  - type: file\n    path: {}\n    records: [events]\n    events: [exec]\n",
            ca.display(),
            dir.join("spool").display(),
            copy.display()
        ),
    );
    // About 300 execs over 3 s; the receiver is down for a second in the middle.
    let loader = {
        let procs = svc.0.join("cgroup.procs");
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}; i=0; while [ $i -lt 300 ]; do /bin/true bw-fwd-$i; sleep 0.01; i=$((i+1)); done",
                procs.display()
            ))
            .spawn()
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(1000));
    rsyslog.down();
    std::thread::sleep(Duration::from_millis(1200));
    rsyslog.up();
    let mut loader = loader;
    loader.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.stop(), Some(0), "{:#?}", agent.seen);
    rsyslog.down();
    // Every record the agent wrote to its file arrived, by id, duplicates bounded.
    let sent = fs::read_to_string(&copy).unwrap().lines().count();
    let ids = received_ids(&received);
    assert!(sent >= 300, "{sent} execs written");
    assert_eq!(ids.len(), sent, "unique ids received vs records written");
    let dups: u32 = ids.values().map(|n| n - 1).sum();
    eprintln!(
        "{sent} records, {dups} duplicates; the agent said: {:#?}",
        agent.seen
    );
    assert!(
        agent.seen.iter().any(|l| l.contains("syslog 127.0.0.1")),
        "the receiver was never found down: {:#?}",
        agent.seen
    );
    assert!((dups as usize) < sent, "{dups} duplicates of {sent}");
    // The spool is empty: everything was acknowledged.
    assert_eq!(spooled_bytes(&dir.join("spool")), 0);
}

#[test]
fn a_wrong_certificate_sends_nothing_and_says_why() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("fwd-badcert");
    make_ca(&dir.join("ca"), "good");
    let wrong = make_ca(&dir.join("other"), "other");
    let port = free_port();
    let received = dir.join("received.log");
    let _rsyslog = Rsyslog::start(dir.path(), &dir.join("ca"), port, &received);
    let base = format!("bw-fwd-b{}", std::process::id());
    let svc = TestCgroup::new(&format!("{base}/app.service"));
    let mut agent = Agent::start(
        &dir,
        &format!(
            "scope:\n  - \"{base}/*\"\nlisten: 127.0.0.1:0\noutputs:\n  - type: syslog\n    address: 127.0.0.1:{port}\n    server_name: localhost\n    ca: {}\n    spool: {}\n    records: [events]\n",
            wrong.display(),
            dir.join("spool").display()
        ),
    );
    svc.run("/bin/true bw-secret-marker");
    let line = agent.wait_line("TLS handshake with 127.0.0.1");
    assert!(line.contains("records stay in the spool"), "{line}");
    // /metrics says what waits, and for how long.
    let output = format!("{{output=\"syslog 127.0.0.1:{port}\"}}");
    eventually("spooled records in /metrics", || {
        metric(
            &agent.scrape(),
            &format!("buildwatch_spool_records{output}"),
        ) > 0.0
    });
    let scrape = agent.scrape();
    assert!(
        metric(&scrape, &format!("buildwatch_spool_bytes{output}")) > 0.0,
        "{scrape}"
    );
    assert_eq!(
        metric(
            &scrape,
            &format!("buildwatch_forward_delivered_total{output}")
        ),
        0.0
    );
    assert!(
        scrape.contains(&format!("buildwatch_spool_oldest_age_seconds{output}")),
        "{scrape}"
    );
    assert_eq!(agent.stop(), Some(0));
    let got = fs::read_to_string(&received).unwrap_or_default();
    assert!(
        !got.contains("bw-secret-marker"),
        "sent in the clear: {got}"
    );
    assert!(received_ids(&received).is_empty());
    // Kept for a later delivery.
    assert!(spooled_bytes(&dir.join("spool")) > 0);
}

/// The receiver is down; the agent spools, and is SIGKILLed (no flush, no clean close). Started
/// again with the receiver up, it delivers everything the first run spooled.
#[test]
fn a_killed_agent_delivers_its_spool_when_started_again() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("fwd-crash");
    let ca = make_ca(&dir.join("ca"), "good");
    let port = free_port();
    let received = dir.join("received.log");
    let base = format!("bw-fwd-k{}", std::process::id());
    let svc = TestCgroup::new(&format!("{base}/app.service"));
    let copy = dir.join("copy.jsonl");
    let config = format!(
        "scope:\n  - \"{base}/*\"\nlisten: 127.0.0.1:0\noutputs:\n  - type: syslog\n    address: 127.0.0.1:{port}\n    server_name: localhost\n    ca: {}\n    spool: {}\n    records: [events]\n    events: [exec]\n  - type: file\n    path: {}\n    records: [events]\n    events: [exec]\n",
        ca.display(),
        dir.join("spool").display(),
        copy.display()
    );
    let mut agent = Agent::start(&dir, &config);
    svc.run("i=0; while [ $i -lt 100 ]; do /bin/true bw-crash-$i; i=$((i+1)); done");
    eventually("the records written", || {
        fs::read_to_string(&copy)
            .unwrap_or_default()
            .lines()
            .count()
            >= 100
    });
    std::thread::sleep(Duration::from_millis(500));
    agent.kill();
    let written = fs::read_to_string(&copy).unwrap().lines().count();
    assert!(received_ids(&received).is_empty(), "the receiver was down");

    let _rsyslog = Rsyslog::start(dir.path(), &dir.join("ca"), port, &received);
    let mut again = Agent::start(&dir, &config);
    eventually("everything delivered", || {
        received_ids(&received).len() >= written
    });
    assert_eq!(again.stop(), Some(0));
    assert_eq!(received_ids(&received).len(), written);
}
