//! The process model the rules see, rebuilt from the event stream alone: who forked whom, what
//! each process runs (exe, argv, cwd), which package it works for, and which files were
//! written during the run. A live run and a replay feed it the same events, so they reach the
//! same findings.

use std::{borrow::Cow, collections::HashMap};

use crate::event::{Detail, Event, Package};

/// Deepest ancestry walked (a loop in hostile input cannot hang the walk).
pub const MAX_DEPTH: usize = 32;
/// Files remembered as written during the run; beyond this, new writes are counted, not kept.
pub const MAX_WRITTEN: usize = 200_000;

#[derive(Clone, Debug, Default)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub package: Option<Package>,
    /// Basename of the executable.
    pub name: String,
    /// What a person would call it: the script or module an interpreter runs, else `name`.
    pub tool: String,
    pub script: Option<String>,
}

impl ProcInfo {
    fn set_image(&mut self, exe: Option<String>, argv: Vec<String>) {
        self.name = exe
            .as_deref()
            .or(argv.first().map(String::as_str))
            .map(basename)
            .unwrap_or_default()
            .to_owned();
        let (tool, script) = tool_of(&self.name, &argv);
        self.tool = tool;
        self.script = script;
        self.exe = exe;
        self.argv = argv;
    }

    pub fn cmdline(&self) -> String {
        self.argv.join(" ")
    }
}

pub fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn is_interpreter(name: &str) -> bool {
    matches!(
        name,
        "node" | "nodejs" | "bun" | "deno" | "perl" | "ruby" | "php"
    ) || name
        .strip_prefix("python")
        .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// For `node …/bin/npm-cli.js install` → ("npm", script); `python3 -m pip` → ("pip", None);
/// `python3 /usr/bin/aws s3 ls` → ("aws", script); anything else → (name, None).
pub fn tool_of(name: &str, argv: &[String]) -> (String, Option<String>) {
    if !is_interpreter(name) {
        return (name.to_owned(), None);
    }
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-m" => {
                if let Some(m) = args.next() {
                    let top = m.split('.').next().unwrap_or(m);
                    return (top.to_owned(), None);
                }
                break;
            }
            "-c" | "-e" | "--eval" | "-p" | "--print" | "-" => break,
            a if a.starts_with('-') => {}
            script => {
                let base = basename(script);
                let stem = [".js", ".cjs", ".mjs", ".py", ".pl", ".rb", ".php"]
                    .iter()
                    .find_map(|ext| base.strip_suffix(ext))
                    .unwrap_or(base);
                let stem = stem.strip_suffix("-cli").unwrap_or(stem);
                return (stem.to_owned(), Some(script.to_owned()));
            }
        }
    }
    (name.to_owned(), None)
}

#[derive(Default)]
pub struct Model {
    procs: HashMap<u32, ProcInfo>,
    /// Path → executable name of the process that last opened it for writing during the run.
    written: HashMap<String, String>,
    /// Writes not remembered because [`MAX_WRITTEN`] was reached.
    pub written_overflow: u64,
}

impl Model {
    pub fn proc(&self, pid: u32) -> Option<&ProcInfo> {
        self.procs.get(&pid)
    }

    /// The parent first, then its parent…, as far as the model knows them.
    pub fn ancestors(&self, pid: u32) -> Vec<&ProcInfo> {
        let mut out = Vec::new();
        let mut cur = self.procs.get(&pid).and_then(|p| p.ppid);
        while let Some(pp) = cur {
            if out.len() >= MAX_DEPTH || pp == pid {
                break;
            }
            let Some(p) = self.procs.get(&pp) else { break };
            out.push(p);
            cur = p.ppid;
        }
        out
    }

    /// How process `target` relates to `actor`: `self`, `descendant`, `run` (another process
    /// of this run) or `outside` (a process the run did not start, or one already gone).
    pub fn relation(&self, actor: u32, target: i32) -> &'static str {
        let Ok(target) = u32::try_from(target) else {
            return "outside";
        };
        if target == actor {
            "self"
        } else if !self.procs.contains_key(&target) {
            "outside"
        } else if self.ancestors(target).iter().any(|a| a.pid == actor) {
            "descendant"
        } else {
            "run"
        }
    }

    pub fn writer_of(&self, path: &str) -> Option<&str> {
        self.written.get(path).map(String::as_str)
    }

    /// Update the model with an event, before rules look at it.
    pub fn apply(&mut self, ev: &Event) {
        match &ev.detail {
            Detail::Fork(f) => {
                let mut child = self
                    .procs
                    .get(&ev.pid)
                    .cloned()
                    .unwrap_or_else(|| self.seen_mid_life(ev));
                child.pid = f.child;
                child.ppid = Some(ev.pid);
                self.procs.insert(f.child, child);
            }
            Detail::Exec(x) if x.outcome.ret == 0 => {
                let mut p = self
                    .procs
                    .remove(&ev.pid)
                    .unwrap_or_else(|| self.seen_mid_life(ev));
                if p.ppid.is_none() {
                    p.ppid = ev.ppid;
                }
                p.set_image(Some(x.path.clone()), x.argv.clone());
                p.cwd = Some(x.cwd.clone());
                if let Some(pkg) = &x.package {
                    p.package = Some(pkg.clone());
                }
                self.procs.insert(ev.pid, p);
            }
            Detail::Chdir(c) if c.outcome.ret == 0 => {
                self.ensure(ev).cwd = Some(c.path.clone());
            }
            Detail::Open(o) if o.outcome.ret >= 0 && opens_for_write(&o.flags) => {
                // The writer's executable name, not its script: lists of writers (linkers,
                // downloaders) name binaries, and a script cannot pass itself off as one.
                let tool = self.ensure(ev).name.clone();
                let path = o.target.clone().unwrap_or_else(|| o.path.clone());
                if self.written.len() < MAX_WRITTEN || self.written.contains_key(&path) {
                    self.written.insert(path, tool);
                } else {
                    self.written_overflow += 1;
                }
            }
            Detail::Exec(_)
            | Detail::Open(_)
            | Detail::Connect(_)
            | Detail::Send(_)
            | Detail::Ptrace(_)
            | Detail::ProcessVm(_)
            | Detail::Dns(_)
            | Detail::Chdir(_) => {
                self.ensure(ev);
            }
            _ => {}
        }
    }

    /// After rules have seen an event: forget processes that exited.
    pub fn retire(&mut self, ev: &Event) {
        if let Detail::Exit(_) = ev.detail {
            self.procs.remove(&ev.pid);
        }
    }

    fn ensure(&mut self, ev: &Event) -> &mut ProcInfo {
        if !self.procs.contains_key(&ev.pid) {
            let p = self.seen_mid_life(ev);
            self.procs.insert(ev.pid, p);
        }
        self.procs.get_mut(&ev.pid).expect("inserted")
    }

    /// A process first seen mid-life: what the event's envelope says about it.
    fn seen_mid_life(&self, ev: &Event) -> ProcInfo {
        let mut p = ProcInfo {
            pid: ev.pid,
            ppid: ev.ppid,
            ..Default::default()
        };
        p.set_image(ev.exe.clone(), Vec::new());
        if let Some(parent) = ev.ppid.and_then(|pp| self.procs.get(&pp)) {
            p.package = parent.package.clone();
        }
        p
    }
}

pub fn opens_for_write(flags: &[Cow<'static, str>]) -> bool {
    flags.iter().any(|f| {
        matches!(
            f.as_ref(),
            "write" | "create" | "truncate" | "append" | "tmpfile"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tools_behind_interpreters() {
        let t = |name: &str, a: &[&str]| tool_of(name, &argv(a)).0;
        assert_eq!(
            t(
                "node",
                &[
                    "node",
                    "/usr/lib/node_modules/npm/bin/npm-cli.js",
                    "install"
                ]
            ),
            "npm"
        );
        assert_eq!(t("node", &["node", "/usr/bin/npm", "ci"]), "npm");
        assert_eq!(
            t("node", &["node", "--max-old-space-size=4096", "index.js"]),
            "index"
        );
        assert_eq!(t("node", &["node", "-e", "x()"]), "node");
        assert_eq!(
            t("python3", &["python3", "-m", "pip", "install", "."]),
            "pip"
        );
        assert_eq!(
            t("python3.12", &["python3.12", "/usr/bin/aws", "s3", "ls"]),
            "aws"
        );
        assert_eq!(t("python3", &["python3", "-c", "import os"]), "python3");
        assert_eq!(t("curl", &["curl", "x.py"]), "curl");
        assert_eq!(t("pythonista", &["pythonista", "a.py"]), "pythonista");
    }
}
