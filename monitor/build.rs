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
    )?;
    strip_dwarf()
}

/// Drop the object's DWARF (`.debug_*`, 80% of it): bpf-linker made the BTF the kernel reads
/// from it, and the loader reads the whole embedded object, so the DWARF only cost resident
/// memory. With LLVM's objcopy (scripts/setup.sh installs LLVM for bpf-linker); without it the
/// object stays whole, with a warning.
fn strip_dwarf() -> anyhow::Result<()> {
    let obj = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("monitor");
    let stripped = obj.with_extension("stripped");
    let ran = ["llvm-objcopy", "llvm-objcopy-22"].iter().find_map(|tool| {
        std::process::Command::new(tool)
            .arg("--strip-debug")
            .arg(&obj)
            .arg(&stripped)
            .status()
            .ok()
    });
    match ran {
        Some(status) if status.success() => std::fs::rename(&stripped, &obj)?,
        Some(status) => anyhow::bail!("llvm-objcopy --strip-debug {}: {status}", obj.display()),
        None => println!(
            "cargo::warning=llvm-objcopy not found: the eBPF object keeps its DWARF (about 2 MB more in the binary)"
        ),
    }
    Ok(())
}
