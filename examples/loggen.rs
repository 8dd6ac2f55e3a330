//! Write a realistic fwctl log with a known set of offenders (see
//! `fwctl::testing::loggen`), for benchmarks and by-hand trials:
//!
//!   cargo run --release --example loggen -- --size 1G --out /dev/shm/iptables.log
//!
//! The offenders (and near misses) go to standard output, one per line, so a
//! script can compare them with what `fwctl scan` finds.

use clap::Parser;
use fwctl::testing::loggen::{self, Format, Kind, Spec, WebQuery};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(Parser)]
struct Args {
    /// Approximate size: bytes, or with K, M or G.
    #[arg(long, default_value = "100M", value_parser = size)]
    size: u64,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Time of the last line (RFC 3339 UTC, e.g. 2026-11-21T12:00:00Z); default: now.
    #[arg(long)]
    end: Option<String>,
    /// How long the log spans.
    #[arg(long, default_value = "21h", value_parser = secs)]
    span: i64,
    /// Background sources.
    #[arg(long, default_value_t = 10_000)]
    sources: u32,
    #[arg(long, default_value_t = 20)]
    offenders: u32,
    /// The query the offenders are built for: --howmany and --within.
    #[arg(long, default_value_t = 500)]
    howmany: u64,
    #[arg(long, default_value = "30m", value_parser = secs)]
    within: i64,
    /// Traditional timestamps (local time at this UTC offset in seconds) instead of RFC 3339.
    #[arg(long)]
    bsd_offset: Option<i64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// kernel (fwctl's LOG lines), nginx (combined access log) or sshd (auth.log).
    #[arg(long, default_value = "kernel")]
    source: String,
    /// For nginx: the query the offenders are built for: all (a request
    /// rate), 4xx (--status 4xx) or attacks (--match all).
    #[arg(long, default_value = "all")]
    query: String,
    /// No near misses (for tools whose window slides over the whole file).
    #[arg(long)]
    no_near_misses: bool,
}

fn size(s: &str) -> Result<u64, String> {
    let (n, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| e.to_string())
}

fn secs(s: &str) -> Result<i64, String> {
    humantime::parse_duration(s)
        .map(|d| d.as_secs() as i64)
        .map_err(|e| e.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let end = match &a.end {
        Some(e) => humantime::parse_rfc3339(e)?
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64,
        None => now,
    };
    let kind = match (a.source.as_str(), a.query.as_str()) {
        ("kernel", _) => Kind::Kernel,
        ("sshd", _) => Kind::Sshd,
        ("nginx", "all") => Kind::Web(WebQuery::All),
        ("nginx", "4xx") => Kind::Web(WebQuery::Status4xx),
        ("nginx", "attacks") => Kind::Web(WebQuery::Attacks),
        (s, q) => {
            return Err(format!(
                "--source {s} --query {q}: fix: kernel, sshd, or nginx with all, 4xx or attacks"
            )
            .into())
        }
    };
    let spec = Spec {
        kind,
        bytes: a.size,
        end,
        span: a.span,
        format: a.bsd_offset.map_or(Format::Rfc3339, Format::Bsd),
        sources: a.sources,
        offenders: a.offenders,
        howmany: a.howmany,
        within: a.within,
        seed: a.seed,
        near_misses: !a.no_near_misses,
    };
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&a.out)?);
    let m = loggen::generate(&spec, &mut out)?;
    out.flush()?;
    let mut stdout = std::io::stdout().lock();
    for (addr, hits) in &m.offenders {
        writeln!(stdout, "offender {addr} {hits}")?;
    }
    for addr in &m.near_misses {
        writeln!(stdout, "near-miss {addr}")?;
    }
    eprintln!(
        "wrote {} lines, {} bytes to {}",
        m.lines,
        m.bytes,
        a.out.display()
    );
    Ok(())
}
