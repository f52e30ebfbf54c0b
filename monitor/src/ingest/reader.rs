//! The ring reader: a thread of its own that copies records out of the kernel ring into
//! chunks and hands them on. Decoding happens after the queue, so reading costs a copy per
//! record and the ring empties as fast as it can; a slow rule, /proc read or sink does not
//! hold it up while the queue has room. When the queue is full, the reader keeps its chunk and
//! stops taking records out of the ring until the stage makes room (it never blocks: it still
//! answers commands and reads counters). Dropping there instead would throw records away while
//! the kernel ring still had room for them: this way the ring and the queue add up to one
//! buffer, and what neither can hold is counted by the kernel (`ringbuf_full`, per sensor).
//!
//! It also reads the kernel's loss counters (every [`COUNTER_INTERVAL`] and at the end) and
//! turns what grew into loss reports, and it owns the end of the run: asked to drain, it hands
//! on what the ring holds within a time and record budget (waiting for room in the queue
//! until the budget's deadline: the command is done, nothing is gained by dropping), then
//! reads the rest without processing it, counting it as `drain_skipped`, for at most another
//! second. A process that floods the ring cannot keep a run alive.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use monitor_common::{EventKind, sensors};

use crate::{
    event::{DrainStats, KernelStats},
    kernel::loader::Counters,
};

/// How long the reader sleeps in poll when the kernel did not wake it (the kernel side wakes
/// it only once 64 KiB are pending).
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How often the kernel's counters are read.
pub const COUNTER_INTERVAL: Duration = Duration::from_millis(100);
/// How often a held chunk is offered to the queue again.
const HELD_RETRY: Duration = Duration::from_millis(2);
/// Most records read between two looks at commands and counters.
const READ_SLICE: u64 = 65_536;
/// Records are handed on in chunks of about this many bytes.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Events that did not get through, by sensor (None: not tied to one) and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    pub sensor: Option<&'static str>,
    pub reason: &'static str,
    pub count: u64,
}

/// What the reader hands on.
#[derive(Debug)]
pub enum Batch {
    /// Kernel records, each preceded by its length as a native-endian u32 (see [`records`]).
    Records(Bytes),
    /// Losses counted since the last report.
    Lost(Vec<Loss>),
    /// The reader is done: how the last drain went and the kernel counters' final values.
    End {
        drain: Option<DrainStats>,
        kernel: KernelStats,
    },
}

/// Where batches go: `try_send` may refuse (queue full: the records come back, not lost),
/// `send_until` waits for room until a deadline, `send_control` may not refuse (a loss report
/// or the end, a few per second).
pub trait Downstream: Send {
    fn try_send(&self, records: Bytes) -> Result<(), Bytes>;
    fn send_until(&self, records: Bytes, deadline: Instant) -> bool;
    fn send_control(&self, batch: Batch);
}

/// The records of a [`Batch::Records`] chunk.
pub fn records(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let rec = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(rec)
    })
}

/// The kernel ring as the reader uses it (a trait so the drain can be tested without one).
pub trait Ring: Send + 'static {
    /// Hand the next record to `f`; false when there is none.
    fn next_with(&mut self, f: &mut dyn FnMut(&[u8])) -> bool;
    /// Sleep until records may be there, `wake` is readable (a command came), or `timeout`
    /// passes.
    fn wait(&self, timeout: Duration, wake: RawFd);
}

impl Ring for super::ring::EventRing {
    fn next_with(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        super::ring::EventRing::next_with(self, f)
    }

    fn wait(&self, timeout: Duration, wake: RawFd) {
        let mut fds = [
            libc::pollfd {
                fd: self.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds: the ring's fd, which the ring keeps open, and the
        // reader's wake eventfd, which outlives the loop.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as i32) };
    }
}

/// Reads the kernel's loss counters.
pub type CounterSource = Box<dyn FnMut() -> KernelStats + Send>;

impl From<Counters> for CounterSource {
    fn from(mut c: Counters) -> Self {
        Box::new(move || c.read())
    }
}

/// The end-of-run budget.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub time: Duration,
    pub records: u64,
}

enum Command {
    Drain(Budget, mpsc::Sender<DrainStats>),
    Stop,
}

pub struct Reader {
    commands: mpsc::Sender<Command>,
    /// Written after each command, so a reader asleep in the ring's poll takes it at once
    /// (the end of a run sends three: each would otherwise wait out a poll interval).
    wake: Arc<OwnedFd>,
    thread: thread::JoinHandle<()>,
}

/// A nonblocking eventfd.
fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd has no memory arguments; a nonnegative result is a new fd we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Add to (or, with `drain`, empty) an eventfd's counter.
fn poke(fd: &OwnedFd, drain: bool) {
    let mut v: u64 = 1;
    // SAFETY: 8 bytes to or from a local u64, on an eventfd we hold open.
    unsafe {
        if drain {
            libc::read(fd.as_raw_fd(), (&raw mut v).cast(), 8);
        } else {
            libc::write(fd.as_raw_fd(), (&raw const v).cast(), 8);
        }
    }
}

impl Reader {
    pub fn start(
        ring: impl Ring,
        counters: impl Into<CounterSource>,
        out: Box<dyn Downstream>,
    ) -> std::io::Result<Self> {
        let counters = counters.into();
        let (commands, rx) = mpsc::channel();
        let wake = Arc::new(eventfd()?);
        let woken = wake.clone();
        let thread = thread::Builder::new()
            .name("ring reader".into())
            .spawn(move || Loop::new(ring, counters, out).run(&rx, &woken))?;
        Ok(Self {
            commands,
            wake,
            thread,
        })
    }

    /// Hand on what the ring holds within `budget`; returns how it went.
    pub fn drain(&self, budget: Budget) -> DrainStats {
        let (tx, rx) = mpsc::channel();
        if self.commands.send(Command::Drain(budget, tx)).is_err() {
            return DrainStats::default();
        }
        poke(&self.wake, false);
        rx.recv().unwrap_or_default()
    }

    /// Report the last losses, send [`Batch::End`], and stop.
    pub fn stop(self) {
        let _ = self.commands.send(Command::Stop);
        poke(&self.wake, false);
        let _ = self.thread.join();
    }
}

const KINDS: usize = 16;

struct Loop<R> {
    ring: R,
    counters: CounterSource,
    out: Box<dyn Downstream>,
    chunk: BytesMut,
    /// A chunk the queue had no room for, with its records per kind: sent before anything
    /// more is read.
    held: Option<(Bytes, [u64; KINDS])>,
    /// Records per kind in the chunk being filled, and dropped but not yet reported.
    in_chunk: [u64; KINDS],
    dropped: [u64; KINDS],
    skipped: [u64; KINDS],
    /// Kernel counters as last reported.
    reported: KernelStats,
}

impl<R: Ring> Loop<R> {
    fn new(ring: R, counters: CounterSource, out: Box<dyn Downstream>) -> Self {
        Self {
            ring,
            counters,
            out,
            chunk: BytesMut::with_capacity(CHUNK_BYTES + 4096),
            held: None,
            in_chunk: [0; KINDS],
            dropped: [0; KINDS],
            skipped: [0; KINDS],
            reported: KernelStats::default(),
        }
    }

    fn run(mut self, commands: &mpsc::Receiver<Command>, wake: &OwnedFd) {
        let mut next_counters = Instant::now() + COUNTER_INTERVAL;
        let mut last_drain: Option<DrainStats> = None;
        let mut empty = true;
        loop {
            if let Some((chunk, kinds)) = self.held.take()
                && let Err(chunk) = self.out.try_send(chunk)
            {
                self.held = Some((chunk, kinds));
            }
            if self.held.is_some() {
                // The stage is behind: leave records in the ring until it makes room.
                thread::sleep(HELD_RETRY);
            } else {
                if empty {
                    self.ring.wait(POLL_INTERVAL, wake.as_raw_fd());
                    poke(wake, true);
                }
                empty = self.read_all(None).1;
            }
            if Instant::now() >= next_counters {
                self.report_losses();
                next_counters = Instant::now() + COUNTER_INTERVAL;
            }
            match commands.try_recv() {
                Ok(Command::Drain(budget, reply)) => {
                    let stats = self.drain(budget);
                    self.report_losses();
                    // A run drains twice (before and after its stragglers go): report the sum.
                    last_drain = Some(match last_drain.take() {
                        None => stats.clone(),
                        Some(prev) => DrainStats {
                            drained: prev.drained + stats.drained,
                            skipped: prev.skipped + stats.skipped,
                            complete: stats.complete,
                            ..prev
                        },
                    });
                    let _ = reply.send(stats);
                }
                Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
        }
        if let Some((_, kinds)) = self.held.take() {
            self.count_dropped(kinds);
        }
        self.report_losses();
        self.out.send_control(Batch::End {
            drain: last_drain,
            kernel: self.reported.clone(),
        });
    }

    /// Read until the ring is empty or, when a limit is given (the drain), until it is
    /// reached; without one, at most [`READ_SLICE`] records, so commands and counters are
    /// looked at even while a flood outpaces the reader. Returns (records read, whether the
    /// ring ran empty).
    fn read_all(&mut self, limit: Option<(Instant, u64)>) -> (u64, bool) {
        let mut n = 0u64;
        let deadline = limit.map(|l| l.0);
        let max = limit.map_or(READ_SLICE, |l| l.1);
        loop {
            let (chunk, in_chunk) = (&mut self.chunk, &mut self.in_chunk);
            let got = self.ring.next_with(&mut |rec| {
                chunk.put_u32_ne(rec.len() as u32);
                chunk.put_slice(rec);
                in_chunk[kind_of(rec)] += 1;
            });
            if !got {
                self.flush(deadline);
                return (n, true);
            }
            n += 1;
            if self.chunk.len() >= CHUNK_BYTES {
                self.flush(deadline);
                if self.held.is_some() {
                    return (n, false);
                }
            }
            if n >= max || (n.is_multiple_of(1024) && deadline.is_some_and(|d| Instant::now() >= d))
            {
                self.flush(deadline);
                return (n, false);
            }
        }
    }

    /// Hand the chunk on: at once (refused when the queue is full), or waiting for room until
    /// `deadline`.
    fn flush(&mut self, deadline: Option<Instant>) {
        if self.chunk.is_empty() {
            return;
        }
        let chunk = self.chunk.split().freeze();
        let kinds = std::mem::replace(&mut self.in_chunk, [0; KINDS]);
        match deadline {
            None => {
                if let Err(chunk) = self.out.try_send(chunk) {
                    self.held = Some((chunk, kinds));
                }
            }
            Some(d) => {
                if let Some((held, held_kinds)) = self.held.take()
                    && !self.out.send_until(held, d)
                {
                    self.count_dropped(held_kinds);
                }
                if !self.out.send_until(chunk, d) {
                    self.count_dropped(kinds);
                }
            }
        }
        if self.chunk.capacity() < CHUNK_BYTES {
            self.chunk.reserve(CHUNK_BYTES + 4096);
        }
    }

    fn count_dropped(&mut self, kinds: [u64; KINDS]) {
        for (d, n) in self.dropped.iter_mut().zip(kinds) {
            *d += n;
        }
    }

    /// Hand on what the ring holds within the budget (waiting for room in the queue until
    /// its deadline); read the rest without processing it (counted as skipped), for at most
    /// one more second.
    fn drain(&mut self, budget: Budget) -> DrainStats {
        let start = Instant::now();
        if let Some((held, kinds)) = self.held.take()
            && !self.out.send_until(held, start + budget.time)
        {
            self.count_dropped(kinds);
        }
        let (drained, complete) = self.read_all(Some((start + budget.time, budget.records)));
        let mut stats = DrainStats {
            budget_ms: budget.time.as_millis() as u64,
            budget_records: budget.records,
            drained,
            skipped: 0,
            complete,
        };
        if complete {
            return stats;
        }
        let hard = Instant::now() + Duration::from_secs(1);
        loop {
            let skipped = &mut self.skipped;
            if !self.ring.next_with(&mut |rec| skipped[kind_of(rec)] += 1) {
                stats.complete = true;
                break;
            }
            stats.skipped += 1;
            if stats.skipped.is_multiple_of(1024) && Instant::now() >= hard {
                break;
            }
        }
        stats
    }

    /// Send what was lost since the last report: refused chunks, skipped records, and what
    /// the kernel counted (ring full, stash full) per sensor.
    fn report_losses(&mut self) {
        let mut losses = Vec::new();
        let own = [
            ("queue_full", &mut self.dropped),
            ("drain_skipped", &mut self.skipped),
        ];
        for (reason, counts) in own {
            for (kind, n) in counts.iter_mut().enumerate() {
                if *n > 0 {
                    losses.push(Loss {
                        sensor: sensor_of(kind),
                        reason,
                        count: std::mem::take(n),
                    });
                }
            }
        }
        let now = (self.counters)();
        for (sensor, reasons) in &now.sensors {
            for reason in ["ringbuf_full", "stash_full"] {
                let before = self
                    .reported
                    .sensors
                    .get(sensor)
                    .and_then(|r| r.get(reason))
                    .copied()
                    .unwrap_or(0);
                let n = reasons
                    .get(reason)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(before);
                if n > 0 {
                    losses.push(Loss {
                        sensor: sensors::NAMES.iter().find(|s| **s == sensor).copied(),
                        reason,
                        count: n,
                    });
                }
            }
        }
        self.reported = now;
        if !losses.is_empty() {
            self.out.send_control(Batch::Lost(losses));
        }
    }
}

fn kind_of(rec: &[u8]) -> usize {
    let kind = rec.get(..2).map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]));
    (kind as usize).min(KINDS - 1)
}

fn sensor_of(kind: usize) -> Option<&'static str> {
    EventKind::from_u16(kind as u16).map(|k| sensors::NAMES[k.sensor() as usize])
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    };

    use super::*;

    /// Records of kind `open` (5): `left` of them (more can be added while it runs), or
    /// without end.
    struct FakeRing {
        left: Option<Arc<AtomicU64>>,
    }

    impl Ring for FakeRing {
        fn next_with(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
            if let Some(left) = &self.left
                && left
                    .try_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_err()
            {
                return false;
            }
            f(&[5, 0, 0, 0, 0xaa, 0xbb]);
            true
        }
        fn wait(&self, timeout: Duration, _wake: RawFd) {
            thread::sleep(timeout.min(Duration::from_millis(1)));
        }
    }

    /// Counts what it gets; refuses the first `refuse` offers (a full queue).
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<(u64, Vec<Loss>, bool)>>, Arc<AtomicU64>);

    impl Downstream for Collect {
        fn try_send(&self, records: Bytes) -> Result<(), Bytes> {
            if self
                .1
                .try_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(records);
            }
            self.0.lock().unwrap().0 += records::count(&records);
            Ok(())
        }
        fn send_until(&self, records: Bytes, _: Instant) -> bool {
            self.try_send(records).is_ok()
        }
        fn send_control(&self, batch: Batch) {
            let mut s = self.0.lock().unwrap();
            match batch {
                Batch::Lost(l) => s.1.extend(l),
                Batch::End { .. } => s.2 = true,
                Batch::Records(_) => unreachable!(),
            }
        }
    }

    mod records {
        pub fn count(chunk: &[u8]) -> u64 {
            super::super::records(chunk).count() as u64
        }
    }

    fn no_counters() -> CounterSource {
        Box::new(KernelStats::default)
    }

    /// A ring that never empties (a flooder still running): the drain stops at its record
    /// budget, reads on without processing for at most a second, and counts those records as
    /// lost (`drain_skipped`, per sensor).
    #[test]
    fn drain_of_an_endless_ring_is_bounded_and_counted() {
        let out = Collect::default();
        let r = Reader::start(
            FakeRing { left: None },
            no_counters(),
            Box::new(out.clone()),
        )
        .unwrap();
        let start = Instant::now();
        let stats = r.drain(Budget {
            time: Duration::from_secs(5),
            records: 1000,
        });
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(stats.drained, 1000);
        assert!(stats.skipped > 0 && !stats.complete, "{stats:?}");
        r.stop();
        let got = out.0.lock().unwrap();
        assert!(got.2, "End was sent");
        let skipped: u64 = got
            .1
            .iter()
            .filter(|l| l.reason == "drain_skipped" && l.sensor == Some("file"))
            .map(|l| l.count)
            .sum();
        assert_eq!(skipped, stats.skipped);
    }

    /// The time budget bounds the drain too.
    #[test]
    fn drain_stops_at_its_deadline() {
        let r = Reader::start(
            FakeRing { left: None },
            no_counters(),
            Box::new(Collect::default()),
        )
        .unwrap();
        let start = Instant::now();
        let stats = r.drain(Budget {
            time: Duration::from_millis(100),
            records: u64::MAX,
        });
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert!(
            stats.drained > 0 && stats.skipped > 0 && !stats.complete,
            "{stats:?}"
        );
        r.stop();
    }

    /// A full queue holds the reader back instead of losing records: they wait in the ring.
    #[test]
    fn a_full_queue_loses_nothing() {
        let out = Collect::default();
        out.1.store(50, Ordering::SeqCst);
        let left = Arc::new(AtomicU64::new(200_000));
        let ring = FakeRing {
            left: Some(left.clone()),
        };
        let r = Reader::start(ring, no_counters(), Box::new(out.clone())).unwrap();
        while left.load(Ordering::SeqCst) > 0 {
            thread::sleep(Duration::from_millis(5));
        }
        r.drain(Budget {
            time: Duration::from_secs(5),
            records: 1_000_000,
        });
        r.stop();
        let got = out.0.lock().unwrap();
        assert_eq!(got.0, 200_000);
        assert!(got.1.is_empty(), "{:?}", got.1);
        assert_eq!(
            out.1.load(Ordering::SeqCst),
            0,
            "the queue refused 50 times"
        );
    }

    /// A ring that empties: everything is handed on, nothing skipped.
    #[test]
    fn drain_of_a_finite_ring_hands_everything_on() {
        let out = Collect::default();
        let left = Arc::new(AtomicU64::new(0));
        let ring = FakeRing {
            left: Some(left.clone()),
        };
        let r = Reader::start(ring, no_counters(), Box::new(out.clone())).unwrap();
        left.store(5000, Ordering::SeqCst);
        let stats = r.drain(Budget {
            time: Duration::from_secs(5),
            records: 1_000_000,
        });
        assert_eq!((stats.skipped, stats.complete), (0, true), "{stats:?}");
        r.stop();
        let got = out.0.lock().unwrap();
        assert_eq!(got.0, 5000);
        assert!(got.1.is_empty(), "{:?}", got.1);
    }

    #[test]
    fn chunks_split_back_into_records() {
        let mut c = BytesMut::new();
        for r in [&b"abc"[..], b"", b"\x05\x00xyz"] {
            c.put_u32_ne(r.len() as u32);
            c.put_slice(r);
        }
        let got: Vec<&[u8]> = records(&c).collect();
        assert_eq!(got, [&b"abc"[..], b"", b"\x05\x00xyz"]);
        // A cut chunk stops at the last whole record instead of reading past the end.
        let cut = &c[..c.len() - 1];
        assert_eq!(records(cut).count(), 2);
        assert_eq!(sensor_of(5), Some("file"));
        assert_eq!(sensor_of(13), Some("dns"));
        assert_eq!(sensor_of(0), None);
    }
}
