//! A live sshd auth.log stream for benches/watch.sh: appends lines to a file
//! at a steady rate (in batches every --batch-ms), mostly lines that never
//! count (logins, sessions, cron, sudo), plus attackers whose failures cross
//! the threshold (the (howmany+1)-th within the window) at known moments and
//! decoys that send exactly howmany failures (never to be banned):
//!
//!   cargo run --release --example watchgen -- --rate 100000 --secs 20 \
//!       --out /dev/shm/auth.log --record /dev/shm/record.txt
//!
//! The record file says, for each attacker, the wall time (ns since the
//! epoch) right after the write() that held its crossing line returned:
//! `cross ADDR NS`; then `decoy ADDR` lines and a summary line `lines N bytes
//! B secs S late_ms L` (L: the longest any line waited from its due time
//! to the end of its write: a generator that cannot keep up says so there).
//!
//! Stamps are RFC 3339 with microseconds and the wall time of the batch, as
//! rsyslog writes them. --shape long gives user names of 200 characters
//! (lines of 120 to 325 bytes, 275 on average): the cost of a line is
//! then more its bytes than its count. --shape swarm: every other line is a
//! failure from an address of its own (2001:db8:4::/48, never twice: a
//! botnet's spread guessing, each source far under the threshold), the
//! rest short benign lines: each tool counts every second line.

use clap::Parser;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    /// Lines per second.
    #[arg(long)]
    rate: u64,
    /// How long the stream lasts, in seconds (at least 3).
    #[arg(long)]
    secs: f64,
    /// The log (appended to; created when missing).
    #[arg(long)]
    out: PathBuf,
    /// Where the crossing times, decoys and summary go.
    #[arg(long)]
    record: PathBuf,
    /// Attackers (1 to 150; a third each 203.0.113.x, 198.51.100.x, 2001:db8:0:1::x).
    #[arg(long, default_value_t = 48)]
    attackers: usize,
    /// Decoys: exactly --howmany failures each (0 to 90).
    #[arg(long, default_value_t = 24)]
    decoys: usize,
    /// The watch rule's howmany: an attacker's (howmany+1)-th failure crosses it.
    #[arg(long, default_value_t = 5)]
    howmany: usize,
    /// short (sshd's own line lengths, about 110 bytes), long (about 300
    /// bytes) or swarm (short, half of them failures of one-time sources).
    #[arg(long, default_value = "short")]
    shape: String,
    /// Milliseconds between writes.
    #[arg(long, default_value_t = 1)]
    batch_ms: u64,
}

const HOST: &str = "web-1";
/// Benign line bodies built before the clock starts, cycled through.
const POOL: usize = 4096;
/// An attacker's failures come this far apart; it keeps going for AFTER more
/// after crossing (a guesser does not stop on its own).
const STEP: f64 = 0.2;
const AFTER: usize = 2;

/// A tiny deterministic generator (xorshift): the same stream every run.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn attacker(i: usize) -> IpAddr {
    let k = (i / 3) as u8;
    match i % 3 {
        // Clear of rules/fwctl.toml's [blacklist] (203.0.113.0/28,
        // 198.51.100.66, 198.51.100.128/25, 2001:db8:bad::/48) and [trusted].
        0 => format!("203.0.113.{}", 100 + k),
        1 => format!("198.51.100.{}", 1 + k),
        _ => format!("2001:db8:0:1::{:x}", 1 + k),
    }
    .parse()
    .expect("a literal address")
}

fn decoy(i: usize) -> IpAddr {
    let k = (i / 3) as u8;
    match i % 3 {
        0 => format!("203.0.113.{}", 200 + k),
        1 => format!("198.51.100.{}", 70 + k),
        _ => format!("2001:db8:0:2::{:x}", 1 + k),
    }
    .parse()
    .expect("a literal address")
}

/// `s` lengthened with letters to `len` bytes.
fn pad(mut s: String, len: usize) -> String {
    let mut k = 0;
    while s.len() < len {
        s.push(char::from(b'a' + (k % 26) as u8));
        k += 1;
    }
    s
}

/// A line that no sshd rule counts: after the stamp, with its newline.
/// `pid`: a pid of its own (sshd's pid is one connection's: fail2ban ties
/// the lines of one pid together, and a login on a pid that failed before
/// counts as one more failure there).
fn benign(long: bool, pid: usize, rng: &mut Rng) -> String {
    let src = match rng.below(2) {
        0 => format!("192.0.2.{}", 20 + rng.below(200)),
        _ => format!("2001:db8:0:3::{:x}", 1 + rng.below(4000)),
    };
    let port = 1024 + rng.below(60_000);
    let user = if long {
        pad(format!("svc-{}-", rng.below(1000)), 200)
    } else {
        ["deploy", "alice", "backup", "git", "monitor"][rng.below(5) as usize].to_string()
    };
    let body = match rng.below(8) {
        0 => format!("sshd[{pid}]: Accepted publickey for {user} from {src} port {port} ssh2: ED25519 SHA256:q1w2e3r4t5y6u7i8o9p0asdfghjklzxcvbnmQWERTY12"),
        1 => format!("sshd[{pid}]: pam_unix(sshd:session): session opened for user {user}(uid=1000) by (uid=0)"),
        2 => format!("sshd[{pid}]: Received disconnect from {src} port {port}:11: disconnected by user"),
        3 => format!("sshd[{pid}]: Disconnected from user {user} {src} port {port}"),
        4 => format!("sshd[{pid}]: pam_unix(sshd:session): session closed for user {user}"),
        5 => format!("CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"),
        6 => format!("systemd-logind[812]: New session {} of user {user}.", rng.below(100_000)),
        _ => format!("sudo: {user} : TTY=pts/{} ; PWD=/srv ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx", rng.below(9)),
    };
    format!(" {HOST} {body}\n")
}

/// An sshd failure from `src` (what both fwctl's sshd source and fail2ban's
/// sshd filter count once). `pid`: one no other line has.
fn failure(long: bool, src: IpAddr, pid: u64, rng: &mut Rng) -> String {
    let port = 1024 + rng.below(60_000);
    let msg = if long {
        let user = pad(format!("u{}", rng.below(1000)), 190);
        format!("Failed password for invalid user {user} from {src} port {port} ssh2")
    } else if rng.below(3) == 0 {
        format!("Failed password for invalid user admin from {src} port {port} ssh2")
    } else {
        format!("Failed password for root from {src} port {port} ssh2")
    };
    format!(" {HOST} sshd[{pid}]: {msg}\n")
}

/// rsyslog's RFC 3339 stamp with microseconds, UTC written as +00:00.
fn stamp(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_micros(t).to_string();
    format!("{}+00:00", s.trim_end_matches('Z'))
}

enum Who {
    Attacker(usize, bool),
    Decoy(usize),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    if a.rate == 0
        || a.secs.is_nan()
        || a.secs < 3.0
        || a.attackers == 0
        || a.attackers > 150
        || a.decoys > 90
    {
        return Err(
            "--rate above 0, --secs at least 3, --attackers 1 to 150, --decoys 0 to 90".into(),
        );
    }
    let (long, swarm) = match a.shape.as_str() {
        "short" => (false, false),
        "long" => (true, false),
        "swarm" => (false, true),
        s => return Err(format!("--shape {s}: short, long or swarm").into()),
    };
    let total = (a.rate as f64 * a.secs) as u64;
    let at = |t: f64| (t * a.rate as f64) as u64;
    // The schedule, as line numbers: attacker i crosses at lead + (i + 1/2)
    // spans, after howmany failures STEP apart; decoys spread evenly.
    let lead = a.howmany as f64 * STEP;
    let span = (a.secs - lead - (AFTER as f64 + 1.0) * STEP) / a.attackers as f64;
    let mut events: Vec<(u64, Who)> = Vec::new();
    for i in 0..a.attackers {
        let c = lead + (i as f64 + 0.5) * span;
        for j in 0..=a.howmany + AFTER {
            let t = c + (j as f64 - a.howmany as f64) * STEP;
            events.push((at(t), Who::Attacker(i, j == a.howmany)));
        }
    }
    let slots = (a.decoys * a.howmany).max(1) as f64;
    for i in 0..a.decoys {
        for j in 0..a.howmany {
            let t = a.secs * ((j * a.decoys + i) as f64 + 0.5) / slots;
            events.push((at(t), Who::Decoy(i)));
        }
    }
    events.sort_by_key(|e| e.0);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pool: Vec<String> = (0..POOL)
        .map(|i| benign(long, 100_000 + i, &mut rng))
        .collect();
    let mut out = OpenOptions::new().create(true).append(true).open(&a.out)?;
    let mut crossed: Vec<(IpAddr, u128)> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let (mut line, mut next, mut bytes, mut late) = (0u64, 0usize, 0u64, Duration::ZERO);
    let batch = Duration::from_millis(a.batch_ms.max(1));
    let start = Instant::now();
    let mut tick = 0u32;
    while line < total {
        let due = start + batch * tick;
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        tick += 1;
        let elapsed = start.elapsed();
        let upto = (((elapsed.as_nanos() * a.rate as u128) / 1_000_000_000) as u64).min(total);
        if upto <= line {
            continue;
        }
        let first = Duration::from_secs_f64(line as f64 / a.rate as f64);
        let st = stamp(SystemTime::now());
        let mut crossing: Vec<IpAddr> = Vec::new();
        buf.clear();
        while line < upto {
            buf.extend_from_slice(st.as_bytes());
            if next < events.len() && events[next].0 <= line {
                let (src, cross) = match events[next].1 {
                    Who::Attacker(i, c) => (attacker(i), c),
                    Who::Decoy(i) => (decoy(i), false),
                };
                buf.extend_from_slice(
                    failure(long, src, 200_000 + next as u64, &mut rng).as_bytes(),
                );
                if cross {
                    crossing.push(src);
                }
                next += 1;
            } else if swarm && line % 2 == 0 {
                // A source of its own: 2001:db8:4:HI::LO from the line number.
                let src = IpAddr::V6(std::net::Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    4,
                    (line >> 32) as u16,
                    0,
                    0,
                    (line >> 16) as u16,
                    line as u16 | 1,
                ));
                buf.extend_from_slice(failure(false, src, 300_000 + line, &mut rng).as_bytes());
            } else {
                buf.extend_from_slice(pool[(line % POOL as u64) as usize].as_bytes());
            }
            line += 1;
        }
        out.write_all(&buf)?;
        bytes += buf.len() as u64;
        // The batch's first line waited longest for its write.
        late = late.max(start.elapsed().saturating_sub(first));
        if !crossing.is_empty() {
            let ns = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
            crossed.extend(crossing.into_iter().map(|s| (s, ns)));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut rec = String::new();
    for (src, ns) in &crossed {
        rec += &format!("cross {src} {ns}\n");
    }
    for i in 0..a.decoys {
        rec += &format!("decoy {}\n", decoy(i));
    }
    rec += &format!(
        "lines {line} bytes {bytes} secs {secs:.3} late_ms {:.1}\n",
        late.as_secs_f64() * 1e3
    );
    std::fs::write(&a.record, rec)?;
    Ok(())
}
