//! The kernel side as userspace sees it: loading the eBPF object and attaching each sensor
//! (`loader`, `sensors/`), the live set of watched cgroups (`scope`), the cgroup v2 hierarchy
//! and run cgroups (`cgroup`), kernel BTF offsets (`kbtf`) and tracefs (`tracefs`).

// The programs compare x86-64's syscall numbers and read x86-64's saved registers (the
// arguments of a syscall at its exit): on another architecture they would misread every call.
#[cfg(not(target_arch = "x86_64"))]
compile_error!("buildwatch's kernel programs are written for x86-64");

pub mod cgroup;
pub mod egress;
pub mod kbtf;
pub mod loader;
pub mod scope;
pub mod sensors;
pub mod tracefs;
