//! DNS over TCP: each message is preceded by a 2-byte length (RFC 1035 4.2.2) and may span
//! segments, or share one. Reassembly is per direction of a connection, bounded in memory.

use std::{collections::HashMap, net::SocketAddr};

/// Connections with a partial message held at once; more and the oldest state is dropped.
const MAX_FLOWS: usize = 4096;
/// A DNS message is at most 65535 bytes plus its prefix.
const MAX_BUFFER: usize = 65537;

#[derive(Default)]
struct Flow {
    /// Sequence number the next in-order segment starts at.
    next_seq: u32,
    buf: Vec<u8>,
}

/// What a segment gave: complete messages, and whether data had to be thrown away.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub messages: Vec<Vec<u8>>,
    /// A gap (lost or cut segment) or an overflow discarded a partial message.
    pub discarded: bool,
}

#[derive(Default)]
pub struct Reassembler {
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
}

impl Reassembler {
    /// Feed one segment of `src → dst` starting at sequence `seq`. `complete` is false when the
    /// kernel cut the payload.
    pub fn push(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        payload: &[u8],
        complete: bool,
    ) -> Segment {
        let mut out = Segment::default();
        let key = (src, dst);
        let mut flow = match self.flows.remove(&key) {
            Some(f) if f.next_seq == seq => f,
            Some(f) if (f.next_seq.wrapping_sub(seq) as i32) > 0 => {
                // A retransmission of data already taken: nothing new.
                self.flows.insert(key, f);
                return out;
            }
            Some(_) => {
                out.discarded = true;
                Flow::default()
            }
            None => Flow::default(),
        };
        if !complete {
            out.discarded = true;
            return out;
        }
        flow.buf.extend_from_slice(payload);
        flow.next_seq = seq.wrapping_add(payload.len() as u32);
        while let Some(len) = flow
            .buf
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            && flow.buf.len() >= 2 + len
        {
            out.messages.push(flow.buf[2..2 + len].to_vec());
            flow.buf.drain(..2 + len);
        }
        if flow.buf.len() > MAX_BUFFER {
            out.discarded = true;
            return out;
        }
        if !flow.buf.is_empty() {
            if self.flows.len() >= MAX_FLOWS {
                self.flows.clear();
                out.discarded = true;
            }
            self.flows.insert(key, flow);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    #[test]
    fn split_and_joined_messages() {
        let (a, b) = (addr("127.0.0.1:4000"), addr("127.0.0.1:53"));
        let mut r = Reassembler::default();
        let mut stream = framed(b"first message");
        stream.extend(framed(b"second"));
        // Byte by byte: each message comes out once, when complete.
        let mut got = Vec::new();
        for (i, byte) in stream.iter().enumerate() {
            let s = r.push(a, b, 100 + i as u32, &[*byte], true);
            assert!(!s.discarded);
            got.extend(s.messages);
        }
        assert_eq!(got, vec![b"first message".to_vec(), b"second".to_vec()]);
        // Both in one segment.
        let s = r.push(a, b, 9000, &stream, true);
        assert_eq!(s.messages.len(), 2);
    }

    #[test]
    fn retransmissions_and_gaps() {
        let (a, b) = (addr("[::1]:4000"), addr("[::1]:53"));
        let mut r = Reassembler::default();
        let f = framed(b"0123456789");
        assert!(r.push(a, b, 1, &f[..5], true).messages.is_empty());
        // The same bytes again: ignored.
        assert_eq!(r.push(a, b, 1, &f[..5], true), Segment::default());
        // A gap: the partial message is discarded and reported.
        let s = r.push(a, b, 50, &framed(b"x"), true);
        assert!(s.discarded);
        assert_eq!(s.messages, vec![b"x".to_vec()]);
        // A cut segment cannot be reassembled.
        assert!(r.push(a, b, 500, &f, false).discarded);
    }
}
