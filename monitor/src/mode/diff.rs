//! `buildwatch diff BASELINE NEW`: what each package did in NEW that it did not do in the
//! BASELINE run, from their JSON reports (`--report`). BASELINE may also be a policy (a
//! learned one, committed to the repository): then what is new is what it does not allow. Per package (by name, whatever its
//! version), new: executables started, destinations (names or addresses), domains asked of
//! DNS, sensitive files
//! read or written, persistence writes, process-memory access and other findings. A package
//! whose version changed between the runs is shown as `old → new`: the story of a patch
//! release that starts leaking credentials.
//!
//! Text for a terminal, Markdown for a pull-request comment (every value escaped), JSON for
//! tools. `--fail-on-new`: anything new fails the step (exit status 86).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// What a package did in one report.
#[derive(Default)]
struct Seen {
    versions: BTreeSet<String>,
    executables: BTreeSet<String>,
    destinations: BTreeSet<String>,
    /// Registrable domains asked of DNS.
    dns: BTreeSet<String>,
    /// `category: rule: what` of its findings.
    findings: BTreeSet<String>,
    /// Executables and destinations the report did not keep (over its bounds).
    unlisted: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct PackageDiff {
    pub package: String,
    /// Versions in the baseline (empty: a new package); absent when the baseline is a policy,
    /// which knows no versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Vec<String>>,
    pub after: Vec<String>,
    pub executables: Vec<String>,
    pub destinations: Vec<String>,
    /// Registrable domains it asked DNS about.
    pub dns: Vec<String>,
    pub findings: Vec<String>,
    /// Executables and destinations NEW's report did not keep for this package (over its
    /// bounds): they were not compared.
    #[serde(skip_serializing_if = "is_zero")]
    pub unlisted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `name@version` → (name, version). `@scope/name@1.2.3`: the version follows the last `@`
/// that is not the first character. The key comes from a file: any string is split without
/// a panic.
fn split(key: &str) -> (&str, Option<&str>) {
    match key.rfind('@') {
        Some(i) if i > 0 => (&key[..i], Some(&key[i + 1..])),
        _ => (key, None),
    }
}

/// A finding's subject: what it was about, short.
fn finding_key(f: &Value) -> String {
    let d = &f["detail"];
    let what = d["path"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            d["address"]
                .as_str()
                .map(|a| format!("{a}:{}", d["port"].as_u64().unwrap_or(0)))
        })
        .or_else(|| d["qname"].as_str().map(str::to_owned))
        .or_else(|| d["target"]["exe"].as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{}: {}{}",
        f["category"].as_str().unwrap_or(""),
        f["rule"].as_str().unwrap_or(""),
        if what.is_empty() {
            String::new()
        } else {
            format!(" {what}")
        }
    )
}

fn seen(report: &Value, name: &str) -> Result<BTreeMap<String, Seen>, String> {
    if report["schema"].as_u64() != Some(u64::from(crate::output::report::REPORT_SCHEMA)) {
        return Err(format!("{name}: not a buildwatch report (docs/report.md)"));
    }
    let mut out: BTreeMap<String, Seen> = BTreeMap::new();
    if let Some(pkgs) = report["packages"].as_object() {
        for (key, b) in pkgs {
            let (pkg, version) = split(key);
            let s = out.entry(pkg.to_owned()).or_default();
            s.versions.extend(version.map(str::to_owned));
            s.unlisted = s
                .unlisted
                .saturating_add(b["unlisted"].as_u64().unwrap_or(0));
            for (set, field) in [
                (&mut s.executables, "executables"),
                (&mut s.destinations, "destinations"),
                (&mut s.dns, "dns"),
            ] {
                set.extend(
                    b[field]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned),
                );
            }
        }
    }
    for f in report["findings"].as_array().into_iter().flatten() {
        let Some(pkg) = f["package"]["name"].as_str() else {
            continue;
        };
        let s = out.entry(pkg.to_owned()).or_default();
        s.versions
            .extend(f["package"]["version"].as_str().map(str::to_owned));
        s.findings.insert(finding_key(f));
    }
    Ok(out)
}

/// Per package of NEW: what it did that no version of it did in BASELINE. Packages with
/// nothing new are left out.
pub fn diff(baseline: &Value, new: &Value) -> Result<Vec<PackageDiff>, String> {
    let before = seen(baseline, "BASELINE")?;
    let after = seen(new, "NEW")?;
    let empty = Seen::default();
    let mut out = Vec::new();
    for (pkg, a) in &after {
        let b = before.get(pkg).unwrap_or(&empty);
        let fresh = |x: &BTreeSet<String>, y: &BTreeSet<String>| -> Vec<String> {
            x.difference(y).cloned().collect()
        };
        let d = PackageDiff {
            package: pkg.clone(),
            before: Some(b.versions.iter().cloned().collect()),
            after: a.versions.iter().cloned().collect(),
            executables: fresh(&a.executables, &b.executables),
            destinations: fresh(&a.destinations, &b.destinations),
            dns: fresh(&a.dns, &b.dns),
            findings: fresh(&a.findings, &b.findings),
            unlisted: a.unlisted,
        };
        if !(d.executables.is_empty()
            && d.destinations.is_empty()
            && d.dns.is_empty()
            && d.findings.is_empty()
            && d.unlisted == 0)
        {
            out.push(d);
        }
    }
    Ok(out)
}

impl PackageDiff {
    /// What is new, a (kind, item) pair per line, and what was not compared.
    fn items(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = [
            ("runs", &self.executables),
            ("reaches", &self.destinations),
            ("asks DNS about", &self.dns),
            ("new finding", &self.findings),
        ]
        .into_iter()
        .flat_map(|(what, items)| items.iter().map(move |i| (what, i.clone())))
        .collect();
        if self.unlisted > 0 {
            out.push((
                "not compared",
                format!(
                    "{} executables or destinations the report did not keep",
                    self.unlisted
                ),
            ));
        }
        out
    }
}

fn versions(d: &PackageDiff) -> String {
    let a = d.after.join(", ");
    match &d.before {
        None => a,
        Some(b) if b.is_empty() => format!("{a} (new package)"),
        Some(b) if *b == d.after => a,
        Some(b) => format!("{} → {a}", b.join(", ")),
    }
}

/// Is a `packages` destination (`name:port`, `addr:port`, `[v6]:port`) one the policy
/// allows?
fn allowed_by(policy: &crate::policy::Policy, dest: &str) -> bool {
    if let Ok(sa) = dest.parse::<std::net::SocketAddr>() {
        return policy.allowed(sa.ip(), Some(sa.port()), None);
    }
    if let Ok(ip) = dest.parse::<std::net::IpAddr>() {
        return policy.allowed(ip, None, None);
    }
    let (name, port) = match dest.rsplit_once(':') {
        Some((n, p)) => match p.parse::<u16>() {
            Ok(p) => (n, Some(p)),
            Err(_) => (dest, None),
        },
        None => (dest, None),
    };
    policy.allow.iter().any(|e| {
        matches!(&e.host, crate::policy::Host::Domain(d) if d.matches(name))
            && (e.port.is_none() || e.port == port)
    })
}

/// Is a registrable domain one the policy's domain entries are under (or above)?
fn domain_known(policy: &crate::policy::Policy, reg: &str) -> bool {
    policy.allow.iter().any(|e| match &e.host {
        crate::policy::Host::Domain(d) => {
            d.base == reg || d.base.ends_with(&format!(".{reg}")) || d.matches(reg)
        }
        crate::policy::Host::Net(_) => false,
    })
}

/// Per package of NEW, against a committed (learned) policy: the destinations it does not
/// allow, the registrable domains asked of DNS that none of its domain entries is under, and
/// every finding (a policy's accepted findings do not appear in a report judged by it).
/// Executables are not compared: a policy does not list them.
pub fn diff_policy(
    policy: &crate::policy::Policy,
    new: &Value,
) -> Result<Vec<PackageDiff>, String> {
    let after = seen(new, "NEW")?;
    let mut out = Vec::new();
    for (pkg, a) in &after {
        let d = PackageDiff {
            package: pkg.clone(),
            before: None,
            after: a.versions.iter().cloned().collect(),
            executables: Vec::new(),
            destinations: a
                .destinations
                .iter()
                .filter(|x| !allowed_by(policy, x))
                .cloned()
                .collect(),
            dns: a
                .dns
                .iter()
                .filter(|r| !domain_known(policy, r))
                .cloned()
                .collect(),
            findings: a.findings.iter().cloned().collect(),
            unlisted: a.unlisted,
        };
        if !(d.destinations.is_empty()
            && d.dns.is_empty()
            && d.findings.is_empty()
            && d.unlisted == 0)
        {
            out.push(d);
        }
    }
    Ok(out)
}

/// The diff as text lines (escaped for a terminal by the caller's output).
pub fn text(diffs: &[PackageDiff]) -> String {
    if diffs.is_empty() {
        return "no package does anything it did not do in the baseline\n".into();
    }
    let mut s = String::new();
    for d in diffs {
        s.push_str(&format!("{} {}\n", d.package, versions(d)));
        for (what, item) in d.items() {
            s.push_str(&format!("  {what}: {item}\n"));
        }
    }
    s.lines()
        .map(|l| crate::output::text::term_safe(l).into_owned() + "\n")
        .collect()
}

/// The diff as Markdown for a pull-request comment: every value escaped.
pub fn markdown(diffs: &[PackageDiff]) -> String {
    let esc = crate::output::markdown::escape;
    let mut s = String::from("### buildwatch: new behaviour per package\n\n");
    if diffs.is_empty() {
        s.push_str("No package does anything it did not do in the baseline.\n");
        return s;
    }
    for d in diffs {
        s.push_str(&format!(
            "**{}** {}\n\n",
            esc(&d.package),
            esc(&versions(d))
        ));
        for (what, item) in d.items() {
            s.push_str(&format!("- {what}: {}\n", esc(&item)));
        }
        s.push('\n');
    }
    s
}

/// `buildwatch diff`: the exit status.
pub fn run(
    baseline: &std::path::Path,
    new: &std::path::Path,
    format: &str,
    fail_on_new: bool,
) -> i32 {
    let load = |p: &std::path::Path| -> Result<Value, String> {
        let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&t).map_err(|e| format!("{}: not JSON ({e})", p.display()))
    };
    // A baseline that is not JSON is a policy file (a learned one, committed).
    let result = match std::fs::read(baseline) {
        Ok(bytes) if serde_json::from_slice::<Value>(&bytes).is_err() => {
            match crate::policy::load_file(baseline) {
                Ok(loaded) => load(new).and_then(|n| diff_policy(&loaded.policy, &n)),
                Err(diags) => Err(format!(
                    "{}: neither a JSON report nor a policy:\n{}",
                    baseline.display(),
                    diags
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )),
            }
        }
        _ => load(baseline).and_then(|b| load(new).and_then(|n| diff(&b, &n))),
    };
    let diffs = match result {
        Ok(d) => d,
        Err(e) => {
            eprintln!("buildwatch: {e}");
            return crate::exit::INTERNAL;
        }
    };
    let out = match format {
        "json" => serde_json::to_string_pretty(&diffs).unwrap_or_default() + "\n",
        "markdown" => markdown(&diffs),
        _ => text(&diffs),
    };
    crate::outln!("{}", out.trim_end());
    if fail_on_new && !diffs.is_empty() {
        crate::exit::POLICY_VIOLATION
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patch_release_that_starts_leaking_is_shown_side_by_side() {
        let base = json!({"schema": 1, "packages": {
            "left-pad@1.2.1": {"executables": ["node"], "destinations": ["registry.example:443"]},
            "@scope/util@2.0.0": {"executables": ["node"]},
        }, "findings": []});
        let new = json!({"schema": 1, "packages": {
            "left-pad@1.2.2": {"executables": ["node", "sh"],
                "destinations": ["registry.example:443", "x7f3.exfil.example:53"]},
            "@scope/util@2.0.0": {"executables": ["node"]},
            "brand-new@0.0.1": {"executables": ["curl"]},
        }, "findings": [
            {"rule": "sensitive-file-read", "category": "sensitive-file",
             "package": {"name": "left-pad", "version": "1.2.2"},
             "detail": {"path": "/home/u/.aws/credentials"}},
        ]});
        let d = diff(&base, &new).unwrap();
        assert_eq!(d.len(), 2, "{d:#?}");
        let lp = d.iter().find(|p| p.package == "left-pad").unwrap();
        assert_eq!(lp.before, Some(vec!["1.2.1".to_owned()]));
        assert_eq!(lp.after, vec!["1.2.2"]);
        assert_eq!(lp.executables, vec!["sh"]);
        assert_eq!(lp.destinations, vec!["x7f3.exfil.example:53"]);
        assert_eq!(
            lp.findings,
            vec!["sensitive-file: sensitive-file-read /home/u/.aws/credentials"]
        );
        let t = text(&d);
        assert!(t.contains("left-pad 1.2.1 → 1.2.2"), "{t}");
        assert!(t.contains("brand-new 0.0.1 (new package)"), "{t}");
        let m = markdown(&d);
        assert!(m.contains("**left-pad**"), "{m}");
        assert!(diff(&json!({"x": 1}), &new).is_err());
        for key in ["", "@", "@@", "é@1", "@scope/x"] {
            let _ = split(key);
        }
        assert_eq!(split("@scope/x@1.0"), ("@scope/x", Some("1.0")));
        assert_eq!(split("@scope/x"), ("@scope/x", None));
        assert!(
            diff(&new, &new).unwrap().is_empty(),
            "nothing new against itself"
        );
    }

    #[test]
    fn against_a_learned_policy_what_it_does_not_allow_is_new() {
        let f = std::env::temp_dir().join(format!("bw-diff-policy-{}.yaml", std::process::id()));
        std::fs::write(
            &f,
            "allow:\n  - \"**.registry.example:443\"\n  - \"10.200.0.7:8080\"\n",
        )
        .unwrap();
        let policy = crate::policy::load_file(&f).unwrap().policy;
        let _ = std::fs::remove_file(&f);
        let new = json!({"schema": 1, "packages": {
            "left-pad@1.2.2": {"executables": ["node"],
                "destinations": ["a.registry.example:443", "10.200.0.7:8080",
                    "a.registry.example:80", "10.200.0.8:8080", "x7f3.exfil.example:53"],
                "dns": ["registry.example", "exfil.example"]},
        }, "findings": []});
        let d = diff_policy(&policy, &new).unwrap();
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].before, None);
        assert_eq!(
            d[0].destinations,
            vec![
                "10.200.0.8:8080",
                "a.registry.example:80",
                "x7f3.exfil.example:53"
            ]
        );
        assert_eq!(d[0].dns, vec!["exfil.example"]);
        assert!(d[0].executables.is_empty());
        assert!(text(&d).starts_with("left-pad 1.2.2\n"), "{}", text(&d));
    }
}
