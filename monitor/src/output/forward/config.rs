//! One output entry (`outputs:` in the agent's configuration, the run policy or an
//! `--output` file): where records go, which records, in which format, and the disk spool of
//! a forwarding output. Every mistake is a positioned error; nothing is guessed.
//!
//! ```yaml
//! - type: syslog                       # RFC 5425 syslog over TLS
//!   address: siem.example:6514
//!   ca: /etc/buildwatch/siem-ca.pem
//! - type: elastic                      # _bulk with `create` actions
//!   url: https://elastic.example:9200
//!   index: buildwatch
//!   token_file: /etc/buildwatch/elastic.apikey   # sent as `Authorization: ApiKey …`
//! - type: splunk_hec
//!   url: https://splunk.example:8088
//!   token_env: BUILDWATCH_HEC_TOKEN
//!   ack: true                          # indexer acknowledgement
//! - type: otlp                         # OTLP/HTTP logs (JSON)
//!   url: https://collector.example:4318
//! - type: webhook                      # NDJSON, one record per line
//!   url: https://hooks.example/buildwatch
//! ```

use std::path::PathBuf;

use crate::detect::rules::{
    Diagnostic, Severity,
    diag::did_you_mean,
    fields::KIND_NAMES,
    yaml::{Node, Value},
};

/// Keys of every output.
const COMMON_KEYS: &[&str] = &[
    "type",
    "path",
    "records",
    "events",
    "min_severity",
    "max_bytes",
    "max_age_secs",
    "keep",
];
/// Keys of the forwarding outputs only.
const FORWARD_KEYS: &[&str] = &[
    "address",
    "url",
    "server_name",
    "ca",
    "client_cert",
    "client_key",
    "token_file",
    "token_env",
    "index",
    "sourcetype",
    "ack",
    "ack_timeout_secs",
    "format",
    "spool",
    "spool_max_bytes",
    "on_full",
    "batch",
    "timeout_secs",
];

fn output_keys() -> impl Iterator<Item = &'static str> + Clone {
    COMMON_KEYS.iter().chain(FORWARD_KEYS).copied()
}

const TYPES: &str = "`file`, `stdout`, `syslog`, `elastic`, `splunk_hec`, `otlp` or `webhook`";

/// Where a spool lives when the entry does not say (the agent's; a run's gets `run-` first).
pub const SPOOL_ROOT: &str = "/var/lib/buildwatch/spool";

/// The record layout a forwarding output sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// buildwatch's own JSON (docs/events.md), with the record's stable `id`.
    Native,
    /// Elastic Common Schema.
    Ecs,
    /// OCSF 1.x.
    Ocsf,
}

impl Schema {
    pub fn name(self) -> &'static str {
        match self {
            Schema::Native => "native",
            Schema::Ecs => "ecs",
            Schema::Ocsf => "ocsf",
        }
    }
}

/// What a full spool does with a new record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFull {
    /// Refuse it (counted; a gap record follows once there is room).
    DropNewest,
    /// Wait for room: the output's queue fills and the bus counts what it cannot hold.
    Block,
}

/// TLS towards a receiver: the CA file that signs its certificate (default: the system's
/// bundle), the name the certificate must carry (default: the host of the address), and an
/// optional client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    pub ca: Option<PathBuf>,
    pub server_name: Option<String>,
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Where a token comes from: it is read when the output starts and appears nowhere else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    File(PathBuf),
    Env(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolOpts {
    pub dir: PathBuf,
    /// Set by the entry (`spool:`); otherwise under [`SPOOL_ROOT`].
    pub explicit: bool,
    pub max_bytes: u64,
    pub on_full: OnFull,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpKind {
    Elastic,
    SplunkHec,
    Otlp,
    Webhook,
}

impl HttpKind {
    pub fn name(self) -> &'static str {
        match self {
            HttpKind::Elastic => "elastic",
            HttpKind::SplunkHec => "splunk_hec",
            HttpKind::Otlp => "otlp",
            HttpKind::Webhook => "webhook",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpDest {
    pub kind: HttpKind,
    pub url: String,
    pub tls: Tls,
    pub token: Option<Token>,
    /// Elastic's index; Splunk's index (optional).
    pub index: Option<String>,
    pub sourcetype: Option<String>,
    /// Splunk HEC indexer acknowledgement.
    pub ack: bool,
    /// How long a HEC batch waits for its acknowledgement before it is sent again.
    pub ack_timeout_secs: u64,
    pub batch: usize,
    pub timeout_secs: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    File(PathBuf),
    Stdout,
    /// RFC 5425 syslog over TLS, through a disk spool.
    Syslog {
        address: String,
        tls: Tls,
        spool: SpoolOpts,
        schema: Schema,
    },
    /// An HTTP receiver, through a disk spool.
    Http {
        dest: HttpDest,
        spool: SpoolOpts,
        schema: Schema,
    },
}

impl Destination {
    /// How the output is named in messages, metrics and the report.
    pub fn name(&self) -> String {
        match self {
            Destination::File(p) => p.display().to_string(),
            Destination::Stdout => "stdout".into(),
            Destination::Syslog { address, .. } => format!("syslog {address}"),
            Destination::Http { dest, .. } => format!("{} {}", dest.kind.name(), dest.url),
        }
    }

    pub fn spool(&self) -> Option<&SpoolOpts> {
        match self {
            Destination::Syslog { spool, .. } | Destination::Http { spool, .. } => Some(spool),
            _ => None,
        }
    }

    pub fn spool_mut(&mut self) -> Option<&mut SpoolOpts> {
        match self {
            Destination::Syslog { spool, .. } | Destination::Http { spool, .. } => Some(spool),
            _ => None,
        }
    }
}

/// One output: where, which records, and a file's rotation.
#[derive(Clone, Debug)]
pub struct OutputConfig {
    pub to: Destination,
    pub findings: bool,
    pub events: bool,
    /// Event kinds written; empty: all.
    pub kinds: Vec<String>,
    pub min_severity: Severity,
    pub max_bytes: u64,
    pub max_age_secs: u64,
    pub keep: u32,
}

pub fn seq<'n>(v: &'n Node, what: &str, errs: &mut Vec<Diagnostic>) -> &'n [Node] {
    match &v.value {
        Value::Seq(items) => items,
        _ => {
            errs.push(Diagnostic::error(
                v.pos.clone(),
                format!("`{what}` is a list"),
            ));
            &[]
        }
    }
}

pub fn number(v: &Node, what: &str, errs: &mut Vec<Diagnostic>) -> Option<u64> {
    match v
        .as_str()
        .and_then(|s| s.replace('_', "").parse::<u64>().ok())
    {
        Some(n) => Some(n),
        None => {
            errs.push(Diagnostic::error(
                v.pos.clone(),
                format!("`{what}` is a whole number"),
            ));
            None
        }
    }
}

/// A file name made of an address or URL (the default spool directory's).
fn slug(s: &str) -> String {
    let s = s
        .split_once("://")
        .map_or(s, |(_, rest)| rest)
        .trim_end_matches('/');
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

/// The host of `HOST:PORT` or `[V6]:PORT`.
fn host_of(address: &str) -> String {
    let h = address.rsplit_once(':').map_or(address, |(h, _)| h);
    h.trim_start_matches('[').trim_end_matches(']').to_owned()
}

/// `url` checked: http or https, a host, no user info (a password in a URL ends up in logs).
fn check_url(v: &Node, errs: &mut Vec<Diagnostic>) -> Option<hyper::Uri> {
    let s = v.as_str().unwrap_or_default();
    let bad = |m: &str, errs: &mut Vec<Diagnostic>| {
        errs.push(Diagnostic::error(v.pos.clone(), format!("`url`: {m}")));
        None
    };
    let Ok(uri) = s.parse::<hyper::Uri>() else {
        return bad(&format!("`{s}` is not a URL"), errs);
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return bad("the URL starts with https:// (or http://)", errs);
    }
    let Some(auth) = uri.authority() else {
        return bad("the URL has no host", errs);
    };
    if auth.as_str().contains('@') {
        return bad(
            "no user or password in the URL (use `token_file` or `token_env`)",
            errs,
        );
    }
    Some(uri)
}

pub fn output(
    node: &Node,
    rel: &dyn Fn(&str) -> PathBuf,
    errs: &mut Vec<Diagnostic>,
) -> Option<OutputConfig> {
    let Value::Map(entries) = &node.value else {
        errs.push(Diagnostic::error(
            node.pos.clone(),
            "an output is a mapping (type:, path:, …)",
        ));
        return None;
    };
    let before = errs.len();
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v)
    };
    for (k, _) in entries {
        let key = k.as_str().unwrap_or_default();
        if !output_keys().any(|o| o == key) {
            errs.push(Diagnostic::error(
                k.pos.clone(),
                format!(
                    "unknown output key `{key}`{} (expected one of: {})",
                    did_you_mean(key, output_keys()),
                    output_keys().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let ty = get("type").and_then(Node::as_str).unwrap_or_default();
    let need = |k: &str, errs: &mut Vec<Diagnostic>| match get(k).and_then(Node::as_str) {
        Some(v) => Some(v.to_owned()),
        None => {
            errs.push(Diagnostic::error(
                node.pos.clone(),
                format!("a {ty} output needs `{k}:`"),
            ));
            None
        }
    };
    let forwarding = matches!(ty, "syslog" | "elastic" | "splunk_hec" | "otlp" | "webhook");
    // What every forwarding output has: TLS, a spool, a schema.
    let tls = || -> Option<Tls> {
        let client = match (
            get("client_cert").and_then(Node::as_str),
            get("client_key").and_then(Node::as_str),
        ) {
            (Some(c), Some(k)) => Some((rel(c), rel(k))),
            (None, None) => None,
            _ => return None,
        };
        Some(Tls {
            ca: get("ca").and_then(Node::as_str).map(rel),
            server_name: get("server_name").and_then(Node::as_str).map(str::to_owned),
            client,
        })
    };
    let spool = |target: &str, errs: &mut Vec<Diagnostic>| SpoolOpts {
        dir: get("spool").and_then(Node::as_str).map_or_else(
            || PathBuf::from(SPOOL_ROOT).join(format!("{ty}-{}", slug(target))),
            rel,
        ),
        explicit: get("spool").is_some(),
        max_bytes: get("spool_max_bytes")
            .and_then(|v| number(v, "spool_max_bytes", errs))
            .unwrap_or(1 << 30)
            .max(1 << 20),
        on_full: match get("on_full").map(|v| (v, v.as_str())) {
            None | Some((_, Some("drop_newest"))) => OnFull::DropNewest,
            Some((_, Some("block"))) => OnFull::Block,
            Some((v, _)) => {
                errs.push(Diagnostic::error(
                    v.pos.clone(),
                    "`on_full` is `drop_newest` or `block`",
                ));
                OnFull::DropNewest
            }
        },
    };
    let schema = |default: Schema, errs: &mut Vec<Diagnostic>| match get("format") {
        None => default,
        Some(v) => match v.as_str() {
            Some("native") => Schema::Native,
            Some("ecs") => Schema::Ecs,
            Some("ocsf") => Schema::Ocsf,
            _ => {
                errs.push(Diagnostic::error(
                    v.pos.clone(),
                    "`format` is `native`, `ecs` or `ocsf`",
                ));
                default
            }
        },
    };
    if forwarding && (get("client_cert").is_some() != get("client_key").is_some()) {
        errs.push(Diagnostic::error(
            node.pos.clone(),
            "`client_cert` and `client_key` come together",
        ));
        return None;
    }
    if !forwarding {
        for &k in FORWARD_KEYS {
            if let Some((key, _)) = entries.iter().find(|(key, _)| key.as_str() == Some(k)) {
                errs.push(Diagnostic::error(
                    key.pos.clone(),
                    format!("`{k}` belongs to a forwarding output, not a {ty} one"),
                ));
            }
        }
    }
    let to = match ty {
        "stdout" => Destination::Stdout,
        "file" => Destination::File(rel(&need("path", errs)?)),
        "syslog" => {
            let address = need("address", errs)?;
            if !address.contains(':') {
                errs.push(Diagnostic::error(
                    get("address").map_or(node.pos.clone(), |v| v.pos.clone()),
                    format!("`{address}` is not HOST:PORT"),
                ));
                return None;
            }
            let mut tls = tls()?;
            tls.server_name.get_or_insert_with(|| host_of(&address));
            Destination::Syslog {
                spool: spool(&address, errs),
                schema: schema(Schema::Native, errs),
                tls,
                address,
            }
        }
        "elastic" | "splunk_hec" | "otlp" | "webhook" => {
            let kind = match ty {
                "elastic" => HttpKind::Elastic,
                "splunk_hec" => HttpKind::SplunkHec,
                "otlp" => HttpKind::Otlp,
                _ => HttpKind::Webhook,
            };
            let url_node = get("url");
            let url = need("url", errs)?;
            let uri = check_url(url_node?, errs)?;
            let token = match (get("token_file"), get("token_env")) {
                (Some(f), None) => f.as_str().map(|f| Token::File(rel(f))),
                (None, Some(e)) => e.as_str().map(|e| Token::Env(e.to_owned())),
                (None, None) => None,
                (Some(_), Some(e)) => {
                    errs.push(Diagnostic::error(
                        e.pos.clone(),
                        "`token_file` or `token_env`, not both",
                    ));
                    None
                }
            };
            if kind == HttpKind::SplunkHec && token.is_none() {
                errs.push(Diagnostic::error(
                    node.pos.clone(),
                    "a splunk_hec output needs `token_file:` or `token_env:`",
                ));
            }
            let host = uri.host().unwrap_or_default();
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            if uri.scheme_str() == Some("http") && token.is_some() && !loopback {
                errs.push(Diagnostic::error(
                    url_node.map_or(node.pos.clone(), |v| v.pos.clone()),
                    "a token is not sent in clear: use https:// (http:// only to loopback)",
                ));
            }
            let ack = match get("ack").map(|v| (v, v.as_str())) {
                None | Some((_, Some("false"))) => false,
                Some((_, Some("true"))) if kind == HttpKind::SplunkHec => true,
                Some((v, _)) => {
                    errs.push(Diagnostic::error(
                        v.pos.clone(),
                        "`ack` is true or false, for a splunk_hec output",
                    ));
                    false
                }
            };
            let mut tls = tls()?;
            tls.server_name.get_or_insert_with(|| {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            });
            let default_schema = match kind {
                HttpKind::Elastic => Schema::Ecs,
                _ => Schema::Native,
            };
            Destination::Http {
                spool: spool(&url, errs),
                schema: schema(default_schema, errs),
                dest: HttpDest {
                    kind,
                    tls,
                    token,
                    index: get("index").and_then(Node::as_str).map(str::to_owned),
                    sourcetype: get("sourcetype").and_then(Node::as_str).map(str::to_owned),
                    ack,
                    ack_timeout_secs: get("ack_timeout_secs")
                        .and_then(|v| number(v, "ack_timeout_secs", errs))
                        .map_or(60, |n| n.clamp(1, 3600)),
                    batch: get("batch")
                        .and_then(|v| number(v, "batch", errs))
                        .map_or(500, |n| n.clamp(1, 10_000) as usize),
                    timeout_secs: get("timeout_secs")
                        .and_then(|v| number(v, "timeout_secs", errs))
                        .map_or(10, |n| n.clamp(1, 600)),
                    url,
                },
            }
        }
        _ => {
            errs.push(Diagnostic::error(
                get("type").map_or(node.pos.clone(), |t| t.pos.clone()),
                format!("`type` is {TYPES}"),
            ));
            return None;
        }
    };
    let mut out = OutputConfig {
        to,
        findings: true,
        events: true,
        kinds: Vec::new(),
        min_severity: Severity::Low,
        max_bytes: 100 << 20,
        max_age_secs: 24 * 3600,
        keep: 7,
    };
    if let Some(r) = get("records") {
        out.findings = false;
        out.events = false;
        for item in seq(r, "records", errs) {
            match item.as_str() {
                Some("findings") => out.findings = true,
                Some("events") => out.events = true,
                _ => errs.push(Diagnostic::error(
                    item.pos.clone(),
                    "`records` lists `findings` and/or `events`",
                )),
            }
        }
    }
    if let Some(k) = get("events") {
        for item in seq(k, "events", errs) {
            match item.as_str() {
                Some(kind) if KIND_NAMES.contains(&kind) => out.kinds.push(kind.to_owned()),
                other => {
                    let w = other.unwrap_or_default();
                    errs.push(Diagnostic::error(
                        item.pos.clone(),
                        format!(
                            "unknown event kind `{w}`{} (one of: {})",
                            did_you_mean(w, KIND_NAMES.iter().copied()),
                            KIND_NAMES.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    if let Some(s) = get("min_severity") {
        match s.as_str().and_then(Severity::parse) {
            Some(sev) => out.min_severity = sev,
            None => errs.push(Diagnostic::error(
                s.pos.clone(),
                "`min_severity` is low, medium, high or critical",
            )),
        }
    }
    if let Some(n) = get("max_bytes").and_then(|v| number(v, "max_bytes", errs)) {
        out.max_bytes = n.max(4096);
    }
    if let Some(n) = get("max_age_secs").and_then(|v| number(v, "max_age_secs", errs)) {
        out.max_age_secs = n;
    }
    if let Some(n) = get("keep").and_then(|v| number(v, "keep", errs)) {
        out.keep = u32::try_from(n).unwrap_or(u32::MAX);
    }
    (errs.len() == before).then_some(out)
}

/// An `--output` file: a mapping with `outputs:`, or the list itself. Errors rendered with
/// their positions, one per paragraph.
pub fn load_file(path: &std::path::Path) -> Result<Vec<OutputConfig>, String> {
    let name = path.display().to_string();
    let render = |ds: Vec<Diagnostic>, src: &str| {
        let n = ds.len();
        let text: Vec<String> = ds
            .into_iter()
            .map(|d| format!("buildwatch: {}", d.with_source(src)))
            .collect();
        format!("{}\nbuildwatch: {n} error(s) in {name}", text.join("\n\n"))
    };
    let src =
        std::fs::read_to_string(path).map_err(|e| format!("buildwatch: --output {name}: {e}"))?;
    let root = match crate::detect::rules::yaml::parse(&name, &src) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(format!(
                "buildwatch: --output {name}: empty (it needs `outputs:`)"
            ));
        }
        Err(d) => return Err(render(vec![d], &src)),
    };
    let mut errs = Vec::new();
    let list = match &root.value {
        Value::Seq(_) => &root,
        Value::Map(entries) => {
            let mut list = None;
            for (k, v) in entries {
                if k.as_str() == Some("outputs") {
                    list = Some(v);
                } else {
                    errs.push(Diagnostic::error(
                        k.pos.clone(),
                        format!(
                            "unknown key `{}` (an --output file holds `outputs:`)",
                            k.as_str().unwrap_or_default()
                        ),
                    ));
                }
            }
            match list {
                Some(l) => l,
                None => {
                    errs.push(Diagnostic::error(root.pos.clone(), "no `outputs:`"));
                    return Err(render(errs, &src));
                }
            }
        }
        _ => {
            return Err(render(
                vec![Diagnostic::error(
                    root.pos.clone(),
                    "an --output file holds `outputs:` (a list)",
                )],
                &src,
            ));
        }
    };
    let base = path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let rel = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { base.join(p) }
    };
    let mut out = Vec::new();
    for o in seq(list, "outputs", &mut errs) {
        if let Some(o) = output(o, &rel, &mut errs) {
            out.push(o);
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(render(errs, &src))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Vec<OutputConfig>, String> {
        // A directory per call: the tests run in parallel, and each removes its own.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bw-outcfg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(format!("out-{}.yaml", src.len()));
        std::fs::write(&f, src).unwrap();
        let r = load_file(&f);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn every_forwarding_type_parses_with_its_defaults() {
        let o = parse(
            "outputs:\n  - type: syslog\n    address: siem.example:6514\n  - type: elastic\n    url: https://es.example:9200\n  - type: splunk_hec\n    url: https://hec.example:8088\n    token_env: HEC\n    ack: true\n    format: ocsf\n  - type: otlp\n    url: http://127.0.0.1:4318\n  - type: webhook\n    url: https://hooks.example/x\n    on_full: block\n",
        )
        .unwrap();
        assert_eq!(o.len(), 5);
        match &o[0].to {
            Destination::Syslog { tls, spool, .. } => {
                assert_eq!(tls.server_name.as_deref(), Some("siem.example"));
                assert!(spool.dir.ends_with("syslog-siem.example_6514"));
                assert!(!spool.explicit);
            }
            other => panic!("{other:?}"),
        }
        match &o[1].to {
            Destination::Http { dest, schema, .. } => {
                assert_eq!(dest.kind, HttpKind::Elastic);
                assert_eq!(*schema, Schema::Ecs, "Elastic defaults to ECS");
                assert_eq!(dest.tls.server_name.as_deref(), Some("es.example"));
            }
            other => panic!("{other:?}"),
        }
        match &o[2].to {
            Destination::Http { dest, schema, .. } => {
                assert!(dest.ack);
                assert_eq!(*schema, Schema::Ocsf);
                assert_eq!(dest.token, Some(Token::Env("HEC".into())));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o[4].to.spool().unwrap().on_full, OnFull::Block);
    }

    #[test]
    fn mistakes_are_errors_with_their_position() {
        let e =
            parse("outputs:\n  - type: splunk_hec\n    url: https://hec.example\n").unwrap_err();
        assert!(
            e.contains(":2:5: error: a splunk_hec output needs `token_file:` or `token_env:`"),
            "{e}"
        );
        let e = parse(
            "outputs:\n  - type: webhook\n    url: http://hooks.example/x\n    token_env: T\n",
        )
        .unwrap_err();
        assert!(
            e.contains(":3:10: error: a token is not sent in clear"),
            "{e}"
        );
        let e = parse("outputs:\n  - type: webhook\n    url: https://user:pw@hooks.example/\n")
            .unwrap_err();
        assert!(e.contains("no user or password in the URL"), "{e}");
        let e = parse("outputs:\n  - type: elasticc\n").unwrap_err();
        assert!(
            e.contains(":2:11: error: `type` is `file`, `stdout`, `syslog`, `elastic`"),
            "{e}"
        );
        let e = parse("outputs:\n  - type: file\n    path: /x\n    url: https://a.example\n")
            .unwrap_err();
        assert!(
            e.contains(":4:5: error: `url` belongs to a forwarding output, not a file one"),
            "{e}"
        );
        let e = parse("outputs:\n  - type: otlp\n    url: https://c.example\n    formt: ocsf\n")
            .unwrap_err();
        assert!(
            e.contains("unknown output key `formt` (did you mean `format`?)"),
            "{e}"
        );
        let e = parse("outputs:\n  - type: syslog\n    address: nohost\n").unwrap_err();
        assert!(e.contains("`nohost` is not HOST:PORT"), "{e}");
        let e = parse("fail_on: high\n").unwrap_err();
        assert!(
            e.contains("unknown key `fail_on` (an --output file holds `outputs:`)"),
            "{e}"
        );
    }
}
