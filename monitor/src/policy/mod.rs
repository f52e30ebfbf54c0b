//! The user's policy: `.buildwatch.yaml` in the working directory, or `--policy FILE`.
//!
//! ```yaml
//! fail_on: high              # low | medium | high | critical | never
//! fail_on_lost: true         # fail when events were lost (the default; false accepts it)
//! allow_loopback: true
//! allow:                     # egress allowlist: ADDR[/PREFIX][:PORT] or DOMAIN[:PORT]
//!   - 10.200.0.0/16:443
//!   - "[fd00::1]:8080"
//!   - "**.example.com:443"
//! dns: {max_subdomains: 40, resolvers: [10.200.0.53]}   # DNS thresholds (docs/rules.md)
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

pub mod config;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;

use crate::detect::rules::{
    self, Diagnostic, Doc, Severity,
    compile::parse_net,
    diag::{did_you_mean, top_key},
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

/// One allowlist entry: a network or a domain pattern, and optionally one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Host,
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Net(IpNet),
    Domain(DomainPattern),
}

/// `example.com` (that name only), `*.example.com` (exactly one more label: `a.example.com`,
/// not `a.b.example.com`), `**.example.com` (one or more labels). Neither wildcard matches the
/// bare `example.com`: list it too when it is wanted. Compared case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainPattern {
    /// Labels to the right of the wildcard, lowercase.
    pub base: String,
    /// 0: exact; 1: `*.`; usize::MAX: `**.`.
    pub extra_labels: usize,
}

impl DomainPattern {
    pub fn parse(s: &str) -> Option<Self> {
        let (extra_labels, base) = if let Some(b) = s.strip_prefix("**.") {
            (usize::MAX, b)
        } else if let Some(b) = s.strip_prefix("*.") {
            (1, b)
        } else {
            (0, s)
        };
        let base = base.strip_suffix('.').unwrap_or(base).to_ascii_lowercase();
        let ok_label = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        // A pattern needs a dot (a bare word is a typo more often than a TLD) and sane labels;
        // no top-level domain is all digits (`1.2.3`, `300.1.1.1` are broken addresses).
        let numeric_tld = base
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
        (base.len() <= 253 && base.contains('.') && base.split('.').all(ok_label) && !numeric_tld)
            .then_some(Self { base, extra_labels })
    }

    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if self.extra_labels == 0 {
            return name == self.base;
        }
        let Some(prefix) = name
            .strip_suffix(&self.base)
            .and_then(|p| p.strip_suffix('.'))
        else {
            return false;
        };
        !prefix.is_empty() && (self.extra_labels == usize::MAX || !prefix.contains('.'))
    }
}

impl std::fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.extra_labels {
            0 => write!(f, "{}", self.base),
            1 => write!(f, "*.{}", self.base),
            _ => write!(f, "**.{}", self.base),
        }
    }
}

impl Endpoint {
    /// `ADDR`, `ADDR/PREFIX`, `DOMAIN`, each optionally `:PORT`; IPv6 with a port in brackets:
    /// `[::1]:443`, `[fd00::/8]:443`. Domains may start with `*.` or `**.`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not ADDR[/PREFIX][:PORT] or DOMAIN[:PORT] (IPv6 with a port: [ADDR]:PORT; \
                 wildcards: *.DOMAIN, **.DOMAIN)"
            )
        };
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
        let host = match parse_net(host) {
            Some(net) => Host::Net(net),
            None if !host.is_empty() && host.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                return Err(format!(
                    "`{host}` is not an IPv4 address (four numbers 0-255) nor a domain"
                ));
            }
            None if !s.starts_with('[') => {
                Host::Domain(DomainPattern::parse(host).ok_or_else(bad)?)
            }
            None => return Err(bad()),
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("`{p}` is not a port (1-65535)"))?,
            ),
        };
        Ok(Self { host, port })
    }

    /// Does a destination match? `name` is what the run's DNS resolved the address from.
    pub fn matches(&self, addr: IpAddr, port: Option<u16>, name: Option<&str>) -> bool {
        let host = match &self.host {
            Host::Net(net) => net.contains(&addr),
            Host::Domain(d) => name.is_some_and(|n| d.matches(n)),
        };
        host && (self.port.is_none() || self.port == port)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (host, v6) = match &self.host {
            Host::Net(net) if net.prefix_len() == net.max_prefix_len() => {
                (net.addr().to_string(), net.addr().is_ipv6())
            }
            Host::Net(net) => (net.to_string(), matches!(net, IpNet::V6(_))),
            Host::Domain(d) => (d.to_string(), false),
        };
        match (self.port, v6) {
            (None, _) => write!(f, "{host}"),
            (Some(p), true) => write!(f, "[{host}]:{p}"),
            (Some(p), false) => write!(f, "{host}:{p}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub fail_on: FailOn,
    pub fail_on_lost: bool,
    pub allow_loopback: bool,
    pub allow: Vec<Endpoint>,
    /// DNS heuristics' thresholds (`dns:`).
    pub dns: crate::detect::dns_shape::Thresholds,
    /// Resolvers a query may go to besides the system's (`dns: resolvers:`).
    pub resolvers: Vec<IpAddr>,
    /// Where block mode's DNS proxy sends allowed queries (`dns: upstream:`); empty: the
    /// system's resolvers and `resolvers`, on port 53.
    pub upstream: Vec<std::net::SocketAddr>,
    /// What block mode's DNS proxy answers a refused A or AAAA query with (`dns: sinkhole:`):
    /// this address instead of NXDOMAIN.
    pub sinkhole: Option<IpAddr>,
    /// Where the policy came from, if a file.
    pub file: Option<PathBuf>,
    /// Every policy and rule file loaded (besides the built-in rules), with its digest.
    pub sources: Vec<Source>,
    /// Forwarding outputs a run sends its findings and summary to (`outputs:`).
    pub outputs: Vec<crate::output::forward::config::OutputConfig>,
    /// How long a run waits for them at its end (`forward_wait_secs`).
    pub forward_wait: Option<std::time::Duration>,
    /// Block mode (`mode: block`, `--block`): egress outside the allowlist is refused in the
    /// kernel.
    pub block: bool,
    /// Which environment variables hold the CI's secrets (`secrets:`).
    pub secrets: crate::detect::secrets::SecretsConfig,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            fail_on: FailOn::At(Severity::High),
            // A run with lost events cannot be vouched for: what was lost may be the one
            // credential read (a flood is the cheapest way to hide it).
            fail_on_lost: true,
            allow_loopback: true,
            allow: Vec::new(),
            dns: Default::default(),
            resolvers: Vec::new(),
            upstream: Vec::new(),
            sinkhole: None,
            file: None,
            sources: Vec::new(),
            outputs: Vec::new(),
            forward_wait: None,
            secrets: Default::default(),
            block: false,
        }
    }
}

impl Policy {
    /// Is a destination allowed? `name`: the domain the run's DNS resolved `addr` from; with
    /// None only address entries (and loopback) can allow it.
    pub fn allowed(&self, addr: IpAddr, port: Option<u16>, name: Option<&str>) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        (self.allow_loopback && addr.is_loopback())
            || self.allow.iter().any(|e| e.matches(addr, port, name))
    }

    /// Block mode's DNS policy for a query name: `None` when the DNS proxy refuses it (no
    /// domain entry matches, or it names a known DNS-over-HTTPS service); otherwise the ports
    /// the matching domain entries allow the addresses of its answer (`None` in the list: any
    /// port).
    pub fn name_allowed(&self, name: &str) -> Option<Vec<Option<u16>>> {
        if doh_name(name) {
            return None;
        }
        let ports: Vec<Option<u16>> = self
            .allow
            .iter()
            .filter(|e| matches!(&e.host, Host::Domain(d) if d.matches(name)))
            .map(|e| e.port)
            .collect();
        (!ports.is_empty()).then_some(ports)
    }
}

/// Well-known DNS-over-HTTPS services: their names are refused by block mode's DNS proxy
/// whatever the allowlist says (a resolver reached over HTTPS would carry every query past
/// the DNS-layer policy). Their addresses are refused like any other unlisted address.
pub const DOH_SERVICES: &[&str] = &[
    "dns.google",
    "dns.google.com",
    "cloudflare-dns.com",
    "**.cloudflare-dns.com",
    "one.one.one.one",
    "dns.quad9.net",
    "**.quad9.net",
    "doh.opendns.com",
    "dns.nextdns.io",
    "**.nextdns.io",
    "dns.adguard-dns.com",
    "**.adguard-dns.com",
    "doh.cleanbrowsing.org",
    "dns.mullvad.net",
    "**.mullvad.net",
    "doh.dns.sb",
    "dns.alidns.com",
    "doh.pub",
    "dns.controld.com",
];

/// Is `name` one of [`DOH_SERVICES`] (or under one of their `**.` entries)?
pub fn doh_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    DOH_SERVICES.iter().any(|s| match s.strip_prefix("**.") {
        Some(base) => name
            .strip_suffix(base)
            .is_some_and(|p| p.ends_with('.') && p.len() > 1),
        None => name == *s,
    })
}

/// A loaded policy and the rule documents it contributes (after the defaults).
pub struct Loaded {
    pub policy: Policy,
    pub docs: Vec<Doc>,
}

/// A file the policy came from, named with its digest in every output: which policy judged a
/// run is part of the verdict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// `policy` or `rules`.
    pub kind: &'static str,
    /// As given, made absolute.
    pub path: String,
    pub sha256: String,
}

impl Source {
    pub fn of(kind: &'static str, path: &Path, bytes: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        Self {
            kind,
            path: abs.display().to_string(),
            sha256: Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

const KEYS: &[&str] = &[
    "mode",
    "outputs",
    "forward_wait_secs",
    "fail_on",
    "fail_on_lost",
    "allow_loopback",
    "allow",
    "sensitive_paths",
    "exceptions",
    "rules",
    "rule_files",
    "dns",
    "secrets",
];

const SECRETS_KEYS: &[&str] = &["env", "ignore", "min_length"];

/// `secrets:`: more variable names (globs) holding secrets, names to leave out, the shortest
/// value matched.
fn load_secrets(v: &Node, policy: &mut Policy, errs: &mut Vec<Diagnostic>) {
    let Value::Map(entries) = &v.value else {
        errs.push(Diagnostic::error(
            v.pos.clone(),
            "`secrets` is a mapping (env:, ignore:, min_length:)",
        ));
        return;
    };
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default();
        match key {
            "env" | "ignore" => {
                for item in seq(v, &format!("secrets.{key}"), errs) {
                    match item.as_str() {
                        Some(n)
                            if !n.is_empty()
                                && n.bytes().all(|b| {
                                    b.is_ascii_alphanumeric() || b == b'_' || b == b'*'
                                }) =>
                        {
                            let list = if key == "env" {
                                &mut policy.secrets.env
                            } else {
                                &mut policy.secrets.ignore
                            };
                            list.push(n.to_owned());
                        }
                        _ => errs.push(Diagnostic::error(
                            item.pos.clone(),
                            "a variable name, `*` for any run of characters (`*_TOKEN`)",
                        )),
                    }
                }
            }
            "min_length" => match v.as_str().and_then(|s| s.parse::<usize>().ok()) {
                Some(n) if n >= crate::detect::secrets::WINDOW => policy.secrets.min_length = n,
                _ => errs.push(Diagnostic::error(
                    v.pos.clone(),
                    format!(
                        "`secrets.min_length` must be a whole number of at least {}",
                        crate::detect::secrets::WINDOW
                    ),
                )),
            },
            _ => errs.push(Diagnostic::error(
                k.pos.clone(),
                format!(
                    "unknown `secrets` key `{key}`{} (expected one of: {})",
                    did_you_mean(key, SECRETS_KEYS.iter().copied()),
                    SECRETS_KEYS.join(", ")
                ),
            )),
        }
    }
}

const DNS_KEYS: &[&str] = &[
    "long_label",
    "long_name",
    "entropy",
    "entropy_min_len",
    "encoded_min_len",
    "window_secs",
    "max_subdomains",
    "max_rare_queries",
    "resolvers",
    "upstream",
    "sinkhole",
];

/// `dns:`: thresholds (positive numbers) and extra resolvers.
fn load_dns(v: &Node, policy: &mut Policy, errs: &mut Vec<Diagnostic>) {
    let Value::Map(entries) = &v.value else {
        errs.push(Diagnostic::error(
            v.pos.clone(),
            "`dns` is a mapping (long_label:, entropy:, resolvers:, …)",
        ));
        return;
    };
    let t = &mut policy.dns;
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default();
        let num = |errs: &mut Vec<Diagnostic>| -> Option<usize> {
            let n = v
                .as_str()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| *n > 0);
            if n.is_none() {
                errs.push(Diagnostic::error(
                    v.pos.clone(),
                    format!("`dns.{key}` must be a whole number above 0"),
                ));
            }
            n
        };
        match key {
            "long_label" => t.long_label = num(errs).unwrap_or(t.long_label),
            "long_name" => t.long_name = num(errs).unwrap_or(t.long_name),
            "entropy_min_len" => t.entropy_min_len = num(errs).unwrap_or(t.entropy_min_len),
            "encoded_min_len" => t.encoded_min_len = num(errs).unwrap_or(t.encoded_min_len),
            "window_secs" => t.window_secs = num(errs).map_or(t.window_secs, |n| n as u64),
            "max_subdomains" => t.max_subdomains = num(errs).unwrap_or(t.max_subdomains),
            "max_rare_queries" => t.max_rare_queries = num(errs).unwrap_or(t.max_rare_queries),
            "entropy" => match v.as_str().and_then(|s| s.parse::<f64>().ok()) {
                Some(e) if (0.0..=8.0).contains(&e) => t.entropy = e,
                _ => errs.push(Diagnostic::error(
                    v.pos.clone(),
                    "`dns.entropy` must be a number of bits per character from 0 to 8",
                )),
            },
            "resolvers" => {
                for item in seq(v, "dns.resolvers", errs) {
                    match item.as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
                        Some(ip) => policy.resolvers.push(ip),
                        None => errs.push(Diagnostic::error(
                            item.pos.clone(),
                            "a resolver is an IP address",
                        )),
                    }
                }
            }
            "upstream" => {
                for item in seq(v, "dns.upstream", errs) {
                    match item.as_str().and_then(parse_upstream) {
                        Some(a) => policy.upstream.push(a),
                        None => errs.push(Diagnostic::error(
                            item.pos.clone(),
                            "an upstream resolver is ADDR or ADDR:PORT ([ADDR]:PORT for IPv6)",
                        )),
                    }
                }
            }
            "sinkhole" => match v.as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
                Some(ip) => policy.sinkhole = Some(ip),
                None => errs.push(Diagnostic::error(
                    v.pos.clone(),
                    "`dns.sinkhole` is an IP address (refused A and AAAA queries get it)",
                )),
            },
            _ => errs.push(Diagnostic::error(
                k.pos.clone(),
                format!(
                    "unknown `dns` key `{key}`{} (expected one of: {})",
                    did_you_mean(key, DNS_KEYS.iter().copied()),
                    DNS_KEYS.join(", ")
                ),
            )),
        }
    }
}

/// `ADDR`, `ADDR:PORT` or `[ADDR]:PORT` (port 53 when none is given).
fn parse_upstream(s: &str) -> Option<std::net::SocketAddr> {
    s.parse::<std::net::SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| (ip, 53).into()))
        .filter(|a| a.port() != 0)
}

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
    loaded
        .policy
        .sources
        .insert(0, Source::of("policy", path, src.as_bytes()));
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
        let Some(key) = top_key(k, KEYS, "policy key", &mut seen, &mut errs) else {
            continue;
        };
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
            "dns" => load_dns(v, &mut policy, &mut errs),
            "secrets" => load_secrets(v, &mut policy, &mut errs),
            "mode" => match v.as_str() {
                Some("watch") => policy.block = false,
                Some("block") => policy.block = true,
                _ => errs.push(Diagnostic::error(
                    v.pos.clone(),
                    "`mode` is `watch` (report) or `block` (refuse egress outside the allowlist)",
                )),
            },
            "outputs" => {
                // Relative paths (CA files, spools) are relative to the policy file.
                let base = Path::new(file).parent().map(Path::to_path_buf);
                let rel = |p: &str| {
                    let p = std::path::PathBuf::from(p);
                    match &base {
                        Some(b) if !p.is_absolute() => b.join(p),
                        _ => p,
                    }
                };
                for o in crate::output::forward::config::seq(v, key, &mut errs) {
                    if let Some(o) = crate::output::forward::config::output(o, &rel, &mut errs) {
                        policy.outputs.push(o);
                    }
                }
            }
            "forward_wait_secs" => {
                if let Some(n) = crate::output::forward::config::number(v, key, &mut errs) {
                    policy.forward_wait = Some(std::time::Duration::from_secs(n.min(3600)));
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
                        Ok(s) => {
                            policy.sources.push(Source::of("rules", &p, s.as_bytes()));
                            match rules::parse_doc(&p.display().to_string(), &s) {
                                Ok(d) => docs.push(d),
                                Err(d) => errs.push(d),
                            }
                        }
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
        assert!(e.matches("10.200.3.4".parse().unwrap(), Some(443), None));
        assert!(!e.matches("10.200.3.4".parse().unwrap(), Some(80), None));
        assert!(
            Endpoint::parse("::1")
                .unwrap()
                .matches("::1".parse().unwrap(), Some(1), None)
        );
        let e = Endpoint::parse("[fd00::/8]:8080").unwrap();
        assert!(e.matches("fd12::1".parse().unwrap(), Some(8080), None));
        assert_eq!(e.to_string(), "[fd00::/8]:8080");
        assert_eq!(
            Endpoint::parse("127.0.0.1:9").unwrap().to_string(),
            "127.0.0.1:9"
        );
        assert!(
            Endpoint::parse("localhost").is_err(),
            "a bare word is not a domain"
        );
        assert!(Endpoint::parse("bad..example.test").is_err());
        assert!(Endpoint::parse("a.*.example.test").is_err());
        assert!(Endpoint::parse("[example.test]:443").is_err());
        assert!(Endpoint::parse("1.2.3.4:0").is_err());
        assert!(Endpoint::parse("1.2.3.4:99999").is_err());
        assert!(Endpoint::parse("[::1").is_err());
        // Broken addresses are not domains.
        for bad in [
            "300.1.1.1:443",
            "1.2.3",
            "1.2.3.4.5",
            "10.0.0.256",
            "*.1.2.3",
        ] {
            let e = Endpoint::parse(bad).expect_err(bad);
            assert!(e.contains("not"), "{bad}: {e}");
        }
        assert!(
            Endpoint::parse("300.1.1.1:443")
                .unwrap_err()
                .contains("`300.1.1.1` is not an IPv4 address")
        );
        assert!(Endpoint::parse("a1.example.test").is_ok());
        assert!(Endpoint::parse("1.example.test").is_ok());
    }

    #[test]
    fn domain_patterns() {
        let ip: IpAddr = "10.200.0.9".parse().unwrap();
        let e = Endpoint::parse("API.example.test:443").unwrap();
        assert_eq!(e.to_string(), "api.example.test:443");
        assert!(e.matches(ip, Some(443), Some("api.Example.test.")));
        assert!(!e.matches(ip, Some(80), Some("api.example.test")));
        assert!(
            !e.matches(ip, Some(443), None),
            "an address nobody resolved"
        );
        let one = Endpoint::parse("*.example.test").unwrap();
        let any = Endpoint::parse("**.example.test").unwrap();
        for (name, m1, many) in [
            ("a.example.test", true, true),
            ("a.b.example.test", false, true),
            ("example.test", false, false),
            ("badexample.test", false, false),
            ("a.example.test.evil.test", false, false),
        ] {
            assert_eq!(one.matches(ip, None, Some(name)), m1, "*. {name}");
            assert_eq!(any.matches(ip, None, Some(name)), many, "**. {name}");
        }
    }

    #[test]
    fn loopback_is_allowed_unless_turned_off() {
        let mut p = Policy::default();
        assert!(p.allowed("127.0.0.5".parse().unwrap(), Some(1), None));
        assert!(p.allowed("::ffff:127.0.0.1".parse().unwrap(), Some(1), None));
        assert!(!p.allowed("10.200.0.1".parse().unwrap(), Some(1), None));
        p.allow_loopback = false;
        assert!(!p.allowed("::1".parse().unwrap(), Some(1), None));
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
