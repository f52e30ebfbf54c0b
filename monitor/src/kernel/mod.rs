//! The kernel side as userspace sees it: loading the eBPF object and attaching its sensors
//! (`loader`), the cgroup v2 hierarchy and run cgroups (`cgroup`), kernel BTF offsets (`kbtf`)
//! and tracefs (`tracefs`).

pub mod cgroup;
pub mod kbtf;
pub mod loader;
pub mod tracefs;
