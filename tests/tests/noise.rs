//! Ordinary CI work is not a finding, with the real commands: the job's own configuration
//! steps writing credentials (npm config set, echo >> ~/.netrc, git's credential store), and
//! tools reading their own (pip through requests for an index that asks for .netrc
//! credentials, git's credential helper). The same reads from an install script still fire.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
};

use buildwatch_tests::*;
use serde_json::json;

/// Findings of the sensitive-file category.
fn credential_findings(w: &Watched) -> Vec<Value> {
    w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["category"] == "sensitive-file")
        .cloned()
        .collect()
}

/// Did `exe_part` open a path ending in `file` (the event exists: the test is not vacuous)?
fn opened(w: &Watched, file: &str) -> bool {
    w.events().iter().any(|e| {
        e["kind"] == "open"
            && e["open"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(file))
    })
}

#[test]
fn the_jobs_own_credential_configuration_is_not_a_finding() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("noise-config");
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let mut env = npm_env(&home);
    env.push(("GIT_CONFIG_NOSYSTEM", "1".into()));
    let script = "\
        npm config set //registry.example.test/:_authToken=npm_FAKE && \
        echo 'machine 127.0.0.1 login u password p' >> ~/.netrc && \
        printf 'protocol=https\\nhost=example.test\\nusername=u\\npassword=p\\n\\n' \
          | git -c credential.helper=store credential approve && \
        printf 'protocol=https\\nhost=example.test\\n\\n' \
          | git -c credential.helper=store credential fill > /dev/null";
    let w = watch(&tmp, tmp.path(), &env, &[], &["bash", "-c", script]);
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    for f in [".npmrc", ".netrc", ".git-credentials"] {
        assert!(
            opened(&w, f),
            "no open of {f}: the test would prove nothing"
        );
    }
    assert!(
        fs::read_to_string(home.join(".npmrc"))
            .unwrap()
            .contains("npm_FAKE")
    );
    assert_eq!(
        credential_findings(&w),
        Vec::<Value>::new(),
        "{}",
        w.stderr()
    );
}

/// Each request the index saw: its path, and whether it carried the credentials.
type Requests = Arc<Mutex<Vec<(String, bool)>>>;

/// A loopback package index that demands Basic auth (u:p) and serves one wheel.
fn auth_index(wheel: Vec<u8>, name: &str) -> (u16, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let file = format!("{}-1.0-py3-none-any.whl", name.replace('-', "_"));
    let index = format!("<html><body><a href=\"/files/{file}\">{file}</a></body></html>");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(40) {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            let mut authed = false;
            let mut h = String::new();
            while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                // Basic base64("u:p")
                if h.to_ascii_lowercase().starts_with("authorization:") && h.contains("Basic dTpw")
                {
                    authed = true;
                }
                h.clear();
            }
            log.lock().unwrap().push((path.clone(), authed));
            let body: Option<Vec<u8>> = if !authed {
                None
            } else if path.starts_with("/simple/") {
                Some(index.clone().into_bytes())
            } else if path == format!("/files/{file}") {
                Some(wheel.clone())
            } else {
                Some(Vec::new())
            };
            let _ = match body {
                None => s.write_all(
                    b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"idx\"\r\nContent-Length: 0\r\n\r\n",
                ),
                Some(b) => s
                    .write_all(
                        format!(
                            "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
                            b.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| s.write_all(&b)),
            };
        }
    });
    (port, seen)
}

/// A wheel of an empty module.
fn wheel(dir: &Path, name: &str) -> Vec<u8> {
    let m = name.replace('-', "_");
    let path = dir.join("w.whl");
    let py = format!(
        "import zipfile\n\
         z = zipfile.ZipFile({path:?}, 'w')\n\
         d = '{m}-1.0.dist-info/'\n\
         z.writestr('{m}/__init__.py', '')\n\
         z.writestr(d + 'METADATA', 'Metadata-Version: 2.1\\nName: {name}\\nVersion: 1.0\\n')\n\
         z.writestr(d + 'WHEEL', 'Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
         z.writestr(d + 'RECORD', '{m}/__init__.py,,\\n' + d + 'METADATA,,\\n' + d + 'WHEEL,,\\n' + d + 'RECORD,,\\n')\n\
         z.close()\n",
        path = path.display().to_string()
    );
    let st = Command::new("python3").args(["-c", &py]).status().unwrap();
    assert!(st.success());
    fs::read(path).unwrap()
}

#[test]
fn pip_reading_netrc_for_its_index_is_not_a_finding() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("noise-pip-netrc");
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(
        home.join(".netrc"),
        "machine 127.0.0.1 login u password p\n",
    )
    .unwrap();
    let (port, seen) = auth_index(wheel(tmp.path(), "demo-pkg"), "demo-pkg");
    let index = format!("http://127.0.0.1:{port}/simple/");
    let env = [
        ("HOME", home.display().to_string()),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1".into()),
        ("PIP_NO_INPUT", "1".into()),
    ];
    let w = watch(
        &tmp,
        tmp.path(),
        &env,
        &["--allow", &format!("127.0.0.1:{port}")],
        &[
            "python3",
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--index-url",
            &index,
            "--target",
            "site",
            "demo-pkg",
        ],
    );
    assert_eq!(w.out.status.code(), Some(0), "{}", w.stderr());
    assert!(
        tmp.join("site/demo_pkg/__init__.py").exists(),
        "{}",
        w.stderr()
    );
    assert!(
        seen.lock().unwrap().iter().any(|(_, authed)| *authed),
        "pip never sent the .netrc credentials: {:?}",
        seen.lock().unwrap()
    );
    assert!(opened(&w, ".netrc"));
    assert_eq!(
        credential_findings(&w),
        Vec::<Value>::new(),
        "{}",
        w.stderr()
    );
}

/// The same files, from a package's install script: read is a finding, and so is writing a
/// registry configuration.
#[test]
fn install_scripts_touching_the_same_files_still_fire() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("noise-install-script");
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(
        home.join(".netrc"),
        "machine 127.0.0.1 login u password p\n",
    )
    .unwrap();
    fs::write(home.join(".git-credentials"), "https://u:p@example.test\n").unwrap();
    let js = "const fs = require('fs'), h = require('os').homedir();\n\
              fs.readFileSync(h + '/.netrc');\n\
              fs.readFileSync(h + '/.git-credentials');\n\
              fs.appendFileSync(h + '/.npmrc', 'registry=http://127.0.0.1:9/\\n');\n";
    let tgz = npm_package(
        &tmp,
        "cfg-helper",
        "2.0.0",
        &[("i.js", js)],
        json!({"postinstall": "node i.js"}),
    );
    let proj = tmp.join("project");
    fs::create_dir_all(&proj).unwrap();
    fs::write(
        proj.join("package.json"),
        r#"{"name":"app","version":"1.0.0","private":true}"#,
    )
    .unwrap();
    let w = watch(
        &tmp,
        &proj,
        &npm_env(&home),
        &[],
        &["npm", "install", tgz.to_str().unwrap()],
    );
    let found = credential_findings(&w);
    let messages: Vec<String> = found
        .iter()
        .map(|f| format!("{} {}", f["rule"], f["message"]))
        .collect();
    for (rule, file) in [
        ("sensitive-file-read", ".netrc"),
        ("sensitive-file-read", ".git-credentials"),
        ("credential-file-written-by-package", ".npmrc"),
    ] {
        assert!(
            found.iter().any(|f| f["rule"] == rule
                && f["message"].as_str().unwrap().ends_with(file)
                && f["package"]["name"] == "cfg-helper"),
            "no {rule} for {file}: {messages:#?}\n{}",
            w.stderr()
        );
    }
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
}
