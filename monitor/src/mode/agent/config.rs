//! The agent's configuration file (`/etc/buildwatch/agent.yaml`): what to watch, which rules
//! and policy judge it, where events and findings go, and where health and metrics are served.
//! Every mistake is an error with its file:line:column; nothing is guessed.
//!
//! ```yaml
//! scope: host                       # or a list of cgroup path globs below the v2 root
//! policy: /etc/buildwatch/policy.yaml
//! rules: [/etc/buildwatch/site-rules.yaml]
//! listen: 127.0.0.1:9464            # /healthz and /metrics; `off` to serve nothing
//! outputs:
//!   - type: file
//!     path: /var/log/buildwatch/agent.jsonl
//!     records: [findings, events]
//!     events: [exec, connect, dns]  # kinds of events (default: all)
//!     min_severity: low             # findings at or above (default: low)
//!     max_bytes: 104857600          # rotate past this size…
//!     max_age_secs: 86400           # …or this age
//!     keep: 7                       # rotated files kept
//!   - type: stdout
//!     records: [findings]
//! ```

use std::{net::SocketAddr, path::PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

pub use crate::output::forward::config::{Destination, OutputConfig};
use crate::{
    detect::rules::{
        Diagnostic, Pos, Severity,
        diag::{did_you_mean, top_key},
        yaml::{self, Node, Value},
    },
    output::forward::config::{number, output, seq},
};

pub const DEFAULT_PATH: &str = "/etc/buildwatch/agent.yaml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
const KEYS: &[&str] = &["scope", "policy", "rules", "listen", "outputs", "findings"];
const FINDINGS_KEYS: &[&str] = &["window_secs", "max_per_rule"];

/// What the agent watches.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every process on the host (but the agent).
    Host,
    /// The cgroups whose path below the v2 root matches one of the globs, and their children.
    Globs {
        patterns: Vec<String>,
        set: GlobSet,
        /// The entries that bring their own policy, rules or severity floor, in order.
        own: Vec<ScopeEntry>,
    },
}

/// A scope entry with its own judgement: `- cgroups: GLOB` with `policy:`, `rules:` and/or
/// `min_severity:`.
#[derive(Clone, Debug)]
pub struct ScopeEntry {
    pub pattern: String,
    pub policy: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub min_severity: Severity,
}

impl Scope {
    /// Does the cgroup at `path` (relative to the v2 root, no leading `/`) match?
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Scope::Host => true,
            Scope::Globs { set, .. } => set.is_match(path),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub file: PathBuf,
    pub scope: Scope,
    pub policy: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub outputs: Vec<OutputConfig>,
    /// Findings are merged over this many seconds, then rolled up and started afresh.
    pub window_secs: u64,
    /// Distinct findings written per rule and cgroup in a window; more are counted in the
    /// window's roll-up.
    pub max_per_rule: usize,
}

/// Read and check a configuration; all its errors at once, positioned.
pub fn load(path: &std::path::Path) -> Result<AgentConfig, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::error(
            Pos::new(&name, 1, 1),
            format!("cannot read the agent configuration: {e}"),
        )]
    })?;
    parse(&name, &src, path).map_err(|ds| ds.into_iter().map(|d| d.with_source(&src)).collect())
}

fn parse(name: &str, src: &str, path: &std::path::Path) -> Result<AgentConfig, Vec<Diagnostic>> {
    let root = match yaml::parse(name, src) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(vec![Diagnostic::error(
                Pos::new(name, 1, 1),
                "the configuration is empty (it needs at least `outputs:`)",
            )]);
        }
        Err(d) => return Err(vec![d]),
    };
    let Value::Map(entries) = &root.value else {
        return Err(vec![Diagnostic::error(
            root.pos,
            "the agent configuration is a mapping (scope:, outputs:, …)",
        )]);
    };
    // Relative paths are relative to the configuration file.
    let base = path.parent().map(PathBuf::from).unwrap_or_default();
    let rel = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { base.join(p) }
    };
    let mut errs = Vec::new();
    let mut cfg = AgentConfig {
        file: path.to_owned(),
        scope: Scope::Host,
        policy: None,
        rules: Vec::new(),
        listen: DEFAULT_LISTEN.parse().ok(),
        outputs: Vec::new(),
        window_secs: 300,
        max_per_rule: 100,
    };
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in entries {
        let Some(key) = top_key(k, KEYS, "key", &mut seen, &mut errs) else {
            continue;
        };
        match key {
            "scope" => {
                match (&v.value, v.as_str()) {
                    (_, Some("host")) => cfg.scope = Scope::Host,
                    (Value::Seq(items), _) => {
                        let mut patterns = Vec::new();
                        let mut own = Vec::new();
                        let mut builder = GlobSetBuilder::new();
                        for item in items {
                            let p = match &item.value {
                                Value::Map(_) => match scope_entry(item, &rel, &mut errs) {
                                    Some(e) => {
                                        let p = e.pattern.clone();
                                        own.push(e);
                                        p
                                    }
                                    None => continue,
                                },
                                _ => match item.as_str() {
                                    Some(p) => p.to_owned(),
                                    None => {
                                        errs.push(Diagnostic::error(
                                            item.pos.clone(),
                                            "a scope entry is a cgroup path glob, or a mapping \
                                             with `cgroups:`",
                                        ));
                                        continue;
                                    }
                                },
                            };
                            let p = p.trim_start_matches('/');
                            match Glob::new(p) {
                                Ok(g) => {
                                    builder.add(g);
                                    patterns.push(p.to_owned());
                                }
                                Err(e) => errs.push(Diagnostic::error(
                                    item.pos.clone(),
                                    format!("bad glob: {e}"),
                                )),
                            }
                        }
                        if patterns.is_empty() {
                            errs.push(Diagnostic::error(v.pos.clone(), "`scope` lists no cgroup globs (use `scope: host` for the whole host)"));
                        }
                        match builder.build() {
                            Ok(set) => cfg.scope = Scope::Globs { patterns, set, own },
                            Err(e) => errs
                                .push(Diagnostic::error(v.pos.clone(), format!("bad globs: {e}"))),
                        }
                    }
                    _ => errs.push(Diagnostic::error(
                        v.pos.clone(),
                        "`scope` is `host` or a list of cgroup path globs",
                    )),
                }
            }
            "policy" => match v.as_str() {
                Some(p) => cfg.policy = Some(rel(p)),
                None => errs.push(Diagnostic::error(v.pos.clone(), "`policy` is a file path")),
            },
            "rules" => {
                for item in seq(v, "rules", &mut errs) {
                    match item.as_str() {
                        Some(p) => cfg.rules.push(rel(p)),
                        None => {
                            errs.push(Diagnostic::error(item.pos.clone(), "a rule file is a path"))
                        }
                    }
                }
            }
            "listen" => match v.as_str() {
                Some("off") => cfg.listen = None,
                Some(a) => match a.parse::<SocketAddr>() {
                    Ok(addr) => cfg.listen = Some(addr),
                    Err(_) => errs.push(Diagnostic::error(
                        v.pos.clone(),
                        format!("`{a}` is not ADDRESS:PORT (or `off`)"),
                    )),
                },
                None => errs.push(Diagnostic::error(
                    v.pos.clone(),
                    "`listen` is ADDRESS:PORT or `off`",
                )),
            },
            "outputs" => {
                for item in seq(v, "outputs", &mut errs) {
                    if let Some(o) = output(item, &rel, &mut errs) {
                        cfg.outputs.push(o);
                    }
                }
            }
            "findings" => {
                let Value::Map(fields) = &v.value else {
                    errs.push(Diagnostic::error(
                        v.pos.clone(),
                        "`findings` is a mapping (window_secs:, max_per_rule:)",
                    ));
                    continue;
                };
                for (fk, fv) in fields {
                    match fk.as_str().unwrap_or_default() {
                        "window_secs" => {
                            if let Some(n) = number(fv, "window_secs", &mut errs) {
                                cfg.window_secs = n.max(1);
                            }
                        }
                        "max_per_rule" => {
                            if let Some(n) = number(fv, "max_per_rule", &mut errs) {
                                cfg.max_per_rule = usize::try_from(n).unwrap_or(usize::MAX).max(1);
                            }
                        }
                        other => errs.push(Diagnostic::error(
                            fk.pos.clone(),
                            format!(
                                "unknown `findings` key `{other}`{} (expected one of: {})",
                                did_you_mean(other, FINDINGS_KEYS.iter().copied()),
                                FINDINGS_KEYS.join(", ")
                            ),
                        )),
                    }
                }
            }
            _ => unreachable!("checked against KEYS"),
        }
    }
    if cfg.outputs.is_empty() && errs.is_empty() {
        errs.push(Diagnostic::error(
            root.pos.clone(),
            "no `outputs:`: the agent would judge and tell nobody",
        ));
    }
    if errs.is_empty() { Ok(cfg) } else { Err(errs) }
}

/// `- cgroups: GLOB` with its own `policy:`, `rules:`, `min_severity:`.
fn scope_entry(
    node: &Node,
    rel: &dyn Fn(&str) -> PathBuf,
    errs: &mut Vec<Diagnostic>,
) -> Option<ScopeEntry> {
    const ENTRY_KEYS: &[&str] = &["cgroups", "policy", "rules", "min_severity"];
    let Value::Map(entries) = &node.value else {
        return None;
    };
    let before = errs.len();
    let mut e = ScopeEntry {
        pattern: String::new(),
        policy: None,
        rules: Vec::new(),
        min_severity: Severity::Low,
    };
    for (k, v) in entries {
        match k.as_str().unwrap_or_default() {
            "cgroups" => match v.as_str() {
                Some(p) => e.pattern = p.trim_start_matches('/').to_owned(),
                None => errs.push(Diagnostic::error(
                    v.pos.clone(),
                    "`cgroups` is a cgroup path glob",
                )),
            },
            "policy" => match v.as_str() {
                Some(p) => e.policy = Some(rel(p)),
                None => errs.push(Diagnostic::error(v.pos.clone(), "`policy` is a file path")),
            },
            "rules" => {
                for item in seq(v, "rules", errs) {
                    match item.as_str() {
                        Some(p) => e.rules.push(rel(p)),
                        None => {
                            errs.push(Diagnostic::error(item.pos.clone(), "a rule file is a path"))
                        }
                    }
                }
            }
            "min_severity" => match v.as_str().and_then(Severity::parse) {
                Some(s) => e.min_severity = s,
                None => errs.push(Diagnostic::error(
                    v.pos.clone(),
                    "`min_severity` is low, medium, high or critical",
                )),
            },
            other => errs.push(Diagnostic::error(
                k.pos.clone(),
                format!(
                    "unknown scope entry key `{other}`{} (expected one of: {})",
                    did_you_mean(other, ENTRY_KEYS.iter().copied()),
                    ENTRY_KEYS.join(", ")
                ),
            )),
        }
    }
    if e.pattern.is_empty() && errs.len() == before {
        errs.push(Diagnostic::error(
            node.pos.clone(),
            "a scope entry with its own policy needs `cgroups:`",
        ));
    }
    (errs.len() == before).then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(src: &str) -> Result<AgentConfig, Vec<String>> {
        parse(
            "agent.yaml",
            src,
            std::path::Path::new("/etc/buildwatch/agent.yaml"),
        )
        .map_err(|ds| ds.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn a_full_configuration() {
        let c = parse_str(
            "scope:\n  - system.slice/*.service\n  - '**/docker-*.scope'\npolicy: p.yaml\n\
             listen: 127.0.0.1:9999\noutputs:\n  - type: file\n    path: /var/log/a.jsonl\n    \
             records: [findings]\n    min_severity: high\n    keep: 3\n  - type: stdout\n",
        )
        .unwrap();
        assert!(c.scope.matches("system.slice/cron.service"));
        assert!(c.scope.matches("system.slice/docker-abc.scope"));
        assert!(!c.scope.matches("user.slice/user-1000.slice"));
        assert_eq!(c.policy, Some(PathBuf::from("/etc/buildwatch/p.yaml")));
        assert_eq!(c.listen, "127.0.0.1:9999".parse().ok());
        assert_eq!(c.outputs.len(), 2);
        assert!(c.outputs[0].findings && !c.outputs[0].events);
        assert_eq!(c.outputs[0].min_severity, Severity::High);
        assert_eq!(c.outputs[0].keep, 3);
    }

    #[test]
    fn mistakes_are_positioned() {
        let e = parse_str("scop: host\noutputs:\n  - type: fil\n").unwrap_err();
        assert!(
            e[0].contains("agent.yaml:1:1: error: unknown key `scop` (did you mean `scope`?)"),
            "{e:?}"
        );
        assert!(
            e[1].contains(
                "agent.yaml:3:11: error: `type` is `file`, `stdout`, `syslog`, `elastic`"
            ),
            "{e:?}"
        );
        let e =
            parse_str("listen: nowhere\noutputs: [{type: stdout, events: [opne]}]\n").unwrap_err();
        assert!(
            e.iter()
                .any(|m| m.contains("`nowhere` is not ADDRESS:PORT")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("did you mean `open`")), "{e:?}");
        assert!(parse_str("scope: host\n").unwrap_err()[0].contains("no `outputs:`"));
    }
}
