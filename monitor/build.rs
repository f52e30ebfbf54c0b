//! Builds the eBPF programs (monitor-ebpf) for the BPF target with the pinned nightly and
//! bpf-linker; the object is embedded in the binary by `loader`.
//!
//! `BUILDWATCH_NO_EBPF=1` embeds an empty object instead, for builds that only exercise the
//! userspace parsers (the fuzz targets in fuzz/, built with sanitizer flags that must not reach
//! the BPF build). Such a binary refuses to load sensors with a clear error.

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=BUILDWATCH_NO_EBPF");
    if std::env::var_os("BUILDWATCH_NO_EBPF").is_some() {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
        std::fs::write(out.join("monitor"), b"")?;
        return Ok(());
    }
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
