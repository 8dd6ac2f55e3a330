//! fwctl: a host firewall toolkit. The modules split into a pure core (config,
//! ruleset rendering, parsing) that takes data in and returns decisions, and
//! thin adapters (backend, lock, confirm) that touch the kernel and filesystem.

pub mod apply;
pub mod backend;
pub mod ban;
pub mod capture;
pub mod commands;
pub mod config;
pub mod confirm;
pub mod doctor;
pub mod host;
pub mod ipset;
pub mod lock;
pub mod loggen;
pub mod logline;
pub mod names;
pub mod ruleset;
pub mod scan;
pub mod state;
pub mod status;
