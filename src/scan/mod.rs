//! `fwctl scan`: read the LOG lines rsyslog writes, find the sources over a
//! threshold inside a time window, and ban them into an ipset.

pub mod count;
pub mod reader;
