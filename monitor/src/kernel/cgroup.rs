//! The run's cgroup v2: where the watched process tree lives. Every kernel program filters on
//! it, so its lifetime brackets the run: created before the command starts, emptied (stragglers
//! reported and killed, or moved out) and removed when the run ends, also on error paths (Drop).

use std::{
    ffi::CString,
    fs, io,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup v2 hierarchy is mounted (looked for fstype cgroup2 in /proc/self/mountinfo)"
    )]
    NoV2Mount,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where the cgroup v2 hierarchy is mounted (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified).
pub fn v2_mount() -> Result<PathBuf, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    find_v2_mount(&text).ok_or(CgroupError::NoV2Mount)
}

/// Parse mountinfo(5): `id parent major:minor root mountpoint opts... - fstype source superopts`.
pub fn find_v2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mountpoint = pre.split(' ').nth(4)?;
        Some(PathBuf::from(unescape_octal(mountpoint)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> std::ffi::OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::os::unix::ffi::OsStringExt::from_vec(out)
}

/// This process's cgroup v2 path relative to the hierarchy root (the `0::` line).
fn own_cgroup() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim_start_matches('/')))
}

pub struct RunCgroup {
    dir: PathBuf,
    id: u64,
    level: u32,
    removed: bool,
}

impl RunCgroup {
    /// Create a fresh cgroup for one run, below our own cgroup when allowed (so delegation and
    /// nesting keep working), else below the hierarchy root.
    pub fn create() -> Result<Self, CgroupError> {
        let mount = v2_mount()?;
        let name = format!("buildwatch-{}-{}", std::process::id(), unique_suffix());
        let mut parents = Vec::new();
        if let Some(own) = own_cgroup().filter(|p| !p.as_os_str().is_empty()) {
            parents.push(mount.join(own));
        }
        parents.push(mount.clone());
        let mut last_err = None;
        for parent in parents {
            sweep_stale(&parent);
            let dir = parent.join(&name);
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let id = fs::metadata(&dir).map_err(io_err(&dir))?.ino();
                    let level = dir
                        .strip_prefix(&mount)
                        .map(|p| p.components().count())
                        .unwrap_or(0);
                    return Ok(Self {
                        dir,
                        id,
                        level: level as u32,
                        removed: false,
                    });
                }
                Err(e) => {
                    last_err = Some(CgroupError::Io {
                        path: dir,
                        source: e,
                    })
                }
            }
        }
        Err(last_err.unwrap_or(CgroupError::NoV2Mount))
    }

    /// The cgroup id the kernel programs compare against (the directory's inode number).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Depth below the v2 root, for bpf_get_current_ancestor_cgroup_id.
    pub fn level(&self) -> u32 {
        self.level
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn open_dir(&self) -> io::Result<fs::File> {
        fs::File::open(&self.dir)
    }

    /// Path of `cgroup.procs`, prepared before fork so the child can join without allocating.
    pub fn procs_file_cstring(&self) -> CString {
        CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes())
            .expect("cgroup path contains no NUL")
    }

    /// Every pid in this cgroup and its descendants.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for dir in self.subtree() {
            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// This cgroup and all cgroups below it, parents before children.
    fn subtree(&self) -> Vec<PathBuf> {
        let mut out = vec![self.dir.clone()];
        let mut i = 0;
        while i < out.len() {
            if let Ok(rd) = fs::read_dir(&out[i]) {
                for entry in rd.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        out.push(entry.path());
                    }
                }
            }
            i += 1;
        }
        out
    }

    /// SIGKILL every process in the subtree and wait until it is empty.
    pub fn kill_all(&self, timeout: Duration) -> io::Result<()> {
        let kill_file = self.dir.join("cgroup.kill");
        let deadline = Instant::now() + timeout;
        loop {
            if self.pids().is_empty() {
                return Ok(());
            }
            if fs::write(&kill_file, b"1").is_err() {
                // Kernels before 5.14 have no cgroup.kill: signal each process instead.
                for pid in self.pids() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "{} still has processes {:?} after SIGKILL",
                    self.dir.display(),
                    self.pids()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Move every process of the subtree to the parent cgroup (kept stragglers leave the run).
    pub fn release_all(&self) -> io::Result<()> {
        let parent_procs = self
            .dir
            .parent()
            .unwrap_or(Path::new("/"))
            .join("cgroup.procs");
        for pid in self.pids() {
            fs::write(&parent_procs, pid.to_string())?;
        }
        Ok(())
    }

    /// Remove the cgroup and its sub-cgroups (children first). They must be empty.
    pub fn remove(&mut self) -> io::Result<()> {
        if self.removed {
            return Ok(());
        }
        for dir in self.subtree().iter().rev() {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
            }
        }
        self.removed = true;
        Ok(())
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Error paths: never leave processes or the directory behind.
        let _ = self.kill_all(Duration::from_secs(5));
        if let Err(e) = self.remove() {
            tracing::warn!("could not remove run cgroup: {e}");
        }
    }
}

fn unique_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Remove empty run cgroups left by a buildwatch that was SIGKILLed (its pid is gone).
fn sweep_stale(parent: &Path) {
    let Ok(rd) = fs::read_dir(parent) else { return };
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("buildwatch-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let populated = fs::read_to_string(entry.path().join("cgroup.events"))
            .map(|t| t.lines().any(|l| l == "populated 1"))
            .unwrap_or(true);
        if !populated {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unified_mount_in_hybrid_layout() {
        let mi = "\
24 31 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
25 24 0:23 / /sys/fs/cgroup/unified rw,nosuid,relatime shared:4 - cgroup2 cgroup2 rw
26 24 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            find_v2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn unescapes_mountpoints_and_ignores_v1() {
        let mi = "1 0 0:1 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(find_v2_mount(mi), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(
            find_v2_mount("1 0 0:1 / /x rw - cgroup cgroup rw,cpu\n"),
            None
        );
        assert_eq!(find_v2_mount("garbage\n\n- -\n"), None);
    }
}
