//! `buildwatch learn REPORT` and `run --learn FILE`: the smallest allowlist that would have
//! allowed a run, from its report's egress table, as a policy file to review and commit.
//!
//! - A destination this run's DNS named becomes a domain entry; where a run used several
//!   names under one registrable domain (by the Public Suffix List), one `**.` entry covers
//!   them. An address becomes an entry only when the build never looked it up (hard-coded).
//! - Loopback is left to `allow_loopback` (copied when the judging policy turned it off).
//! - The port is kept when all uses of an entry had the same one.
//! - Each entry is commented with the processes and packages that needed it.
//! - The run's findings outside egress become exceptions (the rule, the kernel's executable,
//!   the file or query name), commented with their packages.
//!
//! The report is the watched code's doing: names that are not valid domain names are not
//! written as domains (the address is used instead), and comments keep only printable ASCII
//! of a plain kind, so nothing in a report can add a line to the policy.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::policy::DomainPattern;

/// One entry being built: its host text, the ports seen, who needed it.
#[derive(Default)]
struct Entry {
    ports: BTreeSet<u16>,
    processes: BTreeSet<String>,
    packages: BTreeSet<String>,
}

/// Text safe for a YAML comment: printable ASCII of names and versions only, bounded.
fn plain(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-@/+:".contains(*c))
        .take(80)
        .collect()
}

fn strs(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// The learned policy, as YAML text.
pub fn learn(report: &Value, source: &str) -> Result<String, String> {
    if report["schema"].as_u64() != Some(u64::from(crate::output::report::REPORT_SCHEMA)) {
        return Err(format!(
            "{source}: not a buildwatch report (docs/report.md) of schema {}",
            crate::output::report::REPORT_SCHEMA
        ));
    }
    let egress = report["egress"]
        .as_array()
        .ok_or_else(|| format!("{source}: the report has no egress table"))?;
    let loopback_off = report["policy"]["allow_loopback"] == false
        || egress.iter().any(|e| {
            e["address"]
                .as_str()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|a| a.is_loopback())
                && e["allowed"] == false
        });
    // Domain names by registrable domain; addresses by themselves.
    let mut by_domain: BTreeMap<String, BTreeMap<String, Entry>> = BTreeMap::new();
    let mut addresses: BTreeMap<String, Entry> = BTreeMap::new();
    for e in egress {
        let Some(addr) = e["address"].as_str() else {
            continue;
        };
        let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
            continue;
        };
        if ip.is_loopback() && !loopback_off {
            continue;
        }
        // DNS is the DNS proxy's business in block mode: the run's resolvers need no entry.
        if e["port"] == 53 && (e["resolver"] == true || e["redirected"] == true) {
            continue;
        }
        let port = e["port"].as_u64().and_then(|p| u16::try_from(p).ok());
        let names: Vec<String> = strs(&e["domains"])
            .filter(|d| DomainPattern::parse(d).is_some_and(|p| p.extra_labels == 0))
            .map(str::to_ascii_lowercase)
            .collect();
        let note = |entry: &mut Entry| {
            entry.ports.extend(port);
            entry.processes.extend(strs(&e["processes"]).map(plain));
            entry.packages.extend(strs(&e["packages"]).map(plain));
        };
        if names.is_empty() {
            let host = if addr.contains(':') {
                format!("[{addr}]")
            } else {
                addr.to_owned()
            };
            note(addresses.entry(host).or_default());
        } else {
            for n in names {
                let reg = psl::domain_str(&n).unwrap_or(&n).to_owned();
                note(by_domain.entry(reg).or_default().entry(n).or_default());
            }
        }
    }
    let source: String = source
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(200)
        .collect();
    let mut out = format!(
        "# Learned by buildwatch {} from {source}: the smallest allowlist that would have\n\
         # allowed that run. Review it before committing it.\n",
        env!("CARGO_PKG_VERSION"),
    );
    if loopback_off {
        out.push_str("allow_loopback: false\n");
    }
    out.push_str("allow:\n");
    let mut entries: Vec<(String, Entry)> = Vec::new();
    for (reg, names) in by_domain {
        let subdomains: BTreeSet<&String> = names.keys().filter(|n| **n != reg).collect();
        if subdomains.len() >= 2 {
            // Several names under one registrable domain: one wildcard, and the bare name if
            // it was used too.
            let mut merged = Entry::default();
            let mut bare = None;
            for (n, e) in names {
                if n == reg {
                    bare = Some(e);
                } else {
                    merged.ports.extend(e.ports);
                    merged.processes.extend(e.processes);
                    merged.packages.extend(e.packages);
                }
            }
            entries.push((format!("**.{reg}"), merged));
            if let Some(b) = bare {
                entries.push((reg, b));
            }
        } else {
            entries.extend(names);
        }
    }
    entries.extend(addresses);
    if entries.is_empty() {
        out.push_str("  []\n");
    }
    for (host, e) in entries {
        let who: Vec<String> = e
            .processes
            .iter()
            .take(8)
            .cloned()
            .chain(e.packages.iter().take(8).map(|p| format!("package {p}")))
            .collect();
        out.push_str(&format!(
            "  # needed by {}\n",
            if who.is_empty() {
                "(unknown)".to_owned()
            } else {
                who.join(", ")
            }
        ));
        let ports: Vec<u16> = e.ports.into_iter().collect();
        if let [port] = ports[..] {
            out.push_str(&format!("  - \"{host}:{port}\"\n"));
        } else {
            out.push_str(&format!("  - \"{host}\"\n"));
        }
    }
    out.push_str(&exceptions(report));
    Ok(out)
}

/// An exception learned: (rule, the kernel's executable, the subject field and its value).
type ExceptionKey = (String, String, Option<(&'static str, String)>);

/// Most exceptions a learned policy lists.
const MAX_EXCEPTIONS: usize = 200;

/// The exceptions the run needed: one per finding (and per rule folded into one) outside the
/// egress category (the allowlist is egress's answer), matched on the kernel's executable and
/// the finding's subject (the file's path or the query's name) where it has one. Values are
/// written as JSON strings, which YAML reads as double-quoted scalars: nothing in a report
/// can end a value early.
fn exceptions(report: &Value) -> String {
    let mut seen: BTreeMap<ExceptionKey, BTreeSet<String>> = BTreeMap::new();
    for f in report["findings"].as_array().into_iter().flatten() {
        if f["category"] == "egress" {
            continue;
        }
        let Some(exe) = f["process"]["exe"].as_str() else {
            continue;
        };
        let d = &f["detail"];
        let subject = if let Some(p) = d["path"].as_str().filter(|_| d["argv"].is_null()) {
            Some(("file.path", p.to_owned()))
        } else {
            d["qname"].as_str().map(|q| ("dns.qname", q.to_owned()))
        };
        let package = match (
            f["package"]["name"].as_str(),
            f["package"]["version"].as_str(),
        ) {
            (Some(n), Some(v)) => Some(format!("package {}", plain(&format!("{n}@{v}")))),
            (Some(n), None) => Some(format!("package {}", plain(n))),
            _ => None,
        };
        let rules = std::iter::once(&f["rule"]).chain(
            f["parts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| &p["rule"]),
        );
        for rule in rules.filter_map(Value::as_str) {
            if seen.len() >= MAX_EXCEPTIONS {
                break;
            }
            let who = seen
                .entry((rule.to_owned(), exe.to_owned(), subject.clone()))
                .or_default();
            who.extend(package.clone());
        }
    }
    if seen.is_empty() {
        return String::new();
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::from(
        "# The findings of that run, accepted: review each (a finding in a clean run may be \
         the\n# attack itself).\nexceptions:\n",
    );
    for (i, ((rule, exe, subject), who)) in seen.into_iter().enumerate() {
        out.push_str(&format!("  - rule: {}\n", q(&plain(&rule))));
        if !who.is_empty() {
            let who: Vec<String> = who.into_iter().take(8).collect();
            out.push_str(&format!("    # needed by {}\n", who.join(", ")));
        }
        out.push_str(&format!("    name: learned_{}\n", i + 1));
        match subject {
            Some((field, value)) => {
                out.push_str(&format!("    fields: [proc.exe, {field}]\n"));
                out.push_str("    comps: [=, =]\n");
                out.push_str(&format!("    values: [[{}, {}]]\n", q(&exe), q(&value)));
            }
            None => {
                out.push_str("    fields: [proc.exe]\n");
                out.push_str("    comps: [=]\n");
                out.push_str(&format!("    values: [[{}]]\n", q(&exe)));
            }
        }
    }
    out
}

/// `buildwatch learn REPORT [-o FILE]`.
pub fn learn_file(
    report: &std::path::Path,
    output: Option<&std::path::Path>,
) -> Result<(), String> {
    let name = report.display().to_string();
    let text = std::fs::read_to_string(report).map_err(|e| format!("buildwatch: {name}: {e}"))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("buildwatch: {name}: not JSON ({e})"))?;
    let policy = learn(&v, &name).map_err(|e| format!("buildwatch: {e}"))?;
    match output {
        Some(p) => {
            std::fs::write(p, policy).map_err(|e| format!("buildwatch: {}: {e}", p.display()))
        }
        None => {
            crate::outln!("{}", policy.trim_end());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn domains_wildcard_by_registrable_domain_and_addresses_only_when_hard_coded() {
        let r = json!({"schema": 1, "egress": [
            {"address": "10.200.0.5", "port": 443, "domains": ["a.cdn.example.com"],
             "processes": ["npm"], "packages": ["left-pad@1.0.0"], "allowed": false},
            {"address": "10.200.0.6", "port": 443, "domains": ["b.cdn.example.com"],
             "processes": ["npm"], "allowed": false},
            {"address": "10.200.0.7", "port": 443, "domains": ["registry.example.org"],
             "processes": ["pip"], "allowed": false},
            {"address": "10.200.0.9", "port": 8443, "processes": ["curl"], "allowed": false},
            {"address": "10.200.0.9", "port": 9443, "processes": ["curl"], "allowed": false},
            {"address": "127.0.0.1", "port": 80, "processes": ["node"], "allowed": true},
            {"address": "10.200.0.8", "port": 53, "domains": ["x\nallow:\n- evil.example"],
             "processes": ["a\nb"], "allowed": false},
        ]});
        let p = learn(&r, "r.json").unwrap();
        assert!(p.contains("  - \"**.example.com:443\"\n"), "{p}");
        assert!(p.contains("  - \"registry.example.org:443\"\n"), "{p}");
        assert!(p.contains("  - \"10.200.0.9\"\n"), "two ports: any: {p}");
        assert!(p.contains("# needed by npm, package left-pad@1.0.0"), "{p}");
        assert!(
            !p.contains("127.0.0.1"),
            "loopback is allowed by default: {p}"
        );
        // A name that is not a domain is not one here; nothing from the report adds lines.
        assert!(p.contains("  - \"10.200.0.8:53\"\n"), "{p}");
        assert!(!p.contains("evil.example"), "{p}");
        assert!(
            p.lines()
                .all(|l| l.starts_with('#') || l.starts_with("  ") || l == "allow:"),
            "{p}"
        );
        // The learned policy loads as a policy.
        let loaded = crate::policy::load_str("learned.yaml", &p)
            .map_err(|d| format!("{d:?}"))
            .unwrap();
        assert_eq!(loaded.policy.allow.len(), 4, "{p}");
    }
}
