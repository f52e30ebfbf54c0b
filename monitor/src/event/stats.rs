//! What the pipeline reports about itself in `run_end` (and the report copies): its queues,
//! its sinks, and what the kernel sensors counted but could not deliver.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStats {
    /// The queues between stages.
    pub queues: Vec<QueueStats>,
    /// The output sinks, as they were when `run_end` was written (the report has their final
    /// state under `output`).
    pub sinks: Vec<SinkStats>,
    /// Kernel-side counters, per sensor and reason (only those above 0).
    pub kernel: KernelStats,
    /// How the end of the run was drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainStats>,
}

/// What a queue did over its life, as reported in `run_end` and the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub name: String,
    /// Unit of `capacity`, `depth`, `max_depth`: `bytes` or `records`.
    pub unit: String,
    pub capacity: u64,
    /// Weight queued when the stats were taken.
    pub depth: u64,
    /// Highest weight queued at once.
    pub max_depth: u64,
    /// Items accepted.
    pub pushed: u64,
    /// Items refused because the queue was full (or closed); `dropped_weight` is their weight.
    pub dropped: u64,
    pub dropped_weight: u64,
}

/// A sink's state, as reported in `run_end` and the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    pub name: String,
    pub format: String,
    /// Records written.
    pub written: u64,
    /// Records refused because the sink's queue was full.
    pub dropped: u64,
    /// Records not written because the sink had failed or was abandoned at the end.
    pub unwritten: u64,
    /// Why the sink stopped writing, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SinkStats {
    /// Everything published to this sink reached it.
    pub fn complete(&self) -> bool {
        self.dropped == 0 && self.unwritten == 0 && self.error.is_none()
    }
}

/// Per sensor (exec, file, net, dns, procmem), per reason (ringbuf_full, read_error,
/// stash_full, stash_missing): how often the kernel side could not do its work.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelStats {
    pub sensors: BTreeMap<String, BTreeMap<String, u64>>,
}

impl KernelStats {
    /// The sum of one reason over every sensor.
    pub fn total(&self, reason: &str) -> u64 {
        self.sensors.values().filter_map(|r| r.get(reason)).sum()
    }
}

/// After the command exited, the ring was drained for at most a time and a number of
/// records; what was left was read without processing and counted as lost (`drain_skipped`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStats {
    pub budget_ms: u64,
    pub budget_records: u64,
    /// Records processed after the command exited.
    pub drained: u64,
    /// Records read but not processed because the budget ran out.
    pub skipped: u64,
    /// The ring was empty when draining stopped.
    pub complete: bool,
}
