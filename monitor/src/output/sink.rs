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
