//! A real resolver for the DNS and block-mode tests: dnsmasq serving a test zone on loopback
//! addresses (nothing is forwarded: it has no upstream), and a mount namespace whose
//! /etc/resolv.conf names it, so the machine's own resolver is never asked.

use std::{
    fs,
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::TempDir;

/// The resolver resolv.conf names, and another one it does not.
pub const RESOLVER: &str = "127.0.0.77";
pub const ROGUE: &str = "127.0.0.78";
/// Where svc.test names point (a listener there accepts the test's connects).
pub const SVC_ADDR: &str = "127.0.0.5";

/// The tests share the resolver's addresses: one dnsmasq at a time.
static RESOLVER_LOCK: Mutex<()> = Mutex::new(());

pub struct Dnsmasq(Child, #[allow(dead_code)] MutexGuard<'static, ()>);

impl Dnsmasq {
    pub fn start(tmp: &TempDir) -> Self {
        let guard = RESOLVER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let log = fs::File::create(tmp.join("dnsmasq.log")).unwrap();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--log-queries",
                "--log-facility=-",
            ])
            .arg(format!("--pid-file={}", tmp.join("dnsmasq.pid").display()))
            .arg(format!("--listen-address={RESOLVER}"))
            .arg(format!("--listen-address={ROGUE}"))
            .arg("--listen-address=::1")
            .arg(format!("--address=/svc.test/{SVC_ADDR}"))
            .arg("--address=/svc.test/::1")
            // Everything under exfil.test is NXDOMAIN: the queries still leave the process.
            .arg("--address=/exfil.test/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dnsmasq (apt-get install dnsmasq-base)");
        let mut d = Dnsmasq(child, guard);
        // Ready when it answers over UDP (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = Command::new("dig")
                .args([
                    "+short",
                    "+time=1",
                    "+tries=1",
                    &format!("@{RESOLVER}"),
                    "ready.svc.test",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(SVC_ADDR));
            if ok {
                return d;
            }
            if let Ok(Some(status)) = d.0.try_wait() {
                panic!(
                    "dnsmasq exited ({status}): {}",
                    fs::read_to_string(tmp.join("dnsmasq.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not come up: {}",
                fs::read_to_string(tmp.join("dnsmasq.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `unshare -m` with /etc/resolv.conf bind-mounted from the test's file.
pub fn resolv_ns(tmp: &TempDir) -> Vec<String> {
    let conf = tmp.join("resolv.conf");
    fs::write(
        &conf,
        format!("nameserver {RESOLVER}\nnameserver ::1\noptions timeout:1 attempts:1\n"),
    )
    .unwrap();
    vec![
        "unshare".into(),
        "-m".into(),
        "sh".into(),
        "-c".into(),
        r#"mount --bind "$1" /etc/resolv.conf && shift && exec "$@""#.into(),
        "sh".into(),
        conf.display().to_string(),
    ]
}
