//! The agent's view of the host's cgroups: which match the configured scope (they go into the
//! kernel's scope map, so their processes are watched), and what each one is (named through
//! `context::cgroups`), so every event and finding can say where it happened.
//!
//! The v2 tree is walked again when the kernel's doorbell says a cgroup was made, removed or
//! renamed (checked every [`POLL`]), and every [`SAFETY_RESCAN`] regardless: a matching cgroup
//! created after start is watched within [`POLL`] and a walk, and one removed is dropped from
//! the scope map. A walk reads every cgroup directory (8 ms a second for 300 cgroups when it
//! ran twice a second): a host where nothing changes no longer pays for it. Without the
//! doorbell (its tracepoints missing), the tree is walked every [`RESCAN`]. Events name their
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

/// How often the tree is walked again when there is no doorbell.
pub const RESCAN: Duration = Duration::from_millis(500);
/// How often the doorbell's count is read.
pub const POLL: Duration = Duration::from_millis(200);
/// The longest time between two walks, doorbell or not.
pub const SAFETY_RESCAN: Duration = Duration::from_secs(30);

/// Whether to walk the tree now: the doorbell's count (`now`, `None` when it is missing or
/// could not be read) moved from the one the last walk started at (`seen`), or the last walk
/// is [`SAFETY_RESCAN`] old.
pub fn walk_due(now: Option<u64>, seen: Option<u64>, since_walk: Duration) -> bool {
    now.is_none() || now != seen || since_walk >= SAFETY_RESCAN
}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_walked_when_the_doorbell_rang_or_is_silent_too_long() {
        let recent = Duration::from_secs(1);
        assert!(!walk_due(Some(7), Some(7), recent));
        assert!(walk_due(Some(8), Some(7), recent));
        // Unreadable or missing: walk every time.
        assert!(walk_due(None, Some(7), recent));
        assert!(walk_due(None, None, recent));
        assert!(walk_due(Some(7), Some(7), SAFETY_RESCAN));
    }
}
