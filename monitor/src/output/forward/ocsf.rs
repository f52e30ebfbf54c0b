//! OCSF 1.7.0: a native record as an OCSF event of one of five classes. Field table:
//! docs/outputs.md.
//!
//! | native | class | activity |
//! |---|---|---|
//! | exec, fork, exit, ptrace, process_vm, signal, … | Process Activity (1007) | Launch, Terminate, Open, Inject, Other |
//! | open, rename, link | File System Activity (1001) | Create, Read, Update, Rename, Other |
//! | connect, send | Network Activity (4001) | Open, Fail, Refuse, Traffic |
//! | dns | DNS Activity (4003) | Query, Response |
//! | finding, finding_rollup, gap | Detection Finding (2004) | Create, Update, Other |
//! | run_summary | Process Activity (1007) | Terminate |
//!
//! `metadata.uid` is the record's stable id; what OCSF has no attribute for (the native
//! kind-specific part, the package, the cgroup) is kept under `unmapped`.

use serde_json::{Map, Value, json};

use super::ecs::put;

/// The OCSF version the events follow.
pub const OCSF_VERSION: &str = "1.7.0";

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Milliseconds since the epoch of an RFC 3339 time (now, when there is none).
fn millis(t: Option<&str>) -> u64 {
    t.and_then(super::ecs::parse_rfc3339_ns)
        .map(|ns| (ns / 1_000_000) as u64)
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64
        })
}

/// (severity_id, its caption) of a buildwatch severity (events: informational).
fn severity(s: Option<&str>) -> (u64, &'static str) {
    match s {
        Some("critical") => (5, "Critical"),
        Some("high") => (4, "High"),
        Some("medium") => (3, "Medium"),
        Some("low") => (2, "Low"),
        _ => (1, "Informational"),
    }
}

/// An OCSF `process` object: pid, executable as `file`, command line, and its parent.
fn process(pid: &Value, exe: Option<&str>, argv: &Value, uid: Option<String>) -> Value {
    let mut p = Map::new();
    put(&mut p, "pid", pid.clone());
    put(&mut p, "uid", uid);
    if let Some(exe) = exe {
        put(&mut p, "name", basename(exe));
        put(
            &mut p,
            "file",
            json!({"name": basename(exe), "path": exe, "type_id": 1, "type": "Regular File"}),
        );
    }
    if let Some(a) = argv.as_array().filter(|a| !a.is_empty()) {
        let line: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
        put(&mut p, "cmd_line", line.join(" "));
    }
    Value::Object(p)
}

/// The process of a native event's header, with its parent (the first ancestor).
fn event_process(v: &Value, host: &str) -> Value {
    let uid = v["start_ns"]
        .as_u64()
        .map(|s| format!("{host}/{}/{s}", v["pid"].as_u64().unwrap_or(0)));
    let mut p = process(&v["pid"], v["exe"].as_str(), &Value::Null, uid);
    let parent = &v["ancestry"][0];
    let ppid = v["ppid"].as_u64().or(parent["pid"].as_u64());
    if let (Some(ppid), Value::Object(m)) = (ppid, &mut p) {
        m.insert(
            "parent_process".into(),
            process(&json!(ppid), parent["exe"].as_str(), &Value::Null, None),
        );
    }
    p
}

fn file(path: &str) -> Value {
    let mut f = json!({"name": basename(path), "path": path, "type_id": 0, "type": "Unknown"});
    if let Some((dir, _)) = path.rsplit_once('/') {
        f["parent_folder"] = if dir.is_empty() { "/" } else { dir }.into();
    }
    f
}

fn endpoint(addr: &Value, port: &Value, domain: &Value) -> Value {
    let mut e = Map::new();
    put(&mut e, "ip", addr.clone());
    put(&mut e, "port", port.clone());
    put(&mut e, "hostname", domain.clone());
    Value::Object(e)
}

/// The destination of a connect or send event. A network endpoint needs one of its
/// identifying fields (OCSF's at_least_one): a unix socket has no address, so its path is the
/// endpoint's name, and a family buildwatch does not decode is named by its family.
fn destination(d: &Value) -> Value {
    let mut e = endpoint(&d["address"], &d["port"], &d["domain"]);
    if d["address"].is_null() && d["domain"].is_null() {
        let name = d["path"]
            .as_str()
            .or(d["family"].as_str())
            .unwrap_or("unknown");
        e["name"] = name.into();
    }
    e
}

/// What network and DNS activity share: an outbound connection over the event's protocol, by
/// the event's process.
fn outbound(m: &mut Map<String, Value>, d: &Value, v: &Value, host: &str) {
    let mut conn = json!({"direction_id": 2, "direction": "Outbound"});
    if let Some(p) = d["protocol"].as_str() {
        conn["protocol_name"] = p.into();
    }
    m.insert("connection_info".into(), conn);
    m.insert("actor".into(), json!({"process": event_process(v, host)}));
}

pub fn from_native(v: &Value, id: &str, host: &str) -> Value {
    let kind = v["kind"].as_str().unwrap_or("event");
    let d = &v[kind];
    let mut m = Map::new();
    let mut profiles: Vec<&str> = Vec::new();
    let time = millis(v["time"].as_str().or(v["finding"]["first_seen"].as_str()));
    // (class_uid, class caption, category_uid, category caption, activity_id, caption)
    let (class, class_name, cat, cat_name, activity, activity_name): (
        u64,
        &str,
        u64,
        &str,
        u64,
        String,
    ) = match kind {
        "exec" | "fork" | "exit" | "ptrace" | "process_vm" | "signal" | "bpf" | "socket"
        | "chdir" | "escape" | "straggler" => {
            let actor = event_process(v, host);
            let (act, name): (u64, &str) = match kind {
                "exec" | "fork" => (1, "Launch"),
                "exit" | "straggler" => (2, "Terminate"),
                "ptrace" => (3, "Open"),
                "process_vm" if d["op"].as_str().is_some_and(|o| o.contains("write")) => {
                    (4, "Inject")
                }
                "process_vm" => (3, "Open"),
                _ => (99, kind),
            };
            let target = match kind {
                "exec" => {
                    let mut p = process(
                        &v["pid"],
                        d["path"].as_str(),
                        &d["argv"],
                        actor["uid"].as_str().map(str::to_owned),
                    );
                    put(
                        p.as_object_mut().expect("an object"),
                        "parent_process",
                        actor["parent_process"].clone(),
                    );
                    p
                }
                "fork" => {
                    let mut p = process(&d["child"], v["exe"].as_str(), &Value::Null, None);
                    put(
                        p.as_object_mut().expect("an object"),
                        "parent_process",
                        process(&v["pid"], v["exe"].as_str(), &Value::Null, None),
                    );
                    p
                }
                "ptrace" | "process_vm" | "signal" => {
                    let t = if d["target"].is_object() {
                        &d["target"]
                    } else {
                        d
                    };
                    let pid = t["pid"]
                        .as_i64()
                        .or(t["target_pid"].as_i64())
                        .map(Value::from);
                    match pid {
                        Some(pid) if pid.as_i64().is_some_and(|p| p > 0) => {
                            process(&pid, t["exe"].as_str(), &Value::Null, None)
                        }
                        _ => actor.clone(),
                    }
                }
                _ => actor.clone(),
            };
            m.insert("process".into(), target);
            m.insert("actor".into(), json!({"process": actor}));
            if kind == "exit" {
                put(&mut m, "exit_code", d["code"].clone());
            }
            (
                1007,
                "Process Activity",
                1,
                "System Activity",
                act,
                name.to_owned(),
            )
        }
        "open" | "rename" | "link" | "unlink" | "chmod" | "setxattr" | "truncate" => {
            let path = d["path"].as_str().or(d["to"].as_str()).unwrap_or_default();
            let flags: Vec<&str> = d["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let (act, name): (u64, &str) = match kind {
                "rename" => (5, "Rename"),
                "link" => (99, "Link"),
                "unlink" => (4, "Delete"),
                "chmod" => (7, "Set Security"),
                "setxattr" => (6, "Set Attributes"),
                "truncate" => (3, "Update"),
                _ if flags.contains(&"create") => (1, "Create"),
                _ if flags
                    .iter()
                    .any(|f| matches!(*f, "write" | "truncate" | "append")) =>
                {
                    (3, "Update")
                }
                _ => (2, "Read"),
            };
            m.insert("file".into(), file(path));
            m.insert("actor".into(), json!({"process": event_process(v, host)}));
            (
                1001,
                "File System Activity",
                1,
                "System Activity",
                act,
                name.to_owned(),
            )
        }
        "connect" | "send" => {
            let (act, name): (u64, &str) = match d["error"].as_str() {
                // Block mode refused it in the kernel: the attempt failed.
                _ if d["refused"] == true => (4, "Fail"),
                _ if kind == "send" => (6, "Traffic"),
                None | Some("EINPROGRESS") => (1, "Open"),
                Some("ECONNREFUSED") => (5, "Refuse"),
                Some(_) => (4, "Fail"),
            };
            m.insert("dst_endpoint".into(), destination(d));
            outbound(&mut m, d, v, host);
            profiles.push("host");
            (
                4001,
                "Network Activity",
                4,
                "Network Activity",
                act,
                name.to_owned(),
            )
        }
        "dns" => {
            let response = d["direction"] == "response";
            let mut q = Map::new();
            put(&mut q, "hostname", d["qname"].as_str().unwrap_or(""));
            put(&mut q, "type", d["qtype"].clone());
            put(&mut q, "class", "IN");
            put(&mut q, "packet_uid", d["id"].clone());
            m.insert("query".into(), Value::Object(q));
            if let Some(answers) = d["answers"].as_array() {
                let list: Vec<Value> = answers
                    .iter()
                    .filter_map(|a| {
                        let data = a["data"].as_str()?;
                        Some(json!({"rdata": data, "type": a["type"], "ttl": a["ttl"],
                            "class": "IN"}))
                    })
                    .collect();
                if !list.is_empty() {
                    m.insert("answers".into(), Value::Array(list));
                }
            }
            m.insert(
                "dst_endpoint".into(),
                endpoint(&d["resolver"], &d["resolver_port"], &Value::Null),
            );
            outbound(&mut m, d, v, host);
            profiles.push("host");
            let (act, name) = if response {
                (2, "Response")
            } else {
                (1, "Query")
            };
            (
                4003,
                "DNS Activity",
                4,
                "Network Activity",
                act,
                name.to_owned(),
            )
        }
        "finding" => {
            let f = &v["finding"];
            let p = &f["process"];
            let mut proc_ = process(&p["pid"], p["exe"].as_str(), &p["argv"], None);
            let parent = &p["ancestry"][0];
            if parent.is_object() {
                put(
                    proc_.as_object_mut().expect("an object"),
                    "parent_process",
                    process(
                        &parent["pid"],
                        parent["exe"].as_str(),
                        &parent["argv"],
                        None,
                    ),
                );
            }
            let mut evidence = json!({"process": proc_});
            let det = &f["detail"];
            if let Some(path) = det["path"].as_str().filter(|_| det["argv"].is_null()) {
                evidence["file"] = file(path);
            }
            if det["address"].is_string() {
                evidence["dst_endpoint"] = endpoint(&det["address"], &det["port"], &det["domain"]);
            }
            if let Some(q) = det["qname"].as_str() {
                let mut query = json!({"hostname": q});
                if let Some(t) = det["qtype"].as_str() {
                    query["type"] = t.into();
                }
                evidence["query"] = query;
            }
            let first = millis(f["first_seen"].as_str());
            let mut info = json!({
                "uid": id,
                "title": f["message"],
                "analytic": {"type_id": 1, "type": "Rule", "name": f["rule"], "uid": f["rule"],
                    "category": f["category"]},
                "types": [f["category"]],
                "first_seen_time": first,
                "last_seen_time": first,
            });
            if let Some(t) = v["detected"].as_str() {
                info["created_time"] = millis(Some(t)).into();
            }
            let attacks: Vec<Value> = super::techniques(&f["tags"])
                .into_iter()
                .map(|t| json!({"technique": {"uid": t}}))
                .collect();
            if !attacks.is_empty() {
                info["attacks"] = Value::Array(attacks);
            }
            m.insert("finding_info".into(), info);
            m.insert("evidences".into(), json!([evidence]));
            m.insert("is_alert".into(), Value::Bool(true));
            put(&mut m, "message", f["message"].clone());
            put(&mut m, "count", f["count"].clone());
            put(&mut m, "unmapped.package", f["package"].clone());
            put(&mut m, "unmapped.cgroup", f["cgroup"].clone());
            put(&mut m, "unmapped.detail", f["detail"].clone());
            (
                2004,
                "Detection Finding",
                2,
                "Findings",
                1,
                "Create".to_owned(),
            )
        }
        "finding_rollup" => {
            m.insert(
                "finding_info".into(),
                json!({
                    "uid": id,
                    "title": v["message"].as_str().unwrap_or("findings not listed"),
                    "analytic": {"type_id": 1, "type": "Rule", "name": v["rule"], "uid": v["rule"]},
                }),
            );
            put(
                &mut m,
                "count",
                v["count"].as_u64().or(v["not_listed"].as_u64()),
            );
            put(&mut m, "message", v["message"].clone());
            put(&mut m, "unmapped.finding_rollup", v.clone());
            (
                2004,
                "Detection Finding",
                2,
                "Findings",
                2,
                "Update".to_owned(),
            )
        }
        "gap" => {
            let msg = format!(
                "{} record(s) dropped before this one: {}",
                v["dropped"].as_u64().unwrap_or(0),
                v["reason"].as_str().unwrap_or("spool full")
            );
            m.insert(
                "finding_info".into(),
                json!({"uid": id, "title": msg, "analytic": {"type_id": 99, "type": "Other", "name": "buildwatch-gap"}}),
            );
            put(&mut m, "message", msg);
            put(
                &mut m,
                "unmapped.gap",
                json!({"dropped": v["dropped"], "reason": v["reason"]}),
            );
            (
                2004,
                "Detection Finding",
                2,
                "Findings",
                99,
                "Gap".to_owned(),
            )
        }
        "run_summary" => {
            let r = &v["run_summary"];
            m.insert(
                "process".into(),
                process(&Value::Null, None, &r["command"], Some(format!("run/{id}"))),
            );
            m.insert(
                "actor".into(),
                json!({"process": {"pid": std::process::id(), "name": "buildwatch"}}),
            );
            put(&mut m, "exit_code", r["exit_code"].clone());
            let failed = r["verdict"]["failed"].as_bool().unwrap_or(false);
            let (sid, sname) = if failed {
                (2, "Failure")
            } else {
                (1, "Success")
            };
            put(&mut m, "status_id", sid);
            put(&mut m, "status", sname);
            put(&mut m, "unmapped.run_summary", r.clone());
            (
                1007,
                "Process Activity",
                1,
                "System Activity",
                2,
                "Terminate".to_owned(),
            )
        }
        _ => {
            m.insert("process".into(), event_process(v, host));
            m.insert("actor".into(), json!({"process": event_process(v, host)}));
            (
                1007,
                "Process Activity",
                1,
                "System Activity",
                99,
                kind.to_owned(),
            )
        }
    };
    let sev = severity(v["finding"]["severity"].as_str().or(v["severity"].as_str()));
    put(&mut m, "class_uid", class);
    put(&mut m, "class_name", class_name);
    put(&mut m, "category_uid", cat);
    put(&mut m, "category_name", cat_name);
    put(&mut m, "activity_id", activity);
    put(&mut m, "activity_name", activity_name);
    put(&mut m, "type_uid", class * 100 + activity);
    put(&mut m, "severity_id", sev.0);
    put(&mut m, "severity", sev.1);
    put(&mut m, "time", time);
    put(
        &mut m,
        "device",
        json!({"hostname": host, "name": host, "type_id": 0, "type": "Unknown"}),
    );
    let mut meta = json!({
        "version": OCSF_VERSION,
        "uid": id,
        "product": {"name": "buildwatch", "vendor_name": "buildwatch",
            "version": env!("CARGO_PKG_VERSION")},
        "log_name": kind,
    });
    if !profiles.is_empty() {
        meta["profiles"] = json!(profiles);
    }
    m.insert("metadata".into(), meta);
    if d.is_object() && !matches!(kind, "finding" | "run_summary") {
        put(&mut m, &format!("unmapped.{kind}"), d.clone());
    }
    if let Some(cg) = v["cgroup"].as_object() {
        put(&mut m, "unmapped.cgroup", Value::Object(cg.clone()));
    }
    Value::Object(m)
}
