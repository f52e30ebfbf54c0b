//! Where encoded records are written. A sink's writer runs on the sink's own thread (see
//! `bus`), so a writer may block: opening a FIFO nobody reads yet, a full pipe, a slow disk.
//! Writers do not buffer: the sink gathers records and counts them written only once the
//! write that carried them succeeded.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::PathBuf,
};

pub trait Writer: Send {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Whether the bus should hand this writer its records as they were encoded
    /// ([`Writer::write_records`]) instead of copied into one buffer.
    fn keeps_records(&self) -> bool {
        false
    }
    /// Whole lines, one per record (emptied by the call).
    fn write_records(&mut self, records: &mut Vec<bytes::Bytes>) -> io::Result<()> {
        records.drain(..).try_for_each(|r| self.write(&r))
    }
    fn flush(&mut self) -> io::Result<()>;
    /// The error as the user should read it (which output, what happened).
    fn describe(&self, e: &io::Error) -> String;
}

/// A stream opened before the run: stdout, stderr, or a file created up front.
pub struct Stream<W: Write + Send> {
    out: W,
    what: String,
}

impl<W: Write + Send> Stream<W> {
    pub fn new(out: W, what: &str) -> Self {
        Self {
            out,
            what: what.into(),
        }
    }
}

impl<W: Write + Send> Writer for Stream<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
    fn describe(&self, e: &io::Error) -> String {
        describe(&self.what, e)
    }
}

/// A file opened by the sink's thread when the first record comes: a FIFO (whose open waits
/// for a reader) or a report written at the end.
pub struct LazyFile {
    path: PathBuf,
    append: bool,
    file: Option<File>,
}

impl LazyFile {
    /// `append` keeps what the file had (GitHub's step summary is shared by a job's steps);
    /// otherwise it is replaced.
    pub fn new(path: PathBuf, append: bool) -> Self {
        Self {
            path,
            append,
            file: None,
        }
    }
}

impl Writer for LazyFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .append(self.append)
                .truncate(!self.append)
                .open(&self.path)?;
            self.file = Some(f);
        }
        self.file.as_mut().expect("opened above").write_all(bytes)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
    fn describe(&self, e: &io::Error) -> String {
        describe(&self.path.display().to_string(), e)
    }
}

fn describe(what: &str, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::BrokenPipe {
        format!("{what}: closed by its reader")
    } else {
        format!("{what}: {e}")
    }
}

/// Hands each write (a batch of encoded records) to a channel: for the doctor's end-to-end
/// check and for tests that watch the pipeline from inside.
pub struct Channel(pub std::sync::mpsc::Sender<Vec<u8>>);

impl Writer for Channel {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0
            .send(bytes.to_vec())
            .map_err(|_| io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn describe(&self, e: &io::Error) -> String {
        describe("channel", e)
    }
}

/// The agent's log file: created with mode 0600 (it holds what every process did), rotated
/// when a write would take it past `max_bytes` or it is older than `max_age`, keeping `keep`
/// rotated files, numbered in order (`PATH.7` is newer than `PATH.6`): a rotation is one
/// rename and at most one removal, however many are kept. A write is a batch of whole
/// records, and rotation happens between writes, so no line is ever split across two files.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_age: std::time::Duration,
    keep: u32,
    file: Option<File>,
    size: u64,
    opened: std::time::Instant,
    /// The number the next rotated file gets (found from the directory at first open).
    next: Option<u64>,
    /// Files rotated so far (for metrics and tests).
    pub rotations: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RotatingFile {
    pub fn new(path: PathBuf, max_bytes: u64, max_age: std::time::Duration, keep: u32) -> Self {
        Self {
            path,
            max_bytes,
            max_age,
            keep,
            file: None,
            size: 0,
            opened: std::time::Instant::now(),
            next: None,
            rotations: Default::default(),
        }
    }

    /// PATH.N for a number N.
    fn numbered(&self, n: u64) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// The numbers of the rotated files there are.
    fn rotated(&self) -> Vec<u64> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Vec::new();
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let mut out: Vec<u64> = std::fs::read_dir(if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        })
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok())
        .collect();
        out.sort_unstable();
        out
    }

    fn open(&mut self) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.opened = std::time::Instant::now();
        self.file = Some(f);
        Ok(())
    }

    /// PATH → PATH.N (the next number); the oldest beyond `keep` go.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let next = match self.next {
            Some(n) => n,
            None => self.rotated().last().map_or(1, |n| n + 1),
        };
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            std::fs::rename(&self.path, self.numbered(next))?;
            self.next = Some(next + 1);
            let oldest_kept = (next + 1).saturating_sub(u64::from(self.keep));
            if next == 1 || self.next.is_some_and(|n| n.is_multiple_of(64)) {
                // Now and then (and at the first rotation), everything too old.
                for n in self.rotated().into_iter().filter(|n| *n < oldest_kept) {
                    let _ = std::fs::remove_file(self.numbered(n));
                }
            } else if oldest_kept > 1 {
                let _ = std::fs::remove_file(self.numbered(oldest_kept - 1));
            }
        }
        self.rotations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.open()
    }
}

impl Writer for RotatingFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        let len = bytes.len() as u64;
        if self.size > 0
            && (self.size + len > self.max_bytes || self.opened.elapsed() >= self.max_age)
        {
            self.rotate()?;
        }
        self.file.as_mut().expect("opened above").write_all(bytes)?;
        self.size += len;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        // Unbuffered: every write is already the kernel's.
        Ok(())
    }
    fn describe(&self, e: &io::Error) -> String {
        describe(&self.path.display().to_string(), e)
    }
}
