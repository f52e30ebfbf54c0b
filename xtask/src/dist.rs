//! `cargo xtask dist`: the release tarball a CI runner installs without a toolchain.
//!
//! ```text
//! target/dist/buildwatch-VERSION-x86_64-linux-gnu.tar.gz          the tarball
//! target/dist/buildwatch-VERSION-x86_64-linux-gnu.tar.gz.sha256   `sha256sum -c` format
//! ```
//!
//! Inside, under `buildwatch-VERSION-x86_64-linux-gnu/`: `bin/buildwatch` (the BPF object is
//! embedded in it), `install.sh`, `sbom.cdx.json` (CycloneDX 1.5: every crate compiled into the
//! binary or its BPF object, with the Cargo.lock checksum, licence and dependency edges),
//! `LICENSE-MIT`, `LICENSE-APACHE`, `README.md`, and `licenses/` (each crate's own licence
//! files, and an index).
//!
//! The binary is linked against glibc and runs on glibc 2.34 or later (Ubuntu 22.04+, Debian
//! 12+, RHEL 9+, Amazon Linux 2023): the build fails if it needs a newer glibc symbol. The
//! tarball is reproducible from a commit: sorted entries, owner 0, mtimes and the SBOM's
//! timestamp from the commit (SOURCE_DATE_EPOCH when set), gzip without a name or time.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{Value, json};

/// Newest glibc symbol version the binary may need: the oldest glibc of the CI images it
/// is for (Ubuntu 22.04 has 2.35, RHEL 9 and Amazon Linux 2023 have 2.34).
const MAX_GLIBC: (u32, u32) = (2, 34);
const TARGET: &str = "x86_64-linux-gnu";

pub fn main(args: &[String]) -> Result<PathBuf, String> {
    if let Some(a) = args.first() {
        return Err(format!("xtask dist takes no arguments (got `{a}`)"));
    }
    if std::env::var_os("BUILDWATCH_NO_EBPF").is_some() {
        return Err("BUILDWATCH_NO_EBPF is set: that binary has no BPF programs".into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    run(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--release",
        "--locked",
        "--package",
        "monitor",
        "--bin",
        "buildwatch",
    ]))?;
    let meta: Value =
        serde_json::from_slice(&output(Command::new(cargo()).current_dir(&root).args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
        ]))?)
        .map_err(|e| format!("cargo metadata: {e}"))?;
    let version = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "monitor"))
        .and_then(|p| p["version"].as_str())
        .ok_or("cargo metadata: no `monitor` package")?
        .to_owned();
    let epoch = source_date_epoch(&root)?;

    let name = format!("buildwatch-{version}-{TARGET}");
    let dist = root.join("target/dist");
    let stage = dist.join(&name);
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(stage.join("bin")).map_err(|e| format!("{}: {e}", stage.display()))?;

    let bin = stage.join("bin/buildwatch");
    copy(&root.join("target/release/buildwatch"), &bin)?;
    run(Command::new("llvm-strip").arg("--strip-all").arg(&bin))?;
    let glibc = max_glibc(&fs::read(&bin).map_err(|e| format!("{}: {e}", bin.display()))?);
    if glibc > MAX_GLIBC {
        return Err(format!(
            "bin/buildwatch needs glibc {}.{}: newer than the {}.{} of the CI images it is for \
             (build it on an older system)",
            glibc.0, glibc.1, MAX_GLIBC.0, MAX_GLIBC.1
        ));
    }
    eprintln!(
        "xtask dist: bin/buildwatch needs glibc {}.{} or later",
        glibc.0, glibc.1
    );
    copy(&root.join("scripts/install.sh"), &stage.join("install.sh"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let script = stage.join("install.sh");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", script.display()))?;
    }
    for f in ["LICENSE-MIT", "LICENSE-APACHE", "README.md"] {
        copy(&root.join(f), &stage.join(f))?;
    }

    let crates = shipped_crates(&meta)?;
    let lock = lock_checksums(&root.join("Cargo.lock"))?;
    licenses(&crates, &stage.join("licenses"))?;
    let sbom = sbom(&crates, &lock, &version, epoch)?;
    write(
        &stage.join("sbom.cdx.json"),
        &(serde_json::to_string_pretty(&sbom).map_err(|e| e.to_string())? + "\n"),
    )?;

    let tarball = dist.join(format!("{name}.tar.gz"));
    let mtime = format!("--mtime=@{epoch}");
    run(Command::new("sh").current_dir(&dist).args([
        "-c",
        r#"tar --sort=name --owner=0 --group=0 --numeric-owner "$1" --mode=go-w -cf - "$2" | gzip -n -9 > "$3""#,
        "sh",
        &mtime,
        &name,
        tarball.to_str().ok_or("target path is not UTF-8")?,
    ]))?;
    let sum = output(
        Command::new("sha256sum")
            .current_dir(&dist)
            .arg(format!("{name}.tar.gz")),
    )?;
    write(
        &dist.join(format!("{name}.tar.gz.sha256")),
        &String::from_utf8_lossy(&sum),
    )?;
    eprintln!(
        "xtask dist: {} ({} crates in the SBOM)",
        tarball.display(),
        crates.len()
    );
    Ok(tarball)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("{cmd:?}: {status}"))
}

fn output(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// SOURCE_DATE_EPOCH, or the commit time of HEAD.
fn source_date_epoch(root: &Path) -> Result<u64, String> {
    if let Ok(s) = std::env::var("SOURCE_DATE_EPOCH") {
        return s
            .trim()
            .parse()
            .map_err(|_| format!("SOURCE_DATE_EPOCH `{s}` is not a number of seconds"));
    }
    let out = output(
        Command::new("git")
            .current_dir(root)
            .args(["log", "-1", "--format=%ct"]),
    )?;
    String::from_utf8_lossy(&out)
        .trim()
        .parse()
        .map_err(|_| "git log: no commit time".into())
}

/// The newest `GLIBC_X.Y` symbol version named in the binary's dynamic string table (the
/// strings are there only because a symbol needs them).
fn max_glibc(elf: &[u8]) -> (u32, u32) {
    let mut max = (0, 0);
    let pat = b"GLIBC_";
    let mut i = 0;
    while let Some(at) = elf[i..].windows(pat.len()).position(|w| w == pat) {
        let start = i + at + pat.len();
        let end = elf[start..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(elf.len(), |n| start + n);
        let v = String::from_utf8_lossy(&elf[start..end]).into_owned();
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        if let (Some(a), Some(b)) = (parts.next(), parts.next()) {
            max = max.max((a, b));
        }
        i = end.max(start);
    }
    max
}

/// A crate compiled into what the tarball ships.
struct Crate {
    id: String,
    name: String,
    version: String,
    license: Option<String>,
    repository: Option<String>,
    /// Where its sources are (its licence files are there).
    dir: PathBuf,
    /// Ids of the shipped crates it depends on.
    deps: BTreeSet<String>,
    workspace: bool,
}

/// Every crate in the binary and in the BPF object it embeds: what `monitor` depends on
/// (normal and build dependencies: build scripts run on the build machine and shape the
/// binary), and `monitor-ebpf` with its own, which aya-build compiles into the object.
fn shipped_crates(meta: &Value) -> Result<Vec<Crate>, String> {
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata: no resolve graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let workspace: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .ok_or("cargo metadata: no workspace members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let id_of = |name: &str| {
        workspace
            .iter()
            .find(|id| packages.get(*id).is_some_and(|p| p["name"] == name))
            .map(|id| id.to_string())
            .ok_or_else(|| format!("cargo metadata: no workspace package `{name}`"))
    };
    let mut todo = vec![id_of("monitor")?, id_of("monitor-ebpf")?];
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    while let Some(id) = todo.pop() {
        if seen.contains_key(&id) {
            continue;
        }
        let node = nodes
            .get(id.as_str())
            .ok_or_else(|| format!("cargo metadata: `{id}` not in the resolve graph"))?;
        let mut deps = BTreeSet::new();
        for d in node["deps"].as_array().into_iter().flatten() {
            let shipped = d["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if let (true, Some(pkg)) = (shipped, d["pkg"].as_str()) {
                deps.insert(pkg.to_owned());
                todo.push(pkg.to_owned());
            }
        }
        seen.insert(id, deps);
    }
    seen.into_iter()
        .map(|(id, deps)| {
            let p = packages
                .get(id.as_str())
                .ok_or_else(|| format!("cargo metadata: no package `{id}`"))?;
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
            Ok(Crate {
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                version: p["version"].as_str().unwrap_or_default().to_owned(),
                license: p["license"].as_str().map(str::to_owned),
                repository: p["repository"].as_str().map(str::to_owned),
                dir: manifest.parent().map(Path::to_owned).unwrap_or_default(),
                workspace: workspace.contains(id.as_str()),
                deps,
                id,
            })
        })
        .collect()
}

/// (name, version) → the sha256 Cargo.lock records for a registry crate.
fn lock_checksums(lock: &Path) -> Result<BTreeMap<(String, String), String>, String> {
    let text = fs::read_to_string(lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let mut out = BTreeMap::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .trim_start()
                    .strip_prefix('=')
                    .map(|v| v.trim().trim_matches('"').to_owned())
            })
        };
        if let (Some(n), Some(v), Some(c)) = (field("name"), field("version"), field("checksum")) {
            out.insert((n, v), c);
        }
    }
    Ok(out)
}

fn purl(c: &Crate) -> String {
    format!("pkg:cargo/{}@{}", c.name, c.version)
}

/// The CycloneDX 1.5 document.
fn sbom(
    crates: &[Crate],
    lock: &BTreeMap<(String, String), String>,
    version: &str,
    epoch: u64,
) -> Result<Value, String> {
    let by_id: BTreeMap<&str, &Crate> = crates.iter().map(|c| (c.id.as_str(), c)).collect();
    let reference = |id: &str| by_id.get(id).map(|c| purl(c));
    let licenses = |c: &Crate| match &c.license {
        Some(l) => json!([{ "expression": l }]),
        None => json!([]),
    };
    let root = crates
        .iter()
        .find(|c| c.workspace && c.name == "monitor")
        .ok_or("no monitor crate")?;
    let components: Vec<Value> = crates
        .iter()
        .filter(|c| c.id != root.id)
        .map(|c| {
            let mut v = json!({
                "type": if c.workspace { "application" } else { "library" },
                "bom-ref": purl(c),
                "name": c.name,
                "version": c.version,
                "purl": purl(c),
                "scope": "required",
                "licenses": licenses(c),
            });
            if let Some(sum) = lock.get(&(c.name.clone(), c.version.clone())) {
                v["hashes"] = json!([{ "alg": "SHA-256", "content": sum }]);
            }
            if let Some(repo) = &c.repository {
                v["externalReferences"] = json!([{ "type": "vcs", "url": repo }]);
            }
            if c.name == "monitor-ebpf" {
                v["description"] = json!(
                    "the kernel programs, compiled for BPF and embedded in bin/buildwatch \
                     (the object declares `Dual MIT/GPL` to the kernel)"
                );
            }
            v
        })
        .collect();
    let dependencies: Vec<Value> = crates
        .iter()
        .map(|c| {
            let on: Vec<String> = c.deps.iter().filter_map(|d| reference(d)).collect();
            json!({ "ref": purl(c), "dependsOn": on })
        })
        .collect();
    // Reproducible: the serial number is derived from the lock file's contents (UUID version
    // 8 layout: custom data), the timestamp from the commit.
    let seed = lock.values().fold(String::from(version), |acc, s| acc + s);
    let h = fnv128(seed.as_bytes());
    let mut b = h.to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    Ok(json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{uuid}"),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(epoch),
            "tools": { "components": [{
                "type": "application",
                "name": "buildwatch xtask dist",
                "version": version,
            }]},
            "component": {
                "type": "application",
                "bom-ref": purl(root),
                "name": "buildwatch",
                "version": version,
                "purl": purl(root),
                "licenses": licenses(root),
            },
        },
        "components": components,
        "dependencies": dependencies,
    }))
}

/// 128-bit FNV-1a: enough to make a stable serial number from the lock file (not a security
/// property: the SBOM's integrity comes from the tarball's checksum).
fn fnv128(data: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for &b in data {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Each third-party crate's licence files under `licenses/NAME-VERSION/`, and an index.
fn licenses(crates: &[Crate], dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut index = String::from(
        "# Third-party crates in bin/buildwatch\n\n\
         Each crate compiled into the binary or its embedded BPF object, its licence as it \
         declares it, and the licence files it ships (copied into the directory named after \
         it). A crate that ships no licence file and is under MIT or Apache-2.0 is covered by \
         the standard texts in ../LICENSE-MIT and ../LICENSE-APACHE.\n\n\
         | crate | version | licence | files |\n|---|---|---|---|\n",
    );
    for c in crates.iter().filter(|c| !c.workspace) {
        let mut files: Vec<PathBuf> = fs::read_dir(&c.dir)
            .map_err(|e| format!("{}: {e}", c.dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_ascii_uppercase())
                    .unwrap_or_default();
                p.is_file()
                    && ["LICENSE", "LICENCE", "COPYING", "NOTICE", "UNLICENSE"]
                        .iter()
                        .any(|k| n.starts_with(k))
            })
            .collect();
        files.sort();
        let sub = dir.join(format!("{}-{}", c.name, c.version));
        let mut names = Vec::new();
        if !files.is_empty() {
            fs::create_dir_all(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
        }
        for f in &files {
            let n = f.file_name().unwrap_or_default();
            copy(f, &sub.join(n))?;
            names.push(n.to_string_lossy().into_owned());
        }
        index.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c.name,
            c.version,
            c.license.as_deref().unwrap_or("(not declared)"),
            if names.is_empty() {
                "(none shipped by the crate)".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    write(&dir.join("README.md"), &index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_and_dates() {
        let elf = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_PRIVATE\0GLIBC_2.17\0";
        assert_eq!(max_glibc(elf), (2, 34));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_224_855), "2026-12-02T15:20:55Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
