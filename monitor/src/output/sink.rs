//! Where stream events go. For now the JSON Lines file; the SIEM sinks of the agent mode will
//! implement the same trait.

use std::io::{self, BufWriter, Write};

use crate::event::Event;

pub trait Sink {
    fn send(&mut self, event: &Event) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// One JSON object per line.
pub struct JsonLines<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(w: W) -> Self {
        Self {
            out: BufWriter::with_capacity(256 * 1024, w),
        }
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn send(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Discards events (a run without `--events` still counts and summarises them).
pub struct Null;

impl Sink for Null {
    fn send(&mut self, _: &Event) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
