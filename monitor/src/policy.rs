//! The user's policy: `.buildwatch.yaml` in the working directory, or `--policy FILE`.
//!
//! ```yaml
//! fail_on: high              # low | medium | high | critical | never
//! fail_on_lost: false        # also fail when events were lost
//! allow_loopback: true
//! allow:                     # egress allowlist: ADDR[/PREFIX][:PORT], IPv6 in brackets with a port
//!   - 10.200.0.0/16:443
//!   - "[fd00::1]:8080"
//! sensitive_paths:           # appended to the sensitive-file rules' globs
//!   - "**/deploy-key.pem"
//! exceptions:                # structured exceptions appended to a rule
//!   - rule: sensitive-file-read
//!     name: deploy_tool
//!     fields: [proc.tool, file.path]
//!     values: [[deploy, "**/deploy-key.pem"]]
//! rules:                     # rule-file items: new rules, overrides, `enabled: false`
//!   - rule: network-tool-in-install-script
//!     enabled: false
//! rule_files: [ci-rules.yaml]   # relative to this file
//! ```

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;

use crate::rules::{
    self, Diagnostic, Doc, Severity,
    compile::parse_net,
    yaml::{self, Node, Style, Value},
};

/// The default file looked for in the working directory.
pub const DEFAULT_FILE: &str = ".buildwatch.yaml";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    At(Severity),
    Never,
}

impl FailOn {
    pub fn parse(s: &str) -> Option<Self> {
        if s == "never" {
            return Some(Self::Never);
        }
        Severity::parse(s).map(Self::At)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::At(s) => s.as_str(),
            Self::Never => "never",
        }
    }

    pub fn trips(self, s: Severity) -> bool {
        matches!(self, Self::At(min) if s >= min)
    }
}

/// One allowlist entry: a network and optionally one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub net: IpNet,
    pub port: Option<u16>,
}

impl Endpoint {
    /// `ADDR`, `ADDR/PREFIX`, `ADDR:PORT`, `ADDR/PREFIX:PORT`; IPv6 with a port in brackets:
    /// `[::1]:443`, `[fd00::/8]:443`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not ADDR[/PREFIX][:PORT] (IPv6 with a port: [ADDR]:PORT)");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else if s.matches(':').count() == 1 {
            let (h, p) = s.split_once(':').expect("one colon");
            (h, Some(p))
        } else {
            (s, None)
        };
        let net = parse_net(host).ok_or_else(bad)?;
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("`{p}` is not a port (1-65535)"))?,
            ),
        };
        Ok(Self { net, port })
    }

    pub fn matches(&self, addr: IpAddr, port: Option<u16>) -> bool {
        self.net.contains(&addr) && (self.port.is_none() || self.port == port)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.net.prefix_len() == self.net.max_prefix_len() {
            self.net.addr().to_string()
        } else {
            self.net.to_string()
        };
        match (self.port, self.net) {
            (None, _) => write!(f, "{host}"),
            (Some(p), IpNet::V6(_)) => write!(f, "[{host}]:{p}"),
            (Some(p), IpNet::V4(_)) => write!(f, "{host}:{p}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub fail_on: FailOn,
    pub fail_on_lost: bool,
    pub allow_loopback: bool,
    pub allow: Vec<Endpoint>,
    /// Where the policy came from, if a file.
    pub file: Option<PathBuf>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            fail_on: FailOn::At(Severity::High),
            fail_on_lost: false,
            allow_loopback: true,
            allow: Vec::new(),
            file: None,
        }
    }
}

impl Policy {
    pub fn allowed(&self, addr: IpAddr, port: Option<u16>) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        (self.allow_loopback && addr.is_loopback())
            || self.allow.iter().any(|e| e.matches(addr, port))
    }
}

/// A loaded policy and the rule documents it contributes (after the defaults).
pub struct Loaded {
    pub policy: Policy,
    pub docs: Vec<Doc>,
}

const KEYS: &[&str] = &[
    "fail_on",
    "fail_on_lost",
    "allow_loopback",
    "allow",
    "sensitive_paths",
    "exceptions",
    "rules",
    "rule_files",
];

/// Read and check a policy file. All problems are returned together.
pub fn load_file(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::error(
            rules::Pos::new(&name, 1, 1),
            format!("cannot read policy: {e}"),
        )]
    })?;
    let mut loaded = load_str(&name, &src)?;
    loaded.policy.file = Some(path.to_owned());
    Ok(loaded)
}

pub fn load_str(file: &str, src: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let mut policy = Policy::default();
    let mut docs = Vec::new();
    let root = match yaml::parse(file, src) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(Loaded { policy, docs }),
        Err(d) => return Err(vec![d.with_source(src)]),
    };
    let mut errs = Vec::new();
    let Value::Map(entries) = &root.value else {
        return Err(vec![
            Diagnostic::error(root.pos, "a policy is a mapping (fail_on:, allow:, …)")
                .with_source(src),
        ]);
    };
    let mut items: Vec<Node> = Vec::new();
    let mut seen = Vec::new();
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default();
        if !KEYS.contains(&key) {
            errs.push(Diagnostic::error(
                k.pos.clone(),
                format!(
                    "unknown policy key `{key}` (expected one of: {})",
                    KEYS.join(", ")
                ),
            ));
            continue;
        }
        if seen.contains(&key) {
            errs.push(Diagnostic::error(
                k.pos.clone(),
                format!("`{key}` given twice"),
            ));
            continue;
        }
        seen.push(key);
        let mut bool_of = |v: &Node| match v.as_str() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                errs.push(Diagnostic::error(
                    v.pos.clone(),
                    format!("`{key}` must be true or false"),
                ));
                None
            }
        };
        match key {
            "fail_on" => match v.as_str().and_then(FailOn::parse) {
                Some(f) => policy.fail_on = f,
                None => errs.push(Diagnostic::error(
                    v.pos.clone(),
                    "`fail_on` must be low, medium, high, critical or never",
                )),
            },
            "fail_on_lost" => policy.fail_on_lost = bool_of(v).unwrap_or(policy.fail_on_lost),
            "allow_loopback" => policy.allow_loopback = bool_of(v).unwrap_or(policy.allow_loopback),
            "allow" => {
                for item in seq(v, key, &mut errs) {
                    match item.as_str().map(Endpoint::parse) {
                        Some(Ok(e)) => policy.allow.push(e),
                        Some(Err(m)) => errs.push(Diagnostic::error(item.pos.clone(), m)),
                        None => errs.push(Diagnostic::error(
                            item.pos.clone(),
                            "an allow entry is a string",
                        )),
                    }
                }
            }
            "sensitive_paths" => {
                // Becomes `- list: sensitive_file_globs, items: [...], override: {items: append}`.
                let globs = seq(v, key, &mut errs).to_vec();
                items.push(synth_map(
                    v,
                    vec![
                        ("list", scalar(v, "sensitive_file_globs")),
                        (
                            "items",
                            Node {
                                value: Value::Seq(globs),
                                ..v.clone()
                            },
                        ),
                        (
                            "override",
                            synth_map(v, vec![("items", scalar(v, "append"))]),
                        ),
                    ],
                ));
            }
            "exceptions" => {
                for ex in seq(v, key, &mut errs) {
                    let Value::Map(fields) = &ex.value else {
                        errs.push(Diagnostic::error(
                            ex.pos.clone(),
                            "an exception is a mapping with `rule`, `name`, `fields`, `values`",
                        ));
                        continue;
                    };
                    let Some((_, rule)) = fields.iter().find(|(k, _)| k.as_str() == Some("rule"))
                    else {
                        errs.push(Diagnostic::error(
                            ex.pos.clone(),
                            "an exception needs `rule:` (the rule it applies to)",
                        ));
                        continue;
                    };
                    let rest: Vec<(Node, Node)> = fields
                        .iter()
                        .filter(|(k, _)| k.as_str() != Some("rule"))
                        .cloned()
                        .collect();
                    let exc = Node {
                        value: Value::Map(rest),
                        ..ex.clone()
                    };
                    items.push(synth_map(
                        ex,
                        vec![
                            ("rule", rule.clone()),
                            (
                                "exceptions",
                                Node {
                                    value: Value::Seq(vec![exc]),
                                    ..ex.clone()
                                },
                            ),
                            (
                                "override",
                                synth_map(ex, vec![("exceptions", scalar(ex, "append"))]),
                            ),
                        ],
                    ));
                }
            }
            "rules" => items.extend(seq(v, key, &mut errs).iter().cloned()),
            "rule_files" => {
                let base = Path::new(file).parent().unwrap_or(Path::new("."));
                for f in seq(v, key, &mut errs) {
                    let Some(rel) = f.as_str() else {
                        errs.push(Diagnostic::error(f.pos.clone(), "a rule file is a path"));
                        continue;
                    };
                    let p = base.join(rel);
                    match std::fs::read_to_string(&p) {
                        Ok(s) => match rules::parse_doc(&p.display().to_string(), &s) {
                            Ok(d) => docs.push(d),
                            Err(d) => errs.push(d),
                        },
                        Err(e) => errs.push(Diagnostic::error(
                            f.pos.clone(),
                            format!("cannot read {}: {e}", p.display()),
                        )),
                    }
                }
            }
            _ => unreachable!("keys are checked"),
        }
    }
    if !items.is_empty() {
        docs.insert(
            0,
            Doc {
                file: file.to_owned(),
                src: src.to_owned(),
                items,
            },
        );
    }
    if errs.is_empty() {
        Ok(Loaded { policy, docs })
    } else {
        Err(errs
            .into_iter()
            .map(|d| {
                if d.pos.file == file {
                    d.with_source(src)
                } else {
                    d
                }
            })
            .collect())
    }
}

fn seq<'n>(v: &'n Node, key: &str, errs: &mut Vec<Diagnostic>) -> &'n [Node] {
    match &v.value {
        Value::Seq(items) => items,
        _ if v.is_null() => &[],
        _ => {
            errs.push(Diagnostic::error(
                v.pos.clone(),
                format!("`{key}` must be a list"),
            ));
            &[]
        }
    }
}

fn scalar(at: &Node, text: &str) -> Node {
    Node {
        value: Value::Scalar {
            text: text.into(),
            style: Style::Plain,
        },
        ..at.clone()
    }
}

fn synth_map(at: &Node, entries: Vec<(&str, Node)>) -> Node {
    Node {
        value: Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (scalar(at, k), v))
                .collect(),
        ),
        ..at.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("10.200.0.0/16:443").unwrap();
        assert!(e.matches("10.200.3.4".parse().unwrap(), Some(443)));
        assert!(!e.matches("10.200.3.4".parse().unwrap(), Some(80)));
        assert!(
            Endpoint::parse("::1")
                .unwrap()
                .matches("::1".parse().unwrap(), Some(1))
        );
        let e = Endpoint::parse("[fd00::/8]:8080").unwrap();
        assert!(e.matches("fd12::1".parse().unwrap(), Some(8080)));
        assert_eq!(e.to_string(), "[fd00::/8]:8080");
        assert_eq!(
            Endpoint::parse("127.0.0.1:9").unwrap().to_string(),
            "127.0.0.1:9"
        );
        assert!(Endpoint::parse("example.test").is_err());
        assert!(Endpoint::parse("1.2.3.4:0").is_err());
        assert!(Endpoint::parse("1.2.3.4:99999").is_err());
        assert!(Endpoint::parse("[::1").is_err());
    }

    #[test]
    fn loopback_is_allowed_unless_turned_off() {
        let mut p = Policy::default();
        assert!(p.allowed("127.0.0.5".parse().unwrap(), Some(1)));
        assert!(p.allowed("::ffff:127.0.0.1".parse().unwrap(), Some(1)));
        assert!(!p.allowed("10.200.0.1".parse().unwrap(), Some(1)));
        p.allow_loopback = false;
        assert!(!p.allowed("::1".parse().unwrap(), Some(1)));
    }

    #[test]
    fn policy_errors_are_positioned_and_all_reported() {
        let src = "fail_on: sometimes\nallow:\n  - 10.0.0.0/8\n  - nonsense\nbogus: 1\n";
        let errs = load_str("p.yaml", src).err().unwrap();
        let at: Vec<(usize, usize)> = errs.iter().map(|d| (d.pos.line, d.pos.col)).collect();
        assert_eq!(at, vec![(1, 10), (4, 5), (5, 1)], "{errs:?}");
        assert!(errs[2].snippet.as_deref() == Some("bogus: 1"));
    }

    #[test]
    fn policy_feeds_rules() {
        let src = "fail_on: critical\nallow: ['10.200.0.1:53']\nsensitive_paths: ['**/x.pem']\nexceptions:\n  - rule: egress-unlisted\n    name: ok\n    fields: [proc.name]\n    values: [[curl]]\n";
        let l = load_str("p.yaml", src).unwrap();
        assert_eq!(l.policy.fail_on, FailOn::At(Severity::Critical));
        let mut docs = rules::default_docs();
        docs.extend(l.docs);
        let (set, diags) = rules::load(&docs);
        assert!(set.is_some(), "{diags:?}");
    }
}
