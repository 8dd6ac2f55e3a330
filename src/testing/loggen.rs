//! A generator of realistic fwctl logs, for tests and benchmarks: the mix a
//! busy host's `/ram/iptables.log` holds (blocked and allowed TCP, UDP, ICMP
//! and ICMP errors, IPv4 and IPv6, other fwctl rules, other programs' lines,
//! malformed and cut lines, slightly out-of-order times), of any size, with a
//! known set of offenders for one query (`--rule blocked --type tcp
//! --howmany N --within W`, "now" at the log's end). Deterministic per seed.
//!
//! Offenders get N+1 or more blocked TCP hits inside the final window; every
//! other source is kept at N or fewer there. Near misses are planted on
//! purpose: sources with exactly N hits, and sources with N+1 of which one
//! falls a minute before the window.

use crate::units::time::{civil_from_days, MONTHS};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Rfc3339,
    /// Traditional syslog time, local time at this UTC offset (seconds).
    Bsd(i64),
}

/// Which log, and the query its offenders are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// fwctl's LOG lines; `--rule blocked --type tcp`.
    Kernel,
    /// An nginx (and Apache) combined log with a last quoted
    /// X-Forwarded-For field that the clients fill in with lies.
    Web(WebQuery),
    /// sshd's auth.log lines among other programs'; every failure counts.
    Sshd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebQuery {
    /// Every request counts (a request rate).
    All,
    /// `--status 4xx`.
    Status4xx,
    /// `--match all`: the requests of the built-in patterns.
    Attacks,
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub kind: Kind,
    /// Approximate size of the log in bytes.
    pub bytes: u64,
    /// Time of the last line (seconds since the epoch, UTC).
    pub end: i64,
    /// Seconds the log covers.
    pub span: i64,
    pub format: Format,
    /// Background sources (about one in five IPv6).
    pub sources: u32,
    pub offenders: u32,
    /// The query the offenders are built for.
    pub howmany: u64,
    pub within: i64,
    pub seed: u64,
    /// Plant the near misses (N hits; N+1 with one just before the window).
    /// Off for comparisons with tools whose windows slide over the file.
    pub near_misses: bool,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            kind: Kind::Kernel,
            bytes: 1 << 20,
            end: 1_795_262_400, // 2026-11-21T12:00:00Z
            span: 21 * 3600,
            format: Format::Rfc3339,
            sources: 1000,
            offenders: 5,
            howmany: 50,
            within: 1800,
            seed: 1,
            near_misses: true,
        }
    }
}

/// What the generated log holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Each offender and its blocked TCP hits inside the window.
    pub offenders: Vec<(IpAddr, u64)>,
    /// Sources that must not be offenders although they come close.
    pub near_misses: Vec<IpAddr>,
    pub lines: u64,
    pub bytes: u64,
}

/// About how long a generated line is; sizes the timeline.
const AVG_LINE: u64 = 275;

/// xorshift64* (also drives examples/pcapgen.rs).
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        // xorshift64*: fast, deterministic, good enough for a test log.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Background source `i`: every fifth IPv6 (2001:db8:100::/40), the rest
/// IPv4 from 198.51.100.0/24 and 192.0.2.0/24, then 100.64.0.0/11 when more
/// are wanted.
pub fn background(i: u32) -> IpAddr {
    if i % 5 == 4 {
        return IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x100,
            (i >> 16) as u16,
            0,
            0,
            0,
            i as u16,
        ));
    }
    let k = i - i / 5; // index among the IPv4 sources
    v4_from(k, &[[198, 51, 100], [192, 0, 2]], 64)
}

/// Offender `i` (near misses are numbered after the offenders): every third
/// IPv6 (2001:db8:bad::/48), the rest IPv4 from 203.0.113.0/24, then
/// 100.96.0.0/11; never a background source.
pub fn special(i: u32) -> IpAddr {
    if i % 3 == 2 {
        return IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xbad,
            0,
            0,
            0,
            (i >> 16) as u16,
            i as u16,
        ));
    }
    v4_from(i - i / 3, &[[203, 0, 113]], 96)
}

/// The `k`th address of the documentation /24s given (.1 to .254), then of
/// 100.`second`.0.0/11.
fn v4_from(k: u32, nets: &[[u8; 3]], second: u8) -> IpAddr {
    let doc = 254 * nets.len() as u32;
    if k < doc {
        let n = nets[(k / 254) as usize];
        return IpAddr::V4(Ipv4Addr::new(n[0], n[1], n[2], (k % 254 + 1) as u8));
    }
    let k = k - doc;
    IpAddr::V4(Ipv4Addr::new(
        100,
        second + ((k >> 16) % 32) as u8,
        (k >> 8) as u8,
        k as u8,
    ))
}

pub fn generate(spec: &Spec, out: &mut impl Write) -> io::Result<Manifest> {
    let mut rng = Rng(spec.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut w = Writer {
        out,
        kind: spec.kind,
        format: spec.format,
        bytes: 0,
        lines: 0,
        day_cache: (i64::MIN, String::new()),
    };
    let total = (spec.bytes / AVG_LINE).max(1);
    let window_start = spec.end - spec.within;
    let in_window =
        (total as u128 * spec.within.min(spec.span) as u128 / spec.span.max(1) as u128) as u64;
    let before = total - in_window.min(total);

    // Planted hits inside the window: offenders N+1.., near misses exactly N,
    // and near misses N+1 with one hit placed before the window.
    let mut manifest = Manifest::default();
    let mut tickets: Vec<u32> = Vec::new();
    for o in 0..spec.offenders {
        let hits = spec.howmany + 1 + rng.below(spec.howmany / 4 + 1);
        manifest.offenders.push((special(o), hits));
        tickets.extend(std::iter::repeat_n(o, hits as usize));
    }
    let near = if spec.howmany > 0 && spec.near_misses {
        4
    } else {
        0
    };
    let mut early = Vec::new();
    for k in 0..near {
        let id = spec.offenders + k;
        manifest.near_misses.push(special(id));
        tickets.extend(std::iter::repeat_n(id, spec.howmany as usize));
        if k % 2 == 1 {
            early.push(id);
        }
    }
    // Shuffle (Fisher-Yates) so planted hits interleave.
    for i in (1..tickets.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        tickets.swap(i, j);
    }

    // Blocked TCP hits of each background source inside the window, capped at N.
    let mut bg_hits = vec![0u64; spec.sources as usize];
    let span_before = spec.span - spec.within.min(spec.span);
    let start = spec.end - spec.span;
    for i in 0..before {
        let t = start * 1_000_000
            + (i as i128 * span_before as i128 * 1_000_000 / before.max(1) as i128) as i64;
        // A minute before the window, the early hits of the near misses.
        if !early.is_empty() && t >= (window_start - 60) * 1_000_000 {
            for id in early.drain(..) {
                w.counted(t, special(id), 22, &mut rng)?;
            }
        }
        w.background_line(t, spec, &mut rng, &mut bg_hits, false)?;
    }
    for id in early.drain(..) {
        w.counted((window_start - 60) * 1_000_000, special(id), 22, &mut rng)?;
    }
    // The window: background lines and planted tickets, spread evenly and
    // kept five seconds clear of its start (lines jitter by up to two).
    let n = in_window + tickets.len() as u64;
    let (mut bg_left, mut tk_left) = (in_window, tickets.len() as u64);
    let from = (window_start + 5) * 1_000_000;
    let len = (spec.end * 1_000_000 - from).max(0) as i128;
    for i in 0..n {
        let t = from + (i as i128 * len / n.max(1) as i128) as i64;
        if rng.below(bg_left + tk_left) < tk_left {
            tk_left -= 1;
            let id = tickets[tk_left as usize];
            let port = [22, 23, 80, 443, 3389, 8080][rng.below(6) as usize]
                + if rng.chance(300) {
                    rng.below(1000) as u16
                } else {
                    0
                };
            w.counted(t, special(id), port, &mut rng)?;
        } else {
            bg_left -= 1;
            w.background_line(t, spec, &mut rng, &mut bg_hits, true)?;
        }
    }
    w.out.flush()?;
    manifest.lines = w.lines;
    manifest.bytes = w.bytes;
    Ok(manifest)
}

struct Writer<'a, W: Write> {
    out: &'a mut W,
    kind: Kind,
    format: Format,
    bytes: u64,
    lines: u64,
    /// (day number, its rendered date), the date changes rarely.
    day_cache: (i64, String),
}

const HOST: &str = "fw1";
/// The address clients name in X-Forwarded-For: no count may ever reach it
/// (it is none of the generator's sources).
pub const VICTIM: &str = "2001:db8:dead::77";

impl<W: Write> Writer<'_, W> {
    fn stamp(&mut self, micros: i64) -> String {
        let (secs, us) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
        let local = match self.format {
            Format::Rfc3339 => secs,
            Format::Bsd(off) => secs + off,
        };
        let day = local.div_euclid(86_400);
        let s = local.rem_euclid(86_400);
        if self.day_cache.0 != day {
            let (y, m, d) = civil_from_days(day);
            let date = match self.format {
                Format::Rfc3339 => format!("{y:04}-{m:02}-{d:02}T"),
                Format::Bsd(_) => format!(
                    "{} {d:>2} ",
                    std::str::from_utf8(MONTHS[(m - 1) as usize]).expect("ASCII")
                ),
            };
            self.day_cache = (day, date);
        }
        let hms = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
        match self.format {
            Format::Rfc3339 => format!("{}{hms}.{us:06}+00:00", self.day_cache.1),
            Format::Bsd(_) => format!("{}{hms}", self.day_cache.1),
        }
    }

    fn emit(&mut self, micros: i64, msg: std::fmt::Arguments) -> io::Result<()> {
        let stamp = self.stamp(micros);
        let uptime = (micros / 1000).rem_euclid(100_000_000) as f64 / 1000.0;
        self.line(&format!("{stamp} {HOST} kernel: [{uptime:>12.6}] {msg}\n"))
    }

    /// One whole line (with its newline), counted.
    fn line(&mut self, line: &str) -> io::Result<()> {
        self.bytes += line.len() as u64;
        self.lines += 1;
        self.out.write_all(line.as_bytes())
    }

    fn tcp(
        &mut self,
        micros: i64,
        prefix: &str,
        src: IpAddr,
        port: u16,
        rng: &mut Rng,
    ) -> io::Result<()> {
        let spt = 1024 + rng.below(60_000);
        let flags = ["SYN", "SYN", "SYN", "FIN", "URG PSH FIN", ""][rng.below(6) as usize];
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!("{flags} ")
        };
        match src {
            IpAddr::V4(a) => self.emit(
                micros,
                format_args!(
                    "{}{prefix} IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={a} DST=192.0.2.1 LEN=44 TOS=0x00 PREC=0x00 TTL={} ID={} PROTO=TCP SPT={spt} DPT={port} WINDOW=1024 RES=0x00 {flags}URGP=0 ",
                    "IPTABLES-", 40 + rng.below(24), rng.below(65_536)
                ),
            ),
            IpAddr::V6(a) => self.emit(
                micros,
                format_args!(
                    "{}{prefix} IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:86:dd SRC={} DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=64 TC=0 HOPLIMIT={} FLOWLBL={} PROTO=TCP SPT={spt} DPT={port} WINDOW=1024 RES=0x00 {flags}URGP=0 ",
                    "IP6TABLES-", full_v6(a), 40 + rng.below(24), rng.below(1_048_576)
                ),
            ),
        }
    }

    fn tcp_blocked(
        &mut self,
        micros: i64,
        src: IpAddr,
        port: u16,
        rng: &mut Rng,
    ) -> io::Result<()> {
        self.tcp(micros, "BLOCKED:", src, port, rng)
    }

    /// A line the query counts, from `src`.
    fn counted(&mut self, micros: i64, src: IpAddr, port: u16, rng: &mut Rng) -> io::Result<()> {
        match self.kind {
            Kind::Kernel => self.tcp_blocked(micros, src, port, rng),
            Kind::Web(q) => self.web(micros, src, q, true, rng),
            Kind::Sshd => self.ssh(micros, src, true, rng),
        }
    }

    /// One line of the background mix at about `micros`.
    fn background_line(
        &mut self,
        micros: i64,
        spec: &Spec,
        rng: &mut Rng,
        bg_hits: &mut [u64],
        in_window: bool,
    ) -> io::Result<()> {
        // Up to two seconds late or early (rsyslog's inputs interleave);
        // before the window only early, so no uncounted hit enters it.
        let micros = match (rng.chance(20), in_window) {
            (false, _) => micros,
            (true, true) => micros + rng.below(4_000_000) as i64 - 2_000_000,
            (true, false) => micros - rng.below(2_000_000) as i64,
        };
        let n = spec.sources.max(1);
        // Some sources are much busier than others.
        let i = if rng.chance(500) {
            rng.below(u64::from(n).min(50))
        } else {
            rng.below(u64::from(n))
        } as u32;
        let src = background(i);
        if self.kind != Kind::Kernel {
            // Counted lines, kept at N or fewer per source in the window;
            // the rest are lines the query does not count.
            let count = rng.chance(500);
            let hits = &mut bg_hits[i as usize];
            let count = count && !(in_window && *hits >= spec.howmany);
            if count && in_window {
                *hits += 1;
            }
            return match self.kind {
                Kind::Web(q) => self.web(micros, src, q, count, rng),
                _ => self.ssh(micros, src, count, rng),
            };
        }
        let port = [22, 25, 80, 443, 445, 1433, 3306, 3389, 5900, 8080][rng.below(10) as usize];
        match rng.below(1000) {
            0..=599 => {
                // Blocked TCP: the one kind the query counts, kept at N or
                // fewer per background source inside the window.
                let hits = &mut bg_hits[i as usize];
                if in_window {
                    if *hits >= spec.howmany {
                        return self.udp(micros, src, rng);
                    }
                    *hits += 1;
                }
                self.tcp(micros, "BLOCKED:", src, port, rng)
            }
            600..=749 => self.tcp(
                micros,
                "ALLOWED:",
                src,
                [22, 80, 443][rng.below(3) as usize],
                rng,
            ),
            750..=849 => self.udp(micros, src, rng),
            850..=899 => self.icmp(micros, src, rng),
            900..=929 => self.tcp(
                micros,
                ["WHITELISTED:", "THROTTLED:", "BLACKLISTED:"][rng.below(3) as usize],
                src,
                port,
                rng,
            ),
            930..=959 => {
                let line = format!(
                    "{} {HOST} sshd[{}]: Connection closed by {} port {} [preauth]\n",
                    self.stamp(micros),
                    1000 + rng.below(30_000),
                    src,
                    rng.below(65_536)
                );
                self.line(&line)
            }
            960..=989 => {
                // An ICMP error: the quoted packet's SRC is ours, not the sender's.
                let IpAddr::V4(a) = src else {
                    return self.icmp(micros, src, rng);
                };
                self.emit(micros, format_args!("IPTABLES-BLOCKED: IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={a} DST=192.0.2.1 LEN=56 TOS=0x00 PREC=0xC0 TTL=64 ID={} PROTO=ICMP TYPE=3 CODE=3 [SRC=192.0.2.1 DST={a} LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=TCP SPT=53 DPT=4444 WINDOW=0 RES=0x00 SYN URGP=0 ] ", rng.below(65_536)))
            }
            _ => {
                // A line cut short (a crash, a full disk): malformed, never a hit.
                let stamp = self.stamp(micros);
                let line = format!("{stamp} {HOST} kernel: [ 1.000000] IPTABLES-BLOCKED: IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.10\n");
                self.line(&line)
            }
        }
    }

    /// `[21/Nov/2026:10:00:01 +0000]`.
    fn web_stamp(micros: i64) -> String {
        let secs = micros.div_euclid(1_000_000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        format!(
            "[{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000]",
            std::str::from_utf8(MONTHS[(m - 1) as usize]).expect("ASCII"),
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }

    /// A combined-format request. `count`: one the query counts. Every
    /// client writes an X-Forwarded-For of its choosing, often [`VICTIM`].
    fn web(
        &mut self,
        micros: i64,
        src: IpAddr,
        q: WebQuery,
        count: bool,
        rng: &mut Rng,
    ) -> io::Result<()> {
        const ORDINARY: [&str; 6] = [
            "GET / HTTP/1.1",
            "GET /index.html HTTP/1.1",
            "GET /static/app.9f3c.js HTTP/2.0",
            "POST /api/v1/items HTTP/1.1",
            "GET /blog/2026/11/union-station-selected-works HTTP/1.1",
            "GET /docs/v1.2/index.html?q=selected HTTP/1.1",
        ];
        const ATTACKS: [&str; 6] = [
            "GET /static/..%2f..%2f..%2fetc/passwd HTTP/1.1",
            "GET /item?id=1%20UNION%20SELECT%20user,password%20FROM%20users HTTP/1.1",
            "GET /search?q=%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1",
            "GET /.env HTTP/1.1",
            "POST /wp-login.php HTTP/1.1",
            "GET /cgi-bin/luci;stok=/locale HTTP/1.1",
        ];
        let (request, status) = match (q, count) {
            (WebQuery::Attacks, true) => (
                ATTACKS[rng.below(6) as usize],
                [404, 400, 403, 200][rng.below(4) as usize],
            ),
            (WebQuery::Status4xx, true) => (
                ORDINARY[rng.below(6) as usize],
                [404, 401, 403, 400, 444][rng.below(5) as usize],
            ),
            (WebQuery::All, true) => (
                ORDINARY[rng.below(6) as usize],
                [200, 200, 304, 404, 500][rng.below(5) as usize],
            ),
            (WebQuery::Attacks, false) | (WebQuery::Status4xx, false) => (
                ORDINARY[rng.below(6) as usize],
                [200, 200, 301, 304, 500][rng.below(5) as usize],
            ),
            (WebQuery::All, false) => {
                // Every request counts: what does not is not a request (a
                // line cut short after its request).
                let line = format!("{src} - - {} \"GET / HTTP/1.1\"\n", Self::web_stamp(micros));
                return self.line(&line);
            }
        };
        let xff = match rng.below(4) {
            0 => "-".to_string(),
            1 => VICTIM.to_string(),
            2 => format!("{VICTIM}, {src}"),
            _ => background(rng.below(1000) as u32).to_string(),
        };
        let ua = [
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
        ][rng.below(4) as usize];
        let line = format!(
            "{src} - - {} \"{request}\" {status} {} \"-\" \"{ua}\" \"{xff}\"\n",
            Self::web_stamp(micros),
            rng.below(20_000)
        );
        self.line(&line)
    }

    /// An auth.log line. `count`: an sshd failure; else a login, another
    /// program's line, or sshd saying something that is not a failure.
    fn ssh(&mut self, micros: i64, src: IpAddr, count: bool, rng: &mut Rng) -> io::Result<()> {
        let stamp = self.stamp(micros);
        let pid = 1000 + rng.below(60_000);
        let port = 1024 + rng.below(60_000);
        let user = ["root", "admin", "ubuntu", "oracle", "test", "git"][rng.below(6) as usize];
        let msg = if count {
            match rng.below(7) {
                0 | 1 => format!("Failed password for {user} from {src} port {port} ssh2"),
                2 => format!("Failed password for invalid user {user} from {src} port {port} ssh2"),
                3 => format!("Invalid user {user} from {src} port {port}"),
                4 => format!("error: maximum authentication attempts exceeded for {user} from {src} port {port} ssh2 [preauth]"),
                5 => format!("Connection closed by authenticating user {user} {src} port {port} [preauth]"),
                _ => format!("Did not receive identification string from {src} port {port}"),
            }
        } else {
            match rng.below(5) {
                0 => format!("Accepted publickey for {user} from {src} port {port} ssh2: ED25519 SHA256:q1w2e3"),
                1 => format!("Accepted password for {user} from {src} port {port} ssh2"),
                2 => format!("pam_unix(sshd:session): session opened for user {user}(uid=1000) by (uid=0)"),
                3 => format!("Received disconnect from {src} port {port}:11: disconnected by user"),
                _ => {
                    let line = format!("{stamp} {HOST} CRON[{pid}]: pam_unix(cron:session): session closed for user root\n");
                    return self.line(&line);
                }
            }
        };
        let line = format!("{stamp} {HOST} sshd[{pid}]: {msg}\n");
        self.line(&line)
    }

    fn udp(&mut self, micros: i64, src: IpAddr, rng: &mut Rng) -> io::Result<()> {
        let port = [53, 123, 161, 500, 1900, 5060][rng.below(6) as usize];
        match src {
            IpAddr::V4(a) => self.emit(micros, format_args!("IPTABLES-BLOCKED: IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={a} DST=192.0.2.1 LEN=76 TOS=0x00 PREC=0x00 TTL=56 ID={} PROTO=UDP SPT={} DPT={port} LEN=56 ", rng.below(65_536), 1024 + rng.below(60_000))),
            IpAddr::V6(a) => self.emit(micros, format_args!("IP6TABLES-BLOCKED: IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:86:dd SRC={} DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=96 TC=0 HOPLIMIT=57 FLOWLBL=0 PROTO=UDP SPT={} DPT={port} LEN=56 ", full_v6(a), 1024 + rng.below(60_000))),
        }
    }

    fn icmp(&mut self, micros: i64, src: IpAddr, rng: &mut Rng) -> io::Result<()> {
        match src {
            IpAddr::V4(a) => self.emit(micros, format_args!("IPTABLES-BLOCKED: IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={a} DST=192.0.2.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID={} DF PROTO=ICMP TYPE=8 CODE=0 ID={} SEQ={} ", rng.below(65_536), rng.below(65_536), rng.below(100))),
            IpAddr::V6(a) => self.emit(micros, format_args!("IP6TABLES-BLOCKED: IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:86:dd SRC={} DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=104 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=ICMPv6 TYPE=128 CODE=0 ID={} SEQ={} ", full_v6(a), rng.below(65_536), rng.below(100))),
        }
    }
}

/// IPv6 as the kernel's LOG target writes it: eight groups of four digits.
pub fn full_v6(a: Ipv6Addr) -> String {
    let s = a.segments();
    format!(
        "{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}",
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn offenders_and_background_sources_never_share_an_address() {
        let bg: HashSet<IpAddr> = (0..300_000).map(background).collect();
        let sp: HashSet<IpAddr> = (0..300_000).map(special).collect();
        assert_eq!((bg.len(), sp.len()), (300_000, 300_000));
        assert!(bg.is_disjoint(&sp));
        assert_eq!(special(0), "203.0.113.1".parse::<IpAddr>().unwrap());
    }

    /// Web and auth logs: the scan finds exactly the planted offenders for
    /// each query, and the X-Forwarded-For victim never.
    #[test]
    fn web_and_ssh_logs_have_exactly_their_offenders() {
        use crate::core::logsource::LineParser;
        use crate::core::scan::count::{Tally, TypeFilter};
        use crate::core::web_log::{Client, Statuses, WebParser};
        use crate::units::time::Zone;
        for (kind, statuses, patterns) in [
            (Kind::Web(WebQuery::All), "all", false),
            (Kind::Web(WebQuery::Status4xx), "4xx", false),
            (Kind::Web(WebQuery::Attacks), "all", true),
            (Kind::Sshd, "", false),
        ] {
            for format in [Format::Rfc3339, Format::Bsd(3600)] {
                let spec = Spec {
                    kind,
                    format,
                    bytes: 400_000,
                    offenders: 7,
                    howmany: 20,
                    within: 600,
                    ..Spec::default()
                };
                let mut text = Vec::new();
                let m = generate(&spec, &mut text).unwrap();
                let window = (spec.end - spec.within, spec.end);
                let zone = match format {
                    Format::Bsd(o) => Zone::fixed(o),
                    _ => Zone::fixed(0),
                };
                let mut p = match kind {
                    Kind::Sshd => LineParser::Ssh(crate::core::ssh_log::SshParser::new(
                        zone, spec.end, window,
                    )),
                    _ => {
                        let set = patterns.then(|| {
                            let all = crate::core::patterns::for_source(&[], "nginx");
                            crate::core::patterns::compile(&all)
                        });
                        let st = if statuses == "all" {
                            Statuses::all()
                        } else {
                            Statuses::parse(statuses).unwrap()
                        };
                        LineParser::Web(WebParser::new(
                            zone,
                            spec.end,
                            window,
                            (Client::Remote, Vec::new()),
                            st,
                            set,
                        ))
                    }
                };
                let f = memchr::memmem::Finder::new(p.needle()).into_owned();
                let mut t = Tally::new(TypeFilter::All);
                t.feed_buffer(&mut p, &f, &text);
                let found: std::collections::BTreeSet<IpAddr> = t
                    .offenders(spec.howmany)
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect();
                let want: std::collections::BTreeSet<IpAddr> =
                    m.offenders.iter().map(|(a, _)| *a).collect();
                assert_eq!(found, want, "{kind:?} {format:?}");
                assert!(
                    t.get(&VICTIM.parse().unwrap()).is_none(),
                    "{kind:?}: the victim was counted"
                );
                if kind == Kind::Web(WebQuery::All) {
                    assert!(t.malformed_total() > 0, "the cut lines are malformed");
                }
            }
        }
    }
}
