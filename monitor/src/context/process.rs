//! The process model: one table that the context stage and the rules share. A process is
//! identified by its pid and its start time (the kernel's boot-clock start of its thread-group
//! leader, carried by every record): a pid the kernel hands out again is a new process, and
//! never inherits a dead one's exe, argv or cwd.
//!
//! Each entry has two parts:
//! - what the event stream says ([`ProcInfo`]: exe, argv, cwd, package, tool), updated by
//!   [`Processes::apply`] from each event, live or replayed; that is why a replay reaches the
//!   live run's findings;
//! - what only a live run knows ([`Live`]: raw paths, the cwd and open directory fds for
//!   resolving relative paths), kept by `proctable` from the kernel's records.
//!
//! A process is dropped once it has exited and no process still in the table names it as its
//! parent (a live descendant still needs its ancestry): memory follows the live tree, not
//! everything that ever ran.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use crate::event::{Detail, Event, Package};

/// A hash map keyed by integers buildwatch does not let the watched code choose freely
/// (table ids, pids, tids): one multiply per lookup instead of SipHash's rounds, which several
/// lookups per event made the stage's largest cost. Keys the watched code picks (paths,
/// names) stay in SipHash maps.
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Fibonacci hashing of one integer (the FxHash step).
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_i32(&mut self, n: i32) {
        self.write_u64(n as u32 as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Deepest ancestry walked (a loop in hostile input cannot hang the walk).
pub const MAX_DEPTH: usize = 32;

/// An entry's handle in the table (not reused while the table lives).
pub type Id = u64;

/// What the event stream says about a process: what the rules see.
#[derive(Clone, Debug, Default)]
pub struct ProcInfo {
    pub pid: u32,
    /// Boot-clock nanoseconds when the process started; 0 when not (yet) known.
    pub start_ns: u64,
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
    /// Names of the secret variables its environment held at its last exec (inherited
    /// through fork): `proc.secret_env`.
    pub secret_env: Vec<String>,
}

impl ProcInfo {
    pub fn set_image(&mut self, exe: Option<String>, argv: Vec<String>) {
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

/// What only a live run knows about a process, from the kernel's records and /proc.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// The executable as last exec'd, raw bytes ([`Live::set_exe`]).
    pub exe: Option<Vec<u8>>,
    /// `exe` as the event stream writes it, made once per exec instead of once per event,
    /// and whether that needed escaping.
    pub exe_text: Option<(std::sync::Arc<str>, bool)>,
    pub cwd: Vec<u8>,
    /// Paths of fds it opened (or inherited), and whether they close on exec.
    pub fds: IntMap<i32, (Vec<u8>, bool)>,
}

impl Live {
    pub fn set_exe(&mut self, exe: Option<Vec<u8>>) {
        self.exe_text = exe.as_deref().map(|e| {
            let mut escaped = Vec::new();
            let text = crate::event::text(e, "exe", &mut escaped);
            (std::sync::Arc::from(text), !escaped.is_empty())
        });
        self.exe = exe;
    }

    /// The exe's text for an event's `field`, which goes into `escaped` if it needed escaping.
    pub fn exe_for(&self, field: &str, escaped: &mut Vec<String>) -> Option<std::sync::Arc<str>> {
        let (text, was_escaped) = self.exe_text.as_ref()?;
        if *was_escaped && !escaped.iter().any(|f| f == field) {
            escaped.push(field.to_owned());
        }
        Some(text.clone())
    }
}

struct Entry {
    info: ProcInfo,
    live: Live,
    parent: Option<Id>,
    exited: bool,
    /// Entries whose parent this is.
    children: u32,
    /// `info` has been filled (from a fork, an exec or the first event's envelope).
    described: bool,
}

#[derive(Default)]
pub struct Processes {
    entries: IntMap<Id, Entry>,
    /// The latest process with each pid.
    by_pid: IntMap<u32, Id>,
    next: Id,
    /// Entries dropped after their process and all its descendants had exited.
    pub dropped: u64,
}

impl Processes {
    /// The process `pid` that started at `start_ns` (0: whichever has that pid now).
    pub fn find(&self, pid: u32, start_ns: u64) -> Option<Id> {
        let id = *self.by_pid.get(&pid)?;
        let e = &self.entries[&id];
        let same = start_ns == 0 || e.info.start_ns == 0 || e.info.start_ns == start_ns;
        same.then_some(id)
    }

    pub fn info(&self, id: Id) -> &ProcInfo {
        &self.entries[&id].info
    }

    pub fn live(&self, id: Id) -> &Live {
        &self.entries[&id].live
    }

    pub fn live_mut(&mut self, id: Id) -> &mut Live {
        &mut self.entries.get_mut(&id).expect("live entry").live
    }

    pub fn exited(&self, id: Id) -> bool {
        self.entries[&id].exited
    }

    pub fn parent(&self, id: Id) -> Option<Id> {
        self.entries[&id].parent
    }

    /// The process an event is about, as the rules see it.
    pub fn of_event(&self, ev: &Event) -> Option<&ProcInfo> {
        self.find(ev.pid, ev.start_ns).map(|id| self.info(id))
    }

    /// The running process with this pid.
    pub fn running(&self, pid: u32) -> Option<Id> {
        self.by_pid
            .get(&pid)
            .copied()
            .filter(|id| !self.entries[id].exited)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add a process. Whatever had its pid before is gone (the kernel reuses a pid only
    /// after its process was reaped): it is marked exited and dropped if nothing needs it.
    pub fn insert(
        &mut self,
        info: ProcInfo,
        live: Live,
        parent: Option<Id>,
        described: bool,
    ) -> Id {
        let pid = info.pid;
        let id = self.next;
        self.next += 1;
        if let Some(p) = parent
            && let Some(pe) = self.entries.get_mut(&p)
        {
            pe.children += 1;
        }
        self.entries.insert(
            id,
            Entry {
                info,
                live,
                parent,
                exited: false,
                children: 0,
                described,
            },
        );
        if let Some(old) = self.by_pid.insert(pid, id)
            && let Some(e) = self.entries.get_mut(&old)
        {
            e.exited = true;
            self.collect(old);
        }
        id
    }

    /// A new child of `parent` (from a fork): a copy of its parent.
    pub fn fork(&mut self, parent: Id, child: u32, clone_parent: bool) -> Id {
        let p = &self.entries[&parent];
        let (pid, grandparent) = (p.info.pid, p.parent);
        let mut info = p.info.clone();
        let live = Live {
            exe: p.live.exe.clone(),
            exe_text: p.live.exe_text.clone(),
            cwd: p.live.cwd.clone(),
            fds: p.live.fds.clone(),
        };
        let described = p.described;
        // CLONE_PARENT: the child's parent is the caller's parent.
        let (ppid, parent_id) = if clone_parent {
            (p.info.ppid, grandparent)
        } else {
            (Some(pid), Some(parent))
        };
        info.pid = child;
        info.start_ns = 0;
        info.ppid = ppid;
        self.insert(info, live, parent_id, described)
    }

    /// The start time, once the process's own first record says it.
    pub fn learn_start(&mut self, id: Id, start_ns: u64) {
        let e = self.entries.get_mut(&id).expect("entry");
        if e.info.start_ns == 0 {
            e.info.start_ns = start_ns;
        }
    }

    /// The parent first, then its parent…, as far as the table knows them.
    pub fn ancestors(&self, id: Id) -> Vec<&ProcInfo> {
        let mut out = Vec::new();
        let mut cur = self.entries.get(&id).and_then(|e| e.parent);
        while let Some(p) = cur {
            if out.len() >= MAX_DEPTH || p == id {
                break;
            }
            let Some(e) = self.entries.get(&p) else { break };
            out.push(&e.info);
            cur = e.parent;
        }
        out
    }

    /// How the running process `target` relates to `actor`: `self`, `descendant`, `run`
    /// (another process of this run) or `outside` (one the run did not start, or one gone).
    pub fn relation(&self, actor: u32, target: i32) -> &'static str {
        let Ok(target) = u32::try_from(target) else {
            return "outside";
        };
        if target == actor {
            return "self";
        }
        let Some(t) = self.running(target) else {
            return "outside";
        };
        if self.ancestors(t).iter().any(|a| a.pid == actor) {
            "descendant"
        } else {
            "run"
        }
    }

    /// Bring the stream's view of the process up to date with an event (before the rules
    /// see it). Live runs and replays both call this with the same events.
    pub fn apply(&mut self, ev: &Event) {
        match &ev.detail {
            Detail::Fork(f) => {
                let parent = self.described(ev);
                // A live run's context stage made the child already; a replay makes it here.
                let made = self.by_pid.get(&f.child).is_some_and(|c| {
                    let c = &self.entries[c];
                    c.parent == Some(parent) && c.info.start_ns == 0 && !c.exited
                });
                if !made {
                    let clone_parent = f.clone_flags & monitor_common::CLONE_PARENT != 0;
                    self.fork(parent, f.child, clone_parent);
                }
            }
            Detail::Exec(x) if x.outcome.ret == 0 => {
                let id = self.described(ev);
                let e = self.entries.get_mut(&id).expect("entry");
                if e.info.ppid.is_none() {
                    e.info.ppid = ev.ppid;
                }
                e.info.set_image(Some(x.path.clone()), x.argv.clone());
                e.info.cwd = Some(x.cwd.clone());
                e.info.secret_env.clone_from(&x.secret_env);
                if let Some(pkg) = &x.package {
                    e.info.package = Some(pkg.clone());
                }
            }
            Detail::Chdir(c) if c.outcome.ret == 0 => {
                let id = self.described(ev);
                self.entries.get_mut(&id).expect("entry").info.cwd = Some(c.path.clone());
            }
            Detail::Exit(_) => {
                let id = self.described(ev);
                self.entries.get_mut(&id).expect("entry").exited = true;
            }
            Detail::Exec(_)
            | Detail::Open(_)
            | Detail::Connect(_)
            | Detail::Send(_)
            | Detail::Ptrace(_)
            | Detail::ProcessVm(_)
            | Detail::Bpf(_)
            | Detail::Socket(_)
            | Detail::Rename(_)
            | Detail::Link(_)
            | Detail::Unlink(_)
            | Detail::Chmod(_)
            | Detail::Truncate(_)
            | Detail::Setxattr(_)
            | Detail::Bind(_)
            | Detail::Listen(_)
            | Detail::Signal(_)
            | Detail::Escape(_)
            | Detail::Dns(_)
            | Detail::Chdir(_)
                if ev.pid != 0 =>
            {
                self.described(ev);
            }
            _ => {}
        }
    }

    /// After the rules have seen an event: drop the process if it exited and nothing needs
    /// it any more.
    pub fn retire(&mut self, ev: &Event) {
        if let Detail::Exit(_) = ev.detail
            && let Some(id) = self.find(ev.pid, ev.start_ns)
        {
            self.collect(id);
        }
    }

    /// The event's process, made from its envelope if the table does not have it, and with
    /// its stream view filled in.
    fn described(&mut self, ev: &Event) -> Id {
        let id = match self.find(ev.pid, ev.start_ns) {
            Some(id) => id,
            None => {
                let parent = ev.ppid.and_then(|pp| self.running(pp));
                let info = ProcInfo {
                    pid: ev.pid,
                    start_ns: ev.start_ns,
                    ppid: ev.ppid,
                    ..ProcInfo::default()
                };
                self.insert(info, Live::default(), parent, false)
            }
        };
        if ev.start_ns != 0 {
            self.learn_start(id, ev.start_ns);
        }
        let e = &self.entries[&id];
        if !e.described {
            // First seen mid-life: what the envelope says, and the parent's package.
            let package = e
                .parent
                .and_then(|p| self.entries.get(&p))
                .and_then(|p| p.info.package.clone());
            let e = self.entries.get_mut(&id).expect("entry");
            e.info
                .set_image(ev.exe.as_deref().map(str::to_owned), Vec::new());
            if e.info.ppid.is_none() {
                e.info.ppid = ev.ppid;
            }
            e.info.package = package;
            e.described = true;
        }
        id
    }

    /// Mark as exited every process `alive` says is gone (its exit event was lost, or it
    /// left the watched scope), and drop those with no children left: on a host watched for
    /// weeks, the table holds only what still runs and what it descends from. Returns how
    /// many entries went.
    pub fn sweep(&mut self, alive: impl Fn(u32, u64) -> bool) -> usize {
        let before = self.entries.len();
        let gone: Vec<Id> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.exited && !alive(e.info.pid, e.info.start_ns))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            if let Some(e) = self.entries.get_mut(id) {
                e.exited = true;
            }
        }
        for id in gone {
            self.collect(id);
        }
        before - self.entries.len()
    }

    /// Drop `id` if it exited and has no children left, then its ancestors on the same terms.
    fn collect(&mut self, mut id: Id) {
        loop {
            let Some(e) = self.entries.get(&id) else {
                return;
            };
            if !e.exited || e.children > 0 {
                return;
            }
            let e = self.entries.remove(&id).expect("present");
            self.dropped += 1;
            if self.by_pid.get(&e.info.pid) == Some(&id) {
                self.by_pid.remove(&e.info.pid);
            }
            let Some(parent) = e.parent else { return };
            let Some(pe) = self.entries.get_mut(&parent) else {
                return;
            };
            pe.children = pe.children.saturating_sub(1);
            id = parent;
        }
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

    fn info(pid: u32, start_ns: u64) -> ProcInfo {
        ProcInfo {
            pid,
            start_ns,
            ..ProcInfo::default()
        }
    }

    #[test]
    fn exited_processes_stay_while_a_descendant_needs_them() {
        let mut t = Processes::default();
        let root = t.insert(info(10, 1), Live::default(), None, true);
        let child = t.fork(root, 11, false);
        let grandchild = t.fork(child, 12, false);
        t.learn_start(grandchild, 3);
        // The middle one exits first: kept for the grandchild's ancestry.
        t.entries.get_mut(&child).unwrap().exited = true;
        t.collect(child);
        assert_eq!(t.len(), 3);
        let names: Vec<u32> = t.ancestors(grandchild).iter().map(|p| p.pid).collect();
        assert_eq!(names, [11, 10]);
        // The grandchild exits: it and the exited middle one go; the root stays.
        t.entries.get_mut(&grandchild).unwrap().exited = true;
        t.collect(grandchild);
        assert_eq!(t.len(), 1);
        assert_eq!(t.dropped, 2);
        assert!(t.find(11, 0).is_none() && t.find(12, 0).is_none());
    }

    #[test]
    fn a_reused_pid_is_a_new_process() {
        let mut t = Processes::default();
        let mut old = info(20, 5);
        old.set_image(
            Some("/usr/bin/secret-tool".into()),
            argv(&["secret-tool", "--x"]),
        );
        old.cwd = Some("/old".into());
        let a = t.insert(old, Live::default(), None, true);
        assert_eq!(t.find(20, 5), Some(a));
        // A record of pid 20 with another start time is another process.
        assert_eq!(t.find(20, 9), None);
        let b = t.insert(info(20, 9), Live::default(), None, false);
        assert_ne!(a, b);
        assert!(t.info(b).exe.is_none() && t.info(b).argv.is_empty() && t.info(b).cwd.is_none());
        // The old one was gone (its pid reused) and nothing needed it: dropped.
        assert_eq!(t.len(), 1);
    }
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn gone_processes_are_swept_with_their_childless_ancestors() {
        let mut p = Processes::default();
        let parent = p.insert(
            ProcInfo {
                pid: 10,
                start_ns: 1,
                ..ProcInfo::default()
            },
            Live::default(),
            None,
            true,
        );
        let _child = p.insert(
            ProcInfo {
                pid: 11,
                start_ns: 2,
                ..ProcInfo::default()
            },
            Live::default(),
            Some(parent),
            true,
        );
        let _alive = p.insert(
            ProcInfo {
                pid: 12,
                start_ns: 3,
                ..ProcInfo::default()
            },
            Live::default(),
            None,
            true,
        );
        // 10 and 11 are gone; 12 runs.
        assert_eq!(p.sweep(|pid, _| pid == 12), 2);
        assert_eq!(p.len(), 1);
        assert!(p.find(12, 3).is_some());
    }

    #[test]
    fn an_exe_is_rendered_once_and_marked_escaped_in_each_event_that_names_it() {
        let mut live = Live::default();
        live.set_exe(Some(b"/tmp/x\xff\\y".to_vec()));
        let mut escaped = Vec::new();
        let a = live.exe_for("exe", &mut escaped).unwrap();
        let b = live.exe_for("ancestry.exe", &mut escaped).unwrap();
        assert_eq!(&*a, "/tmp/x\\xff\\\\y");
        assert!(std::sync::Arc::ptr_eq(&a, &b), "one text, shared");
        assert_eq!(escaped, vec!["exe".to_string(), "ancestry.exe".to_string()]);
        live.exe_for("exe", &mut escaped);
        assert_eq!(escaped.len(), 2, "a field is listed once");
        live.set_exe(Some(b"/usr/bin/node".to_vec()));
        let mut plain = Vec::new();
        assert_eq!(
            live.exe_for("exe", &mut plain).as_deref(),
            Some("/usr/bin/node")
        );
        assert!(plain.is_empty());
        live.set_exe(None);
        assert!(live.exe_for("exe", &mut plain).is_none());
    }
}
