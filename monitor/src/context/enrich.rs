//! Live-only enrichment: which package's install or build script a process runs. It reads
//! files in the process's working directory, so it can only happen while the run is live; the
//! answer is written into the exec event (`exec.package`), and replays read it from there.
//!
//! - npm (also yarn, pnpm) runs each lifecycle script as `sh -c '<script>'` with the package's
//!   directory as working directory, and with `npm_package_name`, `npm_package_version` and
//!   `npm_lifecycle_event` in the script's environment: the environment names the package and
//!   the step (read from /proc/PID/environ, after checking the process is the one that
//!   exec'd); its `package.json` names the package when the process is already gone.
//! - pip builds an sdist by running Python (`setup.py …`, or the PEP 517 hook runner
//!   `_in_process.py HOOK …`) in the unpacked source directory: its `PKG-INFO` names the
//!   package, or for a local directory (`pip install ./project`) its `pyproject.toml`
//!   (`[project]`) or `setup.cfg` (`[metadata]`); the hook or `setup.py` command is the step.
//!
//! The files and the environment come from the code being watched (the package's manifest,
//! npm's variables derived from it): files are read with O_NOFOLLOW, at most 1 MiB each, and
//! only short name, version and step strings are kept.

use std::{fs, io::Read, os::unix::fs::OpenOptionsExt, path::Path};

use crate::{
    context::process::{Processes, basename, tool_of},
    event::{Detail, Event, Package},
};

const MAX_MANIFEST: u64 = 1 << 20;
const NPM_TOOLS: &[&str] = &["npm", "npx", "yarn", "pnpm"];
const PIP_TOOLS: &[&str] = &["pip", "pip3", "pipx", "uv"];

/// Fill in `exec.package` when this exec starts a package's script. Call before the model
/// sees the event (it looks at the parent and at what the process inherited).
pub fn package(ev: &mut Event, procs: &Processes) {
    let Detail::Exec(x) = &mut ev.detail else {
        return;
    };
    if x.outcome.ret != 0 || x.package.is_some() {
        return;
    }
    let id = procs.find(ev.pid, ev.start_ns);
    if id.is_some_and(|id| procs.info(id).package.is_some()) {
        return;
    }
    let name = basename(&x.path);
    let parent_tool = ev
        .ppid
        .and_then(|pp| procs.find(pp, 0))
        .map(|p| procs.info(p).tool.as_str());
    let shell_c =
        matches!(name, "sh" | "bash" | "dash") && x.argv.get(1).is_some_and(|a| a == "-c");
    if shell_c && parent_tool.is_some_and(|t| NPM_TOOLS.contains(&t)) {
        x.package =
            npm_from_environ(ev.pid, ev.start_ns).or_else(|| npm_package(Path::new(&x.cwd)));
        return;
    }
    let (_, script) = tool_of(name, &x.argv);
    let builds = script.as_deref().is_some_and(|s| {
        let b = basename(s);
        b == "setup.py" || b == "_in_process.py"
    }) || x.argv.iter().any(|a| a.contains("setup.py"));
    let under_pip = id.is_some_and(|id| {
        procs
            .ancestors(id)
            .into_iter()
            .chain([procs.info(id)])
            .any(|p| PIP_TOOLS.contains(&p.tool.as_str()))
    });
    if name.starts_with("python") && builds && under_pip {
        let dir = Path::new(&x.cwd);
        x.package = pip_package(dir)
            .or_else(|| source_tree_package(dir))
            .map(|mut p| {
                p.step = build_step(&x.argv);
                p
            });
    }
}

/// Longest environment read from /proc (a CI job's is a few KiB to tens of KiB).
const MAX_ENVIRON: u64 = 1 << 20;

/// npm's variables in the lifecycle shell's environment, if that process still runs the image
/// that exec'd (its start time matches the event's: a reused pid does not).
fn npm_from_environ(pid: u32, start_ns: u64) -> Option<Package> {
    if start_ns == 0 || !same_process(pid, start_ns) {
        return None;
    }
    let mut raw = Vec::new();
    fs::File::open(format!("/proc/{pid}/environ"))
        .ok()?
        .take(MAX_ENVIRON)
        .read_to_end(&mut raw)
        .ok()?;
    let var = |key: &str| {
        raw.split(|&b| b == 0).find_map(|kv| {
            let v = kv.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
            clean(&String::from_utf8_lossy(v))
        })
    };
    let name = var("npm_package_name")?;
    Some(Package {
        manager: "npm".into(),
        name,
        version: var("npm_package_version"),
        step: var("npm_lifecycle_event"),
    })
}

/// Is the process (pid, start) still running? A start of 0 (unknown) asks about the pid.
pub fn running(pid: u32, start_ns: u64) -> bool {
    if start_ns == 0 {
        return std::path::Path::new(&format!("/proc/{pid}")).exists();
    }
    same_process(pid, start_ns)
}

/// Does /proc/PID belong to the process that started at `start_ns` (boot-clock ns)? Field 22
/// of /proc/PID/stat is its start in clock ticks since boot.
fn same_process(pid: u32, start_ns: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name (field 2) is in parentheses and may contain spaces.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let Some(ticks) = after
        .split_whitespace()
        .nth(19)
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return false;
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return false;
    }
    let tick_ns = 1_000_000_000 / hz as u64;
    (ticks * tick_ns).abs_diff(start_ns) <= 2 * tick_ns
}

/// A local source tree's own metadata: `pyproject.toml`'s `[project]`, else `setup.cfg`'s
/// `[metadata]` (`name`, `version`).
fn source_tree_package(dir: &Path) -> Option<Package> {
    let table = |text: &str, header: &str| -> (Option<String>, Option<String>) {
        let mut inside = false;
        let (mut name, mut version) = (None, None);
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                inside = line == header;
                continue;
            }
            if !inside {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = clean(v.trim().trim_matches(['"', '\'']));
            match k.trim() {
                "name" => name = v,
                "version" => version = v,
                _ => {}
            }
        }
        (name, version)
    };
    let (name, version) = read_small(&dir.join("pyproject.toml"))
        .map(|t| table(&t, "[project]"))
        .filter(|(n, _)| n.is_some())
        .or_else(|| read_small(&dir.join("setup.cfg")).map(|t| table(&t, "[metadata]")))?;
    Some(Package {
        manager: "pip".into(),
        name: name?,
        version,
        step: None,
    })
}

/// pip's build phase from the build process's argv: the PEP 517 hook `_in_process.py` runs
/// (its first argument), or the first command given to `setup.py`.
fn build_step(argv: &[String]) -> Option<String> {
    let at = argv.iter().position(|a| {
        let b = basename(a);
        b == "_in_process.py" || b == "setup.py"
    })?;
    argv[at + 1..]
        .iter()
        .find(|a| !a.starts_with('-') && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .and_then(|a| clean(a))
}

fn read_small(path: &Path) -> Option<String> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    (&mut f).take(MAX_MANIFEST).read_to_string(&mut s).ok()?;
    Some(s)
}

fn clean(s: &str) -> Option<String> {
    let s: String = s.chars().filter(|c| !c.is_control()).take(214).collect();
    (!s.is_empty()).then_some(s)
}

fn npm_package(dir: &Path) -> Option<Package> {
    let v: serde_json::Value =
        serde_json::from_str(&read_small(&dir.join("package.json"))?).ok()?;
    Some(Package {
        manager: "npm".into(),
        name: clean(v.get("name")?.as_str()?)?,
        version: v.get("version").and_then(|v| v.as_str()).and_then(clean),
        step: None,
    })
}

fn pip_package(dir: &Path) -> Option<Package> {
    let info = read_small(&dir.join("PKG-INFO"))?;
    let field = |key: &str| {
        info.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| clean(v.trim()))
    };
    Some(Package {
        manager: "pip".into(),
        name: field("Name:")?,
        version: field("Version:"),
        step: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_read_and_cleaned() {
        let dir = std::env::temp_dir().join(format!("bw-enrich-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("package.json"),
            r#"{"name":"evil\u001b[31m","version":"1.0.1"}"#,
        )
        .unwrap();
        fs::write(
            dir.join("PKG-INFO"),
            "Metadata-Version: 2.1\nName: cext\nVersion: 0.3\n\nName: body\n",
        )
        .unwrap();
        let npm = npm_package(&dir).unwrap();
        assert_eq!(
            (npm.name.as_str(), npm.version.as_deref()),
            ("evil[31m", Some("1.0.1"))
        );
        let pip = pip_package(&dir).unwrap();
        assert_eq!(
            (pip.name.as_str(), pip.version.as_deref()),
            ("cext", Some("0.3"))
        );
        fs::write(
            dir.join("pyproject.toml"),
            "[build-system]\nrequires = []\n\n[project]\nname = \"local-proj\"\nversion = '2.1'\n[tool.x]\nname = \"no\"\n",
        )
        .unwrap();
        let local = source_tree_package(&dir).unwrap();
        assert_eq!(
            (local.name.as_str(), local.version.as_deref()),
            ("local-proj", Some("2.1"))
        );
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            build_step(&argv(&[
                "python3",
                "/x/_in_process.py",
                "build_wheel",
                "/tmp/o"
            ]))
            .as_deref(),
            Some("build_wheel")
        );
        assert_eq!(
            build_step(&argv(&[
                "python3",
                "-c",
                "…",
                "setup.py",
                "--no-user-cfg",
                "egg_info"
            ]))
            .as_deref(),
            Some("egg_info")
        );
        // This test's own process: its start time matches; another's does not.
        let me = std::process::id();
        let stat = fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let ticks: u64 = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let start = ticks * (1_000_000_000 / hz);
        assert!(same_process(me, start));
        assert!(!same_process(me, start + 5_000_000_000));
        fs::remove_file(dir.join("package.json")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("package.json")).unwrap();
        assert_eq!(
            npm_package(&dir),
            None,
            "symlinked manifests are not followed"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
