//! The kernel side as userspace sees it: loading the eBPF object and attaching each sensor
//! (`loader`, `sensors/`), the live set of watched cgroups (`scope`), the cgroup v2 hierarchy
//! and run cgroups (`cgroup`), kernel BTF offsets (`kbtf`) and tracefs (`tracefs`).

pub mod cgroup;
pub mod egress;
pub mod kbtf;
pub mod loader;
pub mod scope;
pub mod sensors;
pub mod tracefs;
