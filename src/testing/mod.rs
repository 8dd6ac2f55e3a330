//! Test support, compiled only into tests (`cfg(test)`) and into builds with
//! the `test-support` feature (the integration tests and the examples): the
//! recording fakes of the kernel's tables and sets and of this host's
//! connections, and the log generator. The release binary carries none of it.

pub mod conns;
pub mod fake;
pub mod loggen;
