//! The live scope under real eBPF: a cgroup added to the scope map while the programs run is
//! watched from then on, and not after it is removed. Needs root (skipped without it locally,
//! a failure under CI=true).

mod common;

use std::{
    fs,
    os::unix::process::CommandExt,
    path::Path,
    process::Command,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use common::root_or_skip;
use monitor::{
    detect::analyzer::Analyzer,
    ingest::reader::Reader,
    kernel::{cgroup::RunCgroup, loader::Kernel},
    mode::run::join_cgroup,
    output::{bus::Bus, encode::Format, sink::Channel},
    pipeline::Pipeline,
    policy::config::{self, PolicyArgs},
};

/// `cat PATH` inside `cg`.
fn cat_in(cg: &RunCgroup, path: &Path) {
    let procs = cg.procs_file_cstring();
    let mut cmd = Command::new("/bin/cat");
    cmd.arg(path).stdout(std::process::Stdio::null());
    // SAFETY: join_cgroup only makes async-signal-safe calls.
    unsafe { cmd.pre_exec(move || join_cgroup(&procs)) };
    assert!(cmd.status().unwrap().success());
}

#[test]
fn cgroup_added_at_run_time_is_watched_then_not() {
    if !root_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bw-live-scope-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let marker = |name: &str| {
        let p = dir.join(name);
        fs::write(&p, "x").unwrap();
        p
    };
    let (before, during, after, sentinel) = (
        marker("before-add"),
        marker("while-added"),
        marker("after-remove"),
        marker("sentinel"),
    );
    let first = RunCgroup::create().unwrap();
    let second = RunCgroup::create().unwrap();

    let mut kernel = Kernel::load(1 << 22).unwrap();
    let mut scope = kernel.take_scope().unwrap();
    scope.add(first.id(), first.level()).unwrap();
    kernel.attach_all(&first.open_dir().unwrap()).unwrap();
    let setup = config::setup(&PolicyArgs::default(), Path::new("/")).unwrap();
    let (tx, rx) = mpsc::channel();
    let mut bus = Bus::new();
    bus.add("test", Format::JsonLines, Box::new(Channel(tx)));
    let bus = Arc::new(bus);
    let pipeline =
        Pipeline::start(Analyzer::new(setup.rules, setup.policy), bus.clone(), true).unwrap();
    let reader = Reader::start(
        kernel.take_events().unwrap(),
        kernel.take_counters().unwrap(),
        pipeline.downstream(),
    )
    .unwrap();

    cat_in(&second, &before);
    scope.add(second.id(), second.level()).unwrap();
    cat_in(&second, &during);
    scope.remove(second.id()).unwrap();
    cat_in(&second, &after);
    cat_in(&first, &sentinel);

    // Everything up to the sentinel (the last thing done) has gone through the pipeline once
    // the sentinel's open has.
    let mut opened = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !opened.contains(&sentinel.display().to_string()) && Instant::now() < deadline {
        let Ok(batch) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        for line in batch.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let ev: serde_json::Value = serde_json::from_slice(line).unwrap();
            if ev["kind"] == "open" {
                opened.push(ev["open"]["path"].as_str().unwrap().to_owned());
            }
        }
    }
    reader.stop();
    pipeline.finish();
    bus.close(|_| true, Instant::now() + Duration::from_secs(2));
    drop(kernel);
    let _ = fs::remove_dir_all(&dir);

    let seen = |p: &Path| opened.contains(&p.display().to_string());
    assert!(seen(&sentinel), "the first cgroup is watched: {opened:?}");
    assert!(seen(&during), "added at run time: watched: {opened:?}");
    assert!(!seen(&before), "not yet added: not watched: {opened:?}");
    assert!(!seen(&after), "removed: not watched: {opened:?}");
}
