//! `buildwatch drill`: a fire drill for the CI monitor. It writes benign "malicious" npm and
//! pip packages into a local registry directory, one attack technique each, runs an install
//! command over them under `buildwatch run` (this binary, with the user's policy and rules),
//! and scores each technique: caught or missed, by which rule, and how long after the
//! technique's first syscall the finding was raised. The scorecard is Markdown (docs/drill.md).
//!
//! Safety: the packages touch only the drill's directory (a fake home with fake credentials),
//! read secrets only from variables the drill sets to fake values (the real secret variables
//! are removed from the install's environment), and talk only to the drill's own servers on
//! loopback.

pub mod kit;
pub mod serve;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use kit::{Ecosystem, Layout, TECHNIQUES, Technique};
use serde_json::Value;

use crate::{
    detect::secrets,
    output::{forward::ecs::parse_rfc3339_ns, markdown::escape as md, text::term_safe},
};

/// How long one install may take before the drill stops it.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

pub struct DrillOptions {
    /// A new or empty directory for the kit (default: a new one under the temp directory).
    pub dir: Option<PathBuf>,
    /// None: every ecosystem whose tool is installed.
    pub ecosystem: Option<Ecosystem>,
    /// The user's install command, run in the project directory; default per ecosystem.
    pub command: Vec<OsString>,
    pub scorecard: Option<PathBuf>,
    /// Passed to `buildwatch run`.
    pub policy: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub user: Option<String>,
}

/// What became of one technique in one ecosystem.
#[derive(Debug)]
pub struct Score {
    pub technique: &'static Technique,
    pub ecosystem: Ecosystem,
    /// The technique's start (its marker open) was seen in the event stream.
    pub started: bool,
    /// Findings attributed to the technique's package: (rule, severity), most severe first.
    pub findings: Vec<(String, String)>,
    /// At or above the run's `fail_on`: it would fail the build.
    pub caught: bool,
    /// From the technique's first syscall to the first finding at or above `fail_on`.
    pub detect_ms: Option<f64>,
}

/// One ecosystem's watched install.
struct Install {
    ecosystem: Ecosystem,
    command: Vec<OsString>,
    exit: Option<i32>,
    fail_on: String,
    verdict_reasons: Vec<String>,
    events_lost: u64,
    scores: Vec<Score>,
}

pub fn drill(opts: DrillOptions) -> Result<i32> {
    let ecosystems: Vec<Ecosystem> = match opts.ecosystem {
        Some(e) => vec![e],
        None => [Ecosystem::Npm, Ecosystem::Pip]
            .into_iter()
            .filter(|e| tool_present(*e))
            .collect(),
    };
    if ecosystems.is_empty() {
        bail!("neither npm nor python3 is installed: nothing to drill with");
    }
    let usage = |msg: String| {
        crate::mode::note(&format!("drill: {msg}"));
        Ok(crate::exit::USAGE)
    };
    if !opts.command.is_empty() && ecosystems.len() != 1 {
        return usage("a command of your own needs --ecosystem npm or --ecosystem pip".into());
    }
    let dir = match &opts.dir {
        Some(d) => {
            if d.exists()
                && fs::read_dir(d)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(true)
            {
                return usage(format!(
                    "--dir {}: not an empty directory",
                    term_safe(&d.display().to_string())
                ));
            }
            d.clone()
        }
        None => std::env::temp_dir().join(format!(
            "buildwatch-drill-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        )),
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let layout = Layout::new(&dir);
    let fake = FakeSecrets::new()?;
    kit::write(&layout, &ecosystems, &fake.key_id)?;
    let servers = serve::Servers::start(kit::PAYLOAD_SH, kit::TOOL_SH)?;
    give_to_user(&dir, opts.user.as_deref())?;

    let mut installs = Vec::new();
    for &eco in &ecosystems {
        installs.push(install(&opts, &layout, eco, &fake, &servers)?);
    }
    drop(servers);

    // The fake secret must appear in no output: the report, events, findings, logs.
    let mut leaked = Vec::new();
    for &eco in &ecosystems {
        let out = dir.join(format!("out-{}", eco.name()));
        for f in [
            "report.json",
            "events.jsonl",
            "findings.jsonl",
            "buildwatch.log",
        ] {
            if fs::read(out.join(f))
                .is_ok_and(|b| memchr::memmem::find(&b, fake.secret.as_bytes()).is_some())
            {
                leaked.push(format!("{}/{f}", eco.name()));
            }
        }
    }
    let card = scorecard(&installs, &leaked, &dir);
    let card_path = opts
        .scorecard
        .clone()
        .unwrap_or_else(|| dir.join("scorecard.md"));
    fs::write(&card_path, &card).with_context(|| format!("writing {}", card_path.display()))?;
    print_terminal(&installs, &leaked);
    crate::outln!("scorecard: {}", term_safe(&card_path.display().to_string()));
    crate::outln!("kit and outputs: {}", term_safe(&dir.display().to_string()));
    let all_caught = installs
        .iter()
        .all(|i| i.scores.iter().all(|s| s.caught) && i.events_lost == 0);
    Ok(if all_caught && leaked.is_empty() {
        0
    } else {
        1
    })
}

fn tool_present(eco: Ecosystem) -> bool {
    let (tool, arg) = match eco {
        Ecosystem::Npm => ("npm", "--version"),
        Ecosystem::Pip => ("python3", "--version"),
    };
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The drill's fake secrets: random, so a finding cannot come from a value seen before.
struct FakeSecrets {
    key_id: String,
    secret: String,
}

impl FakeSecrets {
    fn new() -> Result<Self> {
        let mut raw = [0u8; 48];
        use std::io::Read;
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .context("reading /dev/urandom")?;
        const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let key_id: String = std::iter::once("AKIA".to_owned())
            .chain(
                raw[..16]
                    .iter()
                    .map(|b| (UPPER[*b as usize % 32] as char).to_string()),
            )
            .collect();
        // "FAKE" so anyone who finds it in a log knows what it is.
        let secret: String = raw[16..]
            .iter()
            .take(36)
            .map(|b| B64[*b as usize % 64] as char)
            .chain("FAKE".chars())
            .collect();
        Ok(Self { key_id, secret })
    }
}

/// The user `run` will start the install as (`--user`, else the user who invoked sudo) owns
/// the kit, so that the install can write its project, cache and downloads.
fn give_to_user(dir: &Path, user: Option<&str>) -> Result<()> {
    let sudo = std::env::var("SUDO_UID").ok();
    let creds =
        crate::mode::run::user::resolve(user, sudo.as_deref()).map_err(anyhow::Error::msg)?;
    let Some(c) = creds else {
        return Ok(());
    };
    fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if p.symlink_metadata()?.is_dir() {
            for e in fs::read_dir(p)? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(dir, c.uid, c.gid).with_context(|| format!("giving {} to {}", dir.display(), c.name))
}

/// Whether a variable name is one of the secrets buildwatch looks for by default: those are
/// removed from the install's environment, so a drill never hands a real secret to anything.
fn is_secret_name(name: &str) -> bool {
    secrets::DEFAULT_ENV
        .iter()
        .any(|g| secrets::name_matches(g, name))
}

fn install(
    opts: &DrillOptions,
    l: &Layout,
    eco: Ecosystem,
    fake: &FakeSecrets,
    servers: &serve::Servers,
) -> Result<Install> {
    let proj = l.project(eco);
    let out = l.dir.join(format!("out-{}", eco.name()));
    fs::create_dir_all(&out)?;
    let (report, events, findings, log) = (
        out.join("report.json"),
        out.join("events.jsonl"),
        out.join("findings.jsonl"),
        out.join("buildwatch.log"),
    );
    let outputs = out.join("outputs.yaml");
    fs::write(
        &outputs,
        format!(
            "outputs:\n  - type: file\n    path: {}\n    records: [findings]\n",
            serde_json::to_string(&findings.display().to_string())?
        ),
    )?;
    let command: Vec<OsString> = if opts.command.is_empty() {
        match eco {
            Ecosystem::Npm => ["npm", "install"].map(OsString::from).to_vec(),
            Ecosystem::Pip => [
                "python3",
                "-m",
                "pip",
                "install",
                "--no-cache-dir",
                "--target",
                "site",
                "-r",
                "requirements.txt",
            ]
            .map(OsString::from)
            .to_vec(),
        }
    } else {
        opts.command.clone()
    };
    let exe = std::env::current_exe().context("finding buildwatch's own executable")?;
    let mut c = Command::new(exe);
    c.current_dir(&proj);
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_none_or(is_secret_name) {
            c.env_remove(&k);
        }
    }
    let url = format!("http://{}", servers.http);
    c.envs([
        ("AWS_ACCESS_KEY_ID", fake.key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", fake.secret.as_str()),
        ("BW_DRILL_URL", url.as_str()),
        ("BW_DRILL_DNS", &servers.dns_sink.to_string()),
    ]);
    c.env("BW_DRILL_DIR", &l.dir).env("BW_DRILL_HOME", &l.home);
    // Nothing the install does may reach a network: npm's registry is a closed loopback port
    // and offline; pip finds packages only in the drill's registry.
    c.envs([
        ("npm_config_registry", "http://127.0.0.1:9/"),
        ("npm_config_offline", "true"),
        ("npm_config_audit", "false"),
        ("npm_config_fund", "false"),
        ("npm_config_update_notifier", "false"),
        ("PIP_NO_INDEX", "1"),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
    ]);
    c.env("npm_config_cache", l.dir.join("npm-cache"))
        .env("PIP_FIND_LINKS", l.registry_of(Ecosystem::Pip));
    c.arg("run")
        .arg("--report")
        .arg(&report)
        .arg("--events")
        .arg(&events)
        .arg("--output")
        .arg(&outputs)
        .arg("--color")
        .arg("never")
        .arg("--annotations")
        .arg("never");
    if let Some(p) = &opts.policy {
        c.arg("--policy").arg(p);
    }
    for r in &opts.rules {
        c.arg("--rules").arg(r);
    }
    if let Some(u) = &opts.user {
        c.arg("--user").arg(u);
    }
    c.arg("--").args(&command);
    let logf = fs::File::create(&log)?;
    c.stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf);
    crate::outln!(
        "drill: {} install under buildwatch: {}",
        eco.name(),
        term_safe(
            &command
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        )
    );
    let mut child = c.spawn().context("starting buildwatch run")?;
    let started = Instant::now();
    let exit = loop {
        if let Some(st) = child.try_wait()? {
            break crate::exit::of_status(&st);
        }
        if started.elapsed() > INSTALL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the {} install did not finish in {} s (log: {})",
                eco.name(),
                INSTALL_TIMEOUT.as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let report: Value = fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .with_context(|| {
            format!(
                "buildwatch run wrote no report (exit {exit}); its log: {}",
                log.display()
            )
        })?;
    let fail_on = report["verdict"]["fail_on"]
        .as_str()
        .unwrap_or("high")
        .to_owned();
    let verdict_reasons = report["verdict"]["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let events_lost = report["events"]["lost"].as_u64().unwrap_or(0);
    let marks = marker_times(&events, &l.marks)?;
    let found = finding_lines(&findings)?;
    let scores = TECHNIQUES
        .iter()
        .map(|t| score(t, eco, &marks, &found, &fail_on))
        .collect();
    Ok(Install {
        ecosystem: eco,
        command,
        exit: Some(exit),
        fail_on,
        verdict_reasons,
        events_lost,
        scores,
    })
}

/// Each technique's start: the kernel's time of the first open of its marker file.
fn marker_times(events: &Path, marks: &Path) -> Result<BTreeMap<String, u128>> {
    let f = fs::File::open(events).with_context(|| format!("reading {}", events.display()))?;
    let prefix = format!("{}/", marks.display());
    let mut out = BTreeMap::new();
    for line in BufReader::new(f).lines() {
        let line = line?;
        if !line.contains(&prefix) {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["kind"] != "open" {
            continue;
        }
        let (Some(path), Some(t)) = (
            v["open"]["path"].as_str(),
            v["time"].as_str().and_then(parse_rfc3339_ns),
        ) else {
            continue;
        };
        if let Some(id) = path.strip_prefix(&prefix) {
            out.entry(id.to_owned()).or_insert(t);
        }
    }
    Ok(out)
}

/// A finding as written live: its rule, severity, package name and when it was raised.
struct Found {
    rule: String,
    severity: String,
    package: String,
    detected: Option<u128>,
    parts: Vec<(String, String)>,
}

fn finding_lines(path: &Path) -> Result<Vec<Found>> {
    let Ok(f) = fs::File::open(path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let Ok(v) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        if v["kind"] != "finding" {
            continue;
        }
        let f = &v["finding"];
        let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
        out.push(Found {
            rule: s(&f["rule"]),
            severity: s(&f["severity"]),
            package: normalize(f["package"]["name"].as_str().unwrap_or("")),
            detected: v["detected"].as_str().and_then(parse_rfc3339_ns),
            parts: f["parts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| (s(&p["rule"]), s(&p["severity"])))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Package names as pip compares them.
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn rank(sev: &str) -> u8 {
    match sev {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

fn score(
    t: &'static Technique,
    eco: Ecosystem,
    marks: &BTreeMap<String, u128>,
    found: &[Found],
    fail_on: &str,
) -> Score {
    let pkg = kit::package_name(t);
    let threshold = if fail_on == "never" {
        u8::MAX
    } else {
        rank(fail_on)
    };
    let mine: Vec<&Found> = found.iter().filter(|f| f.package == pkg).collect();
    let mut findings: Vec<(String, String)> = Vec::new();
    for f in &mine {
        for (r, s) in
            std::iter::once((&f.rule, &f.severity)).chain(f.parts.iter().map(|(r, s)| (r, s)))
        {
            if !findings.iter().any(|(x, _)| x == r) {
                findings.push((r.clone(), s.clone()));
            }
        }
    }
    findings.sort_by_key(|(_, s)| std::cmp::Reverse(rank(s)));
    let start = marks.get(t.id).copied();
    let first_failing = mine
        .iter()
        .filter(|f| rank(&f.severity) >= threshold)
        .filter_map(|f| f.detected)
        .min();
    Score {
        technique: t,
        ecosystem: eco,
        started: start.is_some(),
        caught: mine.iter().any(|f| rank(&f.severity) >= threshold),
        detect_ms: match (start, first_failing) {
            (Some(s), Some(d)) => Some(d.saturating_sub(s) as f64 / 1e6),
            _ => None,
        },
        findings,
    }
}

fn result_word(s: &Score) -> &'static str {
    match (s.caught, s.findings.is_empty(), s.started) {
        (true, _, _) => "caught",
        (false, false, _) => "seen, below fail_on",
        (false, true, true) => "MISSED",
        (false, true, false) => "MISSED (did not run)",
    }
}

fn rules_text(s: &Score) -> String {
    s.findings
        .iter()
        .map(|(r, sev)| format!("{r} ({sev})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms_text(s: &Score) -> String {
    s.detect_ms.map_or("–".into(), |m| format!("{m:.1} ms"))
}

fn scorecard(installs: &[Install], leaked: &[String], dir: &Path) -> String {
    let mut m = String::new();
    let now = crate::context::proctable::format_time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128),
    );
    let _ = writeln!(m, "# buildwatch drill\n");
    let _ = writeln!(
        m,
        "buildwatch {} · {} · kernel {}\n",
        env!("CARGO_PKG_VERSION"),
        now.get(..19).unwrap_or(&now),
        md(&kernel_release())
    );
    let total: usize = installs.iter().map(|i| i.scores.len()).sum();
    let caught: usize = installs
        .iter()
        .map(|i| i.scores.iter().filter(|s| s.caught).count())
        .sum();
    let _ = writeln!(m, "**{caught} of {total} techniques caught.**\n");
    for i in installs {
        let _ = writeln!(
            m,
            "## {} — `{}`\n",
            i.ecosystem.name(),
            md(&i
                .command
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "))
        );
        let _ = writeln!(
            m,
            "Exit status {} · fail_on {} · events lost {}{}\n",
            i.exit.map_or("–".into(), |e| e.to_string()),
            md(&i.fail_on),
            i.events_lost,
            if i.verdict_reasons.is_empty() {
                String::new()
            } else {
                format!(" · verdict: {}", md(&i.verdict_reasons.join("; ")))
            }
        );
        let _ = writeln!(
            m,
            "| technique | what the package does | result | rules that fired | time to detect |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|");
        for s in &i.scores {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} |",
                s.technique.id,
                md(s.technique.what),
                result_word(s),
                md(&rules_text(s)),
                ms_text(s)
            );
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(
        m,
        "Time to detect: from the technique's first syscall (the kernel's time of its marker \
         open) to the finding that would fail the build, as buildwatch raised it.\n"
    );
    if leaked.is_empty() {
        let _ = writeln!(
            m,
            "The fake AWS_SECRET_ACCESS_KEY appears in none of buildwatch's outputs."
        );
    } else {
        let _ = writeln!(
            m,
            "**The fake AWS_SECRET_ACCESS_KEY appears in: {}.**",
            md(&leaked.join(", "))
        );
    }
    let _ = writeln!(
        m,
        "\nKit and raw outputs: `{}`",
        md(&dir.display().to_string())
    );
    m
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn print_terminal(installs: &[Install], leaked: &[String]) {
    for i in installs {
        crate::outln!(
            "{} (exit {}, events lost {}):",
            i.ecosystem.name(),
            i.exit.map_or("–".into(), |e| e.to_string()),
            i.events_lost
        );
        for s in &i.scores {
            crate::outln!(
                "  {:<16} {:<22} {:>10}  {}",
                s.technique.id,
                result_word(s),
                ms_text(s),
                term_safe(&rules_text(s))
            );
        }
    }
    if !leaked.is_empty() {
        crate::outln!(
            "the fake secret appears in: {}",
            term_safe(&leaked.join(", "))
        );
    }
}
