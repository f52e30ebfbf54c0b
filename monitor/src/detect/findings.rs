//! Findings: what a rule match becomes. Identical findings (same rule, same message) are merged
//! with a count; the first occurrence keeps its process and detail. Their JSON shape is part of
//! the report contract (docs/report.md).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::{detect::rules::Severity, event::Package};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    pub message: String,
    pub process: ProcessRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
    /// Where it happened, on a host (the agent): the cgroup and what it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<std::sync::Arc<crate::context::cgroups::CgroupInfo>>,
    pub detail: serde_json::Value,
    pub count: u64,
    /// Time of the first occurrence (RFC 3339).
    pub first_seen: String,
    /// `seq` of the first event that produced it.
    pub first_seq: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Where in the repository it belongs (the package's manifest line, or the file holding
    /// the command); set when the report is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<crate::output::location::SourceLocation>,
    /// Other rules the same action matched, no more severe than this one: on the same event,
    /// or done next by the process whose command line this finding is about, or by its
    /// descendants (`curl | sh` is one finding; the curl it started and curl's connection are
    /// its parts). At most [`MAX_PARTS`] distinct parts, each with a count.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// Parts not listed once [`MAX_PARTS`] were.
    #[serde(skip_serializing_if = "is_zero")]
    pub parts_unlisted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A rule matched as part of a finding's action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Part {
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    pub message: String,
    pub pid: u32,
    pub count: u64,
}

/// Distinct parts listed per finding.
pub const MAX_PARTS: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub argv: Vec<String>,
    /// Parent first.
    pub ancestry: Vec<AncestorRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AncestorRef {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub argv: Vec<String>,
}

/// Distinct findings (different messages) kept per rule. Messages name paths, hosts and
/// query names the watched code chooses, so without a bound it could grow the report and
/// buildwatch's memory at will; beyond it, occurrences are counted per rule, not listed. A
/// rule's first findings are always kept, so its severity still counts for the verdict.
pub const MAX_PER_RULE: usize = 1000;

pub struct Findings {
    list: Vec<Finding>,
    index: HashMap<(String, String), usize>,
    /// Distinct findings listed per rule (per rule and cgroup on a host).
    per_rule: HashMap<String, usize>,
    unlisted: BTreeMap<String, u64>,
    /// Distinct findings listed per rule (and cgroup) before further ones are only counted.
    cap: usize,
}

impl Default for Findings {
    fn default() -> Self {
        Self::with_cap(MAX_PER_RULE)
    }
}

/// What a window of findings came to, at its end (the agent's roll-up): every finding seen
/// more than once in it, with its count, and what the per-rule cap kept from being listed.
pub struct Window {
    pub repeated: Vec<Finding>,
    /// Rule (and cgroup path, when there is one) → occurrences not listed.
    pub unlisted: BTreeMap<String, u64>,
}

impl Findings {
    /// At most `cap` distinct findings listed per rule (per rule and cgroup on a host).
    pub fn with_cap(cap: usize) -> Self {
        Self {
            list: Vec::new(),
            index: HashMap::new(),
            per_rule: HashMap::new(),
            unlisted: BTreeMap::new(),
            cap: cap.max(1),
        }
    }

    /// End the window: what it came to, and a fresh start (the agent's memory stays bounded
    /// however long it runs; counts go on in the roll-ups and the metrics).
    pub fn take_window(&mut self) -> Window {
        let old = std::mem::replace(self, Self::with_cap(self.cap));
        Window {
            repeated: old.list.into_iter().filter(|f| f.count > 1).collect(),
            unlisted: old.unlisted,
        }
    }

    /// Add one occurrence; returns the finding when it is new (for the live line).
    pub fn add(&mut self, f: Finding) -> Option<&Finding> {
        self.add_indexed(f).1.then(|| self.list.last()).flatten()
    }

    /// Add one occurrence: where it is in the list (None when past [`MAX_PER_RULE`]), and
    /// whether it is new.
    pub fn add_indexed(&mut self, f: Finding) -> (Option<usize>, bool) {
        // On a host, the same message in two cgroups (two services, two containers) is two
        // findings.
        let mut message_key = f.message.clone();
        if let Some(c) = &f.cgroup {
            message_key.push('\0');
            message_key.push_str(&c.path);
        }
        let key = (f.rule.clone(), message_key);
        if let Some(&i) = self.index.get(&key) {
            self.list[i].count += 1;
            let parts = f.parts;
            for p in parts {
                self.attach(i, p);
            }
            return (Some(i), false);
        }
        let limit_key = match &f.cgroup {
            Some(c) => format!("{} {}", f.rule, c.path),
            None => f.rule.clone(),
        };
        let kept = self.per_rule.entry(limit_key.clone()).or_default();
        if *kept >= self.cap {
            let n = self.unlisted.entry(limit_key).or_default();
            if *n == 0 {
                tracing::debug!(
                    "rule {}: more than {} distinct findings; further ones are counted, not \
                     listed",
                    key.0,
                    self.cap
                );
            }
            *n += 1;
            return (None, false);
        }
        *kept += 1;
        self.index.insert(key, self.list.len());
        self.list.push(f);
        (Some(self.list.len() - 1), true)
    }

    /// Record `part` on the finding at `i` (merged with an equal part, counted past
    /// [`MAX_PARTS`]).
    pub fn attach(&mut self, i: usize, part: Part) {
        let Some(f) = self.list.get_mut(i) else {
            return;
        };
        if let Some(p) = f
            .parts
            .iter_mut()
            .find(|p| p.rule == part.rule && p.message == part.message)
        {
            p.count += part.count;
        } else if f.parts.len() < MAX_PARTS {
            f.parts.push(part);
        } else {
            f.parts_unlisted += part.count;
        }
    }

    /// Occurrences per (rule, severity): listed findings, their parts, and those past the
    /// per-rule list (counted at the rule's severity of its listed ones).
    pub fn counts(&self) -> BTreeMap<(String, &'static str), u64> {
        let mut m: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
        for f in &self.list {
            *m.entry((f.rule.clone(), f.severity.as_str())).or_default() += f.count;
            for p in &f.parts {
                *m.entry((p.rule.clone(), p.severity.as_str())).or_default() += p.count;
            }
        }
        for (key, n) in &self.unlisted {
            let rule = key.split(' ').next().unwrap_or(key);
            let sev = self
                .list
                .iter()
                .find(|f| f.rule == rule)
                .map_or("unknown", |f| f.severity.as_str());
            *m.entry((rule.to_owned(), sev)).or_default() += n;
        }
        m
    }

    pub fn get(&self, i: usize) -> Option<&Finding> {
        self.list.get(i)
    }

    /// Occurrences per rule that were not listed because the rule hit [`MAX_PER_RULE`].
    pub fn unlisted(&self) -> &BTreeMap<String, u64> {
        &self.unlisted
    }

    /// Most severe first, then in order of appearance.
    pub fn sorted(&self) -> Vec<Finding> {
        let mut v = self.list.clone();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.first_seq.cmp(&b.first_seq))
        });
        v
    }

    pub fn max_severity(&self) -> Option<Severity> {
        self.list.iter().map(|f| f.severity).max()
    }

    pub fn by_severity(&self) -> BTreeMap<&'static str, u64> {
        let mut m: BTreeMap<&'static str, u64> =
            Severity::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for f in &self.list {
            *m.entry(f.severity.as_str()).or_default() += 1;
        }
        m
    }

    pub fn by_category(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for f in &self.list {
            *m.entry(f.category.clone()).or_default() += 1;
        }
        m
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(rule: &str, msg: &str, sev: Severity, seq: u64) -> Finding {
        Finding {
            rule: rule.into(),
            category: "c".into(),
            severity: sev,
            message: msg.into(),
            process: ProcessRef {
                pid: 1,
                exe: None,
                argv: vec![],
                ancestry: vec![],
            },
            package: None,
            cgroup: None,
            detail: serde_json::Value::Null,
            count: 1,
            first_seen: String::new(),
            first_seq: seq,
            tags: vec![],
            location: None,
            parts: vec![],
            parts_unlisted: 0,
        }
    }

    #[test]
    fn identical_findings_merge_and_sort_by_severity() {
        let mut fs = Findings::default();
        assert!(fs.add(f("a", "x", Severity::Medium, 1)).is_some());
        assert!(fs.add(f("a", "x", Severity::Medium, 2)).is_none());
        assert!(fs.add(f("a", "y", Severity::Medium, 3)).is_some());
        assert!(fs.add(f("b", "x", Severity::Critical, 4)).is_some());
        let s = fs.sorted();
        assert_eq!(
            s.iter()
                .map(|f| (f.rule.as_str(), f.count))
                .collect::<Vec<_>>(),
            vec![("b", 1), ("a", 2), ("a", 1)]
        );
        assert_eq!(fs.max_severity(), Some(Severity::Critical));
        assert_eq!(fs.by_severity()["medium"], 2);
        assert!(fs.unlisted().is_empty());
    }

    #[test]
    fn distinct_findings_per_rule_are_bounded() {
        let mut fs = Findings::default();
        for i in 0..MAX_PER_RULE + 50 {
            fs.add(f(
                "flood",
                &format!("q{i}.example"),
                Severity::Low,
                i as u64,
            ));
        }
        // Repeats of a kept finding still merge; another rule is unaffected by the flood.
        assert!(fs.add(f("flood", "q0.example", Severity::Low, 0)).is_none());
        assert!(fs.add(f("other", "x", Severity::High, 9999)).is_some());
        assert_eq!(fs.len(), MAX_PER_RULE + 1);
        assert_eq!(fs.unlisted()["flood"], 50);
        assert_eq!(fs.sorted()[0].rule, "other");
        assert_eq!(fs.max_severity(), Some(Severity::High));
    }
}
