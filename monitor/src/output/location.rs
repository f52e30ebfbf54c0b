//! Where in the repository a finding belongs, for code scanning (SARIF), annotations and the
//! report: the line of the manifest or lockfile that brought in the package responsible;
//! otherwise the file that holds the command (a script it runs, the tool's manifest, or the
//! CI configuration that ran it).
//!
//! Paths are relative to the repository root (`GITHUB_WORKSPACE` or `CI_PROJECT_DIR` when the
//! run's directory is inside it, else the nearest directory above with a `.git`, else the run's
//! directory). Only files inside the root are named; package names and argv come from the
//! watched code, so they are only ever compared with what the files say, never joined into a
//! path outside the root. Files are read once each, at most [`MAX_FILE`] bytes.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{detect::findings::Finding, event::Package};

/// Larger manifests and lockfiles are not searched.
const MAX_FILE: u64 = 16 << 20;

/// A line of a file in the repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceLocation {
    /// Relative to the repository root, `/`-separated.
    pub path: String,
    /// 1-based.
    pub line: u32,
    /// Characters on the line (for a SARIF region's end column).
    #[serde(skip)]
    pub width: u32,
    /// What the line is: `manifest` (the package's entry), `command` (the file holding the
    /// command) or `ci` (the CI configuration that ran it).
    pub kind: &'static str,
    /// The line's text, trimmed (for a fingerprint that survives lines moving).
    #[serde(skip)]
    pub text: String,
}

pub struct Locator {
    root: PathBuf,
    cwd: PathBuf,
    command: Vec<String>,
    files: HashMap<PathBuf, Option<String>>,
}

impl Locator {
    pub fn new(cwd: &Path, command: &[String]) -> Self {
        Self {
            root: repository_root(cwd),
            cwd: cwd.to_owned(),
            command: command.to_vec(),
            files: HashMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The package's line, else the command's file, else the CI configuration.
    pub fn locate(&mut self, f: &Finding) -> Option<SourceLocation> {
        f.package
            .as_ref()
            .and_then(|p| self.package_line(p))
            .or_else(|| self.command_file())
            .or_else(|| self.ci_file())
    }

    fn read(&mut self, path: &Path) -> Option<&str> {
        self.files
            .entry(path.to_owned())
            .or_insert_with(|| read_small(path))
            .as_deref()
    }

    /// The first line of `file` (relative to the run's directory, then the root) that `hit`
    /// accepts.
    fn find(
        &mut self,
        file: &str,
        kind: &'static str,
        hit: &dyn Fn(&str) -> bool,
    ) -> Option<SourceLocation> {
        for dir in [self.cwd.clone(), self.root.clone()] {
            let path = dir.join(file);
            let Some(rel) = self.relative(&path) else {
                continue;
            };
            let Some(text) = self.read(&path) else {
                continue;
            };
            if let Some((n, line)) = text.lines().enumerate().find(|(_, l)| hit(l)) {
                return Some(at(rel, n + 1, line, kind));
            }
        }
        None
    }

    fn package_line(&mut self, p: &Package) -> Option<SourceLocation> {
        let name = p.name.as_str();
        match p.manager.as_str() {
            "npm" => {
                let key = format!("node_modules/{name}\"");
                let quoted = format!("\"{name}\"");
                let yarn = [format!("{name}@"), format!("\"{name}@")];
                let pnpm = format!("/{name}@");
                self.find("package-lock.json", "manifest", &|l| l.contains(&key))
                    .or_else(|| self.find("npm-shrinkwrap.json", "manifest", &|l| l.contains(&key)))
                    .or_else(|| {
                        self.find("yarn.lock", "manifest", &|l| {
                            yarn.iter().any(|y| l.starts_with(y.as_str()))
                        })
                    })
                    .or_else(|| {
                        self.find("pnpm-lock.yaml", "manifest", &|l| {
                            l.trim_start().starts_with(&pnpm) || l.trim_start().starts_with(name)
                        })
                    })
                    .or_else(|| {
                        // A dependency's entry, or the project itself (`"name": "x"`).
                        self.find("package.json", "manifest", &|l| {
                            l.trim_start().starts_with(&quoted) || is_json_name(l, name)
                        })
                    })
            }
            "pip" => {
                let want = pep503(name);
                let mut reqs = self.requirement_files();
                reqs.sort();
                for r in reqs {
                    let found = self.find(&r, "manifest", &|l| {
                        requirement_name(l).is_some_and(|n| pep503(n) == want)
                    });
                    if found.is_some() {
                        return found;
                    }
                }
                let quoted = |l: &str| {
                    quoted_strings(l)
                        .any(|s| requirement_name(s).is_some_and(|n| pep503(n) == want))
                };
                self.find("pyproject.toml", "manifest", &|l| {
                    quoted(l) || toml_name(l).is_some_and(|n| pep503(n) == want)
                })
                .or_else(|| {
                    self.find("setup.cfg", "manifest", &|l| {
                        requirement_name(l.trim()).is_some_and(|n| pep503(n) == want)
                    })
                })
                .or_else(|| self.find("setup.py", "manifest", &quoted))
                .or_else(|| {
                    self.find("Pipfile", "manifest", &|l| {
                        toml_key(l).is_some_and(|n| pep503(n) == want)
                    })
                })
            }
            "cargo" => {
                let line = format!("name = \"{name}\"");
                self.find("Cargo.lock", "manifest", &|l| l.trim() == line)
                    .or_else(|| {
                        self.find("Cargo.toml", "manifest", &|l| {
                            toml_key(l).is_some_and(|k| k == name)
                        })
                    })
            }
            _ => None,
        }
    }

    /// `requirements*.txt` in the run's directory (and `-r FILE` from the command).
    fn requirement_files(&mut self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.cwd)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("requirements") && n.ends_with(".txt"))
            .collect();
        let mut args = self.command.iter();
        while let Some(a) = args.next() {
            if a == "-r" || a == "--requirement" {
                if let Some(f) = args.next() {
                    out.push(f.clone());
                }
            } else if let Some(f) = a.strip_prefix("--requirement=") {
                out.push(f.to_owned());
            }
        }
        out
    }

    /// A file the command names (a script: `./build.sh`, `sh install.sh`, `python setup.py`),
    /// else its tool's manifest.
    fn command_file(&mut self) -> Option<SourceLocation> {
        let command = self.command.clone();
        for arg in &command {
            if arg.starts_with('-') || !(arg.contains('/') || arg.contains('.')) {
                continue;
            }
            let path = self.cwd.join(arg);
            if let (Some(rel), true) = (self.relative(&path), path.is_file())
                && self.read(&path).is_some()
            {
                let first = self
                    .read(&path)
                    .and_then(|t| t.lines().next())
                    .unwrap_or("");
                let first = first.to_owned();
                return Some(at(rel, 1, &first, "command"));
            }
        }
        let tool = command
            .first()
            .map(|c| c.rsplit('/').next().unwrap_or(c).to_owned())
            .unwrap_or_default();
        let manifests: &[&str] = match tool.as_str() {
            "npm" | "npx" | "yarn" | "pnpm" | "node" | "bun" => &["package.json"],
            "pip" | "pip3" | "python" | "python3" | "uv" | "poetry" => &[
                "pyproject.toml",
                "setup.py",
                "setup.cfg",
                "requirements.txt",
            ],
            "cargo" => &["Cargo.toml"],
            "make" | "gmake" => &["GNUmakefile", "makefile", "Makefile"],
            _ => &[],
        };
        manifests
            .iter()
            .find_map(|m| self.find(m, "command", &|_| true))
    }

    /// The CI configuration that ran the command: the GitHub workflow (GITHUB_WORKFLOW_REF)
    /// or GitLab's CI file (CI_CONFIG_PATH), at the first line naming the command.
    fn ci_file(&mut self) -> Option<SourceLocation> {
        let file = std::env::var("GITHUB_WORKFLOW_REF")
            .ok()
            .and_then(|r| {
                // owner/repo/.github/workflows/ci.yml@refs/heads/main
                let path = r.split('@').next()?;
                let mut parts = path.splitn(3, '/');
                parts.next()?;
                parts.next()?;
                parts.next().map(str::to_owned)
            })
            .or_else(|| std::env::var("CI_CONFIG_PATH").ok())
            .or_else(|| {
                std::env::var("GITLAB_CI")
                    .ok()
                    .map(|_| ".gitlab-ci.yml".into())
            })?;
        if file.split('/').any(|c| c == "..") {
            return None;
        }
        let needle = self.command.first().cloned().unwrap_or_default();
        let root = self.root.clone();
        let path = root.join(&file);
        let rel = self.relative(&path)?;
        let text = self.read(&path)?.to_owned();
        let (n, line) = text
            .lines()
            .enumerate()
            .find(|(_, l)| !needle.is_empty() && l.contains(&needle))
            .unwrap_or((0, text.lines().next().unwrap_or("")));
        Some(at(rel, n + 1, line, "ci"))
    }

    /// `path` relative to the root, when it is inside it (after resolving symlinks).
    fn relative(&self, path: &Path) -> Option<String> {
        let real = path.canonicalize().ok()?;
        let root = self.root.canonicalize().ok()?;
        let rel = real.strip_prefix(&root).ok()?;
        let s = rel.to_str()?.to_owned();
        (!s.is_empty()).then_some(s)
    }
}

fn at(path: String, line: usize, text: &str, kind: &'static str) -> SourceLocation {
    SourceLocation {
        path,
        line: u32::try_from(line).unwrap_or(u32::MAX),
        width: u32::try_from(text.chars().count()).unwrap_or(u32::MAX),
        kind,
        text: text.trim().to_owned(),
    }
}

/// The repository root for `cwd` (see the module docs).
fn repository_root(cwd: &Path) -> PathBuf {
    for var in ["GITHUB_WORKSPACE", "CI_PROJECT_DIR"] {
        if let Some(ws) = std::env::var_os(var).map(PathBuf::from)
            && let (Ok(ws), Ok(c)) = (ws.canonicalize(), cwd.canonicalize())
            && c.starts_with(&ws)
        {
            return ws;
        }
    }
    cwd.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(cwd)
        .to_owned()
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    f.take(MAX_FILE).read_to_string(&mut s).ok()?;
    Some(s)
}

/// PEP 503 normalised name.
fn pep503(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The project name at the start of a requirement line (`name[extra]>=1 ; marker`).
fn requirement_name(line: &str) -> Option<&str> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') || l.starts_with('-') {
        return None;
    }
    let end = l
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(l.len());
    (end > 0).then(|| &l[..end])
}

/// Strings in double or single quotes on a line.
fn quoted_strings(line: &str) -> impl Iterator<Item = &str> {
    line.split(['"', '\'']).skip(1).step_by(2)
}

/// `name = "x"` (a TOML project name).
fn toml_name(line: &str) -> Option<&str> {
    let (k, v) = line.split_once('=')?;
    (k.trim() == "name").then(|| v.trim().trim_matches(['"', '\'']))
}

/// The key of a TOML `key = …` line.
fn toml_key(line: &str) -> Option<&str> {
    let (k, _) = line.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty() && !k.starts_with('[') && !k.starts_with('#')).then_some(k)
}

/// `"name": "x"` in package.json.
fn is_json_name(line: &str, name: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("\"name\"")
        && l.split_once(':')
            .is_some_and(|(_, v)| v.trim().trim_end_matches(',').trim_matches('"') == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(package: Option<(&str, &str)>) -> Finding {
        Finding {
            rule: "r".into(),
            category: "c".into(),
            severity: crate::detect::rules::Severity::High,
            message: "m".into(),
            process: crate::detect::findings::ProcessRef {
                pid: 1,
                exe: None,
                argv: vec![],
                ancestry: vec![],
            },
            package: package.map(|(m, n)| Package {
                manager: m.into(),
                name: n.into(),
                version: None,
                step: None,
            }),
            cgroup: None,
            detail: serde_json::json!({}),
            count: 1,
            first_seen: String::new(),
            first_seq: 1,
            tags: vec![],
            location: None,
            parts: vec![],
            parts_unlisted: 0,
        }
    }

    #[test]
    fn packages_are_found_in_their_manifests() {
        let dir = std::env::temp_dir().join(format!("bw-locate-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        std::fs::write(
            dir.join("package-lock.json"),
            "{\n  \"packages\": {\n    \"node_modules/left-pad\": {\n      \"version\": \"1.0.0\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("requirements-dev.txt"),
            "# tools\nrequests==2.0\nSome_Pkg[extra]>=1 ; python_version > '3'\n",
        )
        .unwrap();
        std::fs::write(dir.join("build.sh"), "#!/bin/sh\nmake\n").unwrap();
        let mut l = Locator::new(&dir, &["npm".into(), "ci".into()]);
        let loc = l.locate(&finding(Some(("npm", "left-pad")))).unwrap();
        assert_eq!(
            (loc.path.as_str(), loc.line, loc.kind),
            ("package-lock.json", 3, "manifest")
        );
        let loc = l.locate(&finding(Some(("pip", "some-pkg")))).unwrap();
        assert_eq!((loc.path.as_str(), loc.line), ("requirements-dev.txt", 3));
        // Unknown package: the file holding the command.
        let mut l = Locator::new(&dir, &["sh".into(), "./build.sh".into()]);
        let loc = l.locate(&finding(Some(("npm", "nowhere")))).unwrap();
        assert_eq!(
            (loc.path.as_str(), loc.line, loc.kind),
            ("build.sh", 1, "command")
        );
        // A path outside the root is never named.
        let mut l = Locator::new(&dir, &["sh".into(), "../../etc/passwd".into()]);
        assert_eq!(l.locate(&finding(None)), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_normalise() {
        assert_eq!(pep503("Some_Pkg.x"), "some-pkg-x");
        assert_eq!(requirement_name("requests>=2; x"), Some("requests"));
        assert_eq!(requirement_name("-r other.txt"), None);
        assert!(is_json_name("  \"name\": \"demo\",", "demo"));
    }
}
