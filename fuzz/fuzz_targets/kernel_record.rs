//! Ring-buffer records: lengths inside them are checked, never trusted.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = monitor::ingest::decode::decode(data);
});
