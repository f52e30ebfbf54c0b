//! What a cgroup is — a systemd unit, a container, a Kubernetes pod — from its path, and the
//! table the agent keeps of the host's cgroups by the 32-bit id events carry (see
//! `monitor_common::EventHeader::cgroup`), so every event and finding can say where it
//! happened.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use serde::{Deserialize, Serialize};

/// What a cgroup is, from its path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupInfo {
    /// Below the v2 root, with a leading `/`.
    pub path: String,
    /// `systemd-unit`, `container`, `k8s-pod` or `cgroup`.
    pub kind: std::borrow::Cow<'static, str>,
    /// The unit's name, the container's id, or the pod's uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// What a cgroup path says it is. Container scopes first (a docker scope is also a systemd
/// scope), then pods (a pod's containers sit below the pod), then units.
pub fn classify(path: &str) -> CgroupInfo {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let info = |kind: &'static str, id: Option<String>| CgroupInfo {
        path: format!("/{}", parts.join("/")),
        kind: kind.into(),
        id,
    };
    let hex_id =
        |s: &str| (s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_owned());
    if let Some(last) = parts.last() {
        for prefix in [
            "docker-",
            "cri-containerd-",
            "crio-",
            "libpod-",
            "containerd-",
        ] {
            if let Some(id) = last
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(".scope"))
                .and_then(hex_id)
            {
                return info("container", Some(id));
            }
        }
        // cgroupfs drivers: /docker/<id>, /kubepods/…/pod<uid>/<id>
        if let Some(id) = hex_id(last).filter(|id| id.len() == 64) {
            return info("container", Some(id));
        }
    }
    for p in parts.iter().rev() {
        // kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice
        // or kubepods/burstable/pod<uid>
        let uid = p
            .strip_suffix(".slice")
            .and_then(|s| s.rsplit_once("-pod").map(|(_, u)| u.replace('_', "-")))
            .or_else(|| p.strip_prefix("pod").map(str::to_owned));
        if let Some(uid) = uid.filter(|u| u.len() == 36 && u.matches('-').count() == 4) {
            return info("k8s-pod", Some(uid));
        }
    }
    match parts.last() {
        Some(last) if last.ends_with(".service") || last.ends_with(".scope") => {
            info("systemd-unit", Some((*last).to_owned()))
        }
        _ => info("cgroup", None),
    }
}

/// Cgroups by the 32-bit id events carry, shared with the pipeline's stage.
#[derive(Clone, Default)]
pub struct Cgroups(Arc<RwLock<HashMap<u32, Arc<CgroupInfo>>>>);

impl Cgroups {
    pub fn info(&self, id: u32) -> Option<Arc<CgroupInfo>> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole table, from a fresh walk of the tree.
    pub fn replace(&self, table: HashMap<u32, Arc<CgroupInfo>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = table;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_say_what_they_are() {
        let c = classify("system.slice/cron.service");
        assert_eq!(
            (&*c.kind, c.id.as_deref()),
            ("systemd-unit", Some("cron.service"))
        );
        assert_eq!(c.path, "/system.slice/cron.service");
        let id = "a".repeat(64);
        let c = classify(&format!("system.slice/docker-{id}.scope"));
        assert_eq!(
            (&*c.kind, c.id.as_deref()),
            ("container", Some(id.as_str()))
        );
        let c = classify(&format!("docker/{id}"));
        assert_eq!(&*c.kind, "container");
        let c = classify(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_1111_2222_3333_444455556666.slice",
        );
        assert_eq!(
            (&*c.kind, c.id.as_deref()),
            ("k8s-pod", Some("1a2b3c4d-1111-2222-3333-444455556666"))
        );
        let c = classify("kubepods/besteffort/pod1a2b3c4d-1111-2222-3333-444455556666");
        assert_eq!(&*c.kind, "k8s-pod");
        assert_eq!(classify("user.slice").kind, "cgroup");
    }
}
