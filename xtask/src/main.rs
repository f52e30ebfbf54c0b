//! Project tasks that need more than `cargo`: `cargo xtask test` builds buildwatch and runs
//! every test, including the end-to-end ones that load eBPF (root required; under CI=true they
//! fail rather than skip without it), then fuzzes the parsers briefly; `cargo xtask fuzz
//! [SECONDS]` runs only the fuzz targets (fuzz/, cargo-fuzz on the pinned nightly); `cargo
//! xtask bench` measures what buildwatch costs (see bench/mod.rs and docs/benchmarks.md).

mod bench;
mod dist;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("dist") => match dist::main(&args[1..]) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask dist: {e}");
                ExitCode::FAILURE
            }
        },
        Some("fuzz") => match args.get(1).map(|s| s.parse::<u32>()) {
            None => exit(fuzz(FUZZ_SECS)),
            Some(Ok(secs)) if secs > 0 => exit(fuzz(secs)),
            Some(_) => {
                eprintln!("xtask fuzz: SECONDS must be a whole number above 0");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!(
                "usage: cargo xtask test [-- extra cargo test args] | cargo xtask fuzz [SECONDS] \
                 | cargo xtask bench [--quick] [--only SECTIONS] [--monitors LIST] [--publish] \
                 | cargo xtask dist"
            );
            ExitCode::from(2)
        }
    }
}

fn cargo(args: &[&str], extra: &[String]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    Command::new(cargo)
        .args(args)
        .args(extra)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SECS: u32 = 20;
/// Must match monitor-ebpf/rust-toolchain.toml (cargo-fuzz needs a nightly; this one is
/// installed for the eBPF build anyway).
const NIGHTLY: &str = "+nightly-2026-07-01";
const FUZZ_TARGETS: &[&str] = &["dns_message", "kernel_record"];

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn test(extra: &[String]) -> ExitCode {
    // The end-to-end tests run the `buildwatch` binary: build it before they start; and the
    // release tarball, which tests/tests/dist.rs installs as a CI runner would.
    if !cargo(
        &["build", "--package", "monitor", "--bin", "buildwatch"],
        &[],
    ) {
        return exit(false);
    }
    let tarball = match dist::main(&[]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("xtask dist: {e}");
            return exit(false);
        }
    };
    // SAFETY: single-threaded here; the variable is read by the test processes cargo starts.
    unsafe { std::env::set_var("BUILDWATCH_DIST", &tarball) };
    let ok = cargo(&["test", "--workspace", "--exclude", "monitor-ebpf"], extra) && fuzz(FUZZ_SECS);
    exit(ok)
}

/// Run every fuzz target for `secs` seconds. A crash fails; its input is left in
/// fuzz/artifacts/.
fn fuzz(secs: u32) -> bool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    FUZZ_TARGETS.iter().all(|target| {
        eprintln!("xtask: cargo {NIGHTLY} fuzz run {target} (-max_total_time={secs})");
        // The rustup proxy picks the toolchain from `+…`; the eBPF objects are not needed to
        // fuzz userspace parsers (and must not get the sanitizer flags).
        Command::new("cargo")
            .current_dir(root.join("fuzz"))
            .env_remove("RUSTUP_TOOLCHAIN")
            .env("BUILDWATCH_NO_EBPF", "1")
            .args([NIGHTLY, "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={secs}"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}
