//! The pure core: data and time in, decisions out. Nothing here reads a
//! file, runs a program or asks the clock; every module is tested without
//! root. Config (with its `[capture]` schema), the never-ban policy, the
//! ruleset as data and its renders, log lines, scan counting and decisions,
//! capture detection, the ban history and the state file's contents, and the
//! evaluations behind `status` and `doctor`.

pub mod aggregate;
pub mod apply;
pub mod ban;
pub mod baseline;
pub mod capture;
pub mod config;
pub mod conns;
pub mod doctor;
pub mod feeds;
pub mod fleet;
pub mod fleetroom;
pub mod fleetsig;
pub mod geo;
pub mod history;
pub mod lockout;
pub mod logline;
pub mod logs;
pub mod logsource;
pub mod metrics;
pub mod notify;
pub mod patterns;
pub mod policy;
pub mod request_walk;
pub mod ruleset;
pub mod scan;
pub mod selftest;
pub mod sets;
pub mod ssh_log;
pub mod state;
pub mod statejournal;
pub mod status;
pub mod watch;
pub mod web_log;
pub mod web_requests;
pub mod why;
