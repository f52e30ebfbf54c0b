//! Techniques a malicious package uses once it runs, each seen for what it does to the
//! system rather than how the command was spelled: persistence through system files, reads
//! of credential stores, the container daemon's socket.
//!
//! The system paths are written inside a private mount namespace whose /etc and /run are
//! overlays on the real ones (the upper layers in the test's directory): the paths the build
//! uses are the real names, and nothing reaches the machine's own files.

use std::fs;

use buildwatch_tests::*;

/// `unshare -m` with overlays on /etc and /run, then buildwatch.
fn overlay_ns(tmp: &TempDir) -> Vec<String> {
    for d in ["etc-up", "etc-work", "run-up", "run-work"] {
        fs::create_dir_all(tmp.join(d)).unwrap();
    }
    let t = tmp.path().display().to_string();
    vec![
        "unshare".into(),
        "-m".into(),
        "sh".into(),
        "-c".into(),
        format!(
            "mount -t overlay overlay -o lowerdir=/etc,upperdir={t}/etc-up,workdir={t}/etc-work /etc && \
             mount -t overlay overlay -o lowerdir=/run,upperdir={t}/run-up,workdir={t}/run-work /run && \
             exec \"$@\""
        ),
        "sh".into(),
    ]
}

/// Every rule among the findings and their parts.
fn rules_of(w: &Watched) -> Vec<String> {
    w.rules()
}

#[test]
fn system_persistence_paths_are_findings() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("persist-system");
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let ns = overlay_ns(&tmp);
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    // An empty preload list loads nothing; the overlay keeps it in the test's directory.
    let script = "set -e; : > /etc/ld.so.preload; \
                  mkdir -p /etc/sudoers.d; echo 'ci ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/zz-bw; \
                  printf '#!/bin/sh\\n' > /etc/init.d/bw-test; \
                  mkdir -p \"$HOME/.config/autostart\"; echo '[Desktop Entry]' > \"$HOME/.config/autostart/bw.desktop\";";
    let w = watch_via(
        &tmp,
        tmp.path(),
        &[("HOME", home.display().to_string())],
        &ns,
        &[],
        &["sh", "-c", script],
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    // Nothing reached the machine's own /etc.
    assert!(!std::path::Path::new("/etc/sudoers.d/zz-bw").exists());
    assert!(!std::path::Path::new("/etc/init.d/bw-test").exists());
    let rules = rules_of(&w);
    for (rule, severity) in [
        ("write-ld-preload", "critical"),
        ("write-sudoers", "critical"),
        ("write-init-script", "high"),
        ("write-autostart", "high"),
    ] {
        assert!(
            rules.contains(&rule.to_owned()),
            "{rule} missing: {rules:?}"
        );
        assert_eq!(w.finding(rule)["severity"], severity, "{rule}");
    }
    let m = w.finding("write-ld-preload")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(m.ends_with(" wrote /etc/ld.so.preload"), "{m}");
}

#[test]
fn credential_stores_are_sensitive_files() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("cred-stores");
    let home = tmp.join("home");
    let files = [
        ".bash_history",
        ".zsh_history",
        ".gnupg/private-keys-v1.d/0123ABCD.key",
        ".gnupg/secring.gpg",
        ".password-store/ci/deploy.gpg",
        ".local/share/keyrings/login.keyring",
    ];
    for f in files {
        let p = home.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "x\n").unwrap();
    }
    let ns = overlay_ns(&tmp);
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let token = "/run/secrets/kubernetes.io/serviceaccount/token";
    let script = format!(
        "mkdir -p /run/secrets/kubernetes.io/serviceaccount && echo t > {token} && \
         cat {files} /var/run/secrets/kubernetes.io/serviceaccount/token >/dev/null",
        files = files
            .iter()
            .map(|f| format!("\"$HOME/{f}\""))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let w = watch_via(
        &tmp,
        tmp.path(),
        &[("HOME", home.display().to_string())],
        &ns,
        &[],
        &["sh", "-c", &script],
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let reads: Vec<String> = w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "sensitive-file-read")
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    for f in files {
        let path = home.join(f).display().to_string();
        assert!(
            reads.iter().any(|m| m.ends_with(&path)),
            "no read of {path}: {reads:#?}"
        );
    }
    assert!(
        reads
            .iter()
            .any(|m| m.contains("/secrets/kubernetes.io/serviceaccount/token")),
        "no read of the service-account token: {reads:#?}"
    );
}

#[test]
fn the_container_daemon_socket_is_a_finding() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("docker-sock");
    let ns = overlay_ns(&tmp);
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    // A listener where dockerd's socket would be (in the overlay), and a client of it.
    let script = "import socket\n\
                  l = socket.socket(socket.AF_UNIX); l.bind('/run/docker.sock'); l.listen(1)\n\
                  c = socket.socket(socket.AF_UNIX); c.connect('/var/run/docker.sock'); c.close()\n";
    let w = watch_via(&tmp, tmp.path(), &[], &ns, &[], &["python3", "-c", script]);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let f = w.finding("docker-socket-in-build");
    assert_eq!(f["severity"], "high");
    assert!(
        f["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("socket /var/run/docker.sock")),
        "{f:#}"
    );
}

#[test]
fn interpreters_running_decoded_code_are_findings() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("decoded-code");
    // Both print "1": the decoded code is harmless, its shape is not.
    for (name, cmd) in [
        (
            "python",
            vec![
                "python3",
                "-c",
                "import base64;exec(base64.b64decode('cHJpbnQoMSk='))",
            ],
        ),
        (
            "node",
            vec![
                "node",
                "-e",
                "eval(Buffer.from('Y29uc29sZS5sb2coMSk=', 'base64').toString())",
            ],
        ),
    ] {
        let w = watch(&tmp, tmp.path(), &[], &[], &cmd);
        assert_eq!(String::from_utf8_lossy(&w.out.stdout).trim(), "1", "{name}");
        assert_eq!(w.out.status.code(), Some(86), "{name}: {}", w.stderr());
        let f = w.finding("interpreter-runs-decoded-code");
        assert_eq!(f["severity"], "high", "{name}: {f:#}");
    }
}
