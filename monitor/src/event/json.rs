//! An event's JSON line, written directly: the envelope and the `open` kind field by field,
//! every other kind through serde. The bytes are exactly serde_json's for the same event (the
//! unit tests compare them, and debug builds compare every event they write), so
//! docs/events.md stays the one schema.
//!
//! Why: serde_json escapes every key and value a byte at a time and writes each piece with
//! its own copy. For the agent forwarding an open event, that was 18% of its CPU; here keys
//! are literals and a string is copied whole unless it has something to escape.

use super::{Detail, Event, Open};

/// Append `ev` as one JSON object (no newline).
pub fn write(ev: &Event, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"schema\":");
    uint(out, ev.schema.into());
    out.extend_from_slice(b",\"seq\":");
    uint(out, ev.seq);
    out.extend_from_slice(b",\"time\":");
    string(out, &ev.time);
    out.extend_from_slice(b",\"ts_ns\":");
    uint(out, ev.ts_ns);
    out.extend_from_slice(b",\"kind\":");
    string(out, &ev.kind);
    out.extend_from_slice(b",\"pid\":");
    uint(out, ev.pid.into());
    if ev.start_ns != 0 {
        out.extend_from_slice(b",\"start_ns\":");
        uint(out, ev.start_ns);
    }
    out.extend_from_slice(b",\"tid\":");
    uint(out, ev.tid.into());
    if let Some(ppid) = ev.ppid {
        out.extend_from_slice(b",\"ppid\":");
        uint(out, ppid.into());
    }
    if let Some(exe) = &ev.exe {
        out.extend_from_slice(b",\"exe\":");
        string(out, exe);
    }
    if !ev.ancestry.is_empty() {
        out.extend_from_slice(b",\"ancestry\":[");
        for (i, a) in ev.ancestry.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"pid\":");
            uint(out, a.pid.into());
            if let Some(exe) = &a.exe {
                out.extend_from_slice(b",\"exe\":");
                string(out, exe);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    if let Some(cg) = &ev.cgroup {
        out.extend_from_slice(b",\"cgroup\":{\"path\":");
        string(out, &cg.path);
        out.extend_from_slice(b",\"kind\":");
        string(out, &cg.kind);
        if let Some(id) = &cg.id {
            out.extend_from_slice(b",\"id\":");
            string(out, id);
        }
        out.push(b'}');
    }
    match &ev.detail {
        Detail::Open(o) => open(out, o),
        other => {
            // `{"kind":{...}}`, spliced in as the envelope's next member (as serde's flatten
            // writes it).
            let at = out.len();
            serde_json::to_writer(&mut *out, other)?;
            match (out.get(at), out.last()) {
                (Some(b'{'), Some(b'}')) if out.len() - at > 2 => {
                    out[at] = b',';
                    out.pop();
                }
                // `{}`: nothing to add.
                _ => out.truncate(at),
            }
        }
    }
    if !ev.escaped.is_empty() {
        out.extend_from_slice(b",\"escaped\":");
        strings(out, &ev.escaped);
    }
    out.push(b'}');
    Ok(())
}

fn open(out: &mut Vec<u8>, o: &Open) {
    out.extend_from_slice(b",\"open\":{\"syscall\":");
    string(out, &o.syscall);
    out.extend_from_slice(b",\"path\":");
    string(out, &o.path);
    if let Some(r) = &o.requested {
        out.extend_from_slice(b",\"requested\":");
        string(out, r);
    }
    if let Some(t) = &o.target {
        out.extend_from_slice(b",\"target\":");
        string(out, t);
    }
    out.extend_from_slice(b",\"flags\":");
    strings(out, &o.flags);
    out.extend_from_slice(b",\"flags_raw\":");
    uint(out, o.flags_raw.into());
    if let Some(mode) = o.mode {
        out.extend_from_slice(b",\"mode\":");
        uint(out, mode.into());
    }
    for (set, name) in [
        (o.path_truncated, &b",\"path_truncated\":true"[..]),
        (o.unresolved, b",\"unresolved\":true"),
        (o.read_failed, b",\"read_failed\":true"),
        (o.cgroup_outside, b",\"cgroup_outside\":true"),
        (o.killed, b",\"killed\":true"),
        (o.result_unknown, b",\"result_unknown\":true"),
    ] {
        if set {
            out.extend_from_slice(name);
        }
    }
    out.extend_from_slice(b",\"ret\":");
    out.extend_from_slice(itoa::Buffer::new().format(o.outcome.ret).as_bytes());
    if let Some(e) = &o.outcome.error {
        out.extend_from_slice(b",\"error\":");
        string(out, e);
    }
    out.push(b'}');
}

/// A JSON array of strings.
fn strings<S: AsRef<str>>(out: &mut Vec<u8>, items: &[S]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s.as_ref());
    }
    out.push(b']');
}

fn uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `s` as a JSON string, escaped as serde_json escapes it: `"`, `\` and the control
/// characters (`\b \t \n \f \r`, the rest as `\u00XX` in lower-case hex); nothing else.
pub fn string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    if !needs_escape(b) {
        out.extend_from_slice(b);
    } else {
        let mut start = 0;
        for (i, &c) in b.iter().enumerate() {
            let esc: &[u8] = match c {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                0x08 => b"\\b",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                0x0c => b"\\f",
                b'\r' => b"\\r",
                0..0x20 => &[],
                _ => continue,
            };
            out.extend_from_slice(&b[start..i]);
            if esc.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 0xf)]);
            } else {
                out.extend_from_slice(esc);
            }
            start = i + 1;
        }
        out.extend_from_slice(&b[start..]);
    }
    out.push(b'"');
}

/// Whether `b` has a byte JSON escapes: eight bytes at a time (most strings are short, and
/// have none).
fn needs_escape(b: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // A high bit for each byte below `n` (n <= 0x80), and for each zero byte: exact as a
    // whole (a borrow only marks bytes above a byte that matched).
    let below = |x: u64, n: u64| x.wrapping_sub(LO * n) & !x & HI;
    let (words, rest) = b.as_chunks::<8>();
    let mut found = 0u64;
    for w in words {
        let x = u64::from_le_bytes(*w);
        found |= below(x, 0x20) | below(x ^ (LO * 0x22), 1) | below(x ^ (LO * 0x5c), 1);
    }
    found != 0 || rest.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, sync::Arc};

    use super::*;
    use crate::event::{Ancestor, Outcome};

    fn same(ev: &Event) {
        let mut ours = Vec::new();
        write(ev, &mut ours).unwrap();
        let serde = serde_json::to_vec(ev).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&serde)
        );
    }

    fn open_event(path: &str) -> Event {
        let mut ev = crate::event::tests::sample_open(path);
        ev.ancestry.push(Ancestor { pid: 0, exe: None });
        ev
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        let every: String = (0u8..0x80).map(char::from).collect();
        for s in [
            "",
            "/etc/passwd",
            &every,
            "\"quoted\" \\ back",
            "é ü \u{2028} \u{7f} 😀",
            "\u{0}\u{1f}\n\r\t\u{8}\u{c}",
            "ends with \\",
            "\"",
        ] {
            let mut ours = Vec::new();
            string(&mut ours, s);
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn an_escape_is_found_at_any_place_in_a_word() {
        for len in 0..20 {
            for at in 0..len {
                for special in [
                    '"', '\\', '\u{0}', '\u{1f}', '\n', ' ', '!', '#', '\u{7f}', 'é',
                ] {
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'a' })
                        .collect();
                    let mut ours = Vec::new();
                    string(&mut ours, &s);
                    assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn open_events_are_written_as_serde_writes_them() {
        let mut ev = open_event("/tmp/a\"b\\c\nd");
        same(&ev);
        ev.start_ns = 0;
        ev.ppid = None;
        ev.exe = None;
        ev.ancestry.clear();
        ev.escaped = vec!["open.path".into(), "exe".into()];
        ev.cgroup = Some(Arc::new(crate::context::cgroups::CgroupInfo {
            path: "/system.slice/x.service".into(),
            kind: Cow::Borrowed("systemd-unit"),
            id: Some("x.service".into()),
        }));
        let Detail::Open(o) = &mut ev.detail else {
            unreachable!()
        };
        o.requested = Some("../a".into());
        o.target = Some("/real".into());
        o.flags = vec!["write".into(), "create".into()];
        o.mode = Some(0o644);
        o.path_truncated = true;
        o.unresolved = true;
        o.read_failed = true;
        o.cgroup_outside = true;
        o.killed = true;
        o.result_unknown = true;
        o.outcome = Outcome::from_ret(3);
        o.flags_raw = u32::MAX;
        same(&ev);
        ev.seq = u64::MAX;
        ev.ts_ns = u64::MAX;
        ev.pid = u32::MAX;
        let Detail::Open(o) = &mut ev.detail else {
            unreachable!()
        };
        o.flags.clear();
        o.outcome = Outcome::from_ret(i64::MIN);
        ev.cgroup = Some(Arc::new(crate::context::cgroups::CgroupInfo {
            path: "/".into(),
            kind: Cow::Borrowed("cgroup"),
            id: None,
        }));
        same(&ev);
    }

    #[test]
    fn other_kinds_go_through_serde_in_their_place() {
        use crate::event::{Chdir, Exit, Fork, Lost, Signal};
        for detail in [
            Detail::Fork(Fork {
                child: 11,
                clone_flags: 17,
            }),
            Detail::Exit(Exit::from_status(Some(9))),
            Detail::Chdir(Chdir {
                path: "/w/\"x\"".into(),
                outcome: Outcome::from_ret(-13),
            }),
            Detail::Signal(Signal {
                call: "kill".into(),
                target: -1,
                aimed_at: "every-process".into(),
                signal: 9,
                signal_name: Some("SIGKILL".into()),
            }),
            Detail::Lost(Lost {
                count: 3,
                sensor: None,
                reason: "ringbuf_full".into(),
            }),
        ] {
            let mut ev = open_event("/");
            ev.kind = detail.kind().into();
            ev.detail = detail;
            same(&ev);
            ev.escaped = vec!["chdir.path".into()];
            same(&ev);
        }
    }
}
