//! The shape of a query name: what DNS exfiltration looks like from one name (long labels,
//! high entropy, encoded-looking labels) and from many (distinct subdomains of one registrable
//! domain, bursts of TXT/NULL/ANY queries). Thresholds come from the policy (`dns:`).

use std::collections::{HashMap, VecDeque};

/// Policy thresholds (docs/rules.md, `dns:`). Defaults were chosen against the benign names in
/// this module's tests (hashed CDN hostnames, cloud service names, SRV names) and random
/// base32: its entropy averages 4.3 bits/char over 40 characters, 4.6 over 60 and 4.8 over
/// 150, while a 45-character Kubernetes pod hostname already reaches 4.3 and a 59-character
/// load-balancer name 4.6. Entropy alone therefore needs long names; encoded-looking labels
/// and the per-domain counts carry most of the detection.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// A label this long or longer is `dns.long_label`.
    pub long_label: usize,
    /// A name this long or longer is `dns.long_name`.
    pub long_name: usize,
    /// Shannon entropy (bits per character) of the subdomain part at or above which…
    pub entropy: f64,
    /// …it is `dns.high_entropy`, when that part has at least this many characters.
    pub entropy_min_len: usize,
    /// Shortest label tested for hex/base32/base64 shapes.
    pub encoded_min_len: usize,
    /// Window for the per-domain counts, in seconds.
    pub window_secs: u64,
    /// Distinct names under one registrable domain within the window that make
    /// `dns.many_subdomains`.
    pub max_subdomains: usize,
    /// TXT/NULL/ANY queries for one registrable domain within the window that make
    /// `dns.rare_type_burst`.
    pub max_rare_queries: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            long_label: 52,
            long_name: 160,
            entropy: 4.5,
            entropy_min_len: 60,
            encoded_min_len: 36,
            window_secs: 60,
            max_subdomains: 40,
            max_rare_queries: 10,
        }
    }
}

/// What one name looks like.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// The registrable domain (public suffix + one label), lowercase.
    pub domain: String,
    /// Labels left of `domain`, lowercase, joined by dots (empty when none).
    pub subdomain: String,
    pub name_len: usize,
    pub label_max: usize,
    /// Bits per character of `subdomain` without its dots.
    pub entropy: f64,
    /// hex, base32 or base64 when a label of at least `encoded_min_len` looks like it.
    pub encoding: Option<&'static str>,
}

impl Shape {
    pub fn of(qname: &str, t: &Thresholds) -> Shape {
        let lower = qname.trim_end_matches('.').to_ascii_lowercase();
        let domain = psl::domain_str(&lower)
            .map(str::to_owned)
            .unwrap_or_else(|| lower.clone());
        let subdomain = lower
            .strip_suffix(&domain)
            .map(|s| s.trim_end_matches('.').to_owned())
            .unwrap_or_default();
        let sub_chars: String = subdomain.chars().filter(|&c| c != '.').collect();
        let labels = qname.trim_end_matches('.').split('.');
        let label_max = labels.clone().map(str::len).max().unwrap_or(0);
        let sub_labels = subdomain.split('.').count();
        // Encoded shapes are looked for in the subdomain's labels (original case: base64
        // needs it), never in the registrable domain the attacker had to register.
        let encoding = labels
            .take(if subdomain.is_empty() { 0 } else { sub_labels })
            .filter(|l| l.len() >= t.encoded_min_len)
            .find_map(encoding_of);
        Shape {
            domain,
            name_len: qname.trim_end_matches('.').len(),
            label_max,
            entropy: entropy(&sub_chars),
            subdomain,
            encoding,
        }
    }

    pub fn long_label(&self, t: &Thresholds) -> bool {
        self.label_max >= t.long_label
    }

    pub fn long_name(&self, t: &Thresholds) -> bool {
        self.name_len >= t.long_name
    }

    pub fn high_entropy(&self, t: &Thresholds) -> bool {
        let n = self.subdomain.chars().filter(|&c| c != '.').count();
        n >= t.entropy_min_len && self.entropy >= t.entropy
    }
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Does the label look like hex, base32 or base64 data?
pub fn encoding_of(label: &str) -> Option<&'static str> {
    let b = label.as_bytes();
    let count = |f: fn(&u8) -> bool| b.iter().filter(|c| f(c)).count();
    let digits = count(u8::is_ascii_digit);
    let upper = count(u8::is_ascii_uppercase);
    let lower = count(u8::is_ascii_lowercase);
    if b.iter().all(u8::is_ascii_hexdigit) && digits > 0 && digits < b.len() {
        return Some("hex");
    }
    let base32 = |c: &u8| c.is_ascii_alphabetic() || (b'2'..=b'7').contains(c) || *c == b'=';
    // One case throughout (resolvers keep case; base32 text is single-case), digits and
    // letters both present, and not a run of few symbols.
    if b.iter().all(base32)
        && (upper == 0 || lower == 0)
        && digits >= 2
        && upper + lower >= 2
        && entropy(label) >= 3.5
    {
        return Some("base32");
    }
    let base64 =
        |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_');
    if b.iter().all(base64) && upper >= 2 && lower >= 2 && digits >= 1 && entropy(label) >= 4.0 {
        return Some("base64");
    }
    None
}

/// Per registrable domain, what was queried within the window. Event time (`ts_ns`), not wall
/// time, so a replay counts exactly as the live run did.
#[derive(Default)]
pub struct Windows {
    domains: HashMap<String, Window>,
    /// Domains forgotten because [`MAX_DOMAINS`] was reached.
    pub evicted: u64,
}

#[derive(Default)]
struct Window {
    /// (time, name) in arrival order; `names` counts each name's entries here.
    seen: VecDeque<(u64, String)>,
    names: HashMap<String, u32>,
    rare: VecDeque<u64>,
}

/// Registrable domains tracked at once, and names per domain within one window.
const MAX_DOMAINS: usize = 10_000;
const MAX_NAMES: usize = 10_000;

/// The counts after a query: distinct names and rare-type queries in the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub distinct: usize,
    pub rare: usize,
}

pub fn rare_qtype(qtype: &str) -> bool {
    matches!(qtype, "TXT" | "NULL" | "ANY")
}

impl Windows {
    pub fn record(
        &mut self,
        domain: &str,
        name: &str,
        rare: bool,
        ts_ns: u64,
        t: &Thresholds,
    ) -> Counts {
        if !self.domains.contains_key(domain) && self.domains.len() >= MAX_DOMAINS {
            self.evicted += self.domains.len() as u64;
            self.domains.clear();
        }
        let w = self.domains.entry(domain.to_owned()).or_default();
        let horizon = ts_ns.saturating_sub(t.window_secs.saturating_mul(1_000_000_000));
        while w.seen.front().is_some_and(|(ts, _)| *ts < horizon) {
            let (_, old) = w.seen.pop_front().expect("checked");
            if let Some(c) = w.names.get_mut(&old) {
                *c -= 1;
                if *c == 0 {
                    w.names.remove(&old);
                }
            }
        }
        while w.rare.front().is_some_and(|ts| *ts < horizon) {
            w.rare.pop_front();
        }
        if w.seen.len() < MAX_NAMES {
            let name = name.to_ascii_lowercase();
            *w.names.entry(name.clone()).or_default() += 1;
            w.seen.push_back((ts_ns, name));
        }
        if rare && w.rare.len() < MAX_NAMES {
            w.rare.push_back(ts_ns);
        }
        Counts {
            distinct: w.names.len(),
            rare: w.rare.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names shaped like what builds resolve every day. None may raise a per-name signal.
    const BENIGN: &[&str] = &[
        "d1a2b3c4d5e6f7.cloudfront.net",
        "e1234.a.akamaiedge.net",
        "s3.us-east-1.amazonaws.com",
        "my-team-build-artifacts-prod.s3.eu-west-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com",
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6.blob.core.windows.net",
        "releases-artifacts-2e65be.s3.amazonaws.com",
        "_https._tcp.mirror.example.com",
        "_sip._udp.example.org",
        "r3---sn-5hne6nsk.googlevideo.com",
        "my-service-name.my-namespace.svc.cluster.local",
        "ip-10-0-12-34.eu-central-1.compute.internal",
        "xn--bcher-kva.example",
        "a1b2c3d4e5f6a7b8c9d0.cdn.example.com",
        "storage-account-name-westeurope-01.privatelink.blob.core.windows.net",
        "build-cache-shard-17.internal.example.com",
        "fonts.gstatic.com",
        "objects.githubusercontent.com",
        "login.microsoftonline.com",
        "sts.amazonaws.com",
        "oauth2.googleapis.com",
        "ghcr-pkg-cdn-12345.example.net",
        "k8s-ingress-nginx-controller-7d9f8b6c5d-x2x9p.example.com",
        "internal-my-service-prod-alb-1234567890.eu-west-1.elb.amazonaws.com",
    ];

    fn signals(name: &str) -> Vec<&'static str> {
        let t = Thresholds::default();
        let s = Shape::of(name, &t);
        let mut v = Vec::new();
        if s.long_label(&t) {
            v.push("long_label");
        }
        if s.long_name(&t) {
            v.push("long_name");
        }
        if s.high_entropy(&t) {
            v.push("high_entropy");
        }
        if let Some(e) = s.encoding {
            v.push(e);
        }
        v
    }

    #[test]
    fn benign_names_raise_nothing() {
        for n in BENIGN {
            assert_eq!(
                signals(n),
                Vec::<&str>::new(),
                "{n}: {:?}",
                Shape::of(n, &Thresholds::default())
            );
        }
    }

    /// RFC 4648 base32, lowercase, no padding (test helper).
    fn base32(data: &[u8]) -> String {
        const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut out = String::new();
        let (mut acc, mut bits) = (0u32, 0);
        for &b in data {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(ALPHA[((acc >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            out.push(ALPHA[((acc << (5 - bits)) & 31) as usize] as char);
        }
        out
    }

    #[test]
    fn exfiltration_shapes_are_recognised() {
        let secret = b"aws_access_key_id=AKIAIOSFODNN7EXAMPLE aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let b32 = base32(secret);
        let s = signals(&format!("{}.0.exfil.test", &b32[..60]));
        assert!(s.contains(&"long_label") && s.contains(&"base32"), "{s:?}");
        // Random-looking data over two long labels is high-entropy too.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..80)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let r = base32(&noise);
        let s = signals(&format!("{}.{}.1.exfil.test", &r[..60], &r[60..120]));
        assert!(s.contains(&"high_entropy"), "{s:?}");
        // Shorter chunks still look encoded.
        assert_eq!(encoding_of(&b32[..40]), Some("base32"));
        assert_eq!(encoding_of(&b32[..40].to_ascii_uppercase()), Some("base32"));
        assert_eq!(encoding_of(&r[..36]), Some("base32"));
        assert_eq!(
            encoding_of("4f2a9c0e1b7d3a5f6e8c9b0a1d2e3f4a5b6c7d8e"),
            Some("hex")
        );
        assert_eq!(
            encoding_of("QUtJQUlPU0ZPRE5ON0VYQU1QTEU6d0phbHJYVXRuRkVN"),
            Some("base64")
        );
        assert_eq!(encoding_of("abcdefghijklmnopqrstuvwxyzabcdefghijkl"), None);
        let shape = Shape::of("A.B.Exfil.Test.", &Thresholds::default());
        assert_eq!(
            (shape.domain.as_str(), shape.subdomain.as_str()),
            ("exfil.test", "a.b")
        );
        let shape = Shape::of("x.s3.amazonaws.com", &Thresholds::default());
        assert!(shape.domain.ends_with("amazonaws.com"));
    }

    #[test]
    fn windows_count_distinct_names_and_rare_types() {
        let t = Thresholds {
            window_secs: 10,
            ..Thresholds::default()
        };
        let mut w = Windows::default();
        let s = 1_000_000_000;
        for i in 0..5 {
            w.record("exfil.test", &format!("c{i}.exfil.test"), false, i * s, &t);
        }
        // A repeat is not a new name.
        let c = w.record("exfil.test", "C4.exfil.test", true, 5 * s, &t);
        assert_eq!(
            c,
            Counts {
                distinct: 5,
                rare: 1
            }
        );
        // 20 s later the first ones have left the window.
        let c = w.record("exfil.test", "late.exfil.test", false, 14 * s, &t);
        assert_eq!(
            c.distinct, 2,
            "only c4 (seen at 4 s and 5 s) and late remain"
        );
        assert_eq!(
            w.record("other.test", "a.other.test", false, 14 * s, &t)
                .distinct,
            1
        );
    }
}
