//! What a user runs. Each mode assembles the pipeline for its purpose: `run` (the CI wrapper),
//! `replay` (a recorded stream, no root), `doctor` (can this machine run buildwatch?) and
//! `rules_cmd` (check and list rules).

pub mod agent;
pub mod diff;
pub mod doctor;
pub mod drill;
pub mod learn;
pub mod outputs;
pub mod replay;
pub mod rules_cmd;
pub mod run;

/// One line on standard output, for the commands that print (`rules`, `doctor`): use
/// [`outln!`](crate::outln). A reader that went away (`buildwatch rules fields | head`) ends
/// buildwatch with status 0, as it would a C tool through SIGPIPE; other write errors are
/// ignored (println! would panic on either).
pub fn out(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let r = o
        .write_fmt(args)
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush());
    if let Err(e) = r
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `println!` for [`out`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::mode::out(format_args!(""))
    };
    ($($t:tt)*) => {
        $crate::mode::out(format_args!($($t)*))
    };
}

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
