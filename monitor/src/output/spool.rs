//! The disk spool of one forwarding output: nothing is lost when the receiver is down. Records
//! wait in an append-only log on disk until the receiver acknowledges them (Vector's disk
//! buffer, in small):
//!
//! ```text
//! DIR/ledger             acked id, next id, spool id (random, once), CRC-32; replaced atomically
//! DIR/seg-<first id>     [len u32][crc32 u32][id u64][payload]… (CRC-32 over id and payload)
//! ```
//!
//! - Appends go to the newest segment; a segment is closed at [`SEGMENT_BYTES`], or at an
//!   eighth of the spool's bound when that is smaller (room comes back a segment at a time).
//! - Data reaches the disk at most [`Spool::fsync_every`] after it was appended (a bounded
//!   fsync interval), and always before an acknowledgement is recorded.
//! - A segment is deleted only when every record in it was acknowledged.
//! - On open, every segment is read again from the ledger's acked id on: delivery resumes
//!   after a restart or a crash. A record cut short by a crash (its length past the end, or a
//!   checksum that does not match) ends its segment; it is counted, never delivered half.
//! - Bounded: when the spool holds `max_bytes`, new records are refused (the caller drops the
//!   newest or waits, as configured) and counted; the next record that fits is preceded by a
//!   gap record saying how many went missing, so a receiver sees the hole.
//! - Each record's id is stable across restarts and redeliveries: `<spool id>-<id>` lets a
//!   receiver remove the duplicates that at-least-once delivery may bring.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};

/// A segment is closed once it holds this much.
pub const SEGMENT_BYTES: u64 = 8 << 20;
const HEADER: usize = 16;
/// Longest record accepted (a finding or event line is a few KiB).
pub const MAX_RECORD: usize = 1 << 20;
/// Acknowledgements reach the ledger at most this long after they were made (a crash may
/// deliver again what was acknowledged in that time: at least once).
pub const LEDGER_EVERY: Duration = Duration::from_millis(100);
/// Appended records are written out once this much is buffered (and at every sync).
const WRITE_BUFFER: usize = 256 * 1024;
/// Delivery reads the spool this much at a time.
const READ_CHUNK: usize = 512 * 1024;

/// Records appended and not yet read, kept in memory so that a delivery keeping up does not
/// read them back from disk: at most this many bytes…
const TAIL_BYTES: usize = 2 << 20;
/// …and this many records.
const TAIL_RECORDS: usize = 8192;

/// A record read back for delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spooled {
    pub id: u64,
    /// A slice of the buffer its read filled (shared with the records read with it), or the
    /// line as appended, newline included ([`Spooled::line`] is the record).
    pub payload: Bytes,
}

impl Spooled {
    /// The record (without the newline an appended line may keep).
    pub fn line(&self) -> &[u8] {
        record_of(&self.payload)
    }

    /// [`Spooled::line`], owned.
    pub fn into_line(self) -> Bytes {
        let len = record_of(&self.payload).len();
        if len == self.payload.len() {
            self.payload
        } else {
            self.payload.slice(..len)
        }
    }
}

/// A line as the spool records it: without its newline, if it has one.
pub fn record_of(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// An appended record not yet read: its id, where it ends on disk (segment, offset: the read
/// cursor after it), and the line.
struct Unread {
    id: u64,
    segment: u64,
    end: u64,
    line: Bytes,
}

/// What the spool has seen, for metrics and the run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpoolStats {
    pub bytes: u64,
    pub records: u64,
    /// Appended, acknowledged, refused for want of room.
    pub appended: u64,
    /// Bytes of the records appended (payloads), for the write amplification.
    pub appended_bytes: u64,
    pub acked: u64,
    pub refused: u64,
    /// Records found cut short or corrupt on reading (a crash mid-write).
    pub corrupt: u64,
    /// Seconds the oldest unacknowledged record has waited (0 when none).
    pub oldest_age_s: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    pub fsync_every: Duration,
    /// A random id, chosen when the spool was created: record ids are `<this>-<n>`.
    pub spool_id: u64,
    next_id: u64,
    acked: u64,
    /// Segments in order: (first id, path, bytes).
    segments: Vec<(u64, PathBuf, u64)>,
    writer: Option<File>,
    /// Appended records not yet written to the segment (one write per batch, not per record).
    buf: Vec<u8>,
    /// Where the last read stopped: (segment's first id, byte offset, last id read). Delivery
    /// reads on from there instead of from the segment's start.
    cursor: Option<(u64, u64, u64)>,
    /// The buffer reads fill: its storage is used again once the records of the last read are
    /// dropped (no allocation, and no zeroing, per read).
    read_buf: BytesMut,
    /// Appended records not yet read, with consecutive ids (bounded: [`TAIL_BYTES`],
    /// [`TAIL_RECORDS`]). A record that does not fit is only on disk, and so is every one
    /// after it until the delivery has read the tail.
    unread: std::collections::VecDeque<Unread>,
    unread_bytes: usize,
    dirty_since: Option<Instant>,
    /// Refused since the last record that fitted (becomes a gap record).
    pending_gap: u64,
    stats: SpoolStats,
    /// When each unacknowledged record arrived, roughly (per segment: its first append).
    oldest_at: Option<Instant>,
    /// Acknowledgements not yet in the ledger, and when it was last written: the ledger is
    /// written (and the data fsynced) at most every [`LEDGER_EVERY`], not per batch.
    ack_dirty: bool,
    ledger_at: Instant,
    /// An exclusive lock on DIR/lock: one buildwatch per spool.
    _lock: nix::fcntl::Flock<File>,
}

fn crc(id: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&id.to_le_bytes());
    h.update(payload);
    h.finalize()
}

impl Spool {
    /// Open (or create) the spool in `dir`, holding at most `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64, fsync_every: Duration) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{}: in use by another buildwatch ({e})", dir.display()),
                )
            })?;
        let (acked, next_id, spool_id) = match read_ledger(&dir.join("ledger")) {
            Some(l) => l,
            None => (0, 1, random_id()),
        };
        let mut segments: Vec<(u64, PathBuf, u64)> = fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let first: u64 = name.strip_prefix("seg-")?.parse().ok()?;
                let len = e.metadata().ok()?.len();
                Some((first, e.path(), len))
            })
            .collect();
        segments.sort_by_key(|s| s.0);
        // A crash may have cut the newest segment's last record: keep what is whole, so new
        // records do not land behind a torn one.
        let mut corrupt = 0;
        if let Some(last) = segments.last_mut() {
            let good = whole_length(&last.1)?;
            if good < last.2 {
                OpenOptions::new()
                    .write(true)
                    .open(&last.1)?
                    .set_len(good)?;
                last.2 = good;
                corrupt += 1;
            }
        }
        let mut s = Self {
            dir: dir.to_owned(),
            max_bytes,
            fsync_every,
            spool_id,
            next_id,
            acked,
            segments,
            writer: None,
            buf: Vec::new(),
            cursor: None,
            read_buf: BytesMut::new(),
            unread: std::collections::VecDeque::new(),
            unread_bytes: 0,
            ack_dirty: false,
            ledger_at: Instant::now(),
            dirty_since: None,
            pending_gap: 0,
            stats: SpoolStats {
                corrupt,
                ..SpoolStats::default()
            },
            oldest_at: None,
            _lock: lock,
        };
        // The next id: past everything on disk (the ledger may lag the segments). Headers only:
        // a full spool is not read into memory.
        let (waiting, last) = s.count_after(s.acked)?;
        if let Some(last) = last {
            s.next_id = s.next_id.max(last + 1);
        }
        s.stats.records = waiting;
        if s.stats.records > 0 {
            s.oldest_at = Some(Instant::now());
        }
        s.drop_acked_segments()?;
        s.write_ledger()?;
        Ok(s)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Would a record of `len` bytes fit now?
    pub fn has_room(&self, len: usize) -> bool {
        self.bytes() + (2 * HEADER + len + 80) as u64 <= self.max_bytes
    }

    fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.2).sum()
    }

    /// Append one record. `Ok(None)` when the spool is full (refused and counted; the caller
    /// drops it or waits).
    pub fn append(&mut self, payload: &[u8]) -> io::Result<Option<u64>> {
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "record too long",
            ));
        }
        let need = (HEADER + payload.len()) as u64;
        let gap_line = self.gap_line();
        let gap_need = gap_line.as_ref().map_or(0, |g| (HEADER + g.len()) as u64);
        if self.bytes() + need + gap_need > self.max_bytes {
            self.pending_gap += 1;
            self.stats.refused += 1;
            return Ok(None);
        }
        if let Some(g) = gap_line {
            self.pending_gap = 0;
            self.write_record(g.as_bytes())?;
        }
        self.write_record(payload).map(Some)
    }

    /// [`Spool::append`] of a line (its newline, if any, is not part of the record), which
    /// the spool keeps in memory until it is read, when there is room: a delivery that keeps
    /// up then does not read it back from disk.
    pub fn append_owned(&mut self, line: Bytes) -> io::Result<Option<u64>> {
        let Some(id) = self.append(record_of(&line))? else {
            return Ok(None);
        };
        let contiguous = self.unread.back().is_none_or(|u| u.id + 1 == id);
        if contiguous
            && self.unread.len() < TAIL_RECORDS
            && self.unread_bytes + line.len() <= TAIL_BYTES
            && let Some(&(segment, _, end)) = self.segments.last()
        {
            self.unread_bytes += line.len();
            self.unread.push_back(Unread {
                id,
                segment,
                end,
                line,
            });
        }
        Ok(Some(id))
    }

    /// The kept records after `from` (when the first of them is the next one), moved out, at
    /// most `max`; the read cursor then stands after the last.
    fn take_unread(&mut self, from: u64, max: usize) -> Vec<Spooled> {
        while self.unread.front().is_some_and(|u| u.id <= from) {
            let u = self.unread.pop_front().expect("checked");
            self.unread_bytes -= u.line.len();
        }
        if self.unread.front().is_none_or(|u| u.id != from + 1) {
            return Vec::new();
        }
        let n = self.unread.len().min(max);
        let mut out = Vec::with_capacity(n);
        for u in self.unread.drain(..n) {
            self.unread_bytes -= u.line.len();
            self.cursor = Some((u.segment, u.end, u.id));
            out.push(Spooled {
                id: u.id,
                payload: u.line,
            });
        }
        out
    }

    fn write_record(&mut self, payload: &[u8]) -> io::Result<u64> {
        let id = self.next_id;
        let segment_max = (self.max_bytes / 8).clamp(64 << 10, SEGMENT_BYTES);
        let roll = self.segments.last().is_none_or(|s| s.2 >= segment_max);
        if roll || self.writer.is_none() {
            // What the closing segment holds reaches its file, and the disk if it is due.
            self.flush_buf()?;
            if let (true, Some(w), Some(_)) = (roll, &self.writer, self.dirty_since) {
                w.sync_data()?;
            }
            if roll {
                let path = self.dir.join(format!("seg-{id:020}"));
                self.segments.push((id, path, 0));
            }
            let path = self.segments.last().expect("pushed above").1.clone();
            self.writer = Some(OpenOptions::new().create(true).append(true).open(path)?);
        }
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&crc(id, payload).to_le_bytes());
        self.buf.extend_from_slice(&id.to_le_bytes());
        self.buf.extend_from_slice(payload);
        if let Some(last) = self.segments.last_mut() {
            last.2 += (HEADER + payload.len()) as u64;
        }
        if self.buf.len() >= WRITE_BUFFER {
            self.flush_buf()?;
        }
        self.next_id += 1;
        self.stats.appended += 1;
        self.stats.appended_bytes += payload.len() as u64;
        self.stats.records += 1;
        self.oldest_at.get_or_insert_with(Instant::now);
        self.dirty_since.get_or_insert_with(Instant::now);
        Ok(id)
    }

    /// The gap record for what was refused since the last record that fitted.
    fn gap_line(&self) -> Option<String> {
        let gap = self.pending_gap;
        (gap > 0).then(|| {
            format!("{{\"schema\":1,\"kind\":\"gap\",\"dropped\":{gap},\"reason\":\"spool full\"}}")
        })
    }

    /// Append a record that must not be refused (a run's summary: the receiver's only word on
    /// the verdict), past the size bound if need be, after the gap record of any hole.
    pub fn append_reserved(&mut self, payload: &[u8]) -> io::Result<u64> {
        if let Some(g) = self.gap_line() {
            self.write_record(g.as_bytes())?;
            self.pending_gap = 0;
        }
        self.write_record(payload)
    }

    /// Closing: a hole not yet announced gets its gap record now (past the size bound by one
    /// small record), so the receiver hears of it after a restart; then everything is synced.
    pub fn close(&mut self) -> io::Result<()> {
        if let Some(g) = self.gap_line() {
            self.write_record(g.as_bytes())?;
            self.pending_gap = 0;
        }
        if self.ack_dirty {
            self.persist_acks()?;
        }
        self.sync(true)
    }

    /// Write the buffered records to the newest segment.
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        match self.writer.as_mut() {
            Some(w) => w.write_all(&self.buf)?,
            None => {
                return Err(io::Error::other(
                    "spool: records buffered without a segment",
                ));
            }
        }
        self.buf.clear();
        Ok(())
    }

    /// Write out what was appended, and fsync it if that is due (or `force`).
    pub fn sync(&mut self, force: bool) -> io::Result<()> {
        self.flush_buf()?;
        if let Some(t) = self.dirty_since
            && (force || t.elapsed() >= self.fsync_every)
        {
            if let Some(w) = &self.writer {
                w.sync_data()?;
            }
            self.dirty_since = None;
        }
        Ok(())
    }

    /// Up to `max` unacknowledged records after `after`, oldest first. Reading on from where
    /// the last read stopped starts there directly; records at or before `after` are skipped.
    /// The records come in one buffer read at a time ([`READ_CHUNK`]), each a slice of it:
    /// no allocation or read per record.
    pub fn read_from(&mut self, after: u64, max: usize) -> io::Result<Vec<Spooled>> {
        self.flush_buf()?;
        let from = after.max(self.acked);
        // What is kept in memory first; then on from disk, where the cursor now stands.
        let mut out = self.take_unread(from, max);
        if out.len() >= max {
            return Ok(out);
        }
        let from = out.last().map_or(from, |r| r.id);
        let resume = self
            .cursor
            .filter(|c| c.2 == from && self.segments.iter().any(|s| s.0 == c.0))
            .map(|c| (c.0, c.1));
        let segments = &self.segments;
        for (i, (first, path, _)) in segments.iter().enumerate() {
            let start = match resume {
                Some((seg, _)) if *first < seg => continue,
                Some((seg, off)) if *first == seg => off,
                Some(_) => 0,
                None => {
                    // Skip segments that end before `from`.
                    if segments.get(i + 1).is_some_and(|next| next.0 <= from + 1) {
                        continue;
                    }
                    0
                }
            };
            let Ok(f) = File::open(path) else {
                continue;
            };
            let mut pos = start;
            // Read a chunk at `pos` and take the whole records in it; a record cut by the
            // chunk's end starts the next chunk (one longer than a chunk gets a read of its
            // own size). Ends at the segment's end, or at a torn or corrupt record (the rest
            // of that segment is not trusted).
            'segment: loop {
                let chunk = read_at_most(&f, pos, READ_CHUNK, &mut self.read_buf)?;
                if chunk.len() < HEADER {
                    break;
                }
                let mut at = 0usize;
                while chunk.len() - at >= HEADER {
                    let h: &[u8; HEADER] = chunk[at..at + HEADER].try_into().expect("16 bytes");
                    let (len, sum, id) = parse_header(h);
                    if len > MAX_RECORD {
                        break 'segment;
                    }
                    let end = at + HEADER + len;
                    if end > chunk.len() {
                        if at == 0 {
                            // Longer than a chunk: read it whole, or it is torn.
                            let whole = read_at_most(&f, pos, HEADER + len, &mut self.read_buf)?;
                            if whole.len() < HEADER + len {
                                break 'segment;
                            }
                            let payload = whole.slice(HEADER..);
                            if id > from {
                                if crc(id, &payload) != sum {
                                    break 'segment;
                                }
                                out.push(Spooled { id, payload });
                            }
                            pos += (HEADER + len) as u64;
                            self.cursor = Some((*first, pos, id.max(from)));
                            if out.len() >= max {
                                return Ok(out);
                            }
                            continue 'segment;
                        }
                        break;
                    }
                    if id > from {
                        let payload = chunk.slice(at + HEADER..end);
                        if crc(id, &payload) != sum {
                            break 'segment;
                        }
                        self.cursor = Some((*first, pos + end as u64, id));
                        out.push(Spooled { id, payload });
                        if out.len() >= max {
                            return Ok(out);
                        }
                    }
                    at = end;
                }
                if at == 0 {
                    break;
                }
                pos += at as u64;
            }
        }
        Ok(out)
    }

    /// How many records on disk come after `after`, and the last id there (headers only).
    fn count_after(&self, after: u64) -> io::Result<(u64, Option<u64>)> {
        let (mut n, mut last) = (0, None);
        for (_, path, _) in &self.segments {
            let Ok(f) = File::open(path) else { continue };
            let mut r = BufReader::new(f);
            loop {
                let mut h = [0u8; HEADER];
                if r.read_exact(&mut h).is_err() {
                    break;
                }
                let (len, _, id) = parse_header(&h);
                if len > MAX_RECORD {
                    break;
                }
                r.seek_relative(len as i64)?;
                last = Some(id);
                if id > after {
                    n += 1;
                }
            }
        }
        Ok((n, last))
    }

    /// The receiver has everything up to `id`: record it (after the data is on disk) and
    /// delete the segments that hold nothing newer.
    pub fn ack(&mut self, id: u64) -> io::Result<()> {
        if id <= self.acked {
            return Ok(());
        }
        let n = id.min(self.next_id - 1) - self.acked;
        self.acked = id.min(self.next_id - 1);
        self.stats.acked += n;
        self.stats.records = self.stats.records.saturating_sub(n);
        if self.stats.records == 0 {
            self.oldest_at = None;
        }
        self.ack_dirty = true;
        self.tick()
    }

    /// Write the acknowledgements to the ledger if that is due (deliveries call this while
    /// idle too).
    pub fn tick(&mut self) -> io::Result<()> {
        if self.ack_dirty && self.ledger_at.elapsed() >= LEDGER_EVERY {
            self.persist_acks()?;
        }
        Ok(())
    }

    /// The data on disk first, then the ledger, then the segments nothing waits in.
    fn persist_acks(&mut self) -> io::Result<()> {
        self.sync(true)?;
        self.write_ledger()?;
        self.ack_dirty = false;
        self.ledger_at = Instant::now();
        self.drop_acked_segments()
    }

    fn drop_acked_segments(&mut self) -> io::Result<()> {
        // A segment can go when the next one starts at or below acked + 1 (all of it acked);
        // the newest stays (it is being written) unless everything in it is acked.
        while self.segments.len() > 1 && self.segments[1].0 <= self.acked + 1 {
            let (_, path, _) = self.segments.remove(0);
            let _ = fs::remove_file(path);
        }
        if self.segments.len() == 1 && self.acked + 1 >= self.next_id && self.segments[0].2 > 0 {
            let (_, path, _) = self.segments.remove(0);
            self.writer = None;
            let _ = fs::remove_file(path);
        }
        Ok(())
    }

    fn write_ledger(&self) -> io::Result<()> {
        let mut b = Vec::with_capacity(28);
        b.extend_from_slice(&self.acked.to_le_bytes());
        b.extend_from_slice(&self.next_id.to_le_bytes());
        b.extend_from_slice(&self.spool_id.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&b);
        b.extend_from_slice(&h.finalize().to_le_bytes());
        let tmp = self.dir.join("ledger.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&b)?;
            f.sync_data()?;
        }
        fs::rename(tmp, self.dir.join("ledger"))
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            bytes: self.bytes(),
            oldest_age_s: self.oldest_at.map_or(0, |t| t.elapsed().as_secs()),
            ..self.stats.clone()
        }
    }

    /// The stable id of record `id`, for the receiver to remove duplicates with.
    pub fn event_id(&self, id: u64) -> String {
        format!("{:016x}-{id}", self.spool_id)
    }

    /// The last id handed out (0: none yet).
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }
}

impl Drop for Spool {
    /// What is buffered reaches the segment, and acknowledgements the ledger.
    fn drop(&mut self) {
        let _ = self.flush_buf();
        if self.ack_dirty {
            let _ = self.persist_acks();
        }
    }
}

/// A record header: payload length, CRC-32, id.
fn parse_header(h: &[u8; HEADER]) -> (usize, u32, u64) {
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    (
        word(0) as usize,
        word(4),
        u64::from(word(8)) | (u64::from(word(12)) << 32),
    )
}

/// The length of the whole records at the start of a segment.
fn whole_length(path: &Path) -> io::Result<u64> {
    let mut r = BufReader::new(File::open(path)?);
    let mut good = 0u64;
    loop {
        let mut h = [0u8; HEADER];
        if r.read_exact(&mut h).is_err() {
            return Ok(good);
        }
        let (len, sum, id) = parse_header(&h);
        if len > MAX_RECORD {
            return Ok(good);
        }
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).is_err() || crc(id, &payload) != sum {
            return Ok(good);
        }
        good += (HEADER + len) as u64;
    }
}

/// Up to `n` bytes of `f` from `pos` (fewer at its end), read into `buf`'s storage.
fn read_at_most(f: &File, pos: u64, n: usize, buf: &mut BytesMut) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    buf.clear();
    // Reuses the storage when nothing else holds it any more.
    buf.reserve(n);
    while buf.len() < n {
        let got = buf.len();
        let at = libc::off_t::try_from(pos + got as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let spare = buf.spare_capacity_mut();
        let want = spare.len().min(n - got);
        // SAFETY: pread writes at most `want` bytes at the start of the spare capacity, which
        // has at least that many.
        let k = unsafe { libc::pread(f.as_raw_fd(), spare.as_mut_ptr().cast(), want, at) };
        match k {
            0 => break,
            // SAFETY: the kernel initialised `k` bytes of the spare capacity.
            k if k > 0 => unsafe { buf.advance_mut(k as usize) },
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(buf.split().freeze())
}

fn read_ledger(path: &Path) -> Option<(u64, u64, u64)> {
    let mut f = File::open(path).ok()?;
    let mut b = [0u8; 28];
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_exact(&mut b).ok()?;
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..24]);
    if h.finalize() != u32::from_le_bytes(b[24..28].try_into().ok()?) {
        return None;
    }
    let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    Some((u(0), u(8).max(1), u(16)))
}

pub(crate) fn random_id() -> u64 {
    let mut b = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bw-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_survive_a_restart_until_acknowledged() {
        let d = dir("restart");
        let mut s = Spool::open(&d, 1 << 20, Duration::from_millis(10)).unwrap();
        for i in 0..10 {
            s.append(format!("r{i}").as_bytes()).unwrap().unwrap();
        }
        s.ack(4).unwrap();
        let sid = s.spool_id;
        drop(s);
        let mut s = Spool::open(&d, 1 << 20, Duration::from_millis(10)).unwrap();
        assert_eq!(s.spool_id, sid, "ids stay stable");
        let rest = s.read_from(0, 100).unwrap();
        assert_eq!(rest.len(), 6);
        assert_eq!(rest[0].payload, &b"r4"[..]);
        assert_eq!(s.event_id(rest[0].id), format!("{sid:016x}-5"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_tail_is_not_delivered_and_a_full_spool_leaves_a_gap() {
        let d = dir("torn");
        let mut s = Spool::open(&d, 300, Duration::from_millis(10)).unwrap();
        assert!(s.append(b"one").unwrap().is_some());
        assert!(s.append(b"two").unwrap().is_some());
        drop(s);
        // A crash mid-write: half a header and payload at the end.
        let seg = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("seg-"))
            .unwrap()
            .path();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let mut s = Spool::open(&d, 300, Duration::from_millis(10)).unwrap();
        assert_eq!(s.stats().corrupt, 1, "the torn record is cut off");
        let got: Vec<Vec<u8>> = s
            .read_from(0, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.payload.to_vec())
            .collect();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        // Fill it: refused records are counted, and the next that fits follows a gap record.
        let big = vec![b'x'; 200];
        let mut refused = 0;
        while s.append(&big).unwrap().is_some() {}
        refused += 1;
        assert!(s.append(&big).unwrap().is_none());
        refused += 1;
        assert_eq!(s.stats().refused, refused);
        let last = s.last_id();
        s.ack(last).unwrap();
        // Room comes back when the acknowledgement reaches the ledger.
        s.persist_acks().unwrap();
        assert!(s.append(b"after").unwrap().is_some());
        let got = s.read_from(0, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert!(
            String::from_utf8_lossy(&got[0].payload).contains("\"kind\":\"gap\",\"dropped\":2")
        );
        assert_eq!(got[1].payload, &b"after"[..]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_hole_is_announced_even_when_the_spool_closes_full_and_one_spool_has_one_owner() {
        let d = dir("closefull");
        let mut s = Spool::open(&d, 300, Duration::from_millis(10)).unwrap();
        let big = vec![b'x'; 200];
        assert!(s.append(&big).unwrap().is_some());
        assert!(s.append(&big).unwrap().is_none());
        assert!(s.append(&big).unwrap().is_none());
        // A second opener is refused while the first holds it.
        let e = Spool::open(&d, 300, Duration::from_millis(10))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        s.close().unwrap();
        drop(s);
        let mut s = Spool::open(&d, 300, Duration::from_millis(10)).unwrap();
        let got = s.read_from(0, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert!(
            String::from_utf8_lossy(&got[1].payload).contains("\"kind\":\"gap\",\"dropped\":2"),
            "{:?}",
            String::from_utf8_lossy(&got[1].payload)
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn delivery_reads_on_from_where_it_stopped_while_records_are_appended() {
        let d = dir("cursor");
        let mut s = Spool::open(&d, 1 << 24, Duration::from_millis(10)).unwrap();
        let mut seen = Vec::new();
        let mut sent = 0u64;
        for round in 0..20 {
            for i in 0..50 {
                s.append(format!("r{}", round * 50 + i).as_bytes())
                    .unwrap()
                    .unwrap();
            }
            s.sync(false).unwrap();
            // Like syslog: read on from the last sent; like HTTP: acknowledge each batch.
            let batch = s.read_from(sent, 30).unwrap();
            sent = batch.last().map_or(sent, |r| r.id);
            if round % 2 == 0 {
                s.ack(sent).unwrap();
            }
            seen.extend(batch.into_iter().map(|r| r.payload));
        }
        loop {
            let batch = s.read_from(sent, 64).unwrap();
            let Some(last) = batch.last() else { break };
            sent = last.id;
            seen.extend(batch.into_iter().map(|r| r.payload));
        }
        let want: Vec<Vec<u8>> = (0..1000).map(|i| format!("r{i}").into_bytes()).collect();
        assert_eq!(seen, want);
        // A reconnect reads again from the last acknowledged record.
        let acked = s.acked;
        let again = s.read_from(0, 5).unwrap();
        assert_eq!(again[0].id, acked + 1);
        assert_eq!(s.count_after(acked).unwrap().0, 1000 - acked);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn records_kept_in_memory_come_back_as_from_disk_in_order_and_once() {
        let d = dir("unread");
        let mut s = Spool::open(&d, 1 << 26, Duration::from_millis(10)).unwrap();
        let line = |i: u64| Bytes::from(format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(200)));
        let mut want = Vec::new();
        let (mut seen, mut sent, mut n) = (Vec::new(), 0u64, 0u64);
        let mut from_memory = 0;
        for round in 0..40u64 {
            // Rounds of every size: the tail fills and overflows, and now and then a line
            // appended from a slice (not kept) breaks the run.
            for _ in 0..(round * 97) % 1500 {
                n += 1;
                want.push(line(n).strip_suffix(b"\n").unwrap().to_vec());
                if n % 500 == 0 {
                    s.append(&want[want.len() - 1]).unwrap().unwrap();
                } else {
                    s.append_owned(line(n)).unwrap().unwrap();
                }
            }
            s.sync(false).unwrap();
            // Mostly keeping up; sometimes behind.
            let batch = s
                .read_from(sent, if round % 6 == 5 { 300 } else { 2000 })
                .unwrap();
            // Kept lines come back with their newline; lines read from disk without.
            from_memory += batch.iter().filter(|r| r.payload.ends_with(b"\n")).count();
            sent = batch.last().map_or(sent, |r| r.id);
            seen.extend(batch.iter().map(|r| r.line().to_vec()));
            if round % 5 == 4 {
                s.ack(sent).unwrap();
            }
            if round == 20 {
                // A reconnect: from the last acknowledged record, on disk, while the newest
                // are still kept.
                let acked = s.acked;
                let again = s.read_from(0, 100).unwrap();
                assert_eq!(again.first().map(|r| r.id), Some(acked + 1));
                sent = acked;
                seen.truncate(usize::try_from(acked).unwrap());
            }
        }
        loop {
            let batch = s.read_from(sent, 500).unwrap();
            let Some(last) = batch.last() else { break };
            sent = last.id;
            seen.extend(batch.iter().map(|r| r.line().to_vec()));
        }
        assert_eq!(seen.len(), want.len());
        assert!(seen == want, "records differ or come out of order");
        assert!(s.unread.is_empty() && s.unread_bytes == 0);
        assert!(
            from_memory > 1000 && from_memory < want.len(),
            "{from_memory} of {} from memory",
            want.len()
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn records_across_read_chunks_and_longer_than_a_chunk_come_back_whole_and_in_order() {
        let d = dir("chunks");
        let mut s = Spool::open(&d, 64 << 20, Duration::from_millis(10)).unwrap();
        let mut want: Vec<Vec<u8>> = Vec::new();
        for i in 0..4000u32 {
            // Sizes that do not divide the chunk; one record longer than a chunk.
            let len = if i == 1234 {
                READ_CHUNK + 4321
            } else {
                100 + (i as usize * 37) % 500
            };
            let p: Vec<u8> = (0..len)
                .map(|k| b'a' + ((k + i as usize) % 26) as u8)
                .collect();
            s.append(&p).unwrap().unwrap();
            want.push(p);
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut after = 0;
        loop {
            let batch = s.read_from(after, 333).unwrap();
            let Some(last) = batch.last() else { break };
            after = last.id;
            got.extend(batch.into_iter().map(|r| r.payload.to_vec()));
        }
        assert_eq!(got.len(), want.len());
        assert!(got == want, "payloads differ");
        // From the start again (no cursor): the same.
        s.cursor = None;
        assert_eq!(s.read_from(0, 10_000).unwrap().len(), 4000);
        drop(s);
        fs::remove_dir_all(&d).unwrap();
    }
}
