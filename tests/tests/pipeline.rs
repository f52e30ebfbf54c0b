//! The pipeline end to end, under real eBPF: the bare `buildwatch -- CMD` form, `--events -`
//! on stdout through a real `jq`, a stalled events sink, a failing events sink, a flooder left
//! behind, and escaped terminal lines. Nothing here uses the network.

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::{
        ffi::OsStrExt,
        fs::{OpenOptionsExt, symlink},
    },
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use buildwatch_tests::*;

const TRIGGER: &str = env!("CARGO_BIN_EXE_bw-trigger");

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A HOME with a fake AWS credentials file; returns (home, credentials path).
fn fake_home(tmp: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let home = tmp.join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    let creds = home.join(".aws/credentials");
    fs::write(&creds, "[default]\naws_access_key_id = AKIAFAKEFAKEFAKE\n").unwrap();
    (home, creds)
}

#[test]
fn bare_double_dash_runs_the_command() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("bare");
    let out = Command::new(buildwatch_bin())
        .args(["--", "sh", "-c", "exit 3"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Options before `--` are run's options.
    let report = tmp.join("r.json");
    let out = Command::new(buildwatch_bin())
        .arg("--report")
        .arg(&report)
        .args(["--", "sh", "-c", "cat /etc/hostname >/dev/null; exit 0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let r: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        r["command"],
        serde_json::json!(["sh", "-c", "cat /etc/hostname >/dev/null; exit 0"])
    );
    assert_eq!(r["exit_code"], 0);
    assert!(
        r["events"]["by_kind"]["open"].as_u64().unwrap() > 0,
        "{r:#}"
    );
    // Without a command, usage and status 64 (EX_USAGE), nothing run.
    let out = Command::new(buildwatch_bin()).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// `--events -` puts only events on stdout (the command's own stdout goes to stderr), so the
/// stream can be piped into a real jq.
#[test]
fn events_on_stdout_pipe_into_jq() {
    if !require_bpf() {
        return;
    }
    let script = format!(
        "{} --events - -- sh -c 'echo command-says-hello; npm --version' | jq -r .kind",
        buildwatch_bin().display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("HOME", TempDir::new("jqhome").path())
        .env("npm_config_update_notifier", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let kinds: Vec<&str> = stdout.lines().collect();
    assert_eq!(kinds.first(), Some(&"run"), "{stdout}");
    assert_eq!(kinds.last(), Some(&"run_end"), "{stdout}");
    assert!(
        kinds.contains(&"exec") && kinds.contains(&"open"),
        "{stdout}"
    );
    let known = [
        "run",
        "run_end",
        "exec",
        "fork",
        "exit",
        "open",
        "chdir",
        "connect",
        "send",
        "dns",
        "lost",
        "straggler",
        "ptrace",
        "process_vm",
    ];
    assert!(kinds.iter().all(|k| known.contains(k)), "{stdout}");
    assert!(stderr.contains("command-says-hello"), "{stderr}");
    // npm's version line went to stderr too.
    assert!(
        stderr.lines().any(|l| l.split('.').count() == 3 && l.chars().all(|c| c.is_ascii_digit() || c == '.')),
        "{stderr}"
    );
}

/// Collect buildwatch's stderr lines as they come, each with whether `flag` existed then.
fn watch_stderr(
    child: &mut std::process::Child,
    flag: std::path::PathBuf,
) -> mpsc::Receiver<(String, bool)> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send((line, flag.exists()));
        }
    });
    rx
}

/// An events FIFO that nobody reads for 10 s: the credential finding still appears at once,
/// the verdict and exit status are those of a run with a working sink, and the report counts
/// what the stalled sink did not write.
/// buildwatch maps the kernel ring's data once (`ingest::ring`), so the record in each lap
/// that crosses the end of the ring is put together from two pieces. In a 64 KiB ring, 3,000
/// open events of 97 path lengths go round eight times, crossing the end at different places:
/// every path arrives once and whole, and nothing is lost. (With the second piece cut short by
/// a byte, the eight joined records fail to decode: "lost 8".)
#[test]
fn records_across_the_end_of_a_small_ring_arrive_whole() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("ring-laps");
    let dir = tmp.join("missing");
    let n = 3000;
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &["--ring-size", "65536"],
        &[TRIGGER, "open-paced", &n.to_string(), &s(&dir)],
    );
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    assert_eq!(w.report["events"]["lost"], 0, "{}", w.stderr());
    let mut seen = vec![0u32; n];
    for e in w.events() {
        let Some(p) = e["open"]["path"].as_str() else {
            continue;
        };
        let Some(name) = p.strip_prefix(&format!("{}/", s(&dir))) else {
            continue;
        };
        let (i, xs) = name.split_once('-').expect("N-xxx");
        let i: usize = i.parse().expect("a number");
        assert_eq!(xs, "x".repeat(1 + i % 97), "{p}");
        seen[i] += 1;
    }
    let missing: Vec<usize> = (0..n).filter(|&i| seen[i] != 1).collect();
    assert!(missing.is_empty(), "not seen once: {missing:?}");
}

#[test]
fn stalled_events_sink_delays_nothing_and_is_counted() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("stalled");
    let (home, creds) = fake_home(&tmp);
    let flood = tmp.join("flood");
    fs::write(&flood, "x").unwrap();
    let running = tmp.join("running");
    // Enough events to fill the pipe and the sink's queue, then the theft, then a pause
    // while `running` exists.
    let script = format!(
        "touch {r}; {t} open-loop 40000 {f}; cat {c} >/dev/null; sleep 5; rm {r}",
        r = s(&running),
        t = TRIGGER,
        f = s(&flood),
        c = s(&creds)
    );
    let fifo = tmp.join("events.fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Open the read end without blocking and without reading: the writer's open succeeds,
    // then the pipe fills and stays full.
    let reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let report = tmp.join("report.json");
    let start = Instant::now();
    let mut child = Command::new(buildwatch_bin())
        .env("HOME", &home)
        .arg("--events")
        .arg(&fifo)
        .arg("--report")
        .arg(&report)
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = watch_stderr(&mut child, running.clone());
    let mut finding_while_running = None;
    let mut all = Vec::new();
    while let Ok((line, flag)) = lines.recv_timeout(Duration::from_secs(60)) {
        if line.contains("sensitive-file-read") && finding_while_running.is_none() {
            finding_while_running = Some(flag);
        }
        all.push(line);
    }
    let status = child.wait().unwrap();
    let elapsed = start.elapsed();
    // Nobody read the FIFO during the run; only now is it read (what fits in the pipe).
    drop(reader);
    let stderr = all.join("\n");
    assert_eq!(
        finding_while_running,
        Some(true),
        "the finding must appear while the command still runs:\n{stderr}"
    );
    assert_eq!(status.code(), Some(86), "{stderr}");
    assert!(elapsed < Duration::from_secs(10 + 30), "took {elapsed:?}");
    let r: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["verdict"]["failed"], true);
    assert_eq!(r["verdict"]["output_complete"], false, "{r:#}");
    let sink = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "events")
        .unwrap_or_else(|| panic!("{r:#}"));
    let lost = sink["dropped"].as_u64().unwrap() + sink["unwritten"].as_u64().unwrap();
    assert!(lost > 1000, "{sink}");
    assert!(
        sink["error"].as_str().unwrap().contains("stalled"),
        "{sink}"
    );
    assert!(stderr.contains("output events failed: stalled"), "{stderr}");

    // The same run with a working sink reaches the same verdict and status.
    let ok = watch(
        &tmp,
        tmp.path(),
        &[("HOME", s(&home))],
        &[],
        &["sh", "-c", &script],
    );
    assert_eq!(ok.out.status.code(), Some(86));
    assert_eq!(ok.report["verdict"]["reasons"], r["verdict"]["reasons"]);
    assert_eq!(ok.report["verdict"]["output_complete"], true);
    assert!(ok.report.get("output").is_none(), "{:#}", ok.report);
}

/// A sink that fails (a full device) is reported on stderr and in the report, and the verdict
/// says the output is incomplete; nothing else changes.
#[test]
fn failing_events_sink_is_reported_not_silenced() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("fullsink");
    let report = tmp.join("report.json");
    let out = Command::new(buildwatch_bin())
        .args(["--events", "/dev/full", "--report"])
        .arg(&report)
        .args(["--", TRIGGER, "open-loop", "2000", "/etc/hostname"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("output events failed: /dev/full: No space left on device"),
        "{stderr}"
    );
    let r: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["verdict"]["failed"], false);
    assert_eq!(r["verdict"]["output_complete"], false);
    let sink = &r["output"][0];
    assert_eq!(sink["name"], "events");
    assert!(sink["unwritten"].as_u64().unwrap() >= 2000, "{sink}");
    // Everything buildwatch saw is still judged and counted.
    assert!(r["events"]["by_kind"]["open"].as_u64().unwrap() >= 2000);
}

/// A flooder the command leaves running cannot keep buildwatch alive: the drain after the
/// command exits is bounded, the flooder is killed, and the run says how the drain went.
#[test]
fn flooder_left_behind_does_not_keep_the_run_alive() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("flooder");
    let f = tmp.join("f");
    fs::write(&f, "x").unwrap();
    // Alone, the flooder would run for minutes.
    let script = format!(
        "{t} open-loop 200000000 {f} </dev/null >/dev/null 2>&1 & sleep 0.5; exit 0",
        t = TRIGGER,
        f = s(&f)
    );
    let start = Instant::now();
    let r = run_watched(&tmp, &[], &["sh", "-c", &script]);
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    // What the flooder did past the budget was not seen: the run cannot be vouched for.
    let lost: u64 = r
        .of_kind("lost")
        .map(|l| l["lost"]["count"].as_u64().unwrap())
        .sum();
    let expected = if lost > 0 { 86 } else { 0 };
    assert_eq!(r.code(), Some(expected), "lost {lost}: {}", r.stderr());
    let st = r
        .of_kind("straggler")
        .find(|e| e["straggler"]["cmdline"][1] == "open-loop")
        .unwrap_or_else(|| panic!("no straggler event: {}", r.stderr()));
    assert_eq!(st["straggler"]["action"], "killed");
    assert!(r.opens_of(&s(&f)).count() > 0, "the flooder was watched");
    let end = r.of_kind("run_end").next().expect("run_end");
    let drain = &end["run_end"]["pipeline"]["drain"];
    assert_eq!(drain["budget_ms"], 2000, "{end:#}");
    // Every loss is in the stream, by reason; skipped records are among them.
    let skipped: u64 = r
        .of_kind("lost")
        .filter(|l| l["lost"]["reason"] == "drain_skipped")
        .map(|l| l["lost"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(skipped, drain["skipped"].as_u64().unwrap(), "{drain}");
    let queues = end["run_end"]["pipeline"]["queues"].as_array().unwrap();
    assert_eq!(queues[0]["name"], "ingest");
}

/// What the watched code controls never reaches the terminal raw: a straggler whose argv[0]
/// carries escape sequences is reported escaped.
#[test]
fn terminal_lines_escape_control_characters() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("escape");
    let evil = tmp.join("ev\x1b]0;owned\x07il");
    symlink("/bin/sleep", &evil).unwrap();
    let script = format!("'{}' 300 </dev/null >/dev/null 2>&1 & sleep 0.3", s(&evil));
    let r = run_watched(&tmp, &[], &["sh", "-c", &script]);
    let stderr = r.stderr();
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\x07'),
        "{stderr:?}"
    );
    assert!(
        stderr.contains("outlived the command: killed: ")
            && stderr.contains("ev\\u{1b}]0;owned\\u{7}il 300"),
        "{stderr}"
    );
}

/// The programs' rare diagnostics (aya-log, routed into tracing) are compiled out by default
/// and can be switched on: the programs still verify and the run works the same.
#[test]
fn kernel_diagnostics_can_be_switched_on() {
    if !require_bpf() {
        return;
    }
    let out = Command::new(buildwatch_bin())
        .env("BUILDWATCH_LOG", "warn,kernel=debug")
        .args(["--", "sh", "-c", "cat /etc/hostname >/dev/null; exit 4"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("; lost 0; command exited with status 4"),
        "{stderr}"
    );
}

/// On a terminal (a pty from util-linux's `script`, 24 rows), the bottom row shows the run is
/// alive, the rows above are the build's (scroll region), and the terminal gets its whole
/// screen back before the summary.
#[test]
fn a_terminal_gets_a_status_line_and_its_screen_back() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("status-line");
    let typescript = tmp.join("typescript");
    let inner = format!(
        "stty rows 24 cols 100; {} -- sh -c 'for i in 1 2 3; do echo build line $i; sleep 1; done'",
        buildwatch_bin().display()
    );
    let out = Command::new("script")
        .args(["-qe", "-c", &inner])
        .arg(&typescript)
        .env_remove("SUDO_UID")
        .output()
        .expect("script (util-linux) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = String::from_utf8_lossy(&fs::read(&typescript).unwrap()).into_owned();
    let region = t
        .find("\x1b[1;23r")
        .unwrap_or_else(|| panic!("no scroll region: {t:?}"));
    let status = t
        .find("\x1b[24;1H\x1b[2Kbuildwatch: watching ")
        .expect("no status line");
    let reset = t.rfind("\x1b[r").expect("the screen is not given back");
    let build = t.find("build line 3").expect("the build's output");
    let summary = t
        .find("buildwatch: policy:")
        .unwrap_or_else(|| t.find("policy: passed").expect("no verdict"));
    assert!(
        region < status && status < build && build < reset && reset < summary,
        "{t:?}"
    );
    assert!(t.contains(" events ("), "{t:?}");
}
