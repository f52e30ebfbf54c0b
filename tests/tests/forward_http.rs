//! A CI run forwarding to SIEM HTTP receivers: Elastic `_bulk`, Splunk HEC with indexer
//! acknowledgement, OTLP/HTTP logs and an NDJSON webhook, over TLS with a CA the test makes.
//! The receivers are tests/support/siem_standin.py, a stand-in: no Elasticsearch, Splunk or
//! OpenTelemetry collector can run on this machine. ECS and OCSF records are checked by
//! tests/support/schemas/validate.py (OCSF against the schema pydantic-ocsf ships; ECS
//! against a field table, as no package ships ECS's schema).

use std::{collections::BTreeSet, fs, path::Path};

use buildwatch_tests::{agent_support::credentials, forward_support::*, *};

const TOKEN: &str = "bw-test-token-4f1c";

fn report(dir: &TempDir) -> Value {
    serde_json::from_str(&fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

fn forwarding<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["forwarding"]
        .as_array()
        .unwrap_or_else(|| panic!("no forwarding in the report: {report:#}"))
        .iter()
        .find(|f| f["name"].as_str().unwrap_or("").starts_with(kind))
        .unwrap_or_else(|| panic!("no {kind} output in {:#}", report["forwarding"]))
}

fn venv_python() -> std::path::PathBuf {
    tools_dir().join("venv/bin/python")
}

/// One output entry of a policy.
fn entry(kind: &str, url: &str, dir: &TempDir, extra: &str) -> String {
    format!(
        "  - type: {kind}\n    url: {url}\n    spool: {}\n{extra}",
        dir.join(&format!("spool-{kind}")).display()
    )
}

#[test]
fn a_run_forwards_its_findings_and_summary_to_every_http_output_over_tls() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("fwd-http");
    let ca = make_ca(&dir.join("ca"), "siem");
    let standin = Standin::start(
        dir.path(),
        Some((&dir.join("ca/server.pem"), &dir.join("ca/server.key"))),
        TOKEN,
    );
    fs::write(dir.join("hec.token"), format!("{TOKEN}\n")).unwrap();
    let url = format!("https://127.0.0.1:{}", standin.port);
    let tls = format!("    ca: {}\n    server_name: localhost\n", ca.display());
    let policy = dir.join("policy.yaml");
    fs::write(
        &policy,
        format!(
            "fail_on: never\nforward_wait_secs: 20\noutputs:\n{}{}{}{}",
            entry("elastic", &url, &dir, &format!("{tls}    index: bw-test\n")),
            entry(
                "splunk_hec",
                &url,
                &dir,
                &format!(
                    "{tls}    token_file: {}\n    ack: true\n    format: ocsf\n",
                    dir.join("hec.token").display()
                )
            ),
            entry("otlp", &url, &dir, &format!("{tls}    format: ocsf\n")),
            entry(
                "webhook",
                &format!("{url}/webhook"),
                &dir,
                &format!("{tls}    records: [findings]\n")
            ),
        ),
    )
    .unwrap();
    let creds = credentials(&dir);
    // Something of each OCSF class and ECS category: a process, a credential read, a refused
    // connection on loopback, a unix socket connection (no address: OCSF still needs an
    // endpoint), and a DNS query to a loopback address nobody serves.
    let py = dir.join("net.py");
    fs::write(
        &py,
        format!(
            "import socket\n\
             s = socket.socket(); s.settimeout(0.5); s.connect_ex(('127.0.0.1', 9)); s.close()\n\
             x = socket.socket(socket.AF_UNIX); x.connect_ex('{}'); x.close()\n\
             q = b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00'\n\
             q += b'\\x03bw1\\x07example\\x04test\\x00\\x00\\x01\\x00\\x01'\n\
             u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             u.sendto(q, ('127.0.0.79', 53))\n",
            dir.join("nobody.sock").display()
        ),
    )
    .unwrap();
    let report_path = dir.join("report.json");
    let r = run_watched(
        &dir,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--report",
            report_path.to_str().unwrap(),
        ],
        &[
            "sh",
            "-c",
            &format!(
                "cat {} > /dev/null; python3 {}",
                creds.display(),
                py.display()
            ),
        ],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    let rep = report(&dir);
    let rule = rep["findings"][0]["rule"]
        .as_str()
        .expect("a finding")
        .to_owned();
    let stats = standin.stats();
    // Every output delivered everything it was given, nothing waits, nothing was refused.
    for (kind, endpoint) in [
        ("elastic", "bulk"),
        ("splunk_hec", "hec"),
        ("otlp", "otlp"),
        ("webhook", "webhook"),
    ] {
        let f = forwarding(&rep, kind);
        assert_eq!(f["pending"], 0, "{kind}: {f:#}");
        assert_eq!(f["rejected"], 0, "{kind}: {f:#}");
        assert!(f["delivered"].as_u64().unwrap() > 0, "{kind}: {f:#}");
        assert_eq!(
            stats[endpoint]["unique"], f["delivered"],
            "{kind}: ids received vs delivered: {:#}",
            stats[endpoint]
        );
    }
    // The webhook took findings only: the findings and the run summary.
    assert_eq!(
        forwarding(&rep, "webhook")["delivered"].as_u64().unwrap(),
        rep["findings"].as_array().unwrap().len() as u64 + 1
    );
    // ECS documents from the bulk endpoint: the finding as an alert, the run's summary, the
    // events; every one conforms.
    let docs = standin.records("bulk");
    assert!(
        docs.iter()
            .any(|d| d["event"]["kind"] == "alert" && d["rule"]["id"] == rule.as_str()),
        "no alert for {rule}"
    );
    assert!(docs.iter().any(|d| d["event"]["action"] == "run_summary"));
    assert!(
        docs.iter()
            .any(|d| d["event"]["category"][0] == "process" && d["process"]["args"].is_array())
    );
    assert!(
        docs.iter().any(|d| d["event"]["category"][0] == "network"
            && d["destination"]["port"] == 9
            && d["destination"]["ip"] == "127.0.0.1"),
        "no ECS connection"
    );
    assert!(
        docs.iter()
            .any(|d| d["dns"]["question"]["name"] == "bw1.example.test"
                && d["dns"]["question"]["registered_domain"] == "example.test"
                && d["dns"]["question"]["subdomain"] == "bw1"),
        "no ECS DNS query"
    );
    validate_schema(Path::new("python3"), "ecs", &docs, &dir.join("ecs.jsonl"));
    // OCSF from HEC (the `event` of each posted object) and from OTLP (each log record's
    // body): the finding as a Detection Finding, and every record conforms.
    let hec: Vec<Value> = standin
        .records("hec")
        .into_iter()
        .map(|r| r["event"].clone())
        .collect();
    assert!(
        hec.iter()
            .any(|e| e["class_uid"] == 2004
                && e["finding_info"]["analytic"]["name"] == rule.as_str())
    );
    assert!(
        hec.iter()
            .any(|e| e["metadata"]["log_name"] == "run_summary")
    );
    // All five classes are there, and so checked below.
    let classes: BTreeSet<u64> = hec.iter().filter_map(|e| e["class_uid"].as_u64()).collect();
    assert_eq!(
        classes,
        BTreeSet::from([1001, 1007, 2004, 4001, 4003]),
        "OCSF classes sent"
    );
    assert!(
        hec.iter().any(|e| e["class_uid"] == 4001
            && e["dst_endpoint"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("/nobody.sock"))),
        "no OCSF unix socket connection"
    );
    assert!(hec.iter().any(|e| e["class_uid"] == 4003
        && e["query"]["hostname"] == "bw1.example.test"
        && e["dst_endpoint"]["ip"] == "127.0.0.79"));
    let otlp: Vec<Value> = standin
        .records("otlp")
        .into_iter()
        .map(|r| serde_json::from_str(r["body"]["stringValue"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(otlp.len(), hec.len());
    validate_schema(&venv_python(), "ocsf", &hec, &dir.join("ocsf-hec.jsonl"));
    validate_schema(&venv_python(), "ocsf", &otlp, &dir.join("ocsf-otlp.jsonl"));
    // The token went where it belongs and nowhere else.
    let h = standin.headers("hec");
    assert_eq!(h["authorization"]["matched"], true, "{h:#}");
    assert_eq!(h["authorization"]["scheme"], "Splunk", "{h:#}");
    assert!(
        h["headers"]["x-splunk-request-channel"].is_string(),
        "{h:#}"
    );
    let everything = format!(
        "{}{}{}",
        r.stderr(),
        r.stdout(),
        fs::read_to_string(&report_path).unwrap()
    );
    assert!(!everything.contains(TOKEN), "the token leaked");
    // The terminal says what was delivered.
    assert!(
        r.stderr()
            .contains("forwarding to splunk_hec https://127.0.0.1"),
        "{}",
        r.stderr()
    );
}

#[test]
fn failing_receivers_lose_nothing() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("fwd-faults");
    let standin = Standin::start(dir.path(), None, TOKEN);
    // What goes wrong, in order, per receiver: refusals, per-item failures, a receiver that
    // accepts and then closes without answering, an answer slower than the client waits, an
    // acknowledgement that never comes, a partial rejection.
    standin.faults(
        "bulk",
        serde_json::json!([{"status": 503}, {"item_fail": [0, 3], "status": 429}, {"close": true}]),
    );
    standin.faults(
        "hec",
        serde_json::json!([{"status": 503}, {"ack_never": true}]),
    );
    standin.faults(
        "otlp",
        serde_json::json!([{"status": 429}, {"partial_reject": 2}]),
    );
    standin.faults(
        "webhook",
        serde_json::json!([{"hang": 3}, {"close": "reset"}]),
    );
    fs::write(dir.join("hec.token"), TOKEN).unwrap();
    let url = format!("http://127.0.0.1:{}", standin.port);
    let policy = dir.join("policy.yaml");
    fs::write(
        &policy,
        format!(
            "fail_on: never\nforward_wait_secs: 40\noutputs:\n{}{}{}{}",
            entry("elastic", &url, &dir, "    batch: 50\n"),
            entry(
                "splunk_hec",
                &url,
                &dir,
                &format!(
                    "    token_file: {}\n    ack: true\n    ack_timeout_secs: 2\n",
                    dir.join("hec.token").display()
                )
            ),
            entry("otlp", &url, &dir, ""),
            entry(
                "webhook",
                &format!("{url}/webhook"),
                &dir,
                "    timeout_secs: 1\n"
            ),
        ),
    )
    .unwrap();
    let report_path = dir.join("report.json");
    let r = run_watched(
        &dir,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--report",
            report_path.to_str().unwrap(),
        ],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20 ]; do /bin/true; i=$((i+1)); done",
        ],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    let rep = report(&dir);
    let stats = standin.stats();
    eprintln!("{:#}\n{}", rep["forwarding"], r.stderr());
    // Every fault was met.
    for (endpoint, n) in [("bulk", 3), ("hec", 2), ("otlp", 2), ("webhook", 2)] {
        assert_eq!(
            stats[endpoint]["faults_served"], n,
            "{endpoint}: {:#}",
            stats[endpoint]
        );
    }
    // All four outputs got the same records; each delivered all of them (OTLP: all but the
    // two the collector rejected, which are counted and kept), and nothing waits.
    let webhook = forwarding(&rep, "webhook")["delivered"].as_u64().unwrap();
    assert!(webhook > 100, "{webhook}");
    for (kind, endpoint, rejected) in [
        ("elastic", "bulk", 0),
        ("splunk_hec", "hec", 0),
        ("otlp", "otlp", 2),
        ("webhook", "webhook", 0),
    ] {
        let f = forwarding(&rep, kind);
        assert_eq!(f["pending"], 0, "{kind}: {f:#}");
        assert_eq!(f["rejected"], rejected, "{kind}: {f:#}");
        assert!(
            f["retries"].as_u64().unwrap() >= 1,
            "{kind} never retried: {f:#}"
        );
        assert_eq!(
            f["delivered"].as_u64().unwrap() + rejected,
            webhook,
            "{kind}: {f:#}"
        );
        // Unique ids at the receiver: everything delivered, duplicates only from resends.
        assert_eq!(
            stats[endpoint]["unique"], f["delivered"],
            "{kind}: {:#}",
            stats[endpoint]
        );
    }
    // The bulk resend after the close found its records already there: conflicts, which count
    // as delivered, not duplicates.
    assert!(
        stats["bulk"]["conflicts"].as_u64().unwrap() > 0,
        "{:#}",
        stats["bulk"]
    );
    assert_eq!(stats["bulk"]["duplicates"], 0);
    // The rejected records are kept with the collector's reason.
    let rejected = lines(&dir.join("spool-otlp/rejected.jsonl"));
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected[0].contains("\"reason\""), "{}", rejected[0]);
}

#[test]
fn what_a_run_could_not_deliver_waits_for_the_next_run_and_a_full_spool_leaves_a_gap() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("fwd-later");
    let spool = dir.join("spool");
    // Nothing listens on this port: the receiver is down for the first run.
    let down = free_port();
    let policy = |port: u16| {
        let p = dir.join(&format!("policy-{port}.yaml"));
        fs::write(
            &p,
            format!(
                "fail_on: never\nforward_wait_secs: 2\noutputs:\n  - type: webhook\n    url: http://127.0.0.1:{port}/webhook\n    spool: {}\n    spool_max_bytes: 1048576\n",
                spool.display()
            ),
        )
        .unwrap();
        p
    };
    let report_path = dir.join("report.json");
    let first = run_watched(
        &dir,
        &[
            "--policy",
            policy(down).to_str().unwrap(),
            "--report",
            report_path.to_str().unwrap(),
        ],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 600 ]; do /bin/true; i=$((i+1)); done",
        ],
    );
    assert_eq!(first.code(), Some(0), "{}", first.stderr());
    let rep = report(&dir);
    let f = forwarding(&rep, "webhook").clone();
    let waiting = f["pending"].as_u64().unwrap();
    let dropped = f["dropped_full"].as_u64().unwrap();
    assert_eq!(f["delivered"], 0, "{f:#}");
    assert!(waiting > 1000, "{f:#}");
    assert!(dropped > 0, "the 1 MiB spool never filled: {f:#}");
    assert!(
        f["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("connecting"),
        "{f:#}"
    );
    assert!(
        first
            .stderr()
            .contains(&format!("{waiting} waiting in the spool")),
        "{}",
        first.stderr()
    );
    // The receiver is up for the next run, which delivers what the first left, then its own.
    let standin = Standin::start(dir.path(), None, TOKEN);
    let second = run_watched(
        &dir,
        &[
            "--policy",
            policy(standin.port).to_str().unwrap(),
            "--report",
            report_path.to_str().unwrap(),
        ],
        &["true"],
    );
    assert_eq!(second.code(), Some(0), "{}", second.stderr());
    let rep2 = report(&dir);
    let f2 = forwarding(&rep2, "webhook");
    assert_eq!(f2["pending"], 0, "{f2:#}");
    let got = standin.records("webhook");
    assert!(got.len() as u64 > waiting, "{} <= {waiting}", got.len());
    assert_eq!(f2["delivered"].as_u64().unwrap(), got.len() as u64);
    // Each hole is announced by a gap record saying how many went missing (the first run's
    // holes, and the second's if it found the spool still full when it began): together they
    // account for every record either run dropped.
    let gaps: Vec<u64> = got
        .iter()
        .filter(|g| g["kind"] == "gap")
        .map(|g| g["dropped"].as_u64().unwrap())
        .collect();
    assert_eq!(
        gaps.iter().sum::<u64>(),
        dropped + f2["dropped_full"].as_u64().unwrap(),
        "{gaps:?}"
    );
    // A run's summary is never refused, full spool or not.
    let summaries = got.iter().filter(|g| g["kind"] == "run_summary").count();
    assert_eq!(summaries, 2, "both runs' summaries");
    let ids: BTreeSet<&str> = got.iter().filter_map(|g| g["id"].as_str()).collect();
    assert_eq!(ids.len(), got.len(), "every record has its own stable id");
}
