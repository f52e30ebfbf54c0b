//! The output bus. Everything a run says is a [`Record`] published here: events (including
//! `run`, `run_end`, `lost` and `straggler`), findings, buildwatch's notices, sink errors and
//! the final report. Each sink subscribes with one [`Format`]; the bus encodes a record once
//! per format in use and hands the same [`Bytes`] to every sink of that format.
//!
//! Every sink has its own bounded queue and writer thread, so a slow or stalled sink (an
//! events FIFO nobody reads, a full disk, a blocked terminal) never holds up detection or the
//! other sinks. Records a full queue refuses are counted per sink; `run`/`run_end`/`lost`/
//! `straggler` events, sink errors and the report pass a full queue (a handful per run). A sink
//! that fails is never silently disabled: its error is published to the other sinks, and its
//! state goes into `run_end` and the report, which then say the output is incomplete.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{
    detect::findings::Finding,
    event::{Event, SinkStats},
    output::{
        encode::{self, Format},
        sink::Writer,
    },
    pipeline::queue::{Pop, Queue},
};

/// One thing said on the bus.
#[derive(Clone)]
pub enum Record {
    Event(Arc<Event>),
    /// A finding the first time it appears.
    Finding(Arc<Finding>),
    /// buildwatch's own message to whoever watches the terminal.
    Notice(Arc<str>),
    /// A sink failed or stalled.
    SinkError {
        sink: String,
        error: String,
    },
    /// The verdict and everything it rests on, once, at the end.
    Report(Arc<crate::output::report::Final>),
    /// The agent's roll-up of a findings window: a finding seen again (with its count in the
    /// window), or the occurrences a rule's cap kept from being listed.
    Rollup(Arc<serde_json::Value>),
    /// A run's summary line (verdict, counts) for the forwarding outputs, before they close.
    Summary(Arc<serde_json::Value>),
}

impl Record {
    /// Few per run and needed for the stream to be whole: passes a full queue.
    fn is_control(&self) -> bool {
        match self {
            Record::Event(e) => matches!(e.kind.as_ref(), "run" | "run_end" | "lost" | "straggler"),
            Record::Finding(_) => false,
            Record::Notice(_)
            | Record::SinkError { .. }
            | Record::Report(_)
            | Record::Rollup(_)
            | Record::Summary(_) => true,
        }
    }
}

/// Shared between a sink's writer thread and the bus.
#[derive(Default)]
struct Status {
    written: AtomicU64,
    /// Not written: after a write error, or still queued when abandoned.
    unwritten: AtomicU64,
    /// Of `unwritten`, those abandoned in the queue (the queue counts them as dropped too).
    abandoned: AtomicU64,
    error: Mutex<Option<String>>,
    /// The error has been published to the other sinks.
    announced: Mutex<bool>,
    /// Set by the writer thread when it has written or given up on everything.
    done: Mutex<bool>,
}

/// Which records a sink takes (the agent's outputs filter kinds and severities).
pub type Filter = Box<dyn Fn(&Record) -> bool + Send + Sync>;

struct Sink {
    name: String,
    format: Format,
    filter: Option<Filter>,
    queue: Arc<Queue<Bytes>>,
    status: Arc<Status>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    /// Closed (by a close call): takes no more records, and its stats are final.
    closed: AtomicBool,
}

/// Records a sink's queue holds before it drops.
pub const SINK_QUEUE_RECORDS: u64 = 16_384;

#[derive(Default)]
pub struct Bus {
    sinks: Vec<Sink>,
    /// The forwarding outputs' state (their sinks are among `sinks`, in format Agent).
    pub forwards: Vec<Arc<crate::output::forward::Status>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribe a sink: `writer` runs on a thread of its own and gets `format`'s encoding of
    /// every record that format has one for.
    pub fn add(&mut self, name: &str, format: Format, writer: Box<dyn Writer>) {
        self.add_filtered(name, format, writer, None);
    }

    /// [`add`](Self::add), taking only the records `filter` accepts.
    pub fn add_filtered(
        &mut self,
        name: &str,
        format: Format,
        writer: Box<dyn Writer>,
        filter: Option<Filter>,
    ) {
        let queue = Arc::new(Queue::new(name, "records", SINK_QUEUE_RECORDS));
        let status = Arc::new(Status::default());
        let thread = {
            let (queue, status) = (queue.clone(), status.clone());
            thread::Builder::new()
                .name(format!("sink {name}"))
                .spawn(move || write_loop(writer, &queue, &status, linger(format)))
                .ok()
        };
        if thread.is_none() {
            *status.error.lock().unwrap_or_else(|e| e.into_inner()) =
                Some("could not start its writer thread".into());
        }
        self.sinks.push(Sink {
            name: name.into(),
            format,
            filter,
            queue,
            status,
            thread: Mutex::new(thread),
            closed: AtomicBool::new(false),
        });
    }

    /// Whether any open sink has this format.
    pub fn wants(&self, format: Format) -> bool {
        self.sinks
            .iter()
            .any(|s| s.format == format && !s.closed.load(Ordering::Relaxed))
    }

    /// Whether any sink takes events (otherwise publishing them is skipped).
    pub fn wants_events(&self) -> bool {
        self.sinks
            .iter()
            .any(|s| matches!(s.format, Format::JsonLines | Format::Agent))
            || crate::output::text::style().verbose
    }

    /// Hand a record to every open sink whose format encodes it. Never waits.
    pub fn publish(&self, rec: &Record) {
        let mut cache: [Option<Option<Bytes>>; Format::COUNT] = Default::default();
        let control = rec.is_control();
        let takes = |s: &Sink| {
            !s.closed.load(Ordering::Relaxed) && s.filter.as_ref().is_none_or(|f| f(rec))
        };
        // The last sink of each format gets the encoded bytes themselves, the others a clone:
        // the first clone of a `Bytes` made from a vector allocates its shared count, and
        // most records go to one sink of their format.
        let mut chosen = 0u128;
        let mut last = [usize::MAX; Format::COUNT];
        for (i, s) in self.sinks.iter().enumerate().take(128) {
            if takes(s) {
                chosen |= 1 << i;
                last[s.format as usize] = i;
            }
        }
        for (i, s) in self.sinks.iter().enumerate() {
            let taken = if i < 128 {
                chosen & (1 << i) != 0
            } else {
                takes(s)
            };
            if !taken {
                continue;
            }
            let slot = &mut cache[s.format as usize];
            let Some(bytes) = slot.get_or_insert_with(|| encode::encode(s.format, rec)) else {
                continue;
            };
            let bytes = if last[s.format as usize] == i && self.sinks.len() <= 128 {
                std::mem::take(bytes)
            } else {
                bytes.clone()
            };
            if control {
                s.queue.push_control(bytes);
            } else {
                s.queue.try_push(bytes, 1);
            }
        }
    }

    /// Publish each sink error not yet announced (called by the stage that publishes, so the
    /// announcement is ordered with the records around it).
    pub fn announce_errors(&self) {
        for s in &self.sinks {
            let error = s
                .status
                .error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let Some(error) = error else { continue };
            let mut announced = s.status.announced.lock().unwrap_or_else(|e| e.into_inner());
            if *announced {
                continue;
            }
            *announced = true;
            drop(announced);
            self.publish(&Record::SinkError {
                sink: s.name.clone(),
                error,
            });
        }
    }

    /// Close the sinks `which` selects and wait, until `deadline`, for their writers to finish.
    /// A writer still busy then is abandoned: what it had not written is counted as unwritten
    /// and it is marked stalled.
    pub fn close(&self, which: impl Fn(Format) -> bool, deadline: Instant) {
        let chosen: Vec<&Sink> = self
            .sinks
            .iter()
            .filter(|s| !s.closed.load(Ordering::Relaxed) && which(s.format))
            .collect();
        for s in &chosen {
            s.closed.store(true, Ordering::Relaxed);
            s.queue.close();
        }
        for s in chosen {
            loop {
                if *s.status.done.lock().unwrap_or_else(|e| e.into_inner()) {
                    if let Some(t) = s.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        let _ = t.join();
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    let left = s.queue.abandon();
                    s.status.unwritten.fetch_add(left, Ordering::Relaxed);
                    s.status.abandoned.fetch_add(left, Ordering::Relaxed);
                    let mut e = s.status.error.lock().unwrap_or_else(|e| e.into_inner());
                    if e.is_none() {
                        *e = Some(format!(
                            "stalled: {left} record(s) still queued when buildwatch had to finish"
                        ));
                    }
                    // The thread is blocked in a write; it ends with the process.
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
    }

    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks
            .iter()
            .map(|s| {
                let q = s.queue.stats();
                SinkStats {
                    name: s.name.clone(),
                    format: s.format.name().into(),
                    written: s.status.written.load(Ordering::Relaxed),
                    dropped: q.dropped - s.status.abandoned.load(Ordering::Relaxed).min(q.dropped),
                    unwritten: s.status.unwritten.load(Ordering::Relaxed),
                    error: s
                        .status
                        .error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                }
            })
            .collect()
    }
}

/// Records a sink takes from its queue at once.
const POP_MANY: usize = 1024;

/// Bytes a sink gathers before writing them out (also written whenever its queue runs dry).
const SINK_BUFFER: usize = 256 * 1024;

/// How long a sink waits, once its queue runs dry, for more records before writing what it
/// has: nothing for a person's terminal and the annotations; a little for the machine-read
/// streams (the agent's outputs, forwarding, an event stream), so a steady flow of events is
/// written in batches instead of a write (and a wake-up) per record.
fn linger(format: Format) -> Duration {
    match format {
        Format::Agent | Format::JsonLines => Duration::from_millis(5),
        _ => Duration::ZERO,
    }
}

/// A sink's records waiting to be written: copied into one buffer, or kept as they are for a
/// writer that keeps them.
struct Batch {
    bytes: Vec<u8>,
    records: Vec<Bytes>,
    size: usize,
    keep: bool,
}

impl Batch {
    fn push(&mut self, b: Bytes) {
        self.size += b.len();
        if self.keep {
            self.records.push(b);
        } else {
            self.bytes.extend_from_slice(&b);
        }
    }
}

/// A sink's thread: gather what arrives, write it out when the buffer is full or the queue
/// runs dry (after `linger`). A record counts as written once the write that carried it
/// succeeded. After a write error nothing more is written; the rest is counted as unwritten.
fn write_loop(mut w: Box<dyn Writer>, q: &Queue<Bytes>, status: &Status, linger: Duration) {
    let keep = w.keeps_records();
    let mut buf = Batch {
        bytes: if keep {
            Vec::new()
        } else {
            Vec::with_capacity(SINK_BUFFER)
        },
        records: Vec::new(),
        size: 0,
        keep,
    };
    let mut pending = 0u64;
    let mut failed = false;
    let mut write_out = |buf: &mut Batch, pending: &mut u64, failed: &mut bool| {
        if buf.size == 0 {
            return;
        }
        let n = std::mem::take(pending);
        let wrote = if buf.keep {
            w.write_records(&mut buf.records)
        } else {
            w.write(&buf.bytes)
        };
        match wrote.and_then(|()| w.flush()) {
            Ok(()) => {
                status.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                status.unwritten.fetch_add(n, Ordering::Relaxed);
                *failed = true;
                *status.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(w.describe(&e));
            }
        }
        buf.bytes.clear();
        buf.records.clear();
        buf.size = 0;
    };
    // When the oldest record in `buf` arrived (for the linger).
    let mut since: Option<Instant> = None;
    let mut got: Vec<Bytes> = Vec::with_capacity(POP_MANY);
    loop {
        let wait = match since {
            Some(t) => linger.saturating_sub(t.elapsed()),
            None => Duration::from_millis(200),
        };
        match q.pop_many(wait, POP_MANY, &mut got) {
            Pop::Item(n) => {
                for b in got.drain(..) {
                    if failed {
                        status.unwritten.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    buf.push(b);
                    pending += 1;
                    since.get_or_insert_with(Instant::now);
                    if buf.size >= SINK_BUFFER {
                        write_out(&mut buf, &mut pending, &mut failed);
                        since = None;
                    }
                }
                // Fewer than asked for: the queue ran dry. Written now, or once the linger
                // is over (terminal lines appear when they happen). The linger is a sleep, not
                // a wait on the queue: records arriving meanwhile do not wake the thread one
                // by one.
                if n < POP_MANY
                    && let Some(t) = since
                {
                    let left = linger.saturating_sub(t.elapsed());
                    if left.is_zero() {
                        write_out(&mut buf, &mut pending, &mut failed);
                        since = None;
                    } else {
                        thread::sleep(left);
                    }
                }
            }
            Pop::Empty => {
                write_out(&mut buf, &mut pending, &mut failed);
                since = None;
            }
            Pop::Closed => {
                write_out(&mut buf, &mut pending, &mut failed);
                break;
            }
        }
    }
    *status.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
}
