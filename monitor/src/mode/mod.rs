//! What a user runs. Each mode assembles the pipeline for its purpose: `run` (the CI wrapper),
//! `replay` (a recorded stream, no root), `doctor` (can this machine run buildwatch?) and
//! `rules_cmd` (check and list rules).

pub mod doctor;
pub mod outputs;
pub mod replay;
pub mod rules_cmd;
pub mod run;

/// buildwatch's own messages before (or outside) a pipeline: on stderr, prefixed, so they never
/// mix with the command's output. Inside a run, messages are records on the output bus.
pub fn note(msg: &str) {
    use std::io::Write;
    // A broken stderr must not stop buildwatch (eprintln! would panic): the report is still
    // to be written.
    let _ = writeln!(
        std::io::stderr(),
        "buildwatch: {}",
        crate::output::text::term_safe(msg)
    );
}
