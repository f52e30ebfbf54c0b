//! buildwatch: watches what a build (or a host) does, through eBPF sensors in the kernel, and
//! turns what it sees into findings a CI pipeline or a SIEM can act on.
//!
//! Data flows one way, one folder per hop:
//!
//! ```text
//! kernel/   sensors in the kernel: loading, scope map, counters, one unit per sensor
//!   → ingest/   ring buffer reading and decoding (its own thread)
//!   → context/  process identity, fds and paths, DNS names, package attribution
//!   → detect/   rules, findings, egress tally
//!   → output/   the bus, encoders (text, JSON, SARIF, Markdown) and sinks, the report
//! ```
//!
//! `pipeline` wires the stages with bounded queues. `mode/` holds what the user runs (`run`,
//! `replay`, `doctor`, `rules`): each assembles the pipeline; `main.rs` only maps arguments to
//! a mode and its result to an exit status (`exit`). `event/` are the types every stage shares;
//! `policy/` is the user's configuration. Dependencies point down: mode → pipeline → stages →
//! event. No stage prints: the terminal is a sink.

pub mod context;
pub mod detect;
pub mod event;
pub mod exit;
pub mod ingest;
pub mod kernel;
pub mod mode;
pub mod output;
pub mod pipeline;
pub mod policy;
