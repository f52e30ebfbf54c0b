//! Block mode's credential guard: the credential files a run could steal, found before the
//! command starts, so the kernel can kill a process that opens one for reading when it is
//! not the file's tool (the open has happened, the process never returns to user space to
//! read a byte).
//!
//! The rules decide, not a table of their own: a file is guarded when the default (or the
//! policy's) `sensitive-file-read` rule fires on reading it by a tool no exception names, and
//! its owners are the tools the rule's exceptions make room for on that file. Files are
//! looked for in the homes of the users a run acts as (its user, root) and in /etc, and told
//! to the kernel by identity (device and inode), so another path, a hard link or a relative
//! open reaches the same entry.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
};

use crate::detect::rules::{
    Rule, RuleSet,
    fields::{Field, KIND_NAMES, ProcField, Subject, Val},
};

/// The rule whose judgement the guard enforces.
pub const RULE: &str = "sensitive-file-read";
/// Directory levels below a home looked into.
const MAX_DEPTH: usize = 4;
/// Directory entries looked at per home (a huge home is cut short: what is past it is still
/// reported by the rule, just not killed).
const MAX_ENTRIES: usize = 20_000;
/// Directories below a home never looked into: caches and toolchains, large and holding no
/// credentials the rules name.
const SKIP_DIRS: &[&str] = &[
    "node_modules",
    ".cache",
    ".npm",
    ".cargo",
    ".rustup",
    ".pyenv",
    ".nvm",
    ".m2",
    ".gradle",
    ".git",
    "go",
];
/// Files outside homes the rules treat as credentials.
const SYSTEM_FILES: &[&str] = &["/etc/shadow", "/etc/gshadow"];
/// A tool name no exception can name.
const NOBODY: &str = "\u{0}buildwatch-probe";

/// A credential file the kernel guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guarded {
    pub path: PathBuf,
    /// Device in the kernel's encoding (major << 20 | minor), as `super_block.s_dev`.
    pub dev: u64,
    pub ino: u64,
    /// Tools allowed to read it (their kernel `comm`: at most 15 bytes).
    pub owners: Vec<String>,
}

/// A read of `path` by `tool`, as the rule sees an open event.
struct Probe<'a> {
    path: &'a str,
    tool: &'a str,
}

impl Subject for Probe<'_> {
    fn kind(&self) -> usize {
        KIND_NAMES.iter().position(|k| *k == "open").unwrap_or(0)
    }

    fn value(&self, field: Field) -> Val<'_> {
        match field {
            Field::EvtType => Val::Str(Cow::Borrowed("open")),
            Field::EvtFailed => Val::Bool(false),
            Field::FilePath => Val::Str(Cow::Borrowed(self.path)),
            Field::FilePaths => Val::List(vec![Cow::Borrowed(self.path)]),
            Field::FileName => Val::Str(Cow::Borrowed(
                self.path.rsplit('/').next().unwrap_or(self.path),
            )),
            Field::FileFlags => Val::List(vec![Cow::Borrowed("read")]),
            Field::FileWrite => Val::Bool(false),
            Field::Proc(_, ProcField::OwnerTool | ProcField::Tool | ProcField::Name) => {
                Val::Str(Cow::Borrowed(self.tool))
            }
            _ => Val::Missing,
        }
    }
}

/// The kernel's encoding of a device number (`super_block.s_dev`: major << 20 | minor).
fn kernel_dev(major: u64, minor: u64) -> u64 {
    (major << 20) | (minor & 0xf_ffff)
}

/// Mount id → the device of its super block, from /proc/self/mountinfo (its `major:minor`
/// field is `s_dev`, where stat's `st_dev` may be a btrfs subvolume's or an overlay's own).
fn mount_devices() -> std::collections::HashMap<u64, u64> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let id: u64 = f.next()?.parse().ok()?;
            let _parent = f.next()?;
            let (major, minor) = f.next()?.split_once(':')?;
            Some((id, kernel_dev(major.parse().ok()?, minor.parse().ok()?)))
        })
        .collect()
}

/// (s_dev, inode) of `path`, as the kernel's open hook will see them: the inode from statx,
/// the device from its mount's super block. None when either is unknown.
fn identity(path: &Path, mounts: &std::collections::HashMap<u64, u64>) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is given a NUL-terminated path and a zeroed buffer of its own type.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            libc::STATX_INO | libc::STATX_MNT_ID,
            &mut st,
        )
    };
    if r != 0 || st.stx_mask & libc::STATX_MNT_ID == 0 {
        return None;
    }
    Some((*mounts.get(&st.stx_mnt_id)?, st.stx_ino))
}

/// What the rule makes of `path`: None when it is not a credential file, else the tools that
/// may read it (from `candidates`).
fn judge(rule: &Rule, candidates: &[String], path: &str) -> Option<Vec<String>> {
    if !rule.matches(&Probe { path, tool: NOBODY }) {
        return None;
    }
    Some(
        candidates
            .iter()
            .filter(|t| !rule.matches(&Probe { path, tool: t }))
            .cloned()
            .collect(),
    )
}

/// Regular files below `home` (bounded), skipping [`SKIP_DIRS`] and never following links.
fn files_in(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen = 0usize;
    let mut stack = vec![(home.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return out;
            }
            let Ok(t) = e.file_type() else { continue };
            let path = e.path();
            if t.is_dir() {
                let skip = e
                    .file_name()
                    .to_str()
                    .is_some_and(|n| SKIP_DIRS.contains(&n));
                if depth < MAX_DEPTH && !skip {
                    stack.push((path, depth + 1));
                }
            } else if t.is_file() {
                out.push(path);
            }
        }
    }
    out
}

/// The credential files in `homes` and /etc that the rules would report a stranger reading,
/// with their owners. Nothing when the rule is missing or disabled.
pub fn credential_files(rules: &RuleSet, homes: &[PathBuf]) -> Vec<Guarded> {
    let Some(rule) = rules.rules.iter().find(|r| r.name == RULE && r.enabled) else {
        return Vec::new();
    };
    let candidates = rule.exception_tools();
    let mut paths: Vec<PathBuf> = SYSTEM_FILES.iter().map(PathBuf::from).collect();
    let mut done_homes = Vec::new();
    for h in homes {
        let h = std::fs::canonicalize(h).unwrap_or_else(|_| h.clone());
        if h == Path::new("/") || done_homes.contains(&h) {
            continue;
        }
        paths.extend(files_in(&h));
        done_homes.push(h);
    }
    let mounts = mount_devices();
    let mut out: Vec<Guarded> = Vec::new();
    for p in paths {
        let Some(text) = p.to_str() else { continue };
        let Some(owners) = judge(rule, &candidates, text) else {
            continue;
        };
        let Some((dev, ino)) = identity(&p, &mounts) else {
            continue;
        };
        if out.iter().any(|g| g.dev == dev && g.ino == ino) {
            continue;
        }
        out.push(Guarded {
            path: p,
            dev,
            ino,
            owners,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_decide_what_is_guarded_and_who_owns_it() {
        let (rules, _) = crate::detect::rules::load(&crate::detect::rules::default_docs());
        let rules = rules.expect("the default rules load");
        let home = std::env::temp_dir().join(format!("bw-guard-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(home.join("node_modules/.aws")).unwrap();
        for f in [
            ".aws/credentials",
            ".ssh/id_ed25519",
            ".ssh/id_ed25519.pub",
            "notes.txt",
            "node_modules/.aws/credentials",
        ] {
            std::fs::write(home.join(f), "x").unwrap();
        }
        let g = credential_files(&rules, std::slice::from_ref(&home));
        let find = |name: &str| g.iter().find(|g| g.path.ends_with(name));
        let aws = find(".aws/credentials").expect("the AWS credentials are guarded");
        assert!(aws.owners.contains(&"aws".to_owned()), "{aws:?}");
        assert!(!aws.owners.contains(&"ssh".to_owned()), "{aws:?}");
        let key = find(".ssh/id_ed25519").expect("the SSH key is guarded");
        assert!(key.owners.contains(&"ssh".to_owned()), "{key:?}");
        assert!(find(".ssh/id_ed25519.pub").is_none(), "public keys are not");
        assert!(find("notes.txt").is_none());
        assert!(
            !g.iter()
                .any(|g| g.path.starts_with(home.join("node_modules"))),
            "skipped directories are not walked"
        );
        // The device is the super block's, from the mount table.
        assert!(aws.dev > 0 && aws.ino > 0, "{aws:?}");
        let _ = std::fs::remove_dir_all(&home);
    }
}
