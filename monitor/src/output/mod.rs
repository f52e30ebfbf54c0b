//! Output stage. Everything said is a record on the bus (`bus`); each sink (`sink`: terminal,
//! JSON Lines file or stdout, report files) has its own queue, thread and error state, and an
//! encoder (`encode`) per format: terminal text (`text`), JSON, the report (`report`), SARIF
//! (`sarif`) and Markdown (`markdown`). Escaping lives in each encoder.

pub mod bus;
pub mod encode;
pub mod markdown;
pub mod report;
pub mod sarif;
pub mod sink;
pub mod text;

/// Where the report's encodings go (files written once, at the end).
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    pub report: Option<std::path::PathBuf>,
    pub sarif: Option<std::path::PathBuf>,
    pub summary_md: Option<std::path::PathBuf>,
}
