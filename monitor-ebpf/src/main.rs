//! Kernel programs of buildwatch: the sensors. Each probe area has its own module; all of them
//! filter by the run's cgroup in the kernel and write to one ring buffer (see `emit`).

#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod cgroups;
mod dns;
mod emit;
mod exec;
mod file;
mod net;
mod procmem;
mod tamper;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// bpf_probe_read_user and friends are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
