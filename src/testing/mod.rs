//! Test support, compiled only into tests (`cfg(test)`) and into builds with
//! the `test-support` feature (the integration tests and the examples): the
//! recording fake of the kernel's tables and sets, and the log generator. The
//! release binary carries none of it.

pub mod fake;
pub mod loggen;
