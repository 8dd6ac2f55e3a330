//! The floor under watch's CPU in benches/watch.sh: a process that does
//! nothing but sleep and wake at watch's busy pace (one `poll` with a
//! timeout a wake-up, as watch sleeps), measured like the tools beside it.
//! On a VM a wake-up from an idle CPU costs tens of microseconds of the
//! woken task's CPU time whatever it then does; this row says how much of
//! watch's CPU per line that is, at each rate.
//!
//!   cargo run --release --example wakes -- --every-ms 45 --secs 20

use std::time::{Duration, Instant};

fn main() {
    let mut every = 45u64;
    let mut secs = 20u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), v) {
            ("--every-ms", Some(v)) => every = v,
            ("--secs", Some(v)) => secs = v,
            _ => {
                eprintln!("usage: wakes [--every-ms 45] [--secs 20]");
                std::process::exit(2);
            }
        }
    }
    let end = Instant::now() + Duration::from_secs(secs);
    let mut wakes = 0u64;
    while Instant::now() < end {
        // SAFETY: no descriptors (a null array of length 0), a timeout only.
        unsafe { libc::poll(std::ptr::null_mut(), 0, every as i32) };
        wakes += 1;
    }
    println!("{wakes}");
}
