//! Live-only enrichment: which package's install or build script a process runs. It reads
//! files in the process's working directory, so it can only happen while the run is live; the
//! answer is written into the exec event (`exec.package`), and replays read it from there.
//!
//! - npm (also yarn, pnpm) runs each lifecycle script as `sh -c '<script>'` with the package's
//!   directory as working directory: its `package.json` names the package.
//! - pip builds an sdist by running Python (`setup.py …`, or the PEP 517 hook runner
//!   `_in_process.py`) in the unpacked source directory: its `PKG-INFO` names the package.
//!
//! The files are written by the code being watched: they are read with O_NOFOLLOW, at most
//! 1 MiB, and only the name and version strings are kept.

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
        x.package = npm_package(Path::new(&x.cwd));
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
        x.package = pip_package(Path::new(&x.cwd));
    }
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
