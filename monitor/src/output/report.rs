//! The report: the verdict and what it rests on, built once at the end from the detect stage's
//! state and the output's own health. It is published on the bus as the last record; its
//! encoders are the JSON report (`--report`, docs/report.md), SARIF (`sarif`), Markdown
//! (`markdown`) and the terminal summary (`text`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    detect::{
        analyzer::{Analyzer, Egress, Totals},
        findings::Finding,
        rules::RuleSet,
    },
    event::{PipelineStats, RunEnd, SinkStats},
};

pub const REPORT_SCHEMA: u32 = 1;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verdict {
    pub fail_on: &'static str,
    pub failed: bool,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// buildwatch's exit status: the command's, or [`crate::exit::POLICY_VIOLATION`].
    pub exit_status: i32,
    /// Every output got every record. When false, `output` says which did not and why (a
    /// failed or stalled sink does not change `failed`: what was watched is still judged).
    pub output_complete: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub by_severity: BTreeMap<&'static str, u64>,
    pub by_category: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub schema: u32,
    pub buildwatch: String,
    pub command: Vec<String>,
    /// `--allow-32bit-syscalls`: the command's processes could make 32-bit syscalls, which
    /// buildwatch does not see.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_32bit_syscalls: bool,
    /// The command's exit code (128+N for signal N); null when the stream has no `run_end`.
    pub exit_code: Option<i32>,
    pub verdict: Verdict,
    /// The policy and rule files that judged the run, with their SHA-256 (empty: the
    /// built-in rules and default policy alone).
    pub policy_files: Vec<crate::policy::Source>,
    pub summary: Summary,
    pub findings: Vec<Finding>,
    /// Occurrences per rule not listed in `findings` because the rule already had
    /// `findings::MAX_PER_RULE` distinct findings.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub findings_unlisted: BTreeMap<String, u64>,
    pub egress: Vec<Egress>,
    /// Connections and sends to destinations past `analyzer::MAX_EGRESS` distinct ones.
    #[serde(skip_serializing_if = "is_zero")]
    pub egress_unlisted: u64,
    pub events: Totals,
    /// buildwatch's own CPU time and peak memory (from `run_end`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<crate::event::MonitorUsage>,
    /// Queues, sinks and kernel counters of the run (from `run_end`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineStats>,
    /// Outputs of this buildwatch that did not get every record (dropped, failed, stalled).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<SinkStats>,
    /// What each forwarding output delivered before the run ended, and what waits in its
    /// spool for the next run or the agent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forwarding: Vec<crate::output::forward::ForwardStats>,
    /// What each package's processes did (`name@version` → executables, destinations), for
    /// `buildwatch diff`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub packages: BTreeMap<String, crate::detect::analyzer::Behaviour>,
    /// The stream's `run_end` (for the terminal summary).
    #[serde(skip)]
    pub run_end: Option<RunEnd>,
    /// The repository the findings' locations are relative to (SARIF's `%SRCROOT%`).
    #[serde(skip)]
    pub repository_root: Option<String>,
}

/// What the report encoders need: the report, the rules for SARIF's descriptors, and the
/// category code scanning files the SARIF under.
pub struct Final {
    pub report: Report,
    pub rules: RuleSet,
    pub sarif_category: String,
}

impl Report {
    /// The report of what `a` saw; `sinks` are this buildwatch's outputs as they ended.
    pub fn new(a: &Analyzer, sinks: &[SinkStats]) -> Self {
        let fail_on = a.policy.fail_on;
        let mut reasons = Vec::new();
        let mut findings = a.findings.sorted();
        let mut repository_root = None;
        if !a.cwd.is_empty() {
            let mut locator =
                crate::output::location::Locator::new(std::path::Path::new(&a.cwd), &a.command);
            for f in &mut findings {
                f.location = locator.locate(f);
            }
            repository_root = Some(locator.root().to_string_lossy().into_owned());
        }
        let tripping = findings
            .iter()
            .filter(|f| fail_on.trips(f.severity))
            .count();
        if tripping > 0 {
            reasons.push(format!(
                "{tripping} finding(s) at or above {}",
                fail_on.as_str()
            ));
        }
        if a.policy.fail_on_lost && a.totals.lost > 0 {
            reasons.push(format!(
                "{} event(s) lost: buildwatch cannot vouch for this run (fail_on_lost: false \
                 accepts the loss)",
                a.totals.lost
            ));
        }
        if let Some(end) = &a.run_end {
            reasons.extend(end.unverified.iter().cloned());
        }
        reasons.extend(a.unverified.iter().cloned());
        let failed = !reasons.is_empty();
        let exit_code = a.run_end.as_ref().map(|e| e.exit_code);
        let command_status = exit_code.unwrap_or(0);
        let output: Vec<SinkStats> = sinks.iter().filter(|s| !s.complete()).cloned().collect();
        Self {
            schema: REPORT_SCHEMA,
            buildwatch: env!("CARGO_PKG_VERSION").into(),
            command: a.command.clone(),
            allow_32bit_syscalls: a.allow_32bit_syscalls,
            exit_code,
            verdict: Verdict {
                fail_on: fail_on.as_str(),
                failed,
                reasons,
                exit_status: if failed {
                    crate::exit::POLICY_VIOLATION
                } else {
                    command_status
                },
                output_complete: output.is_empty(),
            },
            policy_files: a.policy.sources.clone(),
            summary: Summary {
                by_severity: a.findings.by_severity(),
                by_category: a.findings.by_category(),
            },
            findings,
            findings_unlisted: a.findings.unlisted().clone(),
            egress: a.egress(),
            egress_unlisted: a.egress_unlisted,
            events: a.totals.clone(),
            monitor: a.run_end.as_ref().and_then(|e| e.monitor),
            pipeline: a.run_end.as_ref().and_then(|e| e.pipeline.clone()),
            output,
            forwarding: Vec::new(),
            packages: a.packages.clone(),
            run_end: a.run_end.clone(),
            repository_root,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
