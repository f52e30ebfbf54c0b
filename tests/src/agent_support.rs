//! Helpers for the agent's end-to-end tests: cgroups the test makes, a running agent and
//! its stderr, its metrics, and the JSON lines it writes.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::{TempDir, Value, buildwatch_bin, cgroup2_root};

/// A cgroup below the v2 root, removed (after its processes are gone) on drop, with the
/// parents it had to create (once no other test cgroup is below them): leftovers would pile
/// up on a developer's machine and make every agent's walk of the tree slower.
pub struct TestCgroup(pub PathBuf, Option<PathBuf>);

impl TestCgroup {
    pub fn new(rel: &str) -> Self {
        let p = cgroup2_root().expect("a cgroup v2 mount").join(rel);
        // The highest directory this call creates.
        let top = p
            .ancestors()
            .take_while(|a| !a.exists())
            .last()
            .map(Path::to_path_buf);
        fs::create_dir_all(&p).unwrap();
        Self(p, top)
    }

    /// Run `script` with sh inside this cgroup; wait for it.
    pub fn run(&self, script: &str) {
        let procs = self.0.join("cgroup.procs");
        let full = format!("echo $$ > {}; {script}", procs.display());
        let st = Command::new("sh").args(["-c", &full]).status().unwrap();
        assert!(st.success(), "{script}");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Children first.
        let mut dirs: Vec<PathBuf> = walk(&self.0);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = fs::remove_dir(d);
        }
        // Then the parents this one created, while they are empty.
        if let Some(top) = &self.1 {
            for a in self.0.ancestors().skip(1) {
                if !a.starts_with(top) || fs::remove_dir(a).is_err() {
                    break;
                }
            }
        }
    }
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// A running agent: its stderr lines arrive on a channel; stopped (SIGTERM) on drop.
pub struct Agent {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub pidfile: PathBuf,
    pub metrics_url: String,
}

impl Agent {
    pub fn start(dir: &TempDir, config: &str) -> Self {
        let cfg = dir.join("agent.yaml");
        fs::write(&cfg, config).unwrap();
        let pidfile = dir.join("agent.pid");
        let mut child = Command::new(buildwatch_bin())
            .args(["agent", "--config"])
            .arg(&cfg)
            .arg("--pidfile")
            .arg(&pidfile)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut a = Self {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
            pidfile,
            metrics_url: String::new(),
        };
        let serving = a.wait_line("serving /healthz and /metrics on ");
        a.metrics_url = serving.split("on ").nth(1).unwrap().trim().to_owned();
        a.wait_line("agent ");
        a
    }

    /// The first stderr line (from now, or already seen) containing `needle`, within 10 s.
    pub fn wait_line(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no `{needle}` from the agent: {:#?}", self.seen);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGKILL (no flushing, no clean close), and wait for it to be gone.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                while let Ok(l) = self.lines.try_recv() {
                    self.seen.push(l);
                }
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop: {:#?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn scrape(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", "-m", "5"])
            .arg(format!("{}/metrics", self.metrics_url))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl");
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// A metric's value in a scrape (the first sample whose line starts with `prefix`).
pub fn metric(scrape: &str, prefix: &str) -> f64 {
    scrape
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// The agent's rotated copies of `path` (PATH.N, oldest first).
pub fn rotated(path: &Path) -> Vec<PathBuf> {
    (1..10_000)
        .map(|n| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        })
        .filter(|p| p.exists())
        .collect()
}

/// The JSON lines of the agent's file and its rotated copies.
pub fn lines_of(path: &Path) -> Vec<Value> {
    let mut files = rotated(path);
    files.push(path.to_owned());
    files
        .iter()
        .flat_map(|f| {
            fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("a broken line ({e}): {l}")))
        .collect()
}

pub fn findings(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == "finding")
        .map(|l| &l["finding"])
        .collect()
}

pub fn credentials(dir: &TempDir) -> PathBuf {
    let c = dir.join("home/.aws/credentials");
    fs::create_dir_all(c.parent().unwrap()).unwrap();
    fs::write(&c, "[default]\n").unwrap();
    c
}

/// Wait until `f` holds (or 10 s pass).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
