//! Output stage: the report built from a run's findings (`report`), the encoders for each
//! format, and the sinks they are written to (`sink`).

pub mod report;
pub mod sink;
