//! Helpers for the forwarding tests: a test CA, free loopback ports, spool sizes, and the
//! stand-in for SIEM HTTP receivers (tests/support/siem_standin.py).

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// A CA and a server certificate for `localhost` signed by it, in `dir`
/// (tests/support/make-test-ca.sh); returns the CA file.
pub fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/make-test-ca.sh");
    let out = Command::new("sh")
        .arg(script)
        .arg(dir)
        .arg(name)
        .output()
        .expect("sh");
    assert!(out.status.success(), "make-test-ca.sh: {out:?}");
    dir.join("ca.pem")
}

/// rsyslogd's configuration for a TLS receiver on `port` writing to `out`
/// (tests/support/rsyslog-tls.conf).
pub fn rsyslog_conf(work: &Path, ca_dir: &Path, port: u16, out: &Path) -> String {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/rsyslog-tls.conf");
    fs::read_to_string(template)
        .expect("tests/support/rsyslog-tls.conf")
        .replace("@WORK@", &work.display().to_string())
        .replace("@CA@", &ca_dir.display().to_string())
        .replace("@PORT@", &port.to_string())
        .replace("@OUT@", &out.display().to_string())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Bytes in a spool's segments (0: everything acknowledged).
pub fn spooled_bytes(spool: &Path) -> u64 {
    fs::read_dir(spool)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The stand-in for Elastic `_bulk`, Splunk HEC (with indexer acknowledgement), OTLP/HTTP logs
/// and an NDJSON webhook: no real Elasticsearch, Splunk or OpenTelemetry collector can run on
/// this machine, so tests/support/siem_standin.py reproduces their wire behaviour (per-item bulk
/// results, 409 on a repeated `_id`, HEC channels and acks, OTLP partial success) and injects
/// the faults a test asks for. It listens on loopback only.
pub struct Standin {
    child: Child,
    pub port: u16,
    control: u16,
}

impl Standin {
    /// `tls`: (certificate, key) to serve HTTPS with; `token`: what HEC requires.
    pub fn start(dir: &Path, tls: Option<(&Path, &Path)>, token: &str) -> Self {
        let port_file = dir.join("standin.port");
        let control_file = dir.join("standin.control");
        let _ = fs::remove_file(&port_file);
        let _ = fs::remove_file(&control_file);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/siem_standin.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--control-port-file")
            .arg(&control_file)
            .args([
                "--token",
                token,
                "--hec-ack",
                "--ack-delay",
                "0.2",
                "--stdin-eof-exit",
            ]);
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 tests/support/siem_standin.py");
        // Owned from here: a panic below kills it (Drop).
        let mut s = Self {
            child,
            port: 0,
            control: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let read = |f: &Path| {
            fs::read_to_string(f)
                .ok()
                .and_then(|s| s.trim().parse::<u16>().ok())
        };
        loop {
            if let (Some(port), Some(control)) = (read(&port_file), read(&control_file)) {
                s.port = port;
                s.control = control;
                return s;
            }
            assert!(Instant::now() < deadline, "the stand-in did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "-X", method]);
        if let Some(b) = body {
            cmd.args(["-H", "content-type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        let out = cmd
            .arg(format!("http://127.0.0.1:{}{path}", self.control))
            .output()
            .expect("curl");
        assert!(out.status.success(), "curl {path}: {out:?}");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Queue faults for the next requests to `endpoint` (bulk, hec, hec_ack, otlp, webhook).
    pub fn faults(&self, endpoint: &str, faults: Value) {
        self.control(
            "POST",
            "/_control/faults",
            Some(&serde_json::json!({"endpoint": endpoint, "faults": faults})),
        );
    }

    pub fn stats(&self) -> Value {
        self.control("GET", "/_control/stats", None)
    }

    pub fn records(&self, endpoint: &str) -> Vec<Value> {
        match self.control(
            "GET",
            &format!("/_control/records?endpoint={endpoint}"),
            None,
        ) {
            Value::Array(a) => a,
            other => panic!("records: {other}"),
        }
    }

    pub fn headers(&self, endpoint: &str) -> Value {
        self.control(
            "GET",
            &format!("/_control/headers?endpoint={endpoint}"),
            None,
        )
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the schema validator (tests/support/schemas/validate.py) on `records` written to `file`;
/// panics with its report when a record does not conform. `python`: the interpreter (OCSF
/// needs the tools venv's, which has pydantic-ocsf).
pub fn validate_schema(python: &Path, schema: &str, records: &[Value], file: &Path) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    fs::write(file, text).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/schemas/validate.py");
    let out = Command::new(python)
        .arg(script)
        .arg(schema)
        .arg(file)
        .output()
        .expect("the schema validator");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{schema}: records do not conform:\n{}",
        said.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    assert!(
        said.contains(&format!("{} records valid", records.len())),
        "{said}"
    );
}

/// Lines of a file (empty when it does not exist).
pub fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
