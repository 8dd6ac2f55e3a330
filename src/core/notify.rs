//! What fwctl tells people (pure): the notifications, their two wire
//! formats (fwctl's JSON document and a chat message `{"text": ...}` that
//! Slack, Mattermost and Rocket.Chat accept), the HMAC-SHA256 signature, the
//! aggregation of bursts per sink, the retry policy and the bounded outbox.
//! Sending them is the system layer's part; time and randomness come in as
//! arguments.

use crate::core::capture::events::Event;
// What the config names (events, formats, sink names) is the config's own.
pub use crate::core::config::notify::{check_name, redact, Format, EVENTS};
use crate::units::duration::human;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt::Write;

/// How long a sink gathers the events that follow one it sent, before it
/// sends them as one summary (in milliseconds).
pub const INTERVAL_MS: u64 = 10_000;
/// Most addresses a chat summary names (the JSON summary carries all).
const CHAT_NAMES: usize = 20;
/// A chat message of up to this many events has each one's own line.
const CHAT_LINES: usize = 5;

/// Which fwctl did something: the origin of a ban or unban.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Capture,
    Scan,
    Manual,
    Fleet,
    /// Bans of one prefix gathered into a ban of the prefix ([aggregate]).
    Aggregate,
}

/// One notification's content, tagged by its event name (the names the
/// config's `events` list and receivers' filters use).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Notice {
    IpBlocked {
        address: String,
        set: String,
        reason: String,
        offence: u32,
        duration_s: u64,
        until: String,
        origin: Origin,
    },
    ScanDetected {
        address: String,
        scan_type: String,
        nmap: String,
        reason: String,
        ports: Vec<u16>,
        action: String,
    },
    DistributedScan {
        proto: String,
        port: u16,
        sources: u32,
        window_s: u64,
    },
    ConnectionFlood {
        address: String,
        port: u16,
        syns: u32,
        over_s: u64,
        syn_rate: String,
        action: String,
    },
    DecoyTouched {
        address: String,
        port: u16,
        action: String,
    },
    SignatureMatched {
        address: String,
        proto: String,
        port: u16,
        signature: String,
        severity: String,
        matched: String,
        action: String,
    },
    SynFlood {
        port: u16,
        syns: u32,
        over_s: u64,
        rate_per_s: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        syncookies: Option<bool>,
    },
    ScanRun {
        rule: String,
        #[serde(rename = "type")]
        kind: String,
        ipset: String,
        lines_read: u64,
        lines_matched: u64,
        offenders: u64,
        added: u64,
        /// Every address banned.
        addresses: Vec<String>,
        /// Bans beyond the first [`SCAN_EACH`], which have no `ip_blocked`
        /// event of their own: this event names them (and goes to the sinks
        /// that take `ip_blocked` too).
        #[serde(default, skip_serializing_if = "is_zero")]
        unlisted: u64,
    },
    Unban {
        address: String,
        sets: Vec<String>,
        origin: Origin,
    },
    Apply {
        config: String,
        rules_v4: usize,
        rules_v6: usize,
        sets: usize,
        restored: usize,
    },
    ApplyFailed {
        config: String,
        error: String,
    },
    Rollback {
        config: String,
        reason: String,
    },
    Drift {
        problems: Vec<String>,
    },
    CaptureDown {
        error: String,
    },
    /// `feeds update` refused a feed's new list (too wide, too much, a
    /// trusted network...): its last good copy, `kept` entries, stays.
    FeedRefused {
        feed: String,
        reason: String,
        kept: usize,
    },
    /// The baseline: a scan rule's last complete hour counted more than
    /// `[baseline] over` of the mean of the same hour (and at least floor).
    Anomaly {
        /// lines or bans.
        what: String,
        rule: String,
        #[serde(rename = "type")]
        kind: String,
        /// The hour's start (RFC 3339).
        hour: String,
        count: u64,
        mean: f64,
        days: u32,
        ratio: f64,
        over_percent: u32,
    },
    Test {
        message: String,
    },
}

/// A scan run tells each of its first this many bans as an `ip_blocked` of
/// its own; a bigger run's `scan_run` names the rest. (100 000 event
/// documents would cost a mass scan more than its bans; the chat summary
/// names 20 addresses anyway.)
pub const SCAN_EACH: usize = 1000;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Notice {
    pub fn name(&self) -> &'static str {
        match self {
            Notice::IpBlocked { .. } => "ip_blocked",
            Notice::ScanDetected { .. } => "scan_detected",
            Notice::DistributedScan { .. } => "distributed_scan",
            Notice::ConnectionFlood { .. } => "connection_flood",
            Notice::SynFlood { .. } => "syn_flood",
            Notice::DecoyTouched { .. } => "decoy_touched",
            Notice::SignatureMatched { .. } => "signature_matched",
            Notice::ScanRun { .. } => "scan_run",
            Notice::Unban { .. } => "unban",
            Notice::Apply { .. } => "apply",
            Notice::ApplyFailed { .. } => "apply_failed",
            Notice::Rollback { .. } => "rollback",
            Notice::Drift { .. } => "drift",
            Notice::CaptureDown { .. } => "capture_down",
            Notice::FeedRefused { .. } => "feed_refused",
            Notice::Anomaly { .. } => "anomaly",
            Notice::Test { .. } => "test",
        }
    }

    /// Whether a sink that `wants` these event names takes this notice:
    /// its event is one of them, or it names bans that have no `ip_blocked`
    /// of their own.
    pub fn wanted_by(&self, wants: impl Fn(&str) -> bool) -> bool {
        wants(self.name())
            || matches!(self, Notice::ScanRun { unlisted, .. } if *unlisted > 0 && wants("ip_blocked"))
    }

    /// The address it is about, if any (for summaries and `[geo]`).
    pub fn address(&self) -> Option<&str> {
        match self {
            Notice::IpBlocked { address, .. }
            | Notice::ScanDetected { address, .. }
            | Notice::ConnectionFlood { address, .. }
            | Notice::DecoyTouched { address, .. }
            | Notice::SignatureMatched { address, .. }
            | Notice::Unban { address, .. } => Some(address),
            _ => None,
        }
    }

    /// One readable line, for chat.
    pub fn text(&self) -> String {
        match self {
            Notice::IpBlocked {
                address,
                set,
                reason,
                offence,
                duration_s,
                until,
                origin,
            } => format!(
                "Security Alert: action taken against {address}: banned into {set} for {} (until {until}, offence {offence}); reason: {reason}; by {}",
                human(*duration_s),
                origin_name(*origin)
            ),
            Notice::ScanDetected {
                address,
                scan_type,
                nmap,
                reason,
                action,
                ..
            } => format!("Port scan from {address}: {scan_type} ({nmap}), {reason}; {action}"),
            Notice::DistributedScan {
                proto,
                port,
                sources,
                window_s,
            } => format!(
                "Distributed scan: {sources} sources on {proto} port {port} within {}",
                human(*window_s)
            ),
            Notice::ConnectionFlood {
                address,
                port,
                syns,
                over_s,
                syn_rate,
                action,
            } => format!(
                "Connection flood from {address}: {syns} new connections to port {port} within {} (limit {syn_rate}); {action}",
                human(*over_s)
            ),
            Notice::DecoyTouched {
                address,
                port,
                action,
            } => format!("{address} completed a TCP handshake with decoy port {port}; {action}"),
            Notice::SignatureMatched {
                address,
                proto,
                port,
                signature,
                severity,
                matched,
                action,
            } => format!("{address} sent signature {signature} ({severity}) to {proto}/{port}: \"{matched}\"; {action}"),
            Notice::SynFlood {
                port,
                syns,
                over_s,
                rate_per_s,
                syncookies,
            } => format!(
                "SYN flood on port {port}: {syns} SYNs within {} ({rate_per_s}/s) from many (forged) sources, not banned; SYN cookies {}",
                human(*over_s),
                match syncookies {
                    Some(true) => "on",
                    Some(false) => "OFF",
                    None => "unknown",
                }
            ),
            Notice::ScanRun {
                rule,
                kind,
                ipset,
                lines_matched,
                added,
                addresses,
                ..
            } => format!(
                "Scan rule {rule} ({kind}): {lines_matched} matching lines, banned {added} into {ipset}: {}",
                names(addresses.iter().map(String::as_str), addresses.len())
            ),
            Notice::Unban {
                address,
                sets,
                origin,
            } => format!(
                "Unbanned {address} from {} (by {})",
                sets.join(", "),
                origin_name(*origin)
            ),
            Notice::Apply {
                config,
                rules_v4,
                rules_v6,
                sets,
                restored,
            } => format!(
                "Applied {config}: {rules_v4} IPv4 + {rules_v6} IPv6 rules, {sets} sets, {restored} bans restored"
            ),
            Notice::ApplyFailed { config, error } => format!("Apply of {config} FAILED: {error}"),
            Notice::Rollback { config, reason } => {
                format!("Rolled back the apply of {config}: {reason}")
            }
            Notice::Drift { problems } => {
                format!("Firewall drift: {}", problems.join("; "))
            }
            Notice::CaptureDown { error } => format!("fwctl capture stopped: {error}"),
            Notice::FeedRefused { feed, reason, kept } => format!(
                "Feed {feed} refused: {reason}; {}",
                if *kept == 0 {
                    "it has no good copy yet, its sets stay empty".to_string()
                } else {
                    format!("its last good copy ({kept} entries) stays")
                }
            ),
            Notice::Anomaly {
                what,
                rule,
                kind,
                hour,
                count,
                mean,
                days,
                ratio,
                over_percent,
            } => format!(
                "Anomaly: scan rule {rule} ({kind}) counted {count} {what} in the hour from {hour}, {ratio:.1} times the mean of that hour over {days} days ({mean:.1}; over {over_percent}%)"
            ),
            Notice::Test { message } => message.clone(),
        }
    }
}

/// What a capture event tells the sinks (its statistics tell nobody).
pub fn from_capture(ev: &Event) -> Option<Notice> {
    Some(match ev {
        Event::IpBlocked(b) => Notice::IpBlocked {
            address: b.src.clone(),
            set: b.set.clone(),
            reason: if matches!(b.scan_type, "connection-flood" | "decoy") {
                format!("{}: {}", b.scan_type, b.reason)
            } else {
                format!("{} scan: {}", b.scan_type, b.reason)
            },
            offence: b.offence,
            duration_s: b.ban_seconds,
            until: b.until.clone(),
            origin: Origin::Capture,
        },
        Event::ScanDetected(s) => Notice::ScanDetected {
            address: s.src.clone(),
            scan_type: s.scan_type.to_string(),
            nmap: s.nmap.clone(),
            reason: s.reason.clone(),
            ports: s.ports.clone(),
            action: s.action.clone(),
        },
        Event::DistributedScan(d) => Notice::DistributedScan {
            proto: d.proto.to_string(),
            port: d.port,
            sources: d.sources,
            window_s: d.window_s,
        },
        Event::ConnectionFlood(f) => Notice::ConnectionFlood {
            address: f.src.clone(),
            port: f.port,
            syns: f.syns,
            over_s: f.over_s,
            syn_rate: f.syn_rate.clone(),
            action: f.action.clone(),
        },
        Event::SynFlood(f) => Notice::SynFlood {
            port: f.port,
            syns: f.syns,
            over_s: f.over_s,
            rate_per_s: f.rate_per_s,
            syncookies: f.syncookies,
        },
        Event::DecoyTouched(d) => Notice::DecoyTouched {
            address: d.src.clone(),
            port: d.port,
            action: d.action.clone(),
        },
        Event::SignatureMatched(m) => Notice::SignatureMatched {
            address: m.src.clone(),
            proto: m.proto.to_string(),
            port: m.port,
            signature: m.name.clone(),
            severity: m.severity.to_string(),
            matched: m.matched.clone(),
            action: m.action.clone(),
        },
        Event::CaptureStats(_) => return None,
    })
}

fn origin_name(o: Origin) -> &'static str {
    match o {
        Origin::Capture => "capture",
        Origin::Scan => "scan",
        Origin::Manual => "an admin",
        Origin::Fleet => "the fleet",
        Origin::Aggregate => "aggregation",
    }
}

/// "a, b, c and 17 more".
fn names<'a>(it: impl Iterator<Item = &'a str>, total: usize) -> String {
    let shown: Vec<&str> = it.take(CHAT_NAMES).collect();
    let mut s = shown.join(", ");
    if total > shown.len() {
        let _ = write!(s, " and {} more", total - shown.len());
    }
    s
}

/// A notification as sent: when, from which host and fwctl, and what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event (16 hex digits): delivery is at least once (an
    /// answer lost on the way means a retry), so a receiver that has seen
    /// an id has seen that event.
    pub id: String,
    pub time: String,
    pub host: String,
    pub fwctl: String,
    #[serde(flatten)]
    pub notice: Notice,
    /// Country and AS of the address it is about (`[geo]` configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<crate::core::geo::Info>,
}

impl Envelope {
    /// The chat line: the notice's text, and where its address is.
    fn line(&self) -> String {
        match &self.geo {
            Some(g) => format!("{} [{g}]", self.notice.text()),
            None => self.notice.text(),
        }
    }
}

/// The request body for one batch: a single event as itself, several as a
/// summary (every event in the JSON form; counts and the first addresses in
/// the chat form).
pub fn body(format: Format, batch: &[Envelope]) -> Vec<u8> {
    let counts = || {
        let mut c: BTreeMap<&str, usize> = BTreeMap::new();
        for e in batch {
            *c.entry(e.notice.name()).or_default() += 1;
        }
        c
    };
    match (format, batch) {
        (_, []) => Vec::new(),
        (Format::Json, [one]) => serde_json::to_vec(one).expect("plain data"),
        (Format::Slack, [one]) => slack(&format!("[fwctl on {}] {}", one.host, one.line())),
        (Format::Json, many) => serde_json::to_vec(&serde_json::json!({
            "event": "summary",
            "time": many.last().map(|e| e.time.clone()),
            "host": many[0].host,
            "fwctl": many[0].fwctl,
            "first": many[0].time,
            "count": many.len(),
            "counts": counts(),
            "events": many,
        }))
        .expect("plain data"),
        (Format::Slack, few) if few.len() <= CHAT_LINES => {
            let lines: Vec<String> = few.iter().map(Envelope::line).collect();
            slack(&format!("[fwctl on {}] {}", few[0].host, lines.join("\n")))
        }
        (Format::Slack, many) => {
            let mut t = format!(
                "[fwctl on {}] {} events from {} to {}:",
                many[0].host,
                many.len(),
                many[0].time,
                many.last().map(|e| e.time.as_str()).unwrap_or("")
            );
            for (name, n) in counts() {
                let addrs: Vec<&str> = many
                    .iter()
                    .filter(|e| e.notice.name() == name)
                    .filter_map(|e| e.notice.address())
                    .collect();
                let _ = write!(t, "\n- {n} {name}");
                if !addrs.is_empty() {
                    let _ = write!(t, ": {}", names(addrs.iter().copied(), addrs.len()));
                }
            }
            slack(&t)
        }
    }
}

fn slack(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "text": text })).expect("plain data")
}

/// `X-Fwctl-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with the
/// secret, of `timestamp + "." + body`; a receiver recomputes it to reject a
/// forged request, and checks the timestamp to reject a replayed one.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Gathering per sink: the first event of a quiet sink goes out at once;
/// what follows within [`INTERVAL_MS`] waits and goes out as one summary
/// when the interval ends (a scan banning 5 000 addresses is two posts, not
/// 5 000). Times are milliseconds of any clock.
#[derive(Clone, Debug, Default)]
pub struct Aggregator {
    /// When the last batch went out.
    last_sent: Option<u64>,
    pending: Vec<Envelope>,
}

impl Aggregator {
    /// Take an event at `now`; a batch to send now, if it is one.
    pub fn push(&mut self, e: Envelope, now: u64) -> Option<Vec<Envelope>> {
        self.push_all(vec![e], now)
    }

    /// Take events handed over together (a scan and its ban, a cron scan's
    /// bans): to a quiet sink they go at once, as one message; otherwise
    /// they wait for the interval's summary.
    pub fn push_all(&mut self, events: Vec<Envelope>, now: u64) -> Option<Vec<Envelope>> {
        let quiet = self.last_sent.is_none_or(|t| now >= t + INTERVAL_MS);
        if self.pending.is_empty() && quiet && !events.is_empty() {
            self.last_sent = Some(now);
            return Some(events);
        }
        self.pending.extend(events);
        self.due(now)
    }

    /// The summary, once its interval has passed.
    pub fn due(&mut self, now: u64) -> Option<Vec<Envelope>> {
        let at = self.last_sent.map_or(now, |t| t + INTERVAL_MS);
        if self.pending.is_empty() || now < at {
            return None;
        }
        self.last_sent = Some(now);
        Some(std::mem::take(&mut self.pending))
    }

    /// When the next summary is due (None: nothing waits).
    pub fn next_due(&self) -> Option<u64> {
        if self.pending.is_empty() {
            None
        } else {
            Some(self.last_sent.map_or(0, |t| t + INTERVAL_MS))
        }
    }

    /// Everything waiting, now (at exit).
    pub fn flush(&mut self) -> Option<Vec<Envelope>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }

    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

/// How one attempt to deliver ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered with this status (and `Retry-After` seconds).
    Status { code: u16, retry_after: Option<u64> },
    /// No answer in time.
    Timeout,
    /// No connection (refused, unreachable, DNS, TLS).
    Connect(String),
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Try again after this many milliseconds.
    Retry(u64),
    /// Give up: retryable failures keep the batch for a later run (the
    /// outbox), others are reported and dropped.
    GiveUp {
        keep: bool,
        why: String,
    },
}

/// The retry policy: 2xx is delivered; connection errors, timeouts, 5xx and
/// 429 are retried with exponential backoff (0.5 s, 1 s, 2 s, ... at most
/// 30 s) and jitter, honouring `Retry-After`, until `attempts` are spent;
/// other statuses are not retried. `random` is any random number (jitter).
pub fn next(attempt: &Attempt, tries: u32, attempts: u32, random: u64) -> Next {
    let why = match attempt {
        Attempt::Status { code, .. } if (200..300).contains(code) => return Next::Delivered,
        Attempt::Status { code, .. } if *code != 429 && !(500..600).contains(code) => {
            return Next::GiveUp {
                keep: false,
                why: format!("HTTP {code} (not retried: the receiver refuses this request)"),
            }
        }
        Attempt::Status { code, .. } => format!("HTTP {code}"),
        Attempt::Timeout => "no answer in time".into(),
        Attempt::Connect(e) => e.clone(),
    };
    if tries >= attempts {
        return Next::GiveUp {
            keep: true,
            why: format!("{why} after {tries} attempts"),
        };
    }
    let base = 500u64 << (tries.saturating_sub(1)).min(6);
    let backoff = base.min(30_000);
    // Up to half again as long, so many senders do not retry in step.
    let jitter = random % (backoff / 2 + 1);
    let wait = match attempt {
        Attempt::Status {
            retry_after: Some(s),
            ..
        } => (s * 1000).min(60_000).max(backoff),
        _ => backoff + jitter,
    };
    Next::Retry(wait)
}

/// The outbox's bound: at most this many undelivered events are kept;
/// beyond it the oldest go first (and are counted).
pub const OUTBOX_MAX: usize = 10_000;

/// An event waiting in the outbox: for which sink, in which batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    pub sink: String,
    pub batch: u64,
    pub event: Envelope,
}

/// Events not (yet) delivered, kept for a later run. Every batch is written
/// here before it is posted and taken out once delivered, so a run that
/// dies or times out mid-post loses nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    /// Oldest first.
    pub entries: Vec<Queued>,
    /// Events dropped to keep the bound, since the outbox was made.
    pub dropped: u64,
}

impl Outbox {
    /// Add a batch, dropping the oldest events beyond the bound.
    pub fn put(&mut self, sink: &str, batch: u64, events: &[Envelope]) {
        self.entries.extend(events.iter().map(|e| Queued {
            sink: sink.to_string(),
            batch,
            event: e.clone(),
        }));
        if self.entries.len() > OUTBOX_MAX {
            let over = self.entries.len() - OUTBOX_MAX;
            self.entries.drain(..over);
            self.dropped += over as u64;
        }
    }

    /// A batch delivered (or given up on for good).
    pub fn remove(&mut self, batch: u64) {
        self.entries.retain(|q| q.batch != batch);
    }

    /// Claim every event of `sink` (they leave the outbox; whoever claims
    /// them puts them back as a new batch before posting).
    pub fn take(&mut self, sink: &str) -> Vec<Envelope> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|q| q.sink == sink);
        self.entries = rest;
        mine.into_iter().map(|q| q.event).collect()
    }
}

/// `text` (an error from an HTTP library, which names the URL it was
/// asked for, or a proxy's) with every URL in it redacted, and `url`'s path
/// and query wherever they appear alone.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |i| i + 1);
        // A serialized URL holds no space or quote; ureq follows it with ": ".
        let len = rest[at..]
            .find(|c: char| c.is_whitespace() || "\"'<>".contains(c))
            .unwrap_or(rest.len() - at);
        let mut end = at + len;
        while end > at + 3 && rest[..end].ends_with([':', ',', ';', ')', '.']) {
            end -= 1;
        }
        out.push_str(&rest[..start]);
        out.push_str(&redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    if let Ok(u) = url::Url::parse(url) {
        for secret in [Some(u.path()), u.query()].into_iter().flatten() {
            if secret.len() > 1 {
                out = out.replace(secret, "\u{2026}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(i: u32) -> Envelope {
        Envelope {
            id: format!("{i:016x}"),
            time: format!("2026-12-02T10:00:{:02}Z", i % 60),
            host: "web-1".into(),
            fwctl: "0.1.0".into(),
            notice: Notice::IpBlocked {
                address: format!("203.0.113.{}", i % 250),
                set: "blacklist".into(),
                reason: "SYN scan: 7 distinct ports within 2h".into(),
                offence: 1,
                duration_s: 600,
                until: "2026-12-02T10:10:00Z".into(),
                origin: Origin::Capture,
            },
            geo: None,
        }
    }

    #[test]
    fn an_event_carries_its_addresss_country_and_as() {
        let mut e = env(1);
        e.geo = Some(crate::core::geo::Info::from_raw(
            Some("NL"),
            Some(64500),
            Some("Example Net"),
        ));
        let v: serde_json::Value =
            serde_json::from_slice(&body(Format::Json, &[e.clone()])).unwrap();
        assert_eq!(v["geo"]["country"], "NL");
        assert_eq!(v["geo"]["asn"], 64500);
        assert_eq!(v["geo"]["as_org"], "Example Net");
        let back: Envelope = serde_json::from_slice(&body(Format::Json, &[e.clone()])).unwrap();
        assert_eq!(back, e);
        let chat: serde_json::Value = serde_json::from_slice(&body(Format::Slack, &[e])).unwrap();
        assert!(
            chat["text"]
                .as_str()
                .unwrap()
                .ends_with("[NL, AS64500 Example Net]"),
            "{chat}"
        );
        let plain: serde_json::Value =
            serde_json::from_slice(&body(Format::Json, &[env(2)])).unwrap();
        assert!(plain.get("geo").is_none(), "no [geo], no field: {plain}");
    }

    /// Slack, Discord and Mattermost put the webhook's secret in its path.
    #[test]
    fn a_url_in_a_message_shows_only_scheme_host_and_port() {
        let hook = "https://hooks.slack.example.net/services/T000/B000/XXXXsecretXXXX?token=q1#f";
        assert_eq!(redact(hook), "https://hooks.slack.example.net/…");
        assert_eq!(
            redact("http://user:pw@[2001:db8::1]:8080/api/webhooks/123/tok"),
            "http://[2001:db8::1]:8080/…"
        );
        assert_eq!(
            redact("https://hooks.example.net"),
            "https://hooks.example.net/…"
        );
        assert_eq!(redact("not a url/secret"), "(a URL that does not parse)");
        // ureq's transport errors start with the URL, as it serializes it.
        let err = "https://hooks.slack.example.net/services/T000/B000/XXXXsecretXXXX?token=q1: Connection Failed: Connect error: connection refused";
        let s = scrub(err, hook);
        assert_eq!(
            s,
            "https://hooks.slack.example.net/…: Connection Failed: Connect error: connection refused"
        );
        let s = scrub("GET /services/T000/B000/XXXXsecretXXXX failed", hook);
        assert!(!s.contains("XXXXsecretXXXX"), "{s}");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 has key "Jefe"; here the message is ours.
        let s = sign(b"Jefe", 1_764_669_600, b"{\"event\":\"test\"}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert_eq!(s, sign(b"Jefe", 1_764_669_600, b"{\"event\":\"test\"}"));
        assert_ne!(s, sign(b"Jefe", 1_764_669_601, b"{\"event\":\"test\"}"));
        assert_ne!(s, sign(b"jefe", 1_764_669_600, b"{\"event\":\"test\"}"));
        // Known answer: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_burst_is_one_event_then_one_summary_per_interval() {
        let mut a = Aggregator::default();
        assert_eq!(
            a.push(env(0), 0).map(|b| b.len()),
            Some(1),
            "the first goes at once"
        );
        for i in 1..1000 {
            assert_eq!(a.push(env(i), u64::from(i)), None);
        }
        assert_eq!(a.next_due(), Some(INTERVAL_MS));
        assert_eq!(a.due(INTERVAL_MS - 1), None);
        let b = a.due(INTERVAL_MS).unwrap();
        assert_eq!(b.len(), 999);
        // Quiet for an interval: the next one goes at once again.
        assert_eq!(a.push(env(5), 3 * INTERVAL_MS).map(|b| b.len()), Some(1));
        a.push(env(6), 3 * INTERVAL_MS + 1);
        assert_eq!(a.flush().map(|b| b.len()), Some(1));
        assert_eq!(a.flush(), None);
    }

    #[test]
    fn bodies_single_summary_and_chat() {
        let one = body(Format::Json, &[env(1)]);
        let v: serde_json::Value = serde_json::from_slice(&one).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["address"].as_str()),
            (Some("ip_blocked"), Some("203.0.113.1"))
        );
        assert_eq!(
            (v["origin"].as_str(), v["duration_s"].as_u64()),
            (Some("capture"), Some(600))
        );
        let back: Envelope = serde_json::from_slice(&one).unwrap();
        assert_eq!(back, env(1), "the outbox reads what it wrote");
        let batch: Vec<Envelope> = (0..1000).map(env).collect();
        let v: serde_json::Value = serde_json::from_slice(&body(Format::Json, &batch)).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["count"].as_u64()),
            (Some("summary"), Some(1000))
        );
        assert_eq!(v["events"].as_array().unwrap().len(), 1000);
        assert_eq!(v["counts"]["ip_blocked"], 1000);
        let chat: serde_json::Value =
            serde_json::from_slice(&body(Format::Slack, &[env(1)])).unwrap();
        let t = chat["text"].as_str().unwrap();
        assert!(
            t.contains("Security Alert: action taken against 203.0.113.1") && t.contains("for 10m"),
            "{t}"
        );
        assert_eq!(chat.as_object().unwrap().len(), 1, "only text: {chat}");
        let chat: serde_json::Value = serde_json::from_slice(&body(Format::Slack, &batch)).unwrap();
        let t = chat["text"].as_str().unwrap();
        assert!(
            t.contains("1000 events")
                && t.contains("- 1000 ip_blocked: 203.0.113.0, ")
                && t.contains("and 980 more"),
            "{t}"
        );
    }

    #[test]
    fn a_big_scan_run_goes_to_the_sinks_that_take_ip_blocked() {
        let run = |unlisted| Notice::ScanRun {
            rule: "blocked".into(),
            kind: "tcp".into(),
            ipset: "throttle-hard".into(),
            lines_read: 1,
            lines_matched: 1,
            offenders: 2,
            added: 2,
            addresses: vec!["203.0.113.1".into(), "203.0.113.2".into()],
            unlisted,
        };
        let only_bans = |e: &str| e == "ip_blocked";
        assert!(
            !run(0).wanted_by(only_bans),
            "its bans have their own events"
        );
        assert!(
            run(1).wanted_by(only_bans),
            "it names a ban told nowhere else"
        );
        assert!(!run(1).wanted_by(|e: &str| e == "drift"));
        assert!(run(0).wanted_by(|e: &str| e == "scan_run"));
        let v = serde_json::to_value(run(0)).unwrap();
        assert!(v.get("unlisted").is_none(), "{v}");
        assert_eq!(serde_json::to_value(run(5)).unwrap()["unlisted"], 5);
    }

    #[test]
    fn events_handed_over_together_go_together() {
        let mut a = Aggregator::default();
        let b = a.push_all(vec![env(1), env(2)], 0).unwrap();
        assert_eq!(b.len(), 2, "a quiet sink sends them at once");
        assert_eq!(a.push_all(vec![env(3), env(4)], 5), None);
        assert_eq!(a.push_all(vec![], 6), None);
        assert_eq!(a.due(INTERVAL_MS).map(|b| b.len()), Some(2));
        // A few events in chat: a line each.
        let chat: serde_json::Value =
            serde_json::from_slice(&body(Format::Slack, &[env(1), env(2)])).unwrap();
        let t = chat["text"].as_str().unwrap();
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(
            t.contains("203.0.113.1") && t.contains("203.0.113.2"),
            "{t}"
        );
    }

    #[test]
    fn retries_back_off_and_stop() {
        let st = |code| Attempt::Status {
            code,
            retry_after: None,
        };
        assert_eq!(next(&st(204), 1, 5, 0), Next::Delivered);
        assert_eq!(next(&st(503), 1, 5, 0), Next::Retry(500));
        assert_eq!(next(&st(503), 2, 5, 0), Next::Retry(1000));
        assert_eq!(next(&Attempt::Timeout, 3, 5, 0), Next::Retry(2000));
        assert!(
            matches!(next(&Attempt::Timeout, 3, 5, 999), Next::Retry(w) if (2000..=3000).contains(&w))
        );
        assert_eq!(
            next(&Attempt::Connect("refused".into()), 12, 20, 0),
            Next::Retry(30_000)
        );
        let r = next(
            &Attempt::Status {
                code: 429,
                retry_after: Some(7),
            },
            1,
            5,
            0,
        );
        assert_eq!(r, Next::Retry(7000), "Retry-After is honoured");
        assert!(matches!(
            next(&st(404), 1, 5, 0),
            Next::GiveUp { keep: false, .. }
        ));
        assert!(matches!(
            next(&st(503), 5, 5, 0),
            Next::GiveUp { keep: true, .. }
        ));
    }

    #[test]
    fn the_outbox_is_bounded_and_per_sink() {
        let mut o = Outbox::default();
        let many: Vec<Envelope> = (0..OUTBOX_MAX as u32).map(env).collect();
        o.put("ops", 1, &many);
        o.put("chat", 2, &[env(1), env(2)]);
        assert_eq!((o.entries.len(), o.dropped), (OUTBOX_MAX, 2));
        let chat = o.take("chat");
        assert_eq!(chat.len(), 2);
        assert_eq!(o.entries.len(), OUTBOX_MAX - 2);
        assert!(o.entries.iter().all(|q| q.sink == "ops"));
        o.remove(1);
        assert!(o.entries.is_empty());
        assert!(
            check_name("ops-1").is_ok() && check_name("a b").is_err() && check_name("").is_err()
        );
    }
}
