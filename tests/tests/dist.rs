//! The release tarball (`cargo xtask dist`, which `cargo xtask test` builds and names in
//! BUILDWATCH_DIST) installed as a CI runner without a toolchain would: `scripts/install.sh`
//! from a path and from a URL (a server on loopback), with nothing but a handful of base tools
//! on PATH, then `buildwatch doctor` and a watched build.
//!
//! Stand-in, said plainly: a fresh machine is simulated by a PATH of symlinks to the base
//! tools alone (no cargo, rustc, clang, LLVM or bpf-linker reachable) and an empty HOME; the
//! kernel and libc are this machine's.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use buildwatch_tests::*;

const BASE_TOOLS: &[&str] = &[
    "sh",
    "env",
    "cat",
    "cut",
    "tr",
    "ls",
    "mkdir",
    "mktemp",
    "rm",
    "cp",
    "mv",
    "install",
    "sha256sum",
    "tar",
    "gzip",
    "sed",
    "id",
    "curl",
    "touch",
    "head",
    "printf",
];

/// A directory of symlinks to the base tools: the whole PATH of the simulated runner.
fn base_path(dir: &TempDir) -> PathBuf {
    let tools = dir.join("tools");
    fs::create_dir_all(&tools).unwrap();
    let search = std::env::var("PATH").unwrap_or_default();
    for t in BASE_TOOLS {
        let path = search
            .split(':')
            .map(|d| Path::new(d).join(t))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{t} not installed"));
        std::os::unix::fs::symlink(&path, tools.join(t)).unwrap();
    }
    tools
}

/// `cmd` with only the base tools (and `extra`) on PATH, an empty HOME, nothing else.
fn bare(dir: &TempDir, tools: &Path, extra: Option<&Path>, cmd: &mut Command) -> Output {
    let home = dir.join("home");
    fs::create_dir_all(&home).unwrap();
    let path = match extra {
        Some(e) => format!("{}:{}", e.display(), tools.display()),
        None => tools.display().to_string(),
    };
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .current_dir(dir.path())
        .output()
        .unwrap()
}

/// Serves the files of `dir` over HTTP/1.0 on loopback, for a bounded number of requests.
fn serve(dir: PathBuf, requests: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut asked = Vec::new();
        for stream in listener.incoming().take(requests) {
            let Ok(mut s) = stream else { continue };
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let _ = r.read_line(&mut line);
            let mut h = String::new();
            while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let name = line
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            asked.push(name.to_owned());
            let file = (!name.contains("..") && !name.contains('/'))
                .then(|| fs::read(dir.join(name)).ok())
                .flatten();
            let _ = match file {
                Some(body) => s
                    .write_all(
                        format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .as_bytes(),
                    )
                    .and_then(|()| s.write_all(&body)),
                None => s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            };
        }
        asked
    });
    (port, handle)
}

#[test]
fn the_tarball_installs_and_watches_a_build_without_a_toolchain() {
    let Some(tarball) = dist_tarball() else {
        return;
    };
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("dist");
    let tools = base_path(&dir);
    // Nothing of a toolchain is reachable.
    for t in [
        "cargo",
        "rustc",
        "rustup",
        "clang",
        "llvm-strip",
        "bpf-linker",
        "cc",
    ] {
        let out = bare(
            &dir,
            &tools,
            None,
            Command::new("sh").args(["-c", &format!("command -v {t}")]),
        );
        assert!(!out.status.success(), "{t} is reachable on the bare PATH");
    }

    // The tarball holds the binary, the installer, the SBOM and the licences.
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for want in [
        "/bin/buildwatch",
        "/install.sh",
        "/sbom.cdx.json",
        "/LICENSE-MIT",
        "/LICENSE-APACHE",
        "/licenses/README.md",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(want)),
            "{want} missing:\n{list}"
        );
    }
    // Unpack the installer next to the tarball's checksum, as a user would.
    let unpack = dir.join("unpacked");
    fs::create_dir_all(&unpack).unwrap();
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpack)
        .output()
        .unwrap();
    assert!(out.status.success());
    let top = fs::read_dir(&unpack)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let installer = top.join("install.sh");
    assert_eq!(
        fs::read(&installer).unwrap(),
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh")).unwrap(),
        "the tarball's install.sh is the repository's"
    );

    // A wrong checksum installs nothing.
    let prefix = dir.join("prefix");
    let out = bare(
        &dir,
        &tools,
        None,
        Command::new(&installer)
            .arg("--prefix")
            .arg(&prefix)
            .args(["--sha256", &"0".repeat(64)])
            .arg(&tarball),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"));
    assert!(!prefix.join("bin/buildwatch").exists());
    // No checksum at all installs nothing either.
    let lone = dir.join("lone.tar.gz");
    fs::copy(&tarball, &lone).unwrap();
    let out = bare(
        &dir,
        &tools,
        None,
        Command::new(&installer)
            .arg("--prefix")
            .arg(&prefix)
            .arg(&lone),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checksum"));
    assert!(!prefix.join("bin/buildwatch").exists());

    // From a URL (a server on loopback), checksum fetched from beside it.
    let name = tarball.file_name().unwrap().to_string_lossy().into_owned();
    let (port, server) = serve(tarball.parent().unwrap().to_owned(), 2);
    let url = format!("http://127.0.0.1:{port}/{name}");
    let out = bare(
        &dir,
        &tools,
        None,
        Command::new(&installer)
            .arg("--prefix")
            .arg(&prefix)
            .arg(&url),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        server.join().unwrap(),
        [name.clone(), format!("{name}.sha256")]
    );
    let bw = prefix.join("bin/buildwatch");
    assert!(String::from_utf8_lossy(&out.stdout).contains("installed buildwatch"));
    assert!(prefix.join("share/buildwatch/sbom.cdx.json").exists());

    // The machine check, then a watched build, with the installed binary alone.
    let out = bare(&dir, &tools, None, Command::new(&bw).arg("doctor"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = dir.join("report.json");
    let out = bare(
        &dir,
        &tools,
        None,
        Command::new(&bw).arg("--report").arg(&report).args([
            "--",
            "sh",
            "-c",
            "cat /etc/hostname > /dev/null; touch built",
        ]),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("built").exists());
    let r: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert!(r["events"]["total"].as_u64().unwrap() > 0, "{r:#}");
    assert_eq!(r["verdict"]["failed"], false);
    assert!(
        r["events"]["by_kind"]["exec"].as_u64().unwrap() >= 2,
        "sh and cat: {r:#}"
    );
}

/// The SBOM names what is compiled in, each registry crate with its Cargo.lock checksum, and
/// every dependency edge points at a component; CycloneDX's own library validates it against
/// the 1.5 schema.
#[test]
fn the_sbom_lists_the_dependency_tree() {
    let Some(tarball) = dist_tarball() else {
        return;
    };
    let dir = TempDir::new("dist-sbom");
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.path())
        .arg("--wildcards")
        .arg("*/sbom.cdx.json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top = fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let path = top.join("sbom.cdx.json");
    let sbom: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(sbom["metadata"]["component"]["name"], "buildwatch");
    let components = sbom["components"].as_array().unwrap();
    let refs: Vec<&str> = components
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .chain([sbom["metadata"]["component"]["bom-ref"].as_str().unwrap()])
        .collect();
    for name in ["aya", "tokio", "serde", "aya-ebpf", "monitor-ebpf"] {
        assert!(
            components.iter().any(|c| c["name"] == name),
            "{name} missing from the SBOM"
        );
    }
    // Dev-only crates are not compiled in.
    assert!(!components.iter().any(|c| c["name"] == "buildwatch-tests"));
    for c in components.iter().filter(|c| c["type"] == "library") {
        let sum = c["hashes"][0]["content"].as_str().unwrap_or_default();
        assert_eq!(sum.len(), 64, "{c}");
        assert!(c["purl"].as_str().unwrap().starts_with("pkg:cargo/"));
    }
    for d in sbom["dependencies"].as_array().unwrap() {
        for on in d["dependsOn"].as_array().unwrap() {
            assert!(refs.contains(&on.as_str().unwrap()), "dangling {on}");
        }
    }
    // The schema check: CycloneDX's Python library (scripts/setup.sh installs it).
    let check = "import sys\n\
        from cyclonedx.validation.json import JsonStrictValidator\n\
        from cyclonedx.schema import SchemaVersion\n\
        err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
        print(err or 'valid')\n\
        sys.exit(1 if err else 0)\n";
    let out = Command::new(tools_dir().join("venv/bin/python"))
        .args(["-c", check])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
