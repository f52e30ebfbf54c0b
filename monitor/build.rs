//! Builds the eBPF programs (monitor-ebpf) for the BPF target with the pinned nightly and
//! bpf-linker; the object is embedded in the binary by `loader`.

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    aya_build::build_ebpf(
        [Package {
            name: "monitor-ebpf",
            root_dir: "../monitor-ebpf",
            ..Default::default()
        }],
        // Must match monitor-ebpf/rust-toolchain.toml: its LLVM major must equal bpf-linker's.
        Toolchain::Custom("nightly-2026-07-01"),
    )
}
