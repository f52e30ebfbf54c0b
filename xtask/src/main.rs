//! Project tasks that need more than `cargo`: `cargo xtask test` builds buildwatch and runs
//! every test, including the end-to-end ones that load eBPF (root required; under CI=true they
//! fail rather than skip without it).

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask test [-- extra cargo test args]");
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

fn test(extra: &[String]) -> ExitCode {
    // The end-to-end tests run the `buildwatch` binary: build it before they start.
    let ok = cargo(
        &["build", "--package", "monitor", "--bin", "buildwatch"],
        &[],
    ) && cargo(&["test", "--workspace", "--exclude", "monitor-ebpf"], extra);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
