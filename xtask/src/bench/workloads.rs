//! The real builds the benchmark runs, generated locally (no package is downloaded, ever):
//! a C project for `make -j2`, a crate graph with build scripts for `cargo build --offline`,
//! wheels and sdists for `pip install --no-index`, and an npm project whose lockfile points at
//! tarballs served by a static HTTP server on 127.0.0.1 for `npm ci`. Also the loopback
//! services the measurements use (that HTTP server, dnsmasq on 127.0.0.79).

use std::{
    fmt::Write as _,
    fs, io,
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Sizes of the generated projects.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sizes {
    pub c_files: usize,
    /// The larger exec-heavy build: fixed per-run costs do not hide per-exec ones in it.
    pub c_files_large: usize,
    pub crates: usize,
    pub pip_packages: usize,
    pub npm_packages: usize,
}

pub const FULL: Sizes = Sizes {
    c_files: 400,
    c_files_large: 1200,
    crates: 16,
    pip_packages: 40,
    npm_packages: 300,
};

pub const QUICK: Sizes = Sizes {
    c_files: 120,
    c_files_large: 400,
    crates: 6,
    pip_packages: 12,
    npm_packages: 80,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    Make,
    MakeLarge,
    Cargo,
    Pip,
    Npm,
}

pub const BUILDS: [Build; 5] = [
    Build::Npm,
    Build::Cargo,
    Build::Make,
    Build::Pip,
    Build::MakeLarge,
];

impl Build {
    pub fn name(self) -> &'static str {
        match self {
            Build::Make => "make -j2",
            Build::MakeLarge => "make -j2 (large)",
            Build::Cargo => "cargo build",
            Build::Pip => "pip install",
            Build::Npm => "npm ci",
        }
    }

    pub fn describe(self, s: &Sizes) -> String {
        match self {
            Build::Make => format!(
                "`make -j2` of {} generated C files, linked into one binary",
                s.c_files
            ),
            Build::MakeLarge => format!(
                "`make -j2` of {} generated C files, linked into one binary",
                s.c_files_large
            ),
            Build::Cargo => format!(
                "`cargo build --offline` (debug) of {} generated crates, each with a build script, \
                 plus a binary using them all, from an empty target directory",
                s.crates
            ),
            Build::Pip => format!(
                "`pip install --no-index --find-links` of {} local packages (half wheels, half \
                 sdists built on install), into an empty --target",
                s.pip_packages
            ),
            Build::Npm => format!(
                "`npm ci` of {} packages (a few with install scripts) from a static registry \
                 on 127.0.0.1, empty cache",
                s.npm_packages
            ),
        }
    }
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, text)
}

fn run(cmd: &mut Command, what: &str) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Generated projects under `root/<name>`, regenerated when the sizes change.
pub struct Projects {
    pub root: PathBuf,
    pub sizes: Sizes,
}

impl Projects {
    pub fn prepare(root: &Path, sizes: Sizes) -> io::Result<Self> {
        let stamp = root.join("sizes.json");
        let want = serde_json::to_string(&sizes)?;
        if fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
            let _ = fs::remove_dir_all(root);
            fs::create_dir_all(root)?;
            eprintln!("bench: generating the build projects in {}", root.display());
            gen_make(&root.join("make"), sizes.c_files)?;
            gen_make(&root.join("make-large"), sizes.c_files_large)?;
            gen_cargo(&root.join("cargo"), sizes.crates)?;
            gen_pip(&root.join("pip"), sizes.pip_packages)?;
            gen_npm(&root.join("npm"), sizes.npm_packages)?;
            fs::write(&stamp, want)?;
        }
        Ok(Self {
            root: root.to_owned(),
            sizes,
        })
    }

    /// Put the project back to its unbuilt state (not timed).
    pub fn reset(&self, b: Build) -> io::Result<()> {
        let rm = |p: PathBuf| match fs::remove_dir_all(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        match b {
            Build::Make => rm(self.root.join("make/build")),
            Build::MakeLarge => rm(self.root.join("make-large/build")),
            Build::Cargo => rm(self.root.join("cargo/target")),
            Build::Pip => rm(self.root.join("pip/site")),
            Build::Npm => {
                rm(self.root.join("npm/app/node_modules"))?;
                rm(self.root.join("npm/cache"))
            }
        }
    }

    /// The build command, ready to run (cwd and environment set).
    pub fn command(&self, b: Build, registry_port: u16) -> io::Result<Command> {
        Ok(match b {
            Build::Make | Build::MakeLarge => {
                let dir = if matches!(b, Build::Make) {
                    "make"
                } else {
                    "make-large"
                };
                let mut c = Command::new("make");
                c.args(["-j2", "--no-print-directory"])
                    .current_dir(self.root.join(dir));
                c
            }
            Build::Cargo => {
                let mut c = Command::new(cargo_bin());
                c.args(["build", "--offline", "--quiet"])
                    .current_dir(self.root.join("cargo"))
                    .env("RUSTUP_TOOLCHAIN", USER_TOOLCHAIN)
                    .env("CARGO_TARGET_DIR", self.root.join("cargo/target"))
                    .env_remove("RUSTFLAGS")
                    .env_remove("CARGO_BUILD_TARGET");
                c
            }
            Build::Pip => {
                let dir = self.root.join("pip");
                let mut c = Command::new("python3");
                c.args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-index",
                    "--no-cache-dir",
                ])
                .args(["--no-build-isolation", "--disable-pip-version-check"])
                .arg("--find-links")
                .arg(dir.join("dist"))
                .arg("--target")
                .arg(dir.join("site"))
                .args((0..self.sizes.pip_packages).map(pip_name))
                .current_dir(&dir);
                c
            }
            Build::Npm => {
                let dir = self.root.join("npm");
                npm_lockfile(&dir, self.sizes.npm_packages, registry_port)?;
                let mut c = Command::new("npm");
                c.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(dir.join("app"))
                    .env("npm_config_userconfig", dir.join("npmrc"))
                    .env("npm_config_cache", dir.join("cache"))
                    .env(
                        "npm_config_registry",
                        format!("http://127.0.0.1:{registry_port}/"),
                    )
                    .env("npm_config_update_notifier", "false");
                c
            }
        })
    }
}

/// The userspace toolchain pinned in rust-toolchain.toml (the generated crates build with it).
pub const USER_TOOLCHAIN: &str = "1.99.1";

fn cargo_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin/cargo")
}

fn gen_make(dir: &Path, files: usize) -> io::Result<()> {
    write(
        &dir.join("include/common.h"),
        "#pragma once\n#include <stdint.h>\nstatic inline uint64_t mix(uint64_t x) { x ^= x >> 33; \
         x *= 0xff51afd7ed558ccdULL; return x ^ (x >> 33); }\n",
    )?;
    let mut main = String::from("#include <stdio.h>\n#include \"common.h\"\n");
    for i in 0..files {
        let mut c = String::from("#include \"common.h\"\n");
        for f in 0..8 {
            writeln!(
                c,
                "uint64_t f{i}_{f}(uint64_t x) {{ uint64_t a = {i}; for (int k = 0; k < 16; k++) \
                 {{ a = mix(a + x + k * {f}); if (a % 7 == 3) a ^= x << 3; }} return a; }}"
            )
            .ok();
        }
        write(&dir.join(format!("src/m{i}.c")), &c)?;
        writeln!(main, "uint64_t f{i}_0(uint64_t);").ok();
    }
    main.push_str("int main(void) { uint64_t s = 0;\n");
    for i in 0..files {
        writeln!(main, "s += f{i}_0(s);").ok();
    }
    main.push_str("printf(\"%llu\\n\", (unsigned long long)s); return 0; }\n");
    write(&dir.join("main/main.c"), &main)?;
    write(
        &dir.join("Makefile"),
        "SRCS := $(wildcard src/*.c)\nOBJS := $(patsubst src/%.c,build/%.o,$(SRCS))\n\
         build/app: $(OBJS) build/main.o\n\tcc -o $@ $^\n\
         build/main.o: main/main.c include/common.h | build\n\tcc -O1 -Iinclude -c $< -o $@\n\
         build/%.o: src/%.c include/common.h | build\n\tcc -O1 -Iinclude -c $< -o $@\n\
         build:\n\tmkdir -p build\n",
    )
}

/// Crate `i` depends on `i-1` and `i/2` (once when they coincide).
fn crate_deps(i: usize) -> Vec<usize> {
    let mut d: Vec<usize> = [i.checked_sub(1), (i > 1).then_some(i / 2)]
        .into_iter()
        .flatten()
        .collect();
    d.dedup();
    d
}

fn gen_cargo(dir: &Path, crates: usize) -> io::Result<()> {
    let members: Vec<String> = (0..crates).map(|i| format!("\"c{i}\"")).collect();
    write(
        &dir.join("Cargo.toml"),
        &format!(
            "[workspace]\nresolver = \"2\"\nmembers = [{}, \"app\"]\n",
            members.join(", ")
        ),
    )?;
    for i in 0..crates {
        let c = dir.join(format!("c{i}"));
        let mut deps = String::new();
        for d in crate_deps(i) {
            writeln!(deps, "c{d} = {{ path = \"../c{d}\" }}").ok();
        }
        write(
            &c.join("Cargo.toml"),
            &format!(
                "[package]\nname = \"c{i}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
                 build = \"build.rs\"\n\n[dependencies]\n{deps}"
            ),
        )?;
        write(
            &c.join("build.rs"),
            &format!(
                "use std::fmt::Write;\nfn main() {{\n    let mut s = String::new();\n    \
                 for j in 0..120u64 {{\n        writeln!(s, \"pub fn g{{j}}(x: u64) -> u64 {{{{ \
                 x.wrapping_mul({{}}).rotate_left({{}}) ^ {i} }}}}\", j * 2 + 1, j % 63).unwrap();\n    \
                 }}\n    let out = std::path::PathBuf::from(std::env::var_os(\"OUT_DIR\").unwrap());\n    \
                 std::fs::write(out.join(\"gen.rs\"), s).unwrap();\n    \
                 println!(\"cargo:rerun-if-changed=build.rs\");\n}}\n"
            ),
        )?;
        let mut lib = String::from("include!(concat!(env!(\"OUT_DIR\"), \"/gen.rs\"));\n");
        lib.push_str("pub fn total(x: u64) -> u64 {\n    let mut a = g0(x);\n");
        for j in (1..120).step_by(7) {
            writeln!(lib, "    a = a.wrapping_add(g{j}(a));").ok();
        }
        for d in crate_deps(i) {
            writeln!(lib, "    a ^= c{d}::total(a);").ok();
        }
        lib.push_str("    a\n}\n");
        write(&c.join("src/lib.rs"), &lib)?;
    }
    let mut deps = String::new();
    let mut main = String::from("fn main() {\n    let mut a = 1u64;\n");
    for i in 0..crates {
        writeln!(deps, "c{i} = {{ path = \"../c{i}\" }}").ok();
        writeln!(main, "    a ^= c{i}::total(a);").ok();
    }
    main.push_str("    println!(\"{a}\");\n}\n");
    write(
        &dir.join("app/Cargo.toml"),
        &format!(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{deps}"
        ),
    )?;
    write(&dir.join("app/src/main.rs"), &main)?;
    // The lockfile (no registry dependencies: generating it needs no network).
    run(
        Command::new(cargo_bin())
            .args(["generate-lockfile", "--offline"])
            .current_dir(dir)
            .env("RUSTUP_TOOLCHAIN", USER_TOOLCHAIN),
        "cargo generate-lockfile",
    )
}

fn pip_name(i: usize) -> String {
    format!("bwb_pkg_{i:03}")
}

/// A pure-Python PEP 517 backend kept in the sdist (pip needs no setuptools or wheel for it).
const PIP_BACKEND: &str = r#"
import os, zipfile
NAME, VERSION, REQUIRES = "@NAME@", "1.0.0", @REQUIRES@
DIST = NAME + "-" + VERSION + ".dist-info"
META = "Metadata-Version: 2.1\nName: " + NAME + "\nVersion: " + VERSION + "\n" + "".join("Requires-Dist: " + r + "\n" for r in REQUIRES)
WHEEL = "Wheel-Version: 1.0\nGenerator: bwbench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(d, config_settings=None):
    os.makedirs(os.path.join(d, DIST))
    open(os.path.join(d, DIST, "METADATA"), "w").write(META)
    open(os.path.join(d, DIST, "WHEEL"), "w").write(WHEEL)
    return DIST
def build_wheel(wd, config_settings=None, metadata_directory=None):
    whl = NAME + "-" + VERSION + "-py3-none-any.whl"
    names = []
    with zipfile.ZipFile(os.path.join(wd, whl), "w", zipfile.ZIP_DEFLATED) as z:
        for root, _, files in os.walk(NAME):
            for f in sorted(files):
                if f.endswith(".py"):
                    p = os.path.join(root, f)
                    z.write(p, p)
                    names.append(p)
        for n, text in (("METADATA", META), ("WHEEL", WHEEL)):
            z.writestr(DIST + "/" + n, text)
            names.append(DIST + "/" + n)
        names.append(DIST + "/RECORD")
        z.writestr(DIST + "/RECORD", "".join(n + ",,\n" for n in names))
    return whl
"#;

fn gen_pip(dir: &Path, packages: usize) -> io::Result<()> {
    let src = dir.join("src");
    let dist = dir.join("dist");
    fs::create_dir_all(&dist)?;
    for i in 0..packages {
        let name = pip_name(i);
        let base = format!("{name}-1.0.0");
        let pkg = src.join(&base);
        let requires = if i > 0 {
            format!("[\"{}\"]", pip_name(i / 2))
        } else {
            "[]".into()
        };
        write(
            &pkg.join("PKG-INFO"),
            &format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n"),
        )?;
        write(
            &pkg.join("pyproject.toml"),
            "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
        )?;
        write(
            &pkg.join("backend.py"),
            &PIP_BACKEND
                .replace("@NAME@", &name)
                .replace("@REQUIRES@", &requires),
        )?;
        write(
            &pkg.join(format!("{name}/__init__.py")),
            "from .m0 import f0\n",
        )?;
        for m in 0..15 {
            let mut py = String::new();
            for f in 0..12 {
                writeln!(
                    py,
                    "def f{f}(x):\n    a = {i}\n    for k in range(16):\n        a = (a * 31 + x + k * {m}) % 1000003\n    return a\n"
                )
                .ok();
            }
            write(&pkg.join(format!("{name}/m{m}.py")), &py)?;
        }
        let tgz = dist.join(format!("{base}.tar.gz"));
        run(
            Command::new("tar")
                .arg("-czf")
                .arg(&tgz)
                .arg("-C")
                .arg(&src)
                .arg(&base),
            "tar (pip sdist)",
        )?;
        if i % 2 == 0 {
            // Half are installed from wheels, built now.
            run(
                Command::new("python3")
                    .args(["-m", "pip", "wheel", "--quiet", "--no-index", "--no-deps"])
                    .args(["--no-build-isolation", "--disable-pip-version-check", "-w"])
                    .arg(&dist)
                    .arg(&tgz),
                "pip wheel",
            )?;
            fs::remove_file(&tgz)?;
        }
    }
    Ok(())
}

fn npm_name(i: usize) -> String {
    format!("bwb-pkg-{i:03}")
}

/// Dependencies of npm package `i`: a tree, three children each.
fn npm_deps(i: usize, n: usize) -> Vec<usize> {
    (1..=3).map(|k| i * 3 + k).filter(|&d| d < n).collect()
}

/// Direct dependencies of the app: the first ten packages (the rest arrive through them).
fn npm_roots(n: usize) -> Vec<usize> {
    (0..n.min(10)).collect()
}

fn deps_json(ds: &[usize]) -> serde_json::Value {
    ds.iter()
        .map(|&d| (npm_name(d), serde_json::Value::from("^1.0.0")))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn gen_npm(dir: &Path, n: usize) -> io::Result<()> {
    let pkgs = dir.join("pkgs");
    let tarballs = dir.join("registry/t");
    fs::create_dir_all(&tarballs)?;
    let mut integrity = serde_json::Map::new();
    for i in 0..n {
        let name = npm_name(i);
        let p = pkgs.join(&name).join("package");
        let script = i % 25 == 7;
        let mut manifest = serde_json::json!({
            "name": name, "version": "1.0.0", "main": "index.js", "license": "MIT",
            "dependencies": deps_json(&npm_deps(i, n)),
        });
        if script {
            manifest["scripts"] = serde_json::json!({"install": "node install.js"});
            write(
                &p.join("install.js"),
                "require('fs').writeFileSync(require('path').join(__dirname, 'built.txt'), 'ok');\n",
            )?;
        }
        write(
            &p.join("package.json"),
            &serde_json::to_string_pretty(&manifest)?,
        )?;
        write(
            &p.join("index.js"),
            &format!(
                "module.exports = {{ id: {i}, a: require('./lib/a'), b: require('./lib/b') }};\n"
            ),
        )?;
        for f in ["a", "b"] {
            let mut js = String::new();
            for k in 0..30 {
                writeln!(js, "exports.f{k} = (x) => (x * {k} + {i}) % 1000003;").ok();
            }
            write(&p.join(format!("lib/{f}.js")), &js)?;
        }
        write(
            &p.join("README.md"),
            &format!("# {name}\n\nGenerated for buildwatch's benchmark.\n"),
        )?;
        let tgz = tarballs.join(format!("{name}-1.0.0.tgz"));
        run(
            Command::new("tar")
                .args(["--owner=0", "--group=0", "--numeric-owner", "-czf"])
                .arg(&tgz)
                .arg("-C")
                .arg(pkgs.join(&name))
                .arg("package"),
            "tar (npm package)",
        )?;
        integrity.insert(name, sha512_integrity(&tgz)?.into());
    }
    let app = serde_json::json!({
        "name": "bench-app", "version": "1.0.0", "private": true,
        "dependencies": deps_json(&npm_roots(n)),
    });
    write(
        &dir.join("app/package.json"),
        &serde_json::to_string_pretty(&app)?,
    )?;
    write(
        &dir.join("integrity.json"),
        &serde_json::to_string(&integrity)?,
    )?;
    write(
        &dir.join("npmrc"),
        "audit=false\nfund=false\nupdate-notifier=false\n",
    )
}

/// `sha512-<base64>` of a file, as npm lockfiles record it.
fn sha512_integrity(path: &Path) -> io::Result<String> {
    let out = Command::new("sha512sum").arg(path).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split(' ').next().unwrap_or("");
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    match bytes {
        Some(b) if b.len() == 64 && out.status.success() => Ok(format!("sha512-{}", base64(&b))),
        _ => Err(io::Error::other(format!(
            "sha512sum {}: {text}",
            path.display()
        ))),
    }
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// package-lock.json (v3) for the app, with tarball URLs on the registry's port.
fn npm_lockfile(dir: &Path, n: usize, port: u16) -> io::Result<()> {
    let integrity: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("integrity.json"))?)?;
    let mut packages = serde_json::Map::new();
    packages.insert(
        String::new(),
        serde_json::json!({"name": "bench-app", "version": "1.0.0", "dependencies": deps_json(&npm_roots(n))}),
    );
    for i in 0..n {
        let name = npm_name(i);
        let mut e = serde_json::json!({
            "version": "1.0.0",
            "resolved": format!("http://127.0.0.1:{port}/t/{name}-1.0.0.tgz"),
            "integrity": integrity[&name],
            "license": "MIT",
        });
        let deps = npm_deps(i, n);
        if !deps.is_empty() {
            e["dependencies"] = deps_json(&deps);
        }
        if i % 25 == 7 {
            e["hasInstallScript"] = true.into();
        }
        packages.insert(format!("node_modules/{name}"), e);
    }
    let lock = serde_json::json!({
        "name": "bench-app", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
        "packages": packages,
    });
    write(
        &dir.join("app/package-lock.json"),
        &serde_json::to_string_pretty(&lock)?,
    )
}

/// A loopback service the bench started; stopped on drop.
pub struct Service {
    child: Child,
    pub port: u16,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> io::Result<u16> {
    Ok(
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port(),
    )
}

/// The npm registry: a static file server on 127.0.0.1 serving the tarballs.
pub fn registry(projects: &Projects) -> io::Result<Service> {
    let port = free_port()?;
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(projects.root.join("npm/registry"))
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let svc = Service { child, port };
    let start = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            return Err(io::Error::other("the loopback npm registry did not start"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(svc)
}

/// The resolver of the DNS microbenchmark: dnsmasq on RESOLVER:53, answering `*.bench.test`
/// itself, with no upstream.
pub const RESOLVER: &str = "127.0.0.79";

pub fn resolver(work: &Path) -> io::Result<Service> {
    let dnsmasq = super::monitors::which("dnsmasq").ok_or_else(|| {
        io::Error::other("dnsmasq is not installed (./scripts/setup.sh installs it)")
    })?;
    let child = Command::new(dnsmasq)
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--cache-size=0",
            "--address=/bench.test/127.0.0.1",
        ])
        .arg(format!("--pid-file={}", work.join("dnsmasq.pid").display()))
        .arg(format!("--listen-address={RESOLVER}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let svc = Service { child, port: 53 };
    // Ready when a query gets an answer.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let q = [
        0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, b'o', b'k', 5, b'b', b'e', b'n', b'c', b'h',
        4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
    ];
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        sock.send_to(&q, (RESOLVER, 53))?;
        if sock.recv(&mut buf).is_ok() {
            return Ok(svc);
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(io::Error::other("dnsmasq on 127.0.0.79:53 did not answer"));
        }
    }
}
