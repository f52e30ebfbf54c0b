//! Library target so `monitor` can declare a build-dependency on this crate (cargo then
//! rebuilds the BPF object when it changes). The programs live in the `monitor` binary target.
#![no_std]
