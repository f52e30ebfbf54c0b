//! The results as a Markdown report, the targets (issues 5 and 12) checked against them, and
//! publishing both into docs/.

use std::{fmt::Write as _, fs, path::Path};

use serde::Serialize;

use super::{Results, stats::Spread};

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub goal: &'static str,
    pub measured: String,
    /// None when the run did not measure it.
    pub met: Option<bool>,
}

const KIB_PER_MB: f64 = 1_000_000.0 / 1024.0;

pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let bw: Vec<_> = r
        .builds
        .iter()
        .filter(|b| b.monitor == "buildwatch")
        .collect();
    let worst = bw
        .iter()
        .filter_map(|b| Some((b.wall_ratio?, b.build)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    t.push(Target {
        name: "wall-time overhead on real builds",
        goal: "≤ 2%",
        measured: worst.map_or("not measured".into(), |(x, b)| {
            format!("worst {:+.1}% ({b})", (x - 1.0) * 100.0)
        }),
        met: worst.map(|(x, _)| x <= 1.02),
    });
    let per_event = r
        .micro
        .iter()
        .find(|m| {
            m.monitor == "buildwatch"
                && m.op == "openat+close"
                && m.scope == Some(super::micro::Scope::In)
        })
        .and_then(|m| Some(m.overhead_ns? / m.events_per_op.filter(|&e| e > 0.0)?));
    t.push(Target {
        name: "per-event cost in scope (openat)",
        goal: "≤ 1.5 µs",
        measured: per_event.map_or("not measured".into(), |ns| format!("{:.2} µs", ns / 1000.0)),
        met: per_event.map(|ns| ns <= 1500.0),
    });
    // Issue 18's per-operation targets, in scope: the median of the paired differences.
    for (name, op, goal, limit_ns) in [
        (
            "cost per openat+close in scope",
            "openat+close",
            "≤ +0.5 µs",
            500.0,
        ),
        (
            "cost per fork+execve in scope",
            "fork+execve true",
            "≤ +50 µs",
            50_000.0,
        ),
    ] {
        let d = r
            .micro
            .iter()
            .find(|m| {
                m.monitor == "buildwatch" && m.op == op && m.scope == Some(super::micro::Scope::In)
            })
            .and_then(|m| m.overhead_spread.as_ref());
        t.push(Target {
            name,
            goal,
            measured: d.map_or("not measured".into(), |d| {
                format!(
                    "{:+.2} µs ({:+.2}–{:+.2})",
                    d.median / 1000.0,
                    d.min / 1000.0,
                    d.max / 1000.0
                )
            }),
            met: d.map(|d| d.median <= limit_ns),
        });
    }
    let outside = r
        .micro
        .iter()
        .find(|m| {
            m.monitor == "buildwatch"
                && m.op == "openat+close"
                && m.scope == Some(super::micro::Scope::Out)
        })
        .and_then(|m| m.overhead_ns);
    t.push(Target {
        name: "cost per openat+close out of scope",
        goal: "≤ +150 ns",
        measured: outside.map_or("not measured".into(), |ns| format!("{ns:+.0} ns")),
        met: outside.map(|ns| ns <= 150.0),
    });
    let cap = r.capacity.as_ref().and_then(|c| c.max_lossless_per_s);
    t.push(Target {
        name: "events/s through the rules with 0 lost",
        goal: "≥ 500,000/s",
        measured: cap.map_or("not measured".into(), |c| format!("{}/s", thousands(c))),
        met: cap.map(|c| c >= 500_000.0),
    });
    let p99 = r
        .latency
        .iter()
        .map(|l| l.p99_ms)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    t.push(Target {
        name: "sensitive open → finding, p99",
        goal: "≤ 20 ms",
        measured: p99.map_or("not measured".into(), |p| {
            format!("{p:.1} ms (worst of idle and loaded)")
        }),
        met: p99.map(|p| p <= 20.0),
    });
    let rss = bw.iter().filter_map(|b| b.seen.monitor_rss_kib).max();
    t.push(Target {
        name: "buildwatch peak RSS during the builds",
        goal: "≤ 30 MB",
        measured: rss.map_or("not measured".into(), |k| {
            format!("{:.1} MB", k as f64 / KIB_PER_MB)
        }),
        met: rss.map(|k| (k as f64) <= 30.0 * KIB_PER_MB),
    });
    let st = r.startup.as_ref().map(|s| s.buildwatch_ms.median);
    t.push(Target {
        name: "start-up (invocation → command running), median",
        goal: "≤ 60 ms",
        measured: st.map_or("not measured".into(), |ms| format!("{ms:.1} ms")),
        met: st.map(|ms| ms <= 60.0),
    });
    if let Some(a) = &r.agent_soak {
        t.push(Target {
            name: "agent RSS after warm-up, (max - min) / min",
            goal: "≤ 10%",
            measured: format!(
                "{:.1}% ({:.1}–{:.1} MB over {} events)",
                a.warm_spread_pct,
                a.warm_min_mb,
                a.warm_max_mb,
                thousands(a.events as f64)
            ),
            met: Some(a.warm_spread_pct <= 10.0),
        });
        t.push(Target {
            name: "agent soak, events through the default rules",
            goal: "≥ 30,000,000",
            measured: format!("{} ({} lost)", thousands(a.events as f64), a.lost),
            met: Some(a.events >= 30_000_000),
        });
    }
    if let Some(f) = r.forwarding.iter().find(|f| f.transport == "syslog-tls") {
        t.push(Target {
            name: "forwarding to syslog over TLS, spool on",
            goal: "≥ 100,000 records/s",
            measured: format!(
                "{}/s median ({}–{})",
                thousands(f.throughput_per_s.median),
                thousands(f.throughput_per_s.min),
                thousands(f.throughput_per_s.max)
            ),
            met: Some(f.throughput_per_s.median >= 100_000.0),
        });
    }
    if !r.forwarding.is_empty() {
        let worst = |f: fn(&super::forward::Forwarding) -> f64| {
            r.forwarding.iter().map(f).fold(0f64, f64::max)
        };
        let all = worst(|f| f.cpu_us_per_record.median);
        t.push(Target {
            name: "agent CPU per forwarded record",
            goal: "< 2 µs",
            measured: format!(
                "worst {all:.2} µs (all of the agent's CPU); {:.2} µs over no event output, {:.2} \
                 µs over an event file",
                worst(|f| f.forward_cpu_us_per_record.median),
                worst(|f| f.over_file_cpu_us_per_record.median)
            ),
            met: Some(all < 2.0),
        });
    }
    t
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or("–".into(), f)
}

/// A paired ratio with its range when there is one: `1.020 (0.950–1.100)`.
fn ratio(median: Option<f64>, spread: &Spread) -> String {
    match median {
        Some(m) if spread.n > 1 && spread.min < spread.max => {
            format!("{m:.3} ({:.3}–{:.3})", spread.min, spread.max)
        }
        other => opt(other, |x| format!("{x:.3}")),
    }
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "Run {} on Linux {}, {} × {}, {} GiB; buildwatch {}{}.\n",
        m.date,
        m.kernel,
        m.cpus,
        m.cpu,
        m.memory_gib,
        m.buildwatch,
        match (r.quick, r.reps) {
            (true, None) => " (--quick: fewer repetitions, smaller builds)".to_owned(),
            (true, Some(n)) => format!(" (--quick: smaller builds; --reps {n})"),
            (false, Some(n)) => format!(" (--reps {n}: {n} paired repetitions)"),
            (false, None) => String::new(),
        }
    );
    s.push_str("### Targets\n\n| target | goal | measured | met |\n|---|---|---|---|\n");
    for t in &r.targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(s, "| {} | {} | {} | {met} |", t.name, t.goal, t.measured);
    }
    if !r.builds.is_empty() {
        s.push_str(
            "\n### Real builds\n\nMedian (min–max) over the repetitions; × bare is the median (min–max) of \
             each run's ratio to a bare build of its own, made just before or just after it \
             (alternating); monitors rotate between repetitions. CPU is the whole process tree's, plus the daemon's for \
             bpftrace and auditd.\n\n\
             | build | monitor | wall s | × bare | CPU s | × bare | events seen | lost | monitor CPU s | monitor peak RSS |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for b in &r.builds {
            let fail = if b.failures.is_empty() {
                String::new()
            } else {
                format!(" ({} failed)", b.failures.len())
            };
            let _ = writeln!(
                s,
                "| {} | {}{fail} | {:.2} ({:.2}–{:.2}) | {} | {:.2} | {} | {} | {} | {} | {} |",
                b.build,
                b.monitor,
                b.wall_s.median,
                b.wall_s.min,
                b.wall_s.max,
                ratio(b.wall_ratio, &b.wall_ratios),
                b.cpu_s.median,
                ratio(b.cpu_ratio, &b.cpu_ratios),
                b.seen.events.map_or("–".into(), |e| e.to_string()),
                b.seen.lost.map_or("–".into(), |e| e.to_string()),
                opt(b.seen.monitor_cpu_s, |x| format!("{x:.2}")),
                b.seen
                    .monitor_rss_kib
                    .map_or("–".into(), |k| format!("{:.1} MB", k as f64 / KIB_PER_MB)),
            );
        }
        let mut described = Vec::new();
        for b in &r.builds {
            if !described.contains(&b.build) {
                described.push(b.build);
                let _ = writeln!(s, "\n- {}: {}", b.build, b.description);
            }
        }
    }
    if !r.micro.is_empty() {
        s.push_str(
            "\n### Microbenchmarks\n\nCost of one operation in a tight loop. *in*: the loop is \
             the watched command; *out*: the monitor watches another command while the loop \
             runs beside it. Each monitored run is paired with a bare run made just before or \
             after it; + ns and × bare are the medians (min–max) of those pairs.\n\n\
             | operation | monitor | scope | ns/op median (min–max) | + ns vs bare | × bare | events/op | lost |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for x in &r.micro {
            let scope = match x.scope {
                None => "–",
                Some(super::micro::Scope::In) => "in",
                Some(super::micro::Scope::Out) => "out",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {scope} | {:.0} ({:.0}–{:.0}) | {} | {} | {} | {} |",
                x.op,
                x.monitor,
                x.ns_per_op.median,
                x.ns_per_op.min,
                x.ns_per_op.max,
                x.overhead_spread.as_ref().map_or("–".into(), |d| format!(
                    "{:+.0} ({:+.0}–{:+.0})",
                    d.median, d.min, d.max
                )),
                opt(x.ratio, |v| format!("{v:.2}")),
                opt(x.events_per_op, |v| format!("{v:.2}")),
                x.lost.map_or("–".into(), |l| l.to_string()),
            );
        }
    }
    if let Some(st) = &r.startup {
        let _ = writeln!(
            s,
            "\n### Start-up\n\nInvocation → command running: `buildwatch run` {:.1} ms median \
             ({:.1}–{:.1}, n={}); the same command started directly {:.1} ms. Started 2.5 s \
             after another run ended, while that run's programs are being released: \
             {:.1} ms ({:.1}–{:.1}, n={}).",
            st.buildwatch_ms.median,
            st.buildwatch_ms.min,
            st.buildwatch_ms.max,
            st.buildwatch_ms.n,
            st.bare_ms.median,
            st.back_to_back_ms.median,
            st.back_to_back_ms.min,
            st.back_to_back_ms.max,
            st.back_to_back_ms.n,
        );
    }
    if let Some(c) = &r.capacity {
        let _ = writeln!(
            s,
            "\n### Capacity\n\n{} processes opening a missing file at a paced rate for {} s each \
             step, under `buildwatch run` with the default rules.\n\n\
             | asked /s | achieved /s | events | lost | buildwatch CPU µs/event |\n|---|---|---|---|---|",
            c.producers, c.seconds_per_step
        );
        for st in &c.steps {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                if st.target_per_s == 0 {
                    "unpaced".into()
                } else {
                    thousands(st.target_per_s as f64)
                },
                thousands(st.achieved_per_s),
                st.events,
                st.lost,
                opt(st.monitor_us_per_event, |v| format!("{v:.2}")),
            );
        }
    }
    if !r.latency.is_empty() {
        s.push_str(
            "\n### Open → finding latency\n\nFrom just before `open(~/.aws/credentials)` to its \
             live finding line on buildwatch's stderr, opens 20 ms apart.\n\n\
             | background events/s | opens | findings | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n",
        );
        for l in &r.latency {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                thousands(l.background_events_per_s as f64),
                l.opens,
                l.findings,
                l.p50_ms,
                l.p99_ms,
                l.max_ms
            );
        }
    }
    if let Some(a) = &r.agent_soak {
        let _ = writeln!(
            s,
            "\n### Agent soak\n\n`buildwatch agent` watching one cgroup: two producers opening a \
             missing file at {}/s for {} s, beside a loop starting a process and reading a fake \
             credential under a new name about 50 times a second. {} events judged, {} lost, {} \
             findings counted; the agent used {:.1} s of CPU ({:.2} µs per event). RSS after \
             warm-up (the first fifth): {:.1}–{:.1} MB, a spread of {:.1}%.\n\n\
             | t (s) | RSS (MB) |\n|---|---|",
            thousands(a.rate_per_s as f64),
            a.seconds,
            thousands(a.events as f64),
            a.lost,
            thousands(a.findings as f64),
            a.agent_cpu_s,
            if a.events > 0 {
                a.agent_cpu_s * 1e6 / a.events as f64
            } else {
                0.0
            },
            a.warm_min_mb,
            a.warm_max_mb,
            a.warm_spread_pct
        );
        let step = (a.rss.len() / 15).max(1);
        for p in a.rss.iter().step_by(step) {
            let _ = writeln!(s, "| {} | {:.1} |", p.t_s, p.rss_mb);
        }
    }
    if !r.agent_host_cost.is_empty() {
        s.push_str(
            "\n### Agent, host-wide: cost for a process the rules do not care about\n\n\
             The agent watching the whole host against no agent, tight loops; each repetition \
             pairs a run under the agent with its own bare run. ns per operation, median \
             (min–max).\n\n| operation | bare ns/op | agent ns/op | + ns | × bare |\n|---|---|---|---|---|\n",
        );
        for c in &r.agent_host_cost {
            let _ = writeln!(
                s,
                "| {} | {:.0} ({:.0}–{:.0}) | {:.0} ({:.0}–{:.0}) | {:+.0} | {} |",
                c.op,
                c.bare_ns.median,
                c.bare_ns.min,
                c.bare_ns.max,
                c.agent_ns.median,
                c.agent_ns.min,
                c.agent_ns.max,
                c.agent_ns.median - c.bare_ns.median,
                ratio(Some(c.ratio.median), &c.ratio)
            );
        }
    }
    if !r.forwarding.is_empty() {
        s.push_str(
            "\n### Forwarding (agent, spool on)\n\n`buildwatch agent` watching one cgroup where \
             a producer opens a missing file at a steady rate; every event forwarded through the \
             output's disk spool to a receiver on loopback: rsyslog (gnutls) over TLS, or the \
             tests' SIEM stand-in counting webhook lines. Each repetition pairs the run with two \
             of the same load: one whose agent writes no events anywhere, one whose agent writes \
             them to a file. Records/s from the load's start until \
             the spool was empty again. CPU per forwarded record: all of the agent's (it also \
             judges every event); over a paired run of the same load with no event output; and \
             over a paired run writing the same events to a local file (what forwarding adds to \
             having the events as JSON at all). Write amplification: bytes the agent wrote to \
             disk over the bytes of the records. Median (min–max).\n\n\
             | transport | offered | forwarded/s | µs CPU per record | over no event output | over an event file | write amplification | forwarded / received | lost | dropped |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for f in &r.forwarding {
            let spread = |x: &super::stats::Spread, d: usize| {
                format!("{:.d$} ({:.d$}–{:.d$})", x.median, x.min, x.max)
            };
            let _ = writeln!(
                s,
                "| {} | {}/s × {} s | {} ({}–{}) | {} | {} | {} | {} | {} / {} | {} | {} |",
                f.transport,
                thousands(f.rate_per_s as f64),
                f.seconds,
                thousands(f.throughput_per_s.median),
                thousands(f.throughput_per_s.min),
                thousands(f.throughput_per_s.max),
                spread(&f.cpu_us_per_record, 2),
                spread(&f.forward_cpu_us_per_record, 2),
                spread(&f.over_file_cpu_us_per_record, 2),
                spread(&f.write_amplification, 2),
                thousands(f.forwarded.iter().sum::<u64>() as f64),
                thousands(f.received.iter().sum::<u64>() as f64),
                f.lost,
                f.dropped_full
            );
        }
    }
    s.push_str("\n### Monitors\n\n");
    for mi in &r.monitors {
        match &mi.unavailable {
            None => {
                let _ = writeln!(s, "- {}: {}", mi.name, mi.setup);
            }
            Some(why) => {
                let _ = writeln!(s, "- {}: not measured ({why})", mi.name);
            }
        }
    }
    if !r.errors.is_empty() {
        s.push_str("\n### Errors\n\n");
        for e in &r.errors {
            let _ = writeln!(s, "- {}", e.replace('\n', " "));
        }
    }
    s
}

const BEGIN: &str = "<!-- bench:begin (written by `cargo xtask bench --publish`) -->";
const END: &str = "<!-- bench:end -->";

/// Replace the generated block of docs/benchmarks.md and write docs/benchmarks.json.
pub fn publish(repo: &Path, json: &str, md: &str) -> Result<(), String> {
    let doc = repo.join("docs/benchmarks.md");
    let text = fs::read_to_string(&doc).map_err(|e| format!("{}: {e}", doc.display()))?;
    let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!(
            "{}: the bench:begin/bench:end markers are missing",
            doc.display()
        ));
    };
    let new = format!("{}{BEGIN}\n{md}{}", &text[..a], &text[b..]);
    fs::write(&doc, new).map_err(|e| e.to_string())?;
    fs::write(repo.join("docs/benchmarks.json"), json).map_err(|e| e.to_string())
}
