//! `buildwatch agent` under real BPF: cgroups the test creates stand in for a systemd service
//! and a container; the agent watches the ones its configuration names, follows new ones,
//! reloads, serves metrics (scraped with real curl), rotates its file without losing a line,
//! and flushes on SIGTERM. Network: loopback only.

use std::{fs, path::Path, process::Command, time::Duration};

use buildwatch_tests::{agent_support::*, *};

#[test]
fn watched_cgroups_are_named_and_others_never_appear() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("agent-scope");
    let base = format!("bw-agent-{}", std::process::id());
    let svc = TestCgroup::new(&format!("{base}/watched.slice/app.service"));
    let ctr_id = "c0ffee".repeat(10) + "abcd";
    let ctr = TestCgroup::new(&format!("{base}/watched.slice/docker-{ctr_id}.scope"));
    let other = TestCgroup::new(&format!("{base}/other.slice/busy.service"));
    let creds = credentials(&dir);
    let out = dir.join("agent.jsonl");
    let mut agent = Agent::start(
        &dir,
        &format!(
            "scope:\n  - \"{base}/watched.slice/*\"\nlisten: 127.0.0.1:0\noutputs:\n  - type: file\n    path: {}\n",
            out.display()
        ),
    );
    let before = agent.scrape();
    svc.run(&format!("cat {} > /dev/null", creds.display()));
    ctr.run(&format!("cat {} > /dev/null; true", creds.display()));
    // Busy and stealing, but in a cgroup the configuration does not name.
    other.run(&format!(
        "i=0; while [ $i -lt 200 ]; do cat {} > /dev/null; i=$((i+1)); done",
        creds.display()
    ));
    // A matching cgroup made after the agent started is watched within a second: the kernel's
    // doorbell rang (the agent's walk without one comes every 30 s).
    let late = TestCgroup::new(&format!("{base}/watched.slice/late.service"));
    std::thread::sleep(Duration::from_millis(1200));
    late.run(&format!("cat {} > /dev/null", creds.display()));
    eventually("three findings", || findings(&lines_of(&out)).len() >= 3);
    // And one removed leaves the scope map as quickly.
    let watching = metric(&agent.scrape(), "buildwatch_cgroups_watched");
    assert_eq!(watching, 3.0, "{:#?}", agent.seen);
    drop(late);
    let gone = std::time::Instant::now();
    eventually("the removed cgroup unwatched", || {
        metric(&agent.scrape(), "buildwatch_cgroups_watched") == 2.0
    });
    assert!(
        gone.elapsed() < Duration::from_secs(3),
        "{:?}",
        gone.elapsed()
    );
    // The metrics follow within a snapshot's second.
    let mut after = String::new();
    eventually("the findings in the metrics", || {
        after = agent.scrape();
        metric(
            &after,
            "buildwatch_findings_total{rule=\"sensitive-file-read\",severity=\"high\"}",
        ) >= 3.0
    });
    assert_eq!(agent.stop(), Some(0), "{:#?}", agent.seen);

    let lines = lines_of(&out);
    let found = findings(&lines);
    let by_path = |p: &str| {
        found
            .iter()
            .find(|f| f["cgroup"]["path"].as_str().is_some_and(|c| c.ends_with(p)))
            .unwrap_or_else(|| panic!("no finding in {p}: {found:#?}"))
    };
    let s = by_path("/watched.slice/app.service");
    assert_eq!(s["rule"], "sensitive-file-read");
    assert_eq!(s["cgroup"]["kind"], "systemd-unit");
    assert_eq!(s["cgroup"]["id"], "app.service");
    let c = by_path(&format!("/docker-{ctr_id}.scope"));
    assert_eq!(c["cgroup"]["kind"], "container");
    assert_eq!(c["cgroup"]["id"], ctr_id.as_str());
    by_path("/watched.slice/late.service");
    // Nothing from the unwatched cgroup: no finding, no event.
    assert!(
        !lines.iter().any(|l| l["cgroup"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("other.slice"))
            || l["finding"]["cgroup"]["path"]
                .as_str()
                .is_some_and(|p| p.contains("other.slice"))),
        "the unwatched cgroup appeared"
    );
    // The counters moved with what the test drove.
    assert!(
        metric(
            &after,
            "buildwatch_events_total{sensor=\"file\",kind=\"open\"}"
        ) > metric(
            &before,
            "buildwatch_events_total{sensor=\"file\",kind=\"open\"}"
        )
    );
    assert!(
        metric(
            &after,
            "buildwatch_findings_total{rule=\"sensitive-file-read\",severity=\"high\"}"
        ) >= 3.0,
        "{after}"
    );
    assert_eq!(metric(&after, "buildwatch_cgroups_watched"), 2.0, "{after}");
    assert!(after.contains("process_start_time_seconds "), "{after}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn reload_applies_a_good_config_and_refuses_a_bad_one() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("agent-reload");
    let base = format!("bw-agent-r{}", std::process::id());
    let svc = TestCgroup::new(&format!("{base}/app.service"));
    let creds = credentials(&dir);
    let out = dir.join("agent.jsonl");
    let config = |extra: &str| {
        format!(
            "scope:\n  - \"{base}/*\"\nlisten: 127.0.0.1:0\n{extra}outputs:\n  - type: file\n    path: {}\n    records: [findings]\n",
            out.display()
        )
    };
    let mut agent = Agent::start(&dir, &config(""));
    let read = |svc: &TestCgroup| svc.run(&format!("cat {} > /dev/null", creds.display()));
    read(&svc);
    eventually("the first finding", || findings(&lines_of(&out)).len() == 1);

    // A good reload: a policy that accepts this read.
    let policy = dir.join("policy.yaml");
    fs::write(
        &policy,
        format!(
            "exceptions:\n  - rule: sensitive-file-read\n    name: test_reader\n    fields: [file.path]\n    comps: [=]\n    values: [[\"{}\"]]\n",
            creds.display()
        ),
    )
    .unwrap();
    fs::write(
        dir.join("agent.yaml"),
        config(&format!("policy: {}\n", policy.display())),
    )
    .unwrap();
    let reload = Command::new(buildwatch_bin())
        .args(["agent", "reload", "--pidfile"])
        .arg(&agent.pidfile)
        .status()
        .unwrap();
    assert!(reload.success());
    agent.wait_line("reloaded");
    std::thread::sleep(Duration::from_millis(300));
    read(&svc);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        findings(&lines_of(&out)).len(),
        1,
        "the reloaded policy accepts the read"
    );

    // A bad reload: refused with its position; the running config stays.
    fs::write(dir.join("agent.yaml"), config("scop: host\n")).unwrap();
    agent.signal(libc::SIGHUP);
    agent.wait_line("reload refused");
    agent.wait_line("agent.yaml:4:1: error: unknown key `scop`");
    let m = agent.scrape();
    assert_eq!(
        metric(&m, "buildwatch_config_reload_failures_total"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "buildwatch_config_reloads_total"), 1.0, "{m}");
    // Still the reloaded policy: accepted; and still watching: another path fires.
    read(&svc);
    let other = dir.join("home/.ssh/id_ed25519");
    fs::create_dir_all(other.parent().unwrap()).unwrap();
    fs::write(&other, "key").unwrap();
    svc.run(&format!("cat {} > /dev/null", other.display()));
    eventually("the ssh key finding", || {
        findings(&lines_of(&out)).len() == 2
    });
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn rotation_under_load_loses_no_line_and_sigterm_flushes() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("agent-rotate");
    let base = format!("bw-agent-o{}", std::process::id());
    let svc = TestCgroup::new(&format!("{base}/load.service"));
    let out = dir.join("agent.jsonl");
    let mut agent = Agent::start(
        &dir,
        &format!(
            "scope:\n  - \"{base}/*\"\nlisten: 127.0.0.1:0\noutputs:\n  - type: file\n    path: {}\n    records: [events]\n    max_bytes: 1048576\n    keep: 1000\n",
            out.display()
        ),
    );
    // About 25,000 events (300 cats and the libraries they open): several rotations of a 1 MiB file.
    svc.run("i=0; while [ $i -lt 300 ]; do cat /etc/hostname /etc/hostname /etc/hostname > /dev/null; i=$((i+1)); done");
    // Every event the agent judged is a line: once the counts settle, they are the lines'.
    let total = |m: &str| -> f64 {
        m.lines()
            .filter(|l| l.starts_with("buildwatch_events_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let mut m = agent.scrape();
    eventually("the counts to settle", || {
        std::thread::sleep(Duration::from_millis(1100));
        let next = agent.scrape();
        let settled = total(&next) == total(&m);
        m = next;
        settled
    });
    let judged = total(&m) as usize;
    assert_eq!(lines_of(&out).len(), judged, "{m}");
    assert_eq!(
        metric(
            &m,
            &format!(
                "buildwatch_sink_records_total{{sink=\"{}\",outcome=\"dropped\"}}",
                out.display()
            )
        ),
        0.0,
        "{m}"
    );
    // The last thing the service does, just before SIGTERM: it must be in the file.
    svc.run("cat /etc/hostname > /dev/null; /bin/true bw-marker-last");
    assert_eq!(agent.stop(), Some(0), "{:#?}", agent.seen);
    let lines = lines_of(&out);
    let rotated = rotated(&out).len();
    assert!(rotated >= 3, "{rotated} rotations");
    assert!(lines.len() > 10_000, "{} lines", lines.len());
    // Every event written is there once: sequence numbers have no gap and no repeat.
    let mut seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    let n = seqs.len() as u64;
    seqs.dedup();
    assert_eq!(seqs.len() as u64, n, "a line written twice");
    let execs: Vec<String> = lines
        .iter()
        .filter(|l| l["kind"] == "exec")
        .map(|l| l["exec"]["argv"].to_string())
        .collect();
    assert!(
        execs.iter().any(|a| a.contains("bw-marker-last")),
        "SIGTERM did not flush the last events: {} lines, last execs {:?}; {m}",
        lines.len(),
        &execs[execs.len().saturating_sub(5)..]
    );
    assert_eq!(metric(&m, "buildwatch_queue_dropped_total"), 0.0);
    assert!(
        lines.iter().all(|l| l["cgroup"]["path"]
            .as_str()
            .is_some_and(|p| p.contains(&base))),
        "every event names its cgroup"
    );
}

#[test]
fn config_check_positions_errors() {
    let dir = TempDir::new("agent-check");
    let cfg = dir.join("agent.yaml");
    fs::write(
        &cfg,
        "scope: [\"a/*\"]\noutputs:\n  - type: file\n    path: x.jsonl\n    records: [findngs]\n",
    )
    .unwrap();
    let out = Command::new(buildwatch_bin())
        .args(["agent", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("agent.yaml:5:15: error: `records` lists `findings` and/or `events`"),
        "{text}"
    );
    // The example the docs point at is valid.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agent/agent.yaml");
    let out = Command::new(buildwatch_bin())
        .args(["agent", "check"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    fs::write(&cfg, "scope: host\noutputs:\n  - type: stdout\n").unwrap();
    let out = Command::new(buildwatch_bin())
        .args(["agent", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The unit file passes systemd's own check where systemd-analyze exists; where it does not,
/// the test says so and checks what it can.
#[test]
fn the_systemd_unit_verifies() {
    let unit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd/buildwatch-agent.service");
    let text = fs::read_to_string(&unit).unwrap();
    for want in [
        "Restart=on-failure",
        "ExecReload=",
        "CapabilityBoundingSet=CAP_BPF",
        "NoNewPrivileges=yes",
    ] {
        assert!(text.contains(want), "{want}");
    }
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let out = Command::new("systemd-analyze")
                .arg("verify")
                .arg(&unit)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            // The ExecStart binary need not be installed on the test machine.
            let real: Vec<&str> = err
                .lines()
                .filter(|l| !l.contains("/usr/local/bin/buildwatch") && !l.trim().is_empty())
                .collect();
            assert!(real.is_empty(), "systemd-analyze verify: {err}");
        }
        _ => eprintln!(
            "systemd-analyze is not installed here: the unit file was checked for its key settings only"
        ),
    }
}

/// Findings are merged over a window and capped per rule and cgroup; at the window's end each
/// one seen again is rolled up with its count and what the cap kept from the file is counted,
/// and the next window starts afresh (nothing goes silent after the cap); the metrics count
/// every occurrence throughout.
#[test]
fn findings_are_windowed_and_rate_limited_without_going_silent() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("agent-window");
    let base = format!("bw-agent-w{}", std::process::id());
    let svc = TestCgroup::new(&format!("{base}/noisy.service"));
    let out = dir.join("agent.jsonl");
    let mut agent = Agent::start(
        &dir,
        &format!(
            "scope:\n  - \"{base}/*\"\nlisten: 127.0.0.1:0\nfindings:\n  window_secs: 2\n  max_per_rule: 3\noutputs:\n  - type: file\n    path: {}\n    records: [findings]\n",
            out.display()
        ),
    );
    let mut paths = Vec::new();
    for i in 0..8 {
        let c = dir.join(&format!("home{i}/.aws/credentials"));
        fs::create_dir_all(c.parent().unwrap()).unwrap();
        fs::write(&c, "x").unwrap();
        paths.push(c.display().to_string());
    }
    // One credential five times, then seven others once: 12 occurrences, 8 distinct.
    let first = &paths[0];
    svc.run(&format!(
        "for i in 1 2 3 4 5; do cat {first} > /dev/null; done; cat {} > /dev/null",
        paths[1..].join(" ")
    ));
    eventually("the window's roll-up", || {
        lines_of(&out)
            .iter()
            .any(|l| l["kind"] == "finding_rollup" && l["not_listed"].is_u64())
    });
    let lines = lines_of(&out);
    let new: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "finding").collect();
    assert_eq!(new.len(), 3, "the cap: {lines:#?}");
    let repeated = lines
        .iter()
        .find(|l| l["kind"] == "finding_rollup" && l["count"].is_u64())
        .unwrap_or_else(|| panic!("no repeat roll-up: {lines:#?}"));
    assert_eq!(repeated["count"], 5, "{repeated}");
    assert!(
        repeated["message"]
            .as_str()
            .unwrap()
            .ends_with(first.as_str())
    );
    let capped = lines
        .iter()
        .find(|l| l["kind"] == "finding_rollup" && l["not_listed"].is_u64())
        .unwrap();
    // The cat reads seven files in one process: one finding per file, three listed in all.
    assert_eq!(capped["not_listed"], 5, "{capped}");
    assert_eq!(capped["rule"], "sensitive-file-read");
    assert!(
        capped["cgroup_path"]
            .as_str()
            .unwrap()
            .ends_with("/noisy.service")
    );
    // The next window: the same read is a new finding again.
    svc.run(&format!("cat {first} > /dev/null"));
    eventually("a new finding in the next window", || {
        lines_of(&out)
            .iter()
            .filter(|l| l["kind"] == "finding")
            .count()
            == 4
    });
    let mut m = String::new();
    eventually("every occurrence in the metrics", || {
        m = agent.scrape();
        metric(
            &m,
            "buildwatch_findings_total{rule=\"sensitive-file-read\",severity=\"high\"}",
        ) >= 13.0
    });
    assert_eq!(agent.stop(), Some(0));
}

/// A scope entry can bring its own policy and severity floor: the same credential read is a
/// finding in one service and accepted (by that entry's exception) in the other; a floor of
/// critical drops a high finding in a third.
#[test]
fn scope_entries_judge_by_their_own_policy() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("agent-perscope");
    let base = format!("bw-agent-p{}", std::process::id());
    let strict = TestCgroup::new(&format!("{base}/strict.service"));
    let lenient = TestCgroup::new(&format!("{base}/deploy.service"));
    let quiet = TestCgroup::new(&format!("{base}/batch.service"));
    let creds = credentials(&dir);
    let accept = dir.join("deploy-policy.yaml");
    fs::write(
        &accept,
        format!(
            "exceptions:\n  - rule: sensitive-file-read\n    name: deploy_reads_its_key\n    fields: [file.path]\n    comps: [=]\n    values: [[\"{}\"]]\n",
            creds.display()
        ),
    )
    .unwrap();
    let out = dir.join("agent.jsonl");
    let mut agent = Agent::start(
        &dir,
        &format!(
            "scope:\n  - \"{base}/strict.service\"\n  - cgroups: \"{base}/deploy.service\"\n    policy: {}\n  - cgroups: \"{base}/batch.service\"\n    min_severity: critical\nlisten: 127.0.0.1:0\noutputs:\n  - type: file\n    path: {}\n    records: [findings]\n",
            accept.display(),
            out.display()
        ),
    );
    for c in [&strict, &lenient, &quiet] {
        c.run(&format!("cat {} > /dev/null", creds.display()));
    }
    // A marker after them, in the strict service: once it is written, so is everything before.
    let key = dir.join("home/.ssh/id_rsa");
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    fs::write(&key, "k").unwrap();
    strict.run(&format!("cat {} > /dev/null", key.display()));
    eventually("the marker finding", || {
        findings(&lines_of(&out))
            .iter()
            .any(|f| f["message"].as_str().unwrap().ends_with("id_rsa"))
    });
    assert_eq!(agent.stop(), Some(0));
    let lines = lines_of(&out);
    let found = findings(&lines);
    let in_cgroup = |name: &str| {
        found
            .iter()
            .filter(|f| f["cgroup"]["path"].as_str().unwrap().ends_with(name))
            .count()
    };
    assert_eq!(in_cgroup("/strict.service"), 2, "{found:#?}");
    assert_eq!(
        in_cgroup("/deploy.service"),
        0,
        "the entry's own exception: {found:#?}"
    );
    assert_eq!(
        in_cgroup("/batch.service"),
        0,
        "the entry's floor: {found:#?}"
    );
}

/// Host-wide, the agent never reports itself (its own /proc reads while serving metrics are
/// not events), and serving scrapes does not grow its file descriptors or threads.
#[test]
fn host_wide_the_agent_never_watches_itself_and_does_not_grow() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("agent-host");
    let out = dir.join("agent.jsonl");
    let mut agent = Agent::start(
        &dir,
        &format!(
            "scope: host\nlisten: 127.0.0.1:0\noutputs:\n  - type: file\n    path: {}\n    records: [events]\n    events: [open]\n",
            out.display()
        ),
    );
    let me = agent.pid();
    let count = |what: &str| fs::read_dir(format!("/proc/{me}/{what}")).unwrap().count();
    let _ = agent.scrape();
    let (fds, threads) = (count("fd"), count("task"));
    for _ in 0..30 {
        let m = agent.scrape();
        assert!(m.contains("buildwatch_host_wide 1"), "{m}");
    }
    // Something of the host's is seen meanwhile: this test's own reads.
    let marker = dir.join("host-marker");
    fs::write(&marker, "x").unwrap();
    let _ = fs::read(&marker).unwrap();
    eventually("the host's own opens", || {
        lines_of(&out).iter().any(|l| {
            l["open"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("host-marker"))
        })
    });
    assert!(count("fd") <= fds + 2, "fds {fds} → {}", count("fd"));
    assert!(
        count("task") <= threads,
        "threads {threads} → {}",
        count("task")
    );
    assert_eq!(agent.stop(), Some(0));
    let mine: Vec<Value> = lines_of(&out)
        .into_iter()
        .filter(|l| l["pid"].as_i64() == Some(me as i64))
        .collect();
    assert!(
        mine.is_empty(),
        "the agent reported itself: {:#?}",
        &mine[..mine.len().min(3)]
    );
}

/// The host defaults: a service connecting to an address outside the allowlist is ordinary
/// on a host, so the egress rules apply only where a package manager runs (here a shell
/// installed as `npm`). The connects are UDP: connect(2) sends nothing.
#[test]
fn on_a_host_egress_rules_judge_install_scripts_only() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("agent-hostdefaults");
    let base = format!("bw-agent-h{}", std::process::id());
    let svc = TestCgroup::new(&format!("{base}/web.service"));
    let npm = dir.join("npm");
    fs::copy("/bin/sh", &npm).unwrap();
    let out = dir.join("agent.jsonl");
    let mut agent = Agent::start(
        &dir,
        &format!(
            "scope:\n  - \"{base}/*\"\nlisten: 127.0.0.1:0\noutputs:\n  - type: file\n    path: {}\n",
            out.display()
        ),
    );
    let udp = |port: u16| {
        format!(
            // (Without a route the connect fails; the hook saw the attempt all the same.)
            "python3 -c \"import socket\ntry: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(('10.200.0.9', {port}))\nexcept OSError: pass\""
        )
    };
    svc.run(&udp(9));
    svc.run(&format!(
        "{} -c \"{}\"",
        npm.display(),
        udp(10).replace('"', "\\\"")
    ));
    eventually("both connects", || {
        lines_of(&out)
            .iter()
            .filter(|l| l["kind"] == "connect" && l["connect"]["address"] == "10.200.0.9")
            .count()
            >= 2
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(agent.stop(), Some(0));
    let lines = lines_of(&out);
    let egress: Vec<&Value> = findings(&lines)
        .into_iter()
        .filter(|f| f["rule"] == "egress-unlisted")
        .collect();
    assert_eq!(egress.len(), 1, "{egress:#?}");
    assert!(
        egress[0]["message"]
            .as_str()
            .unwrap()
            .contains("10.200.0.9")
    );
    assert_eq!(
        egress[0]["detail"]["port"], 10,
        "the install script's, not the service's"
    );
}

/// A watched service's process that leaves the watched cgroups (as logind moves a login
/// shell into its session scope, or a runtime a container's first process into its own) is
/// not killed: the agent's scope is its cgroups. Only `buildwatch run` fences a run in. Both
/// ways out: the process writes the other cgroup's cgroup.procs itself, and it is moved from
/// outside.
#[test]
fn the_agent_kills_nothing_that_leaves_a_watched_cgroup() {
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("agent-leave");
    let base = format!("bw-agent-leave-{}", std::process::id());
    let svc = TestCgroup::new(&format!("{base}/watched.slice/login.service"));
    let session = TestCgroup::new(&format!("{base}/other.slice/session-1.scope"));
    let procs = session.0.join("cgroup.procs");
    let out = dir.join("agent.jsonl");
    let mut agent = Agent::start(
        &dir,
        &format!(
            "scope:\n  - \"{base}/watched.slice/*\"\nlisten: 127.0.0.1:0\noutputs:\n  - type: file\n    path: {}\n",
            out.display()
        ),
    );
    // Watched at all: a credential read in the service is a finding.
    let creds = credentials(&dir);
    svc.run(&format!("cat {} > /dev/null", creds.display()));
    eventually("the service's finding", || {
        !findings(&lines_of(&out)).is_empty()
    });
    // It moves itself out, then keeps working.
    let moved_self = dir.join("moved-self");
    svc.run(&format!(
        "sh -c 'echo $$ > {}; cat /etc/hostname > /dev/null; touch {}'",
        procs.display(),
        moved_self.display()
    ));
    assert!(
        moved_self.exists(),
        "a process that moved itself out was killed"
    );
    // Another process moves it (this test, outside every watched cgroup); it was the
    // service's child, so lineage would have followed it.
    let (pidfile, go, moved) = (dir.join("pid"), dir.join("go"), dir.join("moved"));
    svc.run(&format!(
        "sh -c 'echo $$ > {p}; i=0; while [ ! -e {g} ] && [ $i -lt 200 ]; do sleep 0.05; \
         i=$((i+1)); done; cat /etc/hostname > /dev/null; touch {m}' &",
        p = pidfile.display(),
        g = go.display(),
        m = moved.display()
    ));
    eventually("the child's pid", || {
        fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
    });
    let pid = fs::read_to_string(&pidfile).unwrap();
    fs::write(&procs, pid.trim()).unwrap();
    fs::write(&go, "").unwrap();
    eventually("the moved child's work", || moved.exists());
    assert_eq!(agent.stop(), Some(0), "{:#?}", agent.seen);
}
