//! Ingest stage: reads the kernel ring buffer (`reader`) and decodes its records into typed
//! kernel events (`decode`), on a thread of its own that never waits on later stages.

pub mod decode;
pub mod reader;
pub mod ring;
