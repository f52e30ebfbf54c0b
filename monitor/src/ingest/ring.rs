//! The kernel's event ring (BPF_MAP_TYPE_RINGBUF), read with its data pages mapped once.
//!
//! The kernel lays a ring's data pages out twice in a row, so that a consumer mapping both
//! copies reads a record crossing the end as one piece (libbpf and aya map both). Every page of
//! such a mapping is present from the start, so a process's resident memory counts the ring
//! twice: 16 MB for the default 8 MiB ring, half of buildwatch's RSS. Here the data is mapped
//! once, and the one record in each lap of the ring that crosses the end is copied out of its
//! two pieces.
//!
//! The protocol is the kernel's (`kernel/bpf/ringbuf.c`), as libbpf reads it: a consumer
//! position (the first page, writable), a producer position (the next page), then the data.
//! Each record starts with an 8-byte header at an 8-byte boundary: its length in the low 30
//! bits, BUSY (still being written) and DISCARD bits above, then the record, padded to 8 bytes.
//! A header never crosses the end (the size is a multiple of the page size); a record can.

use std::{
    os::fd::{AsFd, AsRawFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicUsize, Ordering, fence},
};

use aya::maps::MapData;

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HEADER: usize = 8;

/// A shared mapping of a map's pages, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize, prot: i32, offset: usize) -> std::io::Result<Self> {
        // SAFETY: a fresh mapping of `len` bytes of the map's fd, at an address the kernel
        // chooses; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| std::io::Error::other("mmap gave null"))?;
        Ok(Self { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The event ring, mapped for reading. Records are handed to a callback while they are still
/// in the ring (the kernel cannot reuse their space until the consumer position moves past).
pub struct EventRing {
    map: MapData,
    consumer: Mapping,
    /// The producer's page, then the data once.
    producer: Mapping,
    page: usize,
    size: usize,
    /// Where the next record starts (a position that only grows; `& (size - 1)` in the data).
    pos: usize,
    /// The producer position last read.
    produced: usize,
    /// Records were consumed since the producer position was last read.
    consumed: bool,
    /// A record that crosses the end, put together.
    joined: Vec<u8>,
    /// A corrupt header was met (said once).
    corrupt: bool,
}

// SAFETY: the mappings are owned and used by one thread at a time (`&mut self` for reading);
// the positions shared with the kernel are accessed atomically.
unsafe impl Send for EventRing {}

impl EventRing {
    pub fn new(map: MapData) -> std::io::Result<Self> {
        let size = map
            .info()
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .max_entries() as usize;
        if !size.is_power_of_two() || size < HEADER {
            return Err(std::io::Error::other(format!(
                "ring size {size} is not a power of two"
            )));
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096);
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page + size, libc::PROT_READ, page)?;
        let mut ring = Self {
            map,
            consumer,
            producer,
            page,
            size,
            pos: 0,
            produced: 0,
            consumed: false,
            joined: Vec::new(),
            corrupt: false,
        };
        ring.pos = ring.consumer_pos().load(Ordering::Acquire);
        ring.produced = ring.producer_pos().load(Ordering::Acquire);
        Ok(ring)
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the first word of the consumer page, page-aligned, mapped while self lives.
        unsafe { self.consumer.ptr.cast::<AtomicUsize>().as_ref() }
    }

    fn producer_pos(&self) -> &AtomicUsize {
        // SAFETY: the first word of the producer page, page-aligned, mapped while self lives.
        unsafe { self.producer.ptr.cast::<AtomicUsize>().as_ref() }
    }

    /// Hand the next record to `f`; false when there is none (yet).
    pub fn next_with(&mut self, f: &mut dyn FnMut(&[u8])) -> bool {
        loop {
            if self.pos == self.produced {
                if self.consumed {
                    // As aya does: order the consumer position's store before the producer
                    // position's load, so the kernel's wake-up decision sees it.
                    fence(Ordering::SeqCst);
                    self.consumed = false;
                }
                self.produced = self.producer_pos().load(Ordering::Acquire);
                if self.pos == self.produced {
                    return false;
                }
            }
            // SAFETY: the data is `size` bytes after the producer page, mapped while self
            // lives; the kernel writes it concurrently, which `read` reads only through the
            // header's acquire load and then the bytes the header covers.
            let data = unsafe { self.producer.ptr.as_ptr().add(self.page) };
            let step = unsafe { read(data, self.size, self.pos, &mut self.joined, f) };
            match step {
                Step::Busy => return false,
                Step::Corrupt => {
                    if !self.corrupt {
                        self.corrupt = true;
                        tracing::error!(
                            "the kernel's event ring holds a record header no record could \
                             have, at position {}: reading stops (what follows counts as lost)",
                            self.pos
                        );
                    }
                    return false;
                }
                Step::Skipped(n) => self.advance(n),
                Step::Read(n) => {
                    self.advance(n);
                    return true;
                }
            }
        }
    }

    fn advance(&mut self, n: usize) {
        self.pos = self.pos.wrapping_add(n);
        self.consumer_pos().store(self.pos, Ordering::Release);
        self.consumed = true;
    }
}

impl AsRawFd for EventRing {
    fn as_raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The record at the position is still being written.
    Busy,
    /// A discarded record of this many bytes, header and padding included: passed over.
    Skipped(usize),
    /// A header no record of this ring could have: reading stops here for good. The kernel
    /// then counts every record it cannot write as lost, so the run fails loudly instead of
    /// reading garbage.
    Corrupt,
    /// A record handed to the callback; this many bytes.
    Read(usize),
}

/// Read the record at `pos` of a ring whose `size` bytes of data (a power of two, mapped once)
/// start at `data`: hand it to `f` in one piece, joined in `joined` if it crosses the end.
///
/// # Safety
/// `data` points to `size` readable bytes, 8-byte aligned, and `pos` is a record's start (a
/// multiple of 8) below the producer position.
unsafe fn read(
    data: *const u8,
    size: usize,
    pos: usize,
    joined: &mut Vec<u8>,
    f: &mut dyn FnMut(&[u8]),
) -> Step {
    let mask = size - 1;
    let at = pos & mask;
    // SAFETY: `at` is 8-aligned and at least 8 bytes before the end (size is a multiple of 8).
    let header =
        unsafe { AtomicU32::from_ptr(data.add(at).cast_mut().cast()) }.load(Ordering::Acquire);
    if header & BUSY != 0 {
        return Step::Busy;
    }
    let len = (header & !(BUSY | DISCARD)) as usize;
    let total = (HEADER + len).next_multiple_of(8);
    if len > size - HEADER {
        return Step::Corrupt;
    }
    if header & DISCARD != 0 {
        return Step::Skipped(total);
    }
    let start = (at + HEADER) & mask;
    if start + len <= size {
        // SAFETY: within the data, and the kernel does not touch a committed record until
        // the consumer position passes it.
        f(unsafe { std::slice::from_raw_parts(data.add(start), len) });
    } else {
        let first = size - start;
        joined.clear();
        // SAFETY: the two pieces, both within the data.
        unsafe {
            joined.extend_from_slice(std::slice::from_raw_parts(data.add(start), first));
            joined.extend_from_slice(std::slice::from_raw_parts(data, len - first));
        }
        f(joined);
        // A huge record does not keep its buffer.
        if joined.capacity() > 1 << 16 {
            *joined = Vec::new();
        }
    }
    Step::Read(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring's data in memory (u64s: 8-byte aligned), with records written the kernel's way.
    struct Fake {
        words: Vec<u64>,
        size: usize,
        head: usize,
    }

    impl Fake {
        fn new(size: usize) -> Self {
            Self {
                words: vec![0; size / 8],
                size,
                head: 0,
            }
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the u64s' bytes.
            unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.size) }
        }

        /// Write a record at the head with header flags `flags`; its start.
        fn push(&mut self, rec: &[u8], flags: u32) -> usize {
            let (size, at) = (self.size, self.head);
            let b = self.bytes();
            let header = (rec.len() as u32 | flags).to_ne_bytes();
            b[at % size..at % size + 4].copy_from_slice(&header);
            for (i, &c) in rec.iter().enumerate() {
                b[(at + HEADER + i) % size] = c;
            }
            self.head += (HEADER + rec.len()).next_multiple_of(8);
            at
        }

        fn read(&mut self, pos: usize) -> (Step, Option<Vec<u8>>) {
            let mut got = None;
            let mut joined = Vec::new();
            let step = unsafe {
                read(
                    self.words.as_ptr().cast(),
                    self.size,
                    pos,
                    &mut joined,
                    &mut |r| got = Some(r.to_vec()),
                )
            };
            (step, got)
        }
    }

    #[test]
    fn records_are_read_whole_including_the_one_across_the_end() {
        let mut ring = Fake::new(64);
        // 8 + 20 → 32 bytes; then one at 32 that runs to 8 + 30 → 40 bytes: past 64.
        let a = ring.push(&[1; 20], 0);
        assert_eq!(ring.read(a), (Step::Read(32), Some(vec![1; 20])));
        let b = ring.push(&(0..30).collect::<Vec<u8>>(), 0);
        assert_eq!(
            ring.read(b),
            (Step::Read(40), Some((0..30).collect::<Vec<u8>>()))
        );
        // Positions keep growing past the size; the next record starts at 72 (8 in the data).
        let c = ring.push(&[7; 3], 0);
        assert_eq!(c, 72);
        assert_eq!(ring.read(c), (Step::Read(16), Some(vec![7; 3])));
    }

    #[test]
    fn busy_records_stop_and_discarded_ones_are_passed_over() {
        let mut ring = Fake::new(64);
        let a = ring.push(&[1; 5], BUSY);
        assert_eq!(ring.read(a), (Step::Busy, None));
        let b = ring.push(&[2; 5], DISCARD);
        assert_eq!(ring.read(b), (Step::Skipped(16), None));
        // A length no ring of this size could hold is not read past the data.
        let c = ring.push(&[], 0);
        ring.bytes()[c % 64..c % 64 + 4].copy_from_slice(&57u32.to_ne_bytes());
        assert_eq!(ring.read(c), (Step::Corrupt, None));
        ring.bytes()[c % 64..c % 64 + 4].copy_from_slice(&56u32.to_ne_bytes());
        assert!(matches!(ring.read(c), (Step::Read(64), Some(r)) if r.len() == 56));
    }

    #[test]
    fn a_record_that_starts_exactly_at_the_end_is_read_from_the_start() {
        let mut ring = Fake::new(64);
        ring.push(&[0; 48], 0); // 56 bytes: the next header at 56, its record at 64 → 0.
        let b = ring.push(&[9; 8], 0);
        assert_eq!(b, 56);
        assert_eq!(ring.read(b), (Step::Read(16), Some(vec![9; 8])));
    }
}
