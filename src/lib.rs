//! fwctl: a host firewall toolkit. The modules split into a pure core (config,
//! ruleset rendering, parsing) that takes data in and returns decisions, and
//! thin adapters (backend, lock, confirm) that touch the kernel and filesystem.

pub mod config;
pub mod names;
