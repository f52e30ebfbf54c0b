//! The agent's view of the host's cgroups: which match the configured scope (they go into the
//! kernel's scope map, so their processes are watched), and what each one is (named through
//! `context::cgroups`), so every event and finding can say where it happened.
//!
//! The v2 tree is walked again every [`RESCAN`]: a matching cgroup created after start is
//! watched within that time, and one removed is dropped from the scope map. Events name their
//! cgroup by the low 32 bits of its id (its directory's inode number, see
//! `monitor_common::EventHeader::cgroup`); [`Cgroups::info`] maps those back.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use super::config::Scope;
use crate::context::cgroups::{Cgroups, classify};

/// How often the tree is walked again.
pub const RESCAN: Duration = Duration::from_millis(500);
/// Cgroups remembered (a host with more is unusual; beyond this they are not named).
const MAX_KNOWN: usize = 100_000;
/// Deepest directory walked below the root.
const MAX_DEPTH: usize = 32;

/// One walk's result: cgroups to add to the scope map (id, level) and ids to remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub add: Vec<(u64, u32, String)>,
    pub remove: Vec<u64>,
}

pub struct Scanner {
    root: PathBuf,
    /// Watched: id → path.
    watched: BTreeMap<u64, String>,
    pub known: Cgroups,
}

impl Scanner {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            watched: BTreeMap::new(),
            known: Cgroups::default(),
        }
    }

    /// Walk the tree: name every cgroup, and say which scope entries come and go. With a
    /// host-wide scope nothing is added (the kernel watches every task).
    pub fn scan(&mut self, scope: &Scope) -> Changes {
        let mut found: Vec<(u64, u32, String)> = Vec::new();
        walk(&self.root, "", 0, &mut found);
        let mut names = HashMap::with_capacity(found.len().min(MAX_KNOWN));
        let mut matching = BTreeMap::new();
        for (id, level, path) in &found {
            if names.len() < MAX_KNOWN {
                names.insert(*id as u32, Arc::new(classify(path)));
            }
            if let Scope::Globs { .. } = scope
                && !path.is_empty()
                && scope.matches(path)
            {
                matching.insert(*id, (*level, path.clone()));
            }
        }
        self.known.replace(names);
        let mut changes = Changes::default();
        for (id, (level, path)) in &matching {
            if !self.watched.contains_key(id) {
                changes.add.push((*id, *level, path.clone()));
            }
        }
        for id in self.watched.keys() {
            if !matching.contains_key(id) {
                changes.remove.push(*id);
            }
        }
        self.watched = matching.into_iter().map(|(id, (_, p))| (id, p)).collect();
        changes
    }

    /// Forget a cgroup the scope map refused (so a later walk tries again).
    pub fn unwatch(&mut self, id: u64) {
        self.watched.remove(&id);
    }
}

/// Every cgroup directory below `dir` (whose path below the root is `rel`), with its id and
/// level.
fn walk(dir: &Path, rel: &str, level: usize, out: &mut Vec<(u64, u32, String)>) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    out.push((meta.ino(), level as u32, rel.to_owned()));
    if level >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let child = if rel.is_empty() {
                name.into_owned()
            } else {
                format!("{rel}/{name}")
            };
            walk(&e.path(), &child, level + 1, out);
        }
    }
}
