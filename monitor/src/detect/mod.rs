//! Detect stage: events in their process context → findings. The rules (`rules/`), the
//! DNS name shapes and windows (`dns_shape`), finding
//! merging (`findings`), and the analyzer that drives them and tallies egress.

pub mod analyzer;
pub mod dns_shape;
pub mod findings;
pub mod rules;
pub mod secrets;
