//! fwctl: a host firewall toolkit, in layers that each import only the ones
//! below them:
//!
//! 1. `units`: durations, timestamps, addresses, set names (a leaf);
//! 2. `core`: the pure core, data and time in, decisions out;
//! 3. `ports`: the traits the commands drive (tables and sets, banner,
//!    packet source, clock);
//! 4. `sys`: the system layer implementing them, and the one place that
//!    starts programs, makes system calls by hand or holds `unsafe`;
//! 5. `cmd`: one file per subcommand;
//! 6. `cli` and `main`: the command line.
//!
//! `testing` (fakes and generators) exists only in tests and with the
//! `test-support` feature.

pub mod cli;
pub mod cmd;
pub mod core;
pub mod ports;
pub mod sys;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod units;
