//! DNS messages as they arrive from the watched processes: parsed as UDP payloads, as TCP
//! segments split at an arbitrary point, as query names for the shape heuristics, and as
//! queries block mode's DNS proxy refuses (its reply must parse). None of it may panic, loop
//! or allocate without bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::{
    context::dns::{parse, tcp::Reassembler},
    detect::dns_shape as shape,
    mode::run::dns_proxy,
};

fuzz_target!(|data: &[u8]| {
    for sinkhole in [None, Some("10.200.0.1".parse().unwrap())] {
        if let Some(reply) = dns_proxy::refuse(data, sinkhole) {
            let r = parse(&reply).expect("the proxy's reply parses");
            assert!(r.response);
        }
    }
    if let Ok(m) = parse(data) {
        let t = shape::Thresholds::default();
        if let Some(q) = &m.qname {
            let s = shape::Shape::of(q, &t);
            let _ = (s.long_label(&t), s.high_entropy(&t), s.long_name(&t));
            let mut w = shape::Windows::default();
            w.record(&s.domain, q, true, 1, &t);
        }
        let _ = m.resolved().count();
    }
    // The same bytes as a TCP stream cut in two.
    let cut = data.first().map_or(0, |b| *b as usize).min(data.len());
    let (a, b) = data.split_at(cut);
    let src = "127.0.0.1:4000".parse().unwrap();
    let dst = "127.0.0.1:53".parse().unwrap();
    let mut r = Reassembler::default();
    for m in r.push(src, dst, 7, a, true).messages.into_iter().chain(
        r.push(src, dst, 7u32.wrapping_add(a.len() as u32), b, true)
            .messages,
    ) {
        let _ = parse(&m);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = shape::encoding_of(text);
        let _ = shape::Shape::of(text, &shape::Thresholds::default());
    }
});
