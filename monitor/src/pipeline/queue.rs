//! The bounded queue between two stages. Each item has a weight (bytes of a record chunk, one
//! for a record) and the queue holds at most `capacity` weight. A producer that must never wait
//! uses [`Queue::try_push`]: a full queue refuses the item and counts it as dropped. A producer
//! for which loss would be worse than waiting uses [`Queue::push_wait`] (back-pressure, bounded
//! by a deadline) or [`Queue::push_control`] (a few control records that must get through,
//! allowed past the capacity). Depth, peak depth and drops are kept for `run_end`.

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::event::QueueStats;

struct State<T> {
    items: VecDeque<(T, u64)>,
    weight: u64,
    closed: bool,
    stats: QueueStats,
    /// Threads waiting in `pop` and in `push_wait`: a condvar is signalled only when someone
    /// waits (a signal is a syscall; most pushes and pops find the other side busy).
    consumers_waiting: u32,
    producers_waiting: u32,
}

pub struct Queue<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item arrives or the queue closes.
    filled: Condvar,
    /// Signalled when an item leaves.
    drained: Condvar,
    capacity: u64,
}

/// What [`Queue::pop`] got.
pub enum Pop<T> {
    Item(T),
    /// Nothing arrived before the timeout.
    Empty,
    /// Closed and empty: nothing more will come.
    Closed,
}

impl<T> Queue<T> {
    pub fn new(name: &str, unit: &str, capacity: u64) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                weight: 0,
                closed: false,
                consumers_waiting: 0,
                producers_waiting: 0,
                stats: QueueStats {
                    name: name.into(),
                    unit: unit.into(),
                    capacity,
                    ..QueueStats::default()
                },
            }),
            filled: Condvar::new(),
            drained: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking holder cannot leave the queue inconsistent (every update is a few
        // assignments): keep going with its data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fits(&self, s: &State<T>, weight: u64) -> bool {
        // An item heavier than the whole queue still goes through an empty queue.
        s.items.is_empty() || s.weight + weight <= self.capacity
    }

    fn accept(&self, mut s: MutexGuard<'_, State<T>>, item: T, weight: u64) {
        s.items.push_back((item, weight));
        s.weight += weight;
        s.stats.pushed += 1;
        s.stats.max_depth = s.stats.max_depth.max(s.weight);
        let wake = s.consumers_waiting > 0;
        drop(s);
        if wake {
            self.filled.notify_one();
        }
    }

    fn refuse(s: &mut State<T>, weight: u64) {
        s.stats.dropped += 1;
        s.stats.dropped_weight += weight;
    }

    /// Queue the item if it fits, else count it as dropped. Never waits.
    pub fn try_push(&self, item: T, weight: u64) -> bool {
        let mut s = self.lock();
        if s.closed || !self.fits(&s, weight) {
            Self::refuse(&mut s, weight);
            return false;
        }
        self.accept(s, item, weight);
        true
    }

    /// Queue the item if it fits; otherwise hand it back (not counted: the producer keeps it).
    pub fn offer(&self, item: T, weight: u64) -> Result<(), T> {
        let s = self.lock();
        if s.closed || !self.fits(&s, weight) {
            return Err(item);
        }
        self.accept(s, item, weight);
        Ok(())
    }

    /// Queue the item, waiting for room until `deadline`; counted as dropped if there is none.
    pub fn push_wait(&self, item: T, weight: u64, deadline: Instant) -> bool {
        let mut s = self.lock();
        loop {
            if s.closed {
                Self::refuse(&mut s, weight);
                return false;
            }
            if self.fits(&s, weight) {
                self.accept(s, item, weight);
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                Self::refuse(&mut s, weight);
                return false;
            }
            s.producers_waiting += 1;
            s = self
                .drained
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            s.producers_waiting -= 1;
        }
    }

    /// Queue a control item past the capacity (its producer sends a handful per run).
    pub fn push_control(&self, item: T) -> bool {
        let mut s = self.lock();
        if s.closed {
            Self::refuse(&mut s, 0);
            return false;
        }
        self.accept(s, item, 0);
        true
    }

    /// The lock, once an item is queued (waiting at most `timeout`); or why there is none:
    /// `Pop::Closed` (closed and empty) or `Pop::Empty` (the timeout).
    fn wait_items(&self, timeout: Duration) -> Result<MutexGuard<'_, State<T>>, Pop<()>> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if !s.items.is_empty() {
                return Ok(s);
            }
            if s.closed {
                return Err(Pop::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Pop::Empty);
            }
            s.consumers_waiting += 1;
            s = self
                .filled
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            s.consumers_waiting -= 1;
        }
    }

    /// Items were taken: wake a producer waiting for room, if one is.
    fn taken(&self, s: MutexGuard<'_, State<T>>) {
        let wake = s.producers_waiting > 0;
        drop(s);
        if wake {
            self.drained.notify_all();
        }
    }

    /// The next item, waiting at most `timeout`.
    pub fn pop(&self, timeout: Duration) -> Pop<T> {
        match self.wait_items(timeout) {
            Ok(mut s) => {
                let Some((item, w)) = s.items.pop_front() else {
                    return Pop::Empty;
                };
                s.weight -= w;
                self.taken(s);
                Pop::Item(item)
            }
            Err(Pop::Closed) => Pop::Closed,
            Err(_) => Pop::Empty,
        }
    }

    /// Up to `max` items at once (one lock for all of them), waiting at most `timeout` for
    /// the first. `Pop::Item(n)`: `n` items were appended to `out`.
    pub fn pop_many(&self, timeout: Duration, max: usize, out: &mut Vec<T>) -> Pop<usize> {
        match self.wait_items(timeout) {
            Ok(mut s) => {
                let n = s.items.len().min(max);
                let st = &mut *s;
                for (item, w) in st.items.drain(..n) {
                    st.weight -= w;
                    out.push(item);
                }
                self.taken(s);
                Pop::Item(n)
            }
            Err(Pop::Closed) => Pop::Closed,
            Err(_) => Pop::Empty,
        }
    }

    /// No more items will be accepted; the consumer still gets those queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.filled.notify_all();
        self.drained.notify_all();
    }

    /// Close and throw away what is queued, counting it as dropped (a consumer that gave up).
    pub fn abandon(&self) -> u64 {
        let mut s = self.lock();
        s.closed = true;
        let mut n = 0;
        while let Some((_, w)) = s.items.pop_front() {
            s.weight -= w;
            Self::refuse(&mut s, w);
            n += 1;
        }
        drop(s);
        self.drained.notify_all();
        n
    }

    /// Whether an item of `weight` would be refused now (lets a producer skip the work of
    /// making an item that cannot be queued; counted as dropped like a refused push).
    pub fn refuses(&self, weight: u64) -> bool {
        let mut s = self.lock();
        let refused = s.closed || !self.fits(&s, weight);
        if refused {
            Self::refuse(&mut s, weight);
        }
        refused
    }

    /// Weight queued now.
    pub fn depth(&self) -> u64 {
        self.lock().weight
    }

    pub fn stats(&self) -> QueueStats {
        let s = self.lock();
        QueueStats {
            depth: s.weight,
            ..s.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, thread};

    use super::*;

    #[test]
    fn full_queue_drops_and_counts() {
        let q = Queue::new("t", "bytes", 10);
        assert!(q.try_push(1, 6));
        assert!(q.try_push(2, 4));
        assert!(!q.try_push(3, 1), "full");
        let s = q.stats();
        assert_eq!(
            (s.depth, s.max_depth, s.pushed, s.dropped, s.dropped_weight),
            (10, 10, 2, 1, 1)
        );
        assert!(matches!(q.pop(Duration::ZERO), Pop::Item(1)));
        assert!(q.try_push(4, 6));
        // Control items pass a full queue.
        assert!(q.push_control(5));
        q.close();
        assert!(!q.try_push(6, 1), "closed");
        let got: Vec<i32> = std::iter::from_fn(|| match q.pop(Duration::ZERO) {
            Pop::Item(i) => Some(i),
            _ => None,
        })
        .collect();
        assert_eq!(got, [2, 4, 5]);
        assert!(matches!(q.pop(Duration::ZERO), Pop::Closed));
    }

    #[test]
    fn heavy_item_passes_an_empty_queue() {
        let q = Queue::new("t", "bytes", 4);
        assert!(q.try_push((), 100));
        assert!(!q.try_push((), 1));
    }

    #[test]
    fn push_wait_waits_for_room_then_gives_up() {
        let q = Arc::new(Queue::new("t", "records", 1));
        assert!(q.try_push(0, 1));
        let consumer = {
            let q = q.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                matches!(q.pop(Duration::from_secs(5)), Pop::Item(0))
            })
        };
        assert!(q.push_wait(1, 1, Instant::now() + Duration::from_secs(5)));
        assert!(consumer.join().unwrap());
        assert!(!q.push_wait(2, 1, Instant::now() + Duration::from_millis(20)));
        assert_eq!(q.stats().dropped, 1);
        assert_eq!(q.abandon(), 1);
        assert_eq!(q.stats().dropped, 2);
    }

    #[test]
    fn pop_times_out_when_empty() {
        let q: Queue<u8> = Queue::new("t", "records", 1);
        assert!(matches!(q.pop(Duration::from_millis(5)), Pop::Empty));
    }
}
