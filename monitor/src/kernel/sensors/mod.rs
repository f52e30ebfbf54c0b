//! The sensors: each a unit of kernel programs with its own row of loss counters, attached and
//! detached on its own (Tetragon's sensor). They share the ring buffer, the syscall-argument
//! stash and the scope map (see `kernel::loader`). Each file here says which programs make up
//! one sensor and where they attach.

mod dns;
mod exec;
mod file;
mod net;
mod procmem;
mod tamper;

use aya::programs::CgroupSkbAttachType;
use monitor_common::sensors;

/// A syscall/scheduler tracepoint program: (program name, category, tracepoint).
pub struct Probe(pub &'static str, pub &'static str, pub &'static str);

/// One sensor's programs.
pub struct Spec {
    /// Index of its counter row (`monitor_common::sensors`).
    pub id: u32,
    pub what: &'static str,
    pub tracepoints: &'static [Probe],
    /// cgroup_sock_addr programs, attached to the anchor cgroup.
    pub sock_addr: &'static [&'static str],
    /// cgroup_skb programs, attached to the anchor cgroup.
    pub skb: &'static [(&'static str, CgroupSkbAttachType)],
}

impl Spec {
    pub fn name(&self) -> &'static str {
        sensors::NAMES[self.id as usize]
    }

    /// Every program of the sensor, by name.
    pub fn programs(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tracepoints
            .iter()
            .map(|p| p.0)
            .chain(self.sock_addr.iter().copied())
            .chain(self.skb.iter().map(|s| s.0))
    }
}

/// Every sensor, in counter-row order.
pub const ALL: [&Spec; sensors::COUNT as usize] = [
    &exec::SPEC,
    &file::SPEC,
    &net::SPEC,
    &dns::SPEC,
    &procmem::SPEC,
    &tamper::SPEC,
];

const _: () = {
    let mut i = 0;
    while i < ALL.len() {
        assert!(ALL[i].id as usize == i);
        i += 1;
    }
};
