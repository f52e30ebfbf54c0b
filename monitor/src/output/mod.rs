//! Output stage. Everything said is a record on the bus (`bus`); each sink (`sink`: terminal,
//! JSON Lines file or stdout, report files) has its own queue, thread and error state, and an
//! encoder (`encode`) per format: terminal text (`text`), JSON, the report (`report`), SARIF
//! (`sarif`) and Markdown (`markdown`). Escaping lives in each encoder.

pub mod annotations;
pub mod bus;
pub mod codequality;
pub mod encode;
pub mod forward;
pub mod location;
pub mod markdown;
pub mod report;
pub mod sarif;
pub mod sink;
pub mod spool;
pub mod status;
pub mod text;

/// Where the report's encodings go (files written once, at the end).
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    pub report: Option<std::path::PathBuf>,
    pub sarif: Option<std::path::PathBuf>,
    pub summary_md: Option<std::path::PathBuf>,
    /// GitLab's Code Quality report.
    pub codequality: Option<std::path::PathBuf>,
    /// `runAutomationDetails.id` of the SARIF (default [`sarif::DEFAULT_CATEGORY`]).
    pub sarif_category: Option<String>,
    /// GitHub workflow commands (`::error file=…,line=…::…`) for each finding, on standard
    /// output (standard error when the event stream is there): on when GITHUB_ACTIONS=true.
    pub annotations: bool,
    /// Forwarding outputs (the policy's `outputs:` and `--output` files): findings and the
    /// run's summary go to SIEMs through their spools.
    pub forward: Vec<forward::config::OutputConfig>,
    /// How long a run waits, at its end, for its forwarding outputs to deliver.
    pub forward_wait: Option<std::time::Duration>,
    /// Write the smallest policy that would have allowed the run here (`--learn`).
    pub learn: Option<std::path::PathBuf>,
}
