//! A local package registry on loopback for the tests: real npm resolves versions from its
//! packuments and downloads tarballs from it, and real pip reads its simple index (PEP 503),
//! as from public registries. Nothing but loopback: the registry is reached by address.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpListener,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use serde_json::{Value, json};

type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

pub struct LocalRegistry {
    pub port: u16,
    files: Files,
    /// name → version → the version's manifest in the packument.
    versions: Mutex<BTreeMap<String, BTreeMap<String, Value>>>,
    /// Python project → its sdists' file names.
    sdists: Mutex<BTreeMap<String, Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl LocalRegistry {
    /// Listen on 127.0.0.1 (a port the kernel picks); serves until dropped.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let files: Files = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (files.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &f),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            port,
            files,
            versions: Mutex::default(),
            sdists: Mutex::default(),
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Publish `tgz` (from `npm_package`) as `name@version`, with the lifecycle `scripts` its
    /// package.json has; it becomes the `latest` version.
    pub fn publish(&self, name: &str, version: &str, tgz: &Path, scripts: Value) {
        let tarball = format!("/tarballs/{name}-{version}.tgz");
        let mut files = self.files.lock().unwrap();
        files.insert(tarball.clone(), std::fs::read(tgz).unwrap());
        let mut all = self.versions.lock().unwrap();
        let versions = all.entry(name.to_owned()).or_default();
        versions.insert(
            version.to_owned(),
            json!({
                "name": name,
                "version": version,
                "scripts": scripts,
                "hasInstallScript": true,
                "dist": {"tarball": format!("http://127.0.0.1:{}{tarball}", self.port)},
            }),
        );
        let packument = json!({
            "name": name,
            "dist-tags": {"latest": version},
            "versions": versions,
        });
        files.insert(format!("/{name}"), packument.to_string().into_bytes());
    }
}

impl LocalRegistry {
    /// Publish an sdist (from `sdist`) of project `name` on the simple index
    /// (`/simple/NAME/`, pip's `--index-url URL/simple`).
    pub fn publish_sdist(&self, name: &str, tgz: &Path) {
        let file = tgz.file_name().unwrap().to_str().unwrap().to_owned();
        let mut files = self.files.lock().unwrap();
        files.insert(format!("/files/{file}"), std::fs::read(tgz).unwrap());
        let mut all = self.sdists.lock().unwrap();
        let list = all.entry(name.to_owned()).or_default();
        list.push(file);
        let links: String = list
            .iter()
            .map(|f| format!("<a href=\"/files/{f}\">{f}</a><br>\n"))
            .collect();
        files.insert(
            format!("/simple/{name}/"),
            format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n").into_bytes(),
        );
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request on one connection: GET of a known path, 404 otherwise.
fn serve(mut stream: std::net::TcpStream, files: &Files) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&req);
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_owned();
    let body = files.lock().unwrap().get(&path).cloned();
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"{\"error\":\"not found\"}".to_vec()),
    };
    let kind = if path.ends_with(".tgz") || path.ends_with(".tar.gz") {
        "application/octet-stream"
    } else if path.starts_with("/simple/") {
        "text/html"
    } else {
        "application/json"
    };
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let _ = stream.write_all(&body);
}
