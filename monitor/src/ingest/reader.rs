//! Drains the ring buffer. The kernel side wakes us only once 64 KiB are pending, so the reader
//! also polls on a short timer; both paths end in [`EventReader::drain`].

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

/// How often pending events are collected when the kernel did not wake us.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl EventReader {
    pub fn new(ring: RingBuf<MapData>) -> std::io::Result<Self> {
        // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, until it is dropped
        // together with this AsyncFd.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(std::io::Error::from)?;
        Ok(Self { ring })
    }

    /// Wait until the kernel signals data or the poll interval passes.
    pub async fn wait(&self) {
        tokio::select! {
            guard = self.ring.readable() => {
                if let Ok(mut g) = guard {
                    g.clear_ready();
                }
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }

    /// Hand every pending record to `f`; returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        n
    }
}
