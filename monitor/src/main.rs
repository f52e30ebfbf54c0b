//! buildwatch: watches what a build (or a host) does, through eBPF sensors in the kernel.
//!
//! Pipeline, one module per hop: `loader` (sensors into the kernel) → `reader` (ring buffer)
//! → `decode` (records → typed events) → `proctable` (process context, paths) → `sink`.
//! `run` and `doctor` are the commands that assemble it.

mod cgroup;
mod decode;
mod doctor;
mod event;
mod kbtf;
mod loader;
mod paths;
mod proctable;
mod reader;
mod run;
mod sink;
mod tracefs;

use std::{ffi::OsString, path::PathBuf};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "buildwatch",
    version,
    about = "Watch what a build does: exec, files, network"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a command and watch its whole process tree.
    Run {
        /// Write every event as JSON Lines to FILE (`-` for stdout).
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Leave processes the command left running alive (moved out of the run) instead of
        /// killing them.
        #[arg(long)]
        keep_stragglers: bool,
        /// Kernel ring buffer size in bytes (a power of two, at least 4096).
        #[arg(long, value_name = "BYTES", default_value_t = loader::DEFAULT_RING_BYTES,
              value_parser = parse_ring_size)]
        ring_size: u32,
        /// The command and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<OsString>,
    },
    /// Check that this machine can run buildwatch, and say what is missing.
    Doctor,
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

/// buildwatch's own messages: on stderr, prefixed, so they never mix with the command's output.
pub fn note(msg: &str) {
    eprintln!("buildwatch: {msg}");
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BUILDWATCH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .without_time()
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            note(&format!("cannot start: {e}"));
            std::process::exit(run::exit::INTERNAL);
        }
    };
    let code = match cli.command {
        Cmd::Run {
            events,
            keep_stragglers,
            ring_size,
            command,
        } => {
            let opts = run::RunOptions {
                events,
                keep_stragglers,
                ring_bytes: ring_size,
                command,
            };
            match rt.block_on(run::run(opts)) {
                Ok(code) => code,
                Err(e) => {
                    note(&format!("error: {e:#}"));
                    run::exit::INTERNAL
                }
            }
        }
        Cmd::Doctor => rt.block_on(doctor::doctor()),
    };
    run::flush_stdout();
    drop(rt);
    std::process::exit(code);
}
