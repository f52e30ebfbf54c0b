//! DNS messages as buildwatch reports them. Parsing is done by the `domain` crate (NLnet Labs):
//! it keeps unknown record types and classes as numbers instead of failing, so an unusual query
//! type cannot hide a query name. Every packet comes from code buildwatch watches, so nothing
//! here trusts a length or a count: errors become a `malformed` event, never a panic.

pub mod tcp;

use std::net::IpAddr;

use domain::{
    base::{Message as Wire, ParsedName, Rtype},
    rdata::{A, Aaaa, Cname},
};

pub use crate::event::Answer;

/// Most answers kept per response (the rest are counted in `answers_dropped`).
pub const MAX_ANSWERS: usize = 32;

/// What buildwatch keeps of one DNS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    /// The TC bit: the answer did not fit and the client should retry over TCP.
    pub tc: bool,
    pub rcode: String,
    /// The first question (practically every client sends exactly one).
    pub qname: Option<String>,
    pub qtype: Option<String>,
    pub questions: u16,
    pub answers: Vec<Answer>,
    pub answers_dropped: usize,
}

impl Message {
    /// Addresses the A and AAAA answers give (at the end of any CNAME chain).
    pub fn resolved(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.answers
            .iter()
            .filter(|a| a.rtype == "A" || a.rtype == "AAAA")
            .filter_map(|a| a.data.as_deref()?.parse().ok())
    }
}

pub fn parse(payload: &[u8]) -> Result<Message, String> {
    let msg = Wire::from_octets(payload).map_err(|e| format!("short message: {e}"))?;
    let header = msg.header();
    let counts = msg.header_counts();
    let mut qname = None;
    let mut qtype = None;
    // Every question is parsed (a count that lies is an error); the first is kept.
    for q in msg.question() {
        let q = q.map_err(|e| format!("question: {e}"))?;
        if qname.is_none() {
            qname = Some(name_text(q.qname()));
            qtype = Some(rtype_text(q.qtype()));
        }
    }
    let mut answers = Vec::new();
    let mut answers_dropped = 0;
    if header.qr() {
        let section = msg.answer().map_err(|e| format!("question section: {e}"))?;
        for rr in section {
            let rr = rr.map_err(|e| format!("answer: {e}"))?;
            if answers.len() == MAX_ANSWERS {
                answers_dropped += 1;
                continue;
            }
            let rtype = rr.rtype();
            let data = if rtype == Rtype::A {
                rr.to_record::<A>()
                    .map_err(|e| format!("A record: {e}"))?
                    .map(|r| r.data().addr().to_string())
            } else if rtype == Rtype::AAAA {
                rr.to_record::<Aaaa>()
                    .map_err(|e| format!("AAAA record: {e}"))?
                    .map(|r| r.data().addr().to_string())
            } else if rtype == Rtype::CNAME {
                rr.to_record::<Cname<ParsedName<_>>>()
                    .map_err(|e| format!("CNAME record: {e}"))?
                    .map(|r| name_text(r.data().cname()))
            } else {
                None
            };
            answers.push(Answer {
                name: name_text(&rr.owner()),
                rtype: rtype_text(rtype),
                ttl: rr.ttl().as_secs(),
                data,
            });
        }
    }
    Ok(Message {
        id: header.id(),
        response: header.qr(),
        tc: header.tc(),
        rcode: header.rcode().to_string(),
        qname,
        qtype,
        questions: counts.qdcount(),
        answers,
        answers_dropped,
    })
}

/// The `nameserver` addresses of a resolv.conf (scope ids dropped); nothing when unreadable.
pub fn system_resolvers(path: &std::path::Path) -> Vec<String> {
    use std::io::Read;
    let mut text = String::new();
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    // resolv.conf is small; a huge one is read only in part.
    if f.take(64 * 1024).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    resolvers_in(&text)
}

pub fn resolvers_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            let addr = w.next()?.split('%').next()?;
            addr.parse::<IpAddr>().ok().map(|ip| ip.to_string())
        })
        .collect()
}

fn rtype_text(t: Rtype) -> String {
    t.to_mnemonic_str()
        .map_or_else(|| format!("TYPE{}", t.to_int()), str::to_owned)
}

/// A name in presentation format without the trailing dot: letters, digits, `-` and `_` as
/// they are, every other byte as `\DDD` (so a label can never smuggle a dot, a control character
/// or a terminal escape into the text). The root is `.`.
pub fn name_text<O: AsRef<[u8]> + ?Sized>(name: &ParsedName<&O>) -> String {
    let labels: Vec<&[u8]> = name
        .iter()
        .map(|l| l.as_slice())
        .filter(|l| !l.is_empty())
        .collect();
    labels_text(&labels)
}

pub fn labels_text(labels: &[&[u8]]) -> String {
    if labels.is_empty() {
        return ".".into();
    }
    let mut out = String::new();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in *label {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query built by hand: header, then QNAME as labels, QTYPE, QCLASS.
    fn query(id: u16, labels: &[&[u8]], qtype: u16) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in labels {
            m.push(l.len() as u8);
            m.extend_from_slice(l);
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn query_with_unknown_type_keeps_its_name() {
        let m = parse(&query(7, &[b"abc", b"exfil", b"test"], 65280)).unwrap();
        assert_eq!(m.id, 7);
        assert!(!m.response);
        assert_eq!(m.qname.as_deref(), Some("abc.exfil.test"));
        assert_eq!(m.qtype.as_deref(), Some("TYPE65280"));
        let m = parse(&query(8, &[b"x", b"test"], 16)).unwrap();
        assert_eq!(m.qtype.as_deref(), Some("TXT"));
    }

    #[test]
    fn hostile_labels_are_escaped() {
        let m = parse(&query(1, &[b"a.b", b"\x1b[31m", b"test"], 1)).unwrap();
        assert_eq!(m.qname.as_deref(), Some("a\\046b.\\027\\09131m.test"));
    }

    #[test]
    fn response_answers_with_cname_chain() {
        // www.example.test CNAME cdn.example.test; cdn A 10.200.0.5; cdn AAAA fd00::5
        let mut m = query(9, &[b"www", b"example", b"test"], 1);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 3; // ancount
        let name_ptr = [0xc0, 12];
        // CNAME
        m.extend_from_slice(&name_ptr);
        m.extend_from_slice(&[0, 5, 0, 1, 0, 0, 0, 60]);
        let target = b"\x03cdn\xc0\x10";
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        let cdn_at = m.len() as u8;
        m.extend_from_slice(target);
        // A
        m.extend_from_slice(&[0xc0, cdn_at]);
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 200, 0, 5]);
        // AAAA
        m.extend_from_slice(&[0xc0, cdn_at]);
        m.extend_from_slice(&[0, 28, 0, 1, 0, 0, 0, 30, 0, 16]);
        m.extend_from_slice(&"fd00::5".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let r = parse(&m).unwrap();
        assert!(r.response);
        assert_eq!(r.rcode, "NOERROR");
        assert_eq!(r.answers.len(), 3);
        assert_eq!(r.answers[0].rtype, "CNAME");
        assert_eq!(r.answers[0].data.as_deref(), Some("cdn.example.test"));
        assert_eq!(r.answers[1].name, "cdn.example.test");
        assert_eq!(r.answers[1].ttl, 30);
        let ips: Vec<IpAddr> = r.resolved().collect();
        assert_eq!(
            ips,
            vec![
                "10.200.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn resolv_conf_nameservers() {
        let conf = "# comment\nsearch x.test\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\noptions edns0\n";
        assert_eq!(resolvers_in(conf), vec!["127.0.0.53", "fe80::1"]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = query(1, &[b"abc", b"test"], 1);
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        assert!(parse(&[]).is_err());
        // A compression pointer to itself.
        let mut lp = good[..12].to_vec();
        lp.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(parse(&lp).is_err());
        // A count that lies.
        let mut lie = good.clone();
        lie[5] = 200;
        assert!(parse(&lie).is_err());
    }
}
