//! Context stage: kernel events → stream events with their process context. The process table
//! (`proctable`: identity, exe, argv, cwd, fds), path resolution (`paths`), DNS parsing and TCP
//! reassembly (`dns`), and package attribution (`enrich`).

pub mod cgroups;
pub mod dns;
pub mod enrich;
pub mod paths;
pub mod process;
pub mod proctable;
pub mod sockets;
