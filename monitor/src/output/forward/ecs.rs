//! Elastic Common Schema (ECS 9): a native record (event, finding, roll-up, run summary, gap)
//! as an ECS document. Field table: docs/outputs.md.
//!
//! - `event.kind` is `event` for events, `alert` for findings, `metric` for roll-ups and
//!   `pipeline_error` for a gap; `event.category` and `event.type` follow ECS's allowed
//!   pairs (process start/end/info, file access/creation/change, network connection/
//!   protocol, intrusion_detection info).
//! - `process.entity_id` is `<host>/<pid>/<start_ns>`: unique on the host (a pid is reused,
//!   its start time is not).
//! - `dns.question.registered_domain` comes from the Public Suffix List (`psl`).
//! - The native record's kind-specific part is kept under `buildwatch.<kind>`, so nothing
//!   buildwatch knows is lost in the mapping.

use serde_json::{Map, Value, json};

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "9.4.0";

/// Set `path` (dotted) in `m`, making the objects on the way; nulls are left out.
pub(super) fn put(m: &mut Map<String, Value>, path: &str, v: impl Into<Value>) {
    let v = v.into();
    if v.is_null() {
        return;
    }
    let (first, rest) = match path.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (path, None),
    };
    match rest {
        None => {
            m.insert(first.to_owned(), v);
        }
        Some(rest) => {
            let e = m
                .entry(first.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            if let Value::Object(inner) = e {
                put(inner, rest, v);
            }
        }
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn numeric_severity(s: &str) -> u64 {
    match s {
        "critical" => 99,
        "high" => 73,
        "medium" => 47,
        _ => 21,
    }
}

/// `destination.*` and `network.*` of an address (and its port and name).
fn destination(m: &mut Map<String, Value>, d: &Value) {
    let Some(addr) = d["address"].as_str() else {
        return;
    };
    put(m, "destination.ip", addr);
    put(m, "destination.address", addr);
    put(m, "destination.port", d["port"].clone());
    if let Some(dom) = d["domain"].as_str() {
        put(m, "destination.domain", dom);
        if let Some(reg) = psl::domain_str(dom) {
            put(m, "destination.registered_domain", reg);
        }
    }
    put(
        m,
        "network.type",
        if addr.contains(':') { "ipv6" } else { "ipv4" },
    );
}

/// `process.*` from a native event's header.
fn process(m: &mut Map<String, Value>, v: &Value, host: &str) {
    put(m, "process.pid", v["pid"].clone());
    if let Some(tid) = v["tid"].as_u64().filter(|t| *t != 0) {
        put(m, "process.thread.id", tid);
    }
    if let Some(start) = v["start_ns"].as_u64() {
        put(
            m,
            "process.entity_id",
            format!("{host}/{}/{start}", v["pid"].as_u64().unwrap_or(0)),
        );
    }
    if let Some(exe) = v["exe"].as_str() {
        put(m, "process.executable", exe);
        put(m, "process.name", basename(exe));
    }
    let parent = &v["ancestry"][0];
    put(
        m,
        "process.parent.pid",
        v["ppid"].clone().as_u64().or(parent["pid"].as_u64()),
    );
    if let Some(exe) = parent["exe"].as_str() {
        put(m, "process.parent.executable", exe);
        put(m, "process.parent.name", basename(exe));
    }
}

fn args(m: &mut Map<String, Value>, prefix: &str, argv: &Value) {
    if let Some(a) = argv.as_array().filter(|a| !a.is_empty()) {
        put(m, &format!("{prefix}.args"), Value::Array(a.clone()));
        put(m, &format!("{prefix}.args_count"), a.len());
        let line: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
        put(m, &format!("{prefix}.command_line"), line.join(" "));
    }
}

fn package(m: &mut Map<String, Value>, p: &Value) {
    put(m, "package.name", p["name"].clone());
    put(m, "package.version", p["version"].clone());
    put(m, "package.type", p["manager"].clone());
}

pub fn from_native(v: &Value, id: &str, host: &str) -> Value {
    let mut m = Map::new();
    let kind = v["kind"].as_str().unwrap_or("event");
    let time = v["time"]
        .as_str()
        .or(v["finding"]["first_seen"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as i128;
            crate::context::proctable::format_time(ns)
        });
    put(&mut m, "@timestamp", time);
    put(&mut m, "ecs.version", ECS_VERSION);
    put(&mut m, "event.id", id);
    put(&mut m, "event.module", "buildwatch");
    put(&mut m, "event.dataset", format!("buildwatch.{kind}"));
    put(&mut m, "event.action", kind);
    put(&mut m, "event.sequence", v["seq"].clone());
    put(&mut m, "observer.product", "buildwatch");
    put(&mut m, "observer.vendor", "buildwatch");
    put(&mut m, "observer.version", env!("CARGO_PKG_VERSION"));
    put(&mut m, "host.hostname", host);
    put(&mut m, "host.name", host);
    let cgroup = if v["cgroup"].is_object() {
        &v["cgroup"]
    } else {
        &v["finding"]["cgroup"]
    };
    if cgroup["kind"] == "container" {
        put(&mut m, "container.id", cgroup["id"].clone());
    }
    put(&mut m, "buildwatch.cgroup", cgroup.clone());
    let d = &v[kind];
    let (category, types): (&str, &[&str]) = match kind {
        "exec" => {
            process(&mut m, v, host);
            put(&mut m, "process.executable", d["path"].clone());
            if let Some(p) = d["path"].as_str() {
                put(&mut m, "process.name", basename(p));
            }
            args(&mut m, "process", &d["argv"]);
            put(&mut m, "process.working_directory", d["cwd"].clone());
            if d["exec"]["package"].is_object() || d["package"].is_object() {
                package(&mut m, &d["package"]);
            }
            ("process", &["start"])
        }
        "fork" => {
            process(&mut m, v, host);
            // The child is the process that started; its parent is the event's process.
            let parent_pid = v["pid"].clone();
            put(&mut m, "process.pid", d["child"].clone());
            m.get_mut("process")
                .and_then(Value::as_object_mut)
                .map(|p| p.remove("entity_id"));
            put(&mut m, "process.parent.pid", parent_pid);
            if let Some(exe) = v["exe"].as_str() {
                put(&mut m, "process.parent.executable", exe);
                put(&mut m, "process.parent.name", basename(exe));
            }
            ("process", &["start"])
        }
        "exit" => {
            process(&mut m, v, host);
            put(&mut m, "process.exit_code", d["code"].clone());
            ("process", &["end"])
        }
        "open" | "rename" | "link" | "unlink" | "chmod" | "setxattr" | "truncate" => {
            process(&mut m, v, host);
            let path = d["path"].as_str().or(d["to"].as_str()).unwrap_or_default();
            put(&mut m, "file.path", path);
            put(&mut m, "file.name", basename(path));
            if let Some((dir, _)) = path.rsplit_once('/') {
                put(
                    &mut m,
                    "file.directory",
                    if dir.is_empty() { "/" } else { dir },
                );
            }
            put(&mut m, "file.target_path", d["target"].clone());
            let flags: Vec<&str> = d["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let t: &[&str] = if kind == "unlink" {
                &["deletion"]
            } else if kind != "open" {
                &["change"]
            } else if flags.contains(&"create") {
                &["creation"]
            } else if flags
                .iter()
                .any(|f| matches!(*f, "write" | "truncate" | "append"))
            {
                &["change"]
            } else {
                &["access"]
            };
            ("file", t)
        }
        "connect" | "send" => {
            process(&mut m, v, host);
            destination(&mut m, d);
            put(&mut m, "destination.address", d["path"].clone());
            if let Some(p) = d["protocol"].as_str() {
                put(&mut m, "network.transport", p);
            }
            if d["refused"] == true {
                // Block mode refused it: a denied connection, which failed.
                put(&mut m, "event.outcome", "failure");
                ("network", &["connection", "denied"])
            } else {
                ("network", &["connection", "start"])
            }
        }
        "dns" => {
            process(&mut m, v, host);
            let name = d["qname"].as_str().unwrap_or_default();
            put(
                &mut m,
                "dns.type",
                if d["direction"] == "response" {
                    "answer"
                } else {
                    "query"
                },
            );
            put(&mut m, "dns.id", d["id"].as_u64().map(|i| i.to_string()));
            put(&mut m, "dns.question.name", d["qname"].clone());
            put(&mut m, "dns.question.type", d["qtype"].clone());
            put(&mut m, "dns.response_code", d["rcode"].clone());
            if let Some(reg) = psl::domain_str(name) {
                put(&mut m, "dns.question.registered_domain", reg);
                if let Some(sub) = name
                    .strip_suffix(reg)
                    .map(|s| s.trim_end_matches('.'))
                    .filter(|s| !s.is_empty())
                {
                    put(&mut m, "dns.question.subdomain", sub);
                }
            }
            if let Some(tld) = psl::suffix_str(name) {
                put(&mut m, "dns.question.top_level_domain", tld);
            }
            if let Some(answers) = d["answers"].as_array().filter(|a| !a.is_empty()) {
                let list: Vec<Value> = answers
                    .iter()
                    .map(|a| {
                        let mut o = Map::new();
                        put(&mut o, "name", a["name"].clone());
                        put(&mut o, "type", a["type"].clone());
                        put(&mut o, "ttl", a["ttl"].clone());
                        put(&mut o, "data", a["data"].clone());
                        Value::Object(o)
                    })
                    .collect();
                let ips: Vec<Value> = answers
                    .iter()
                    .filter(|a| matches!(a["type"].as_str(), Some("A" | "AAAA")))
                    .filter_map(|a| a["data"].as_str().map(Value::from))
                    .collect();
                put(&mut m, "dns.answers", Value::Array(list));
                if !ips.is_empty() {
                    put(&mut m, "dns.resolved_ip", Value::Array(ips));
                }
            }
            put(&mut m, "destination.ip", d["resolver"].clone());
            put(&mut m, "destination.port", d["resolver_port"].clone());
            put(&mut m, "network.transport", d["protocol"].clone());
            put(&mut m, "network.protocol", "dns");
            ("network", &["protocol"])
        }
        "finding" => {
            let f = &v["finding"];
            put(&mut m, "event.kind", "alert");
            let sev = f["severity"].as_str().unwrap_or("low");
            put(&mut m, "event.severity", numeric_severity(sev));
            put(&mut m, "event.start", f["first_seen"].clone());
            put(&mut m, "event.created", v["detected"].clone());
            put(&mut m, "message", f["message"].clone());
            put(&mut m, "rule.id", f["rule"].clone());
            put(&mut m, "rule.name", f["rule"].clone());
            put(&mut m, "rule.category", f["category"].clone());
            put(&mut m, "rule.description", f["message"].clone());
            put(&mut m, "rule.ruleset", "buildwatch");
            if let Some(tags) = f["tags"].as_array().filter(|t| !t.is_empty()) {
                put(&mut m, "tags", Value::Array(tags.clone()));
            }
            let techniques = super::techniques(&f["tags"]);
            if !techniques.is_empty() {
                put(&mut m, "threat.framework", "MITRE ATT&CK");
                put(&mut m, "threat.technique.id", json!(techniques));
            }
            let p = &f["process"];
            put(&mut m, "process.pid", p["pid"].clone());
            if let Some(exe) = p["exe"].as_str() {
                put(&mut m, "process.executable", exe);
                put(&mut m, "process.name", basename(exe));
            }
            args(&mut m, "process", &p["argv"]);
            let parent = &p["ancestry"][0];
            put(&mut m, "process.parent.pid", parent["pid"].clone());
            if let Some(exe) = parent["exe"].as_str() {
                put(&mut m, "process.parent.executable", exe);
                put(&mut m, "process.parent.name", basename(exe));
            }
            args(&mut m, "process.parent", &parent["argv"]);
            if f["package"].is_object() {
                package(&mut m, &f["package"]);
            }
            let det = &f["detail"];
            if let Some(path) = det["path"].as_str().filter(|_| det["argv"].is_null()) {
                put(&mut m, "file.path", path);
                put(&mut m, "file.name", basename(path));
            }
            destination(&mut m, det);
            if let Some(q) = det["qname"].as_str() {
                put(&mut m, "dns.question.name", q);
                put(&mut m, "dns.question.type", det["qtype"].clone());
                if let Some(reg) = psl::domain_str(q) {
                    put(&mut m, "dns.question.registered_domain", reg);
                }
            }
            put(&mut m, "buildwatch.finding", f.clone());
            ("intrusion_detection", &["info"])
        }
        "finding_rollup" => {
            put(&mut m, "event.kind", "metric");
            put(&mut m, "rule.id", v["rule"].clone());
            put(&mut m, "rule.name", v["rule"].clone());
            put(&mut m, "message", v["message"].clone());
            if let Some(sev) = v["severity"].as_str() {
                put(&mut m, "event.severity", numeric_severity(sev));
            }
            put(&mut m, "buildwatch.finding_rollup", v.clone());
            ("intrusion_detection", &["info"])
        }
        "run_summary" => {
            let r = &v["run_summary"];
            args(&mut m, "process", &r["command"]);
            put(&mut m, "process.exit_code", r["exit_code"].clone());
            let failed = r["verdict"]["failed"].as_bool().unwrap_or(false);
            put(
                &mut m,
                "event.outcome",
                if failed { "failure" } else { "success" },
            );
            put(
                &mut m,
                "message",
                format!(
                    "buildwatch run {}: {} finding(s)",
                    if failed { "failed" } else { "passed" },
                    r["findings"].as_u64().unwrap_or(0)
                ),
            );
            ("process", &["end"])
        }
        "gap" => {
            put(&mut m, "event.kind", "pipeline_error");
            put(
                &mut m,
                "message",
                format!(
                    "{} record(s) dropped before this one: {}",
                    v["dropped"].as_u64().unwrap_or(0),
                    v["reason"].as_str().unwrap_or("spool full")
                ),
            );
            put(
                &mut m,
                "buildwatch.gap",
                json!({"dropped": v["dropped"], "reason": v["reason"]}),
            );
            return Value::Object(m);
        }
        _ => {
            process(&mut m, v, host);
            ("process", &["info"])
        }
    };
    if !m.get("event").is_some_and(|e| e.get("kind").is_some()) {
        put(&mut m, "event.kind", "event");
    }
    put(&mut m, "event.category", json!([category]));
    put(&mut m, "event.type", json!(types));
    if let Some(err) = d["error"].as_str() {
        put(&mut m, "event.outcome", "failure");
        put(&mut m, "error.code", err);
    } else if d["ret"].is_i64() || d["ret"].is_u64() {
        put(&mut m, "event.outcome", "success");
    }
    if kind != "finding" && d.is_object() {
        put(&mut m, &format!("buildwatch.{kind}"), d.clone());
    }
    Value::Object(m)
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time (`2026-12-02T17:12:41.997018752Z`).
pub fn parse_rfc3339_ns(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut frac_ns = 0u128;
    let rest = &s[19..];
    let rest = if let Some(f) = rest.strip_prefix('.') {
        let digits: String = f.chars().take_while(char::is_ascii_digit).collect();
        let mut n: u128 = digits.get(..digits.len().min(9))?.parse().ok()?;
        for _ in digits.len().min(9)..9 {
            n *= 10;
        }
        frac_ns = n;
        &f[digits.len()..]
    } else {
        rest
    };
    if rest != "Z" {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    u128::try_from(secs)
        .ok()
        .map(|s| s * 1_000_000_000 + frac_ns)
}
