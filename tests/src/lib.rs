//! Helpers for the end-to-end tests: run `buildwatch run` on real programs, read the events it
//! wrote, and guard the resources a test creates (temp dirs, listeners).
//!
//! Tests that need root and BPF call [`require_bpf`]: without root they are skipped locally but
//! FAIL when `CI=true`, so CI can never pass by skipping them.

use std::{
    fs,
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    thread,
};

pub mod agent_support;
pub mod dnsmasq;
pub mod forward_support;
pub mod registry;

pub use serde_json::Value;
use serde_json::json;

/// The buildwatch binary: `$BUILDWATCH_BIN`, else the one cargo built next to this test.
pub fn buildwatch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BUILDWATCH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash>  →  target/<profile>/buildwatch
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("buildwatch");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p monitor` first",
        bin.display()
    );
    bin
}

/// The release tarball `cargo xtask test` built and named in BUILDWATCH_DIST; None (the test
/// is skipped) outside it, and a failure under CI=true.
pub fn dist_tarball() -> Option<PathBuf> {
    match std::env::var_os("BUILDWATCH_DIST") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but BUILDWATCH_DIST is not set: run the tests with `cargo xtask test`")
        }
        None => {
            eprintln!("skipping: BUILDWATCH_DIST not set (run through `cargo xtask test`)");
            None
        }
    }
}

/// Where scripts/setup.sh installs the validators the tests run on buildwatch's outputs
/// (CycloneDX's library in `venv/`, the SARIF multitool in `npm/`): `$BUILDWATCH_TOOLS`, else
/// /opt/buildwatch-tools.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("BUILDWATCH_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/buildwatch-tools"))
}

/// true when this test can load BPF. Locally without root: skip (false). Under CI=true: panic.
pub fn require_bpf() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but not running as root: BPF tests must run, not skip");
    }
    eprintln!("skipping: needs root to load BPF (set CI=true to make this a failure)");
    false
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "bw-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Result of one `buildwatch run`.
pub struct RunResult {
    pub output: Output,
    pub events: Vec<Value>,
    /// buildwatch's own pid (to look for leftovers named after it).
    pub pid: u32,
}

impl RunResult {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["kind"] == kind)
    }
    /// Open events whose resolved path is `path`.
    pub fn opens_of<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.of_kind("open")
            .filter(move |e| e["open"]["path"] == path)
    }
}

/// Run `buildwatch run --events FILE [extra] -- command…` and collect everything.
pub fn run_watched(dir: &TempDir, extra: &[&str], command: &[&str]) -> RunResult {
    let child = spawn_watched(dir, extra, command);
    finish_watched(dir, child)
}

pub fn spawn_watched(dir: &TempDir, extra: &[&str], command: &[&str]) -> std::process::Child {
    let events = dir.join("events.jsonl");
    Command::new(buildwatch_bin())
        .env_remove("SUDO_UID")
        .arg("run")
        .arg("--events")
        .arg(&events)
        .args(extra)
        .arg("--")
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start buildwatch")
}

pub fn finish_watched(dir: &TempDir, child: std::process::Child) -> RunResult {
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for buildwatch");
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    RunResult {
        output,
        events,
        pid,
    }
}

/// A TCP listener on loopback that answers each connection with what it read (bounded).
pub struct EchoListener {
    pub addr: std::net::SocketAddr,
}

impl EchoListener {
    /// `bind` is "127.0.0.1:0" or "[::1]:0". Serves at most `max` connections.
    pub fn start(bind: &str, max: usize) -> Self {
        let l = TcpListener::bind(bind).expect("bind loopback listener");
        let addr = l.local_addr().expect("local addr");
        thread::spawn(move || {
            for stream in l.incoming().take(max) {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf) {
                    let _ = s.write_all(&buf[..n]);
                }
            }
        });
        Self { addr }
    }
}

/// Where the cgroup v2 hierarchy is mounted (from /proc/self/mountinfo).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mountpoint = pre.split(' ').nth(4)?;
        (post.split(' ').next()? == "cgroup2").then(|| PathBuf::from(mountpoint))
    })
}

/// Every cgroup directory whose name starts with `prefix`, anywhere in the v2 hierarchy.
pub fn cgroups_named(prefix: &str) -> Vec<PathBuf> {
    let Some(mount) = cgroup2_root() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut stack = vec![mount];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                found.push(e.path());
            }
            stack.push(e.path());
        }
    }
    found
}

/// Ids of the BPF programs a process holds open (from /proc/PID/fdinfo `prog_id:` lines).
pub fn bpf_program_ids_of(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in rd.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(id) = line
                .strip_prefix("prog_id:")
                .and_then(|v| v.trim().parse().ok())
            {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether a BPF program with this id is still loaded in the kernel.
pub fn bpf_program_exists(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&id.to_ne_bytes());
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
    }
    fd >= 0
}

/// A finished `buildwatch run --report` and what it wrote.
pub struct Watched {
    pub out: Output,
    pub report: Value,
    pub events: PathBuf,
}

impl Watched {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Every rule that matched: the findings', and their parts' (a rule matched on the same
    /// event as a more severe one, or within its action, is a part of that finding).
    pub fn rules(&self) -> Vec<String> {
        self.report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| {
                let parts = f["parts"].as_array().cloned().unwrap_or_default();
                std::iter::once(f["rule"].clone())
                    .chain(parts.into_iter().map(|p| p["rule"].clone()))
            })
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    }

    /// The findings' rules alone.
    pub fn finding_rules(&self) -> Vec<String> {
        self.report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The messages of the findings of `rule` (not of its parts).
    pub fn messages(&self, rule: &str) -> Vec<String> {
        self.report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == rule)
            .map(|f| f["message"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The run's event stream.
    pub fn events(&self) -> Vec<Value> {
        fs::read_to_string(&self.events)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The finding that `rule` matched: its own, or the one it is a part of.
    pub fn finding_with(&self, rule: &str) -> &Value {
        let all = self.report["findings"].as_array().unwrap();
        all.iter()
            .find(|f| {
                f["rule"] == rule
                    || f["parts"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["rule"] == rule))
            })
            .unwrap_or_else(|| panic!("no {rule} in {all:#?}\n{}", self.stderr()))
    }

    /// The finding of `rule`, or else the part of another finding it is (which has `rule`,
    /// `severity`, `message`, `pid` and `count`).
    pub fn finding(&self, rule: &str) -> &Value {
        let all = self.report["findings"].as_array().unwrap();
        all.iter()
            .find(|f| f["rule"] == rule)
            .or_else(|| {
                all.iter()
                    .filter_map(|f| f["parts"].as_array())
                    .flatten()
                    .find(|p| p["rule"] == rule)
            })
            .unwrap_or_else(|| panic!("no {rule} finding in {all:#?}\n{}", self.stderr()))
    }
}

/// `buildwatch run --events --report [extra] -- cmd` in `cwd`, with `env` added.
pub fn watch(
    tmp: &TempDir,
    cwd: &Path,
    env: &[(&str, String)],
    extra: &[&str],
    cmd: &[&str],
) -> Watched {
    watch_via(tmp, cwd, env, &[], extra, cmd)
}

/// [`watch`], with buildwatch itself started through `wrapper` (e.g. `unshare -m …`).
pub fn watch_via(
    tmp: &TempDir,
    cwd: &Path,
    env: &[(&str, String)],
    wrapper: &[&str],
    extra: &[&str],
    cmd: &[&str],
) -> Watched {
    let events = tmp.join("events.jsonl");
    let report = tmp.join("report.json");
    let mut command = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(buildwatch_bin());
            c
        }
        None => Command::new(buildwatch_bin()),
    };
    let out = command
        .current_dir(cwd)
        .env_remove("SUDO_UID")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("run")
        .arg("--events")
        .arg(&events)
        .arg("--report")
        .arg(&report)
        .args(extra)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run buildwatch");
    let text = fs::read(&report)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    Watched {
        out,
        report: serde_json::from_slice(&text).unwrap(),
        events,
    }
}

/// The replay of a run's own events, with the same policy arguments, reports the same.
pub fn assert_replay_matches(w: &Watched, cwd: &Path, extra: &[&str]) {
    let dir = w.events.parent().unwrap();
    let replayed = dir.join("replayed.json");
    let out = Command::new(buildwatch_bin())
        .current_dir(cwd)
        .arg("replay")
        .arg(&w.events)
        .arg("--report")
        .arg(&replayed)
        .args(extra)
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&fs::read(&replayed).unwrap()).unwrap();
    assert_eq!(r, w.report, "replay differs from the live run");
    assert_eq!(out.status.code(), w.out.status.code(), "replay exit status");
}

/// Validate a SARIF file with Microsoft's SARIF multitool and GitHub code scanning's rules
/// (`validate --rule-kind "Gh;Sarif"`, installed by scripts/setup.sh); the messages it reported
/// as errors, and as warnings.
pub fn validate_sarif(sarif: &Path) -> (Vec<String>, Vec<String>) {
    let tool =
        tools_dir().join("npm/node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool");
    static N: AtomicU64 = AtomicU64::new(0);
    let out_dir = std::env::temp_dir().join(format!(
        "bw-sarif-validate-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&out_dir);
    fs::create_dir_all(&out_dir).unwrap();
    let log = out_dir.join("validation.sarif");
    let out = Command::new(&tool)
        .args(["validate", "--rule-kind", "Gh;Sarif", "--output"])
        .arg(&log)
        .arg(sarif)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/setup.sh installs it)", tool.display()));
    let text = fs::read(&log).unwrap_or_else(|e| {
        panic!(
            "the multitool wrote no log ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = fs::remove_dir_all(&out_dir);
    let v: Value = serde_json::from_slice(&text).unwrap();
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for r in v["runs"][0]["results"].as_array().into_iter().flatten() {
        let level = r["level"].as_str().unwrap_or("warning");
        let msg = format!("{}: {}", r["ruleId"], r["message"]);
        match level {
            "error" => errors.push(msg),
            "warning" => warnings.push(msg),
            _ => {}
        }
    }
    (errors, warnings)
}

// Package fixtures shared by the package and CI tests: real npm and pip on local packages.

/// npm configured so nothing can reach a network: registry on a closed loopback port, offline,
/// no update check, audit or funding calls, cache and config under the test's HOME.
pub fn npm_env(home: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", home.display().to_string()),
        ("npm_config_registry", "http://127.0.0.1:9/".into()),
        ("npm_config_offline", "true".into()),
        ("npm_config_update_notifier", "false".into()),
        ("npm_config_audit", "false".into()),
        ("npm_config_fund", "false".into()),
        (
            "npm_config_cache",
            home.join("npm-cache").display().to_string(),
        ),
    ]
}

/// Write a package directory and `npm pack` it (outside buildwatch); returns the tarball.
pub fn npm_package(
    tmp: &TempDir,
    name: &str,
    version: &str,
    files: &[(&str, &str)],
    scripts: Value,
) -> PathBuf {
    let dir = tmp.join(&format!("src-{name}"));
    fs::create_dir_all(&dir).unwrap();
    let manifest =
        json!({ "name": name, "version": version, "scripts": scripts, "license": "MIT" });
    fs::write(dir.join("package.json"), manifest.to_string()).unwrap();
    for (f, body) in files {
        fs::write(dir.join(f), body).unwrap();
    }
    let out = Command::new("npm")
        .args(["pack", "--pack-destination"])
        .arg(tmp.path())
        .current_dir(&dir)
        .envs(npm_env(&tmp.join("home")))
        .output()
        .expect("npm is installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "npm pack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tmp.join(&format!("{name}-{version}.tgz"))
}

/// An in-tree PEP 517 backend (no setuptools or wheel needed, so pip works with --no-index):
/// builds a wheel by compiling `mod.c` with cc, after running `PRE_BUILD`.
pub const BACKEND_PY: &str = r#"
import os, subprocess, sysconfig, zipfile
NAME, VERSION = "@NAME@", "@VERSION@"
DIST = NAME + "-" + VERSION + ".dist-info"
META = "Metadata-Version: 2.1\nName: " + NAME + "\nVersion: " + VERSION + "\n"
WHEEL = "Wheel-Version: 1.0\nGenerator: bw-test\nRoot-Is-Purelib: false\nTag: py3-none-any\n"
def pre_build():
@PRE_BUILD@
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(d, config_settings=None):
    os.makedirs(os.path.join(d, DIST))
    open(os.path.join(d, DIST, "METADATA"), "w").write(META)
    open(os.path.join(d, DIST, "WHEEL"), "w").write(WHEEL)
    return DIST
def build_wheel(wd, config_settings=None, metadata_directory=None):
    pre_build()
    so = NAME + sysconfig.get_config_var("EXT_SUFFIX")
    subprocess.check_call(["cc", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"], "mod.c", "-o", so])
    whl = NAME + "-" + VERSION + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wd, whl), "w") as z:
        z.write(so, so)
        z.writestr(DIST + "/METADATA", META)
        z.writestr(DIST + "/WHEEL", WHEEL)
        z.writestr(DIST + "/RECORD", so + ",,\n" + DIST + "/METADATA,,\n" + DIST + "/WHEEL,,\n" + DIST + "/RECORD,,\n")
    return whl
"#;

pub const MOD_C: &str = "#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, \"@NAME@\", NULL, -1, NULL};\nPyMODINIT_FUNC PyInit_@NAME@(void) { return PyModule_Create(&m); }\n";

/// A local sdist (tar.gz with PKG-INFO, pyproject.toml, the backend and a C file).
pub fn sdist(tmp: &TempDir, name: &str, version: &str, pre_build: &str) -> PathBuf {
    let base = format!("{name}-{version}");
    let dir = tmp.join(&format!("sdist/{base}"));
    fs::create_dir_all(&dir).unwrap();
    let fill = |s: &str| {
        s.replace("@NAME@", name)
            .replace("@VERSION@", version)
            .replace("@PRE_BUILD@", pre_build)
    };
    fs::write(
        dir.join("PKG-INFO"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
    )
    .unwrap();
    fs::write(
        dir.join("pyproject.toml"),
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
    )
    .unwrap();
    fs::write(dir.join("backend.py"), fill(BACKEND_PY)).unwrap();
    fs::write(dir.join("mod.c"), fill(MOD_C)).unwrap();
    let tgz = tmp.join(&format!("{base}.tar.gz"));
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(tmp.join("sdist"))
        .arg(&base)
        .status()
        .unwrap();
    assert!(st.success());
    tgz
}
