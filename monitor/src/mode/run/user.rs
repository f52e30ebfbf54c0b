//! Who the watched command runs as. buildwatch needs root; the build does not. Started through
//! sudo (SUDO_UID and SUDO_GID set), buildwatch runs the command as the user who invoked sudo,
//! with that user's groups and HOME, as the build would run without buildwatch: a CI job's
//! `sudo buildwatch -- npm ci` builds as the runner user. `--user` names another (or `root`).
//! Everything is resolved before the command is forked; the child only makes the three
//! async-signal-safe calls that switch identity.

use std::ffi::{CString, OsString};

use nix::unistd::{Gid, Group, Uid, User};

/// The identity the command takes, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary one included).
    pub groups: Vec<u32>,
    pub home: OsString,
}

impl Credentials {
    /// What changes in the command's environment: HOME, USER and LOGNAME.
    pub fn env(&self) -> [(&'static str, OsString); 3] {
        [
            ("HOME", self.home.clone()),
            ("USER", self.name.clone().into()),
            ("LOGNAME", self.name.clone().into()),
        ]
    }

    /// Runs in the forked child, last before exec: supplementary groups, then group, then
    /// user (the order that still has the privilege each step needs). Any failure stops the
    /// exec: the command never runs as someone it should not.
    pub fn apply(&self) -> std::io::Result<()> {
        // SAFETY: plain syscalls on memory prepared before fork.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0
                || libc::setresgid(self.gid, self.gid, self.gid) != 0
                || libc::setresuid(self.uid, self.uid, self.uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The identity for the command: `--user` if given (`root` keeps buildwatch's own), else the
/// user who invoked sudo, else none (the command runs as buildwatch does).
pub fn resolve(flag: Option<&str>, sudo_uid: Option<&str>) -> Result<Option<Credentials>, String> {
    match (flag, sudo_uid) {
        (Some(spec), _) => {
            let user = lookup(spec)?;
            if user.uid.is_root() && Uid::current().is_root() {
                return Ok(None);
            }
            credentials(user).map(Some)
        }
        (None, Some(uid)) => {
            let uid: u32 = uid
                .parse()
                .map_err(|_| format!("SUDO_UID is not a uid: {uid:?}"))?;
            if uid == 0 {
                return Ok(None);
            }
            let user = User::from_uid(Uid::from_raw(uid))
                .map_err(|e| format!("looking up SUDO_UID {uid}: {e}"))?
                .ok_or_else(|| format!("SUDO_UID {uid} is not a user of this machine"))?;
            credentials(user).map(Some)
        }
        (None, None) => Ok(None),
    }
}

/// A user by name, or by number.
fn lookup(spec: &str) -> Result<User, String> {
    let by_name = User::from_name(spec).map_err(|e| format!("--user {spec}: {e}"))?;
    if let Some(u) = by_name {
        return Ok(u);
    }
    let uid: u32 = spec
        .parse()
        .map_err(|_| format!("--user {spec}: no such user"))?;
    User::from_uid(Uid::from_raw(uid))
        .map_err(|e| format!("--user {spec}: {e}"))?
        .ok_or_else(|| format!("--user {spec}: no such user"))
}

fn credentials(user: User) -> Result<Credentials, String> {
    let cname = CString::new(user.name.clone())
        .map_err(|_| format!("user name {:?} has a NUL byte", user.name))?;
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&cname, user.gid)
        .map_err(|e| format!("groups of {}: {e}", user.name))?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    // The primary group must exist as a group for the user's files to make sense; its absence
    // is not fatal (a numeric gid still works).
    let _ = Group::from_gid(user.gid);
    Ok(Credentials {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        home: user.dir.into_os_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_uid_and_user_flag() {
        // Nothing asked: nobody to become.
        assert_eq!(resolve(None, None), Ok(None));
        // sudo from root, or --user root while root: stay.
        assert_eq!(resolve(None, Some("0")), Ok(None));
        if Uid::current().is_root() {
            assert_eq!(resolve(Some("root"), None), Ok(None));
            assert_eq!(resolve(Some("root"), Some("65534")), Ok(None));
        }
        // The user sudo was invoked by (nobody exists on every Debian system).
        let c = resolve(None, Some("65534")).unwrap().unwrap();
        assert_eq!((c.uid, c.name.as_str()), (65534, "nobody"));
        assert!(c.groups.contains(&c.gid));
        assert_eq!(c.env()[0].1, c.home);
        // --user wins over SUDO_UID, by name or number.
        assert_eq!(
            resolve(Some("nobody"), Some("0")).unwrap().unwrap().uid,
            65534
        );
        assert_eq!(
            resolve(Some("65534"), None).unwrap().unwrap().name,
            "nobody"
        );
        // Bad input: an error naming it, never a panic.
        assert!(resolve(None, Some("x1")).unwrap_err().contains("SUDO_UID"));
        assert!(
            resolve(Some("no-such-user-bw"), None)
                .unwrap_err()
                .contains("no such user")
        );
        assert!(resolve(Some("a\0b"), None).is_err());
    }
}
