//! buildwatch: watches what a build (or a host) does, through eBPF sensors in the kernel, and
//! turns what it sees into findings a CI pipeline can act on.
//!
//! Pipeline, one module per hop: `loader` (sensors into the kernel) → `reader` (ring buffer)
//! → `decode` (records → typed events) → `proctable` (process context, paths) → `enrich`
//! (package attribution) → `analyzer` (process model + `rules` → `findings`) → `sink` (event
//! stream) and `report` (terminal, JSON, SARIF, Markdown). `run`, `replay`, `doctor` and the
//! `rules` subcommands are the commands that assemble it; `main.rs` only parses arguments.

pub mod analyzer;
pub mod cgroup;
pub mod config;
pub mod decode;
pub mod dns;
pub mod doctor;
pub mod enrich;
pub mod event;
pub mod findings;
pub mod kbtf;
pub mod loader;
pub mod model;
pub mod paths;
pub mod policy;
pub mod proctable;
pub mod reader;
pub mod replay;
pub mod report;
pub mod rules;
pub mod rules_cmd;
pub mod run;
pub mod sink;
pub mod tracefs;

/// buildwatch's own messages: on stderr, prefixed, so they never mix with the command's output.
pub fn note(msg: &str) {
    eprintln!("buildwatch: {msg}");
}
