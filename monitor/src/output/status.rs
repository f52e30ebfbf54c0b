//! The status line: on a terminal, a long build shows it is watched and alive. The bottom row
//! of the terminal is kept for a line that says how long the run has taken, how many events
//! buildwatch has judged (and how fast), the findings so far and the events lost; it is
//! redrawn every second.
//!
//! The build writes to the same terminal, straight from its processes. So that neither
//! overwrites the other, the rows above the last are made the scroll region (DECSTBM, as apt's
//! progress bar does): the build's output and buildwatch's own lines scroll there, and the
//! status is drawn in the row below with the cursor saved and restored around it. The region
//! is reset when the run ends; if buildwatch is killed, its guardian resets it.
//!
//! Only when standard error is a terminal with at least [`MIN_ROWS`] rows, not with `-q` or
//! TERM=dumb. The numbers come from counters the pipeline keeps ([`Progress`]).

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Fewer rows than this: no status line (it would take too much of the screen).
pub const MIN_ROWS: u16 = 5;
const TICK: Duration = Duration::from_secs(1);

/// What the status line shows, counted by the detect stage.
#[derive(Default)]
pub struct Progress {
    pub events: AtomicU64,
    pub findings: AtomicU64,
    pub lost: AtomicU64,
}

/// The counters of this process's run.
pub static PROGRESS: Progress = Progress {
    events: AtomicU64::new(0),
    findings: AtomicU64::new(0),
    lost: AtomicU64::new(0),
};

/// Restore the whole screen as the scroll region, keeping the cursor where it is.
pub const RESET: &[u8] = b"\x1b7\x1b[r\x1b8";

pub struct StatusLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The terminal's size: (rows, columns).
fn size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize it is given.
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &raw mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

impl StatusLine {
    /// Start drawing, when standard error is a terminal that can have it (see the module).
    pub fn start() -> Option<Self> {
        if !std::io::stderr().is_terminal()
            || super::text::style().quiet
            || std::env::var("TERM").as_deref() == Ok("dumb")
        {
            return None;
        }
        let (rows, _) = size().filter(|(r, _)| *r >= MIN_ROWS)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bw-status".into())
            .spawn(move || draw_loop(rows, &flag))
            .ok()?;
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for StatusLine {
    /// Stop drawing: clear the status row and give the whole screen back.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn draw_loop(mut rows: u16, stop: &AtomicBool) {
    let started = Instant::now();
    let mut err = std::io::stderr();
    // Make room for the status row, then keep the rows above it for the build: the cursor
    // goes back to where the output continues.
    let _ = err.write_all(format!("\n\x1b7\x1b[1;{}r\x1b8\x1b[1A", rows - 1).as_bytes());
    let mut last = (0u64, started);
    while !stop.load(Ordering::Relaxed) {
        if let Some((r, cols)) = size().filter(|(r, _)| *r >= MIN_ROWS) {
            if r != rows {
                rows = r;
                let _ = err.write_all(format!("\x1b7\x1b[1;{}r\x1b8", rows - 1).as_bytes());
            }
            let events = PROGRESS.events.load(Ordering::Relaxed);
            let now = Instant::now();
            let secs = now.duration_since(last.1).as_secs_f64().max(0.001);
            let rate = (events.saturating_sub(last.0) as f64 / secs).round() as u64;
            last = (events, now);
            let text = line(
                started.elapsed(),
                events,
                rate,
                PROGRESS.findings.load(Ordering::Relaxed),
                PROGRESS.lost.load(Ordering::Relaxed),
            );
            let text: String = text
                .chars()
                .take(usize::from(cols).saturating_sub(1))
                .collect();
            let _ = err.write_all(format!("\x1b7\x1b[{rows};1H\x1b[2K{text}\x1b8").as_bytes());
        }
        std::thread::park_timeout(TICK);
    }
    // Clear the status row, then reset the region.
    let _ = err.write_all(format!("\x1b7\x1b[{rows};1H\x1b[2K\x1b8").as_bytes());
    let _ = err.write_all(RESET);
}

/// `buildwatch: 1m05s · 12,345 events (820/s) · 2 findings · 0 lost`.
pub fn line(elapsed: Duration, events: u64, rate: u64, findings: u64, lost: u64) -> String {
    let s = elapsed.as_secs();
    let time = if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    };
    format!(
        "buildwatch: watching {time} · {} events ({}/s) · {findings} finding(s) · {lost} lost",
        grouped(events),
        grouped(rate)
    )
}

/// 12345 → `12,345`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_well() {
        assert_eq!(
            line(Duration::from_secs(65), 12345, 820, 2, 0),
            "buildwatch: watching 1m05s · 12,345 events (820/s) · 2 finding(s) · 0 lost"
        );
        assert_eq!(grouped(1_000_000), "1,000,000");
        assert_eq!(grouped(999), "999");
    }
}
