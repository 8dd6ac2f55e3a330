//! Capture's core (pure): frames in, probes, scans and ban decisions out.
//! `packet` parses frames, `table` bounds what is tracked, `detect` is the
//! detector, `bpf` the kernel filter as data, `engine` ties one frame to its
//! decisions, and `events` is what capture reports.

pub mod bpf;
pub mod detect;
pub mod engine;
pub mod events;
pub mod flood;
pub mod packet;
pub mod signature;
pub mod table;
