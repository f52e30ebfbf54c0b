//! Not a sensor: a doorbell for the agent. Every cgroup made, removed or renamed (any
//! hierarchy) adds one to [`CGROUP_CHANGES`]; the agent walks the cgroup tree again only when
//! the count moved (and rarely otherwise), instead of walking hundreds of directories twice a
//! second on a host where nothing changes. A count cannot be lost the way an event can.

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::Array,
    programs::TracePointContext,
};

#[map]
static CGROUP_CHANGES: Array<u64> = Array::with_max_entries(1, 0);

/// Attached to cgroup:cgroup_mkdir, cgroup:cgroup_rmdir and cgroup:cgroup_rename.
#[tracepoint]
pub fn cgroup_changed(_ctx: TracePointContext) -> u32 {
    if let Some(p) = CGROUP_CHANGES.get_ptr_mut(0) {
        // BPF_ATOMIC_ADD: two CPUs may make cgroups at once.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                p, 1,
            )
        };
    }
    0
}
