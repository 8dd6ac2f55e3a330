//! Reporting bans back to AbuseIPDB (pure): which of a scan's bans are
//! reported (never a private, loopback, link-local, documentation, other
//! reserved or trusted address; at most once per address per 15 minutes,
//! the API's own rule; at most [`MAX_PER_RUN`] a run), with which
//! categories, and the comment, made of fwctl's own words only (rule,
//! type, counts): log lines are attacker-written and never go out. The
//! posting is the system layer's part; its failures are counted.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// AbuseIPDB refuses a second report of an address within 15 minutes.
pub const EVERY: i64 = 15 * 60;
/// Most reports a run posts (the rest are counted as skipped).
pub const MAX_PER_RUN: usize = 50;
/// Most addresses the ledger remembers (all reported within 15 minutes).
pub const MAX_LEDGER: usize = 10_000;
/// Longest comment the API takes.
pub const MAX_COMMENT: usize = 1024;

/// AbuseIPDB's categories fwctl uses (https://www.abuseipdb.com/categories).
pub mod category {
    pub const DDOS: u8 = 4;
    pub const FTP_BRUTE_FORCE: u8 = 5;
    pub const PORT_SCAN: u8 = 14;
    pub const HACKING: u8 = 15;
    pub const SQL_INJECTION: u8 = 16;
    pub const BRUTE_FORCE: u8 = 18;
    pub const BAD_WEB_BOT: u8 = 19;
    pub const WEB_APP_ATTACK: u8 = 21;
    pub const SSH: u8 = 22;
}

/// The categories of a scan's ban: by the log source, its rule, and the
/// web patterns the offender's requests matched.
pub fn categories(source: &str, rule: &str, patterns: &[String]) -> Vec<u8> {
    use category::*;
    match source {
        "kernel" if rule == "bandwidth" => vec![DDOS],
        "kernel" => vec![PORT_SCAN],
        "sshd" => vec![BRUTE_FORCE, SSH],
        "nginx" | "apache" if patterns.is_empty() => vec![BAD_WEB_BOT],
        "nginx" | "apache" => {
            let mut c = vec![WEB_APP_ATTACK];
            if patterns.iter().any(|p| p == "sql-injection") {
                c.insert(0, SQL_INJECTION);
            }
            c
        }
        "vsftpd" | "proftpd" => vec![FTP_BRUTE_FORCE, BRUTE_FORCE],
        "nginx-http-auth" => vec![BRUTE_FORCE, WEB_APP_ATTACK],
        "nginx-limit-req" => vec![BAD_WEB_BOT],
        "postfix-sasl" | "dovecot" | "mariadb" => vec![BRUTE_FORCE],
        // A [[source]] of the config: what it counts is the admin's.
        _ => vec![HACKING],
    }
}

/// The categories of a watch ban: watch does not keep which pattern each
/// line matched, so a web entry with `match` patterns is a web attack
/// (never a claim of SQL injection), one without is a bad bot.
pub fn watch_categories(source: &str, rule: &str, has_patterns: bool) -> Vec<u8> {
    match source {
        "nginx" | "apache" if has_patterns => vec![category::WEB_APP_ATTACK],
        _ => categories(source, rule, &[]),
    }
}

/// Why an address is never reported, if it is not.
pub fn refused(a: IpAddr, trusted: &[IpNet]) -> Option<&'static str> {
    if trusted.iter().any(|n| n.contains(&a)) {
        return Some("trusted");
    }
    match a {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => refused_v4(v4),
            None => refused_v6(v6),
        },
    }
}

fn within(a: IpAddr, nets: &[&str]) -> bool {
    nets.iter()
        .any(|n| n.parse::<IpNet>().expect("a valid network").contains(&a))
}

fn refused_v4(a: Ipv4Addr) -> Option<&'static str> {
    let ip = IpAddr::V4(a);
    if a.is_private() || within(ip, &["100.64.0.0/10"]) {
        Some("private")
    } else if a.is_loopback() {
        Some("loopback")
    } else if a.is_link_local() {
        Some("link-local")
    } else if within(ip, &["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]) {
        Some("documentation")
    } else if a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || within(
            ip,
            &["0.0.0.0/8", "192.0.0.0/24", "198.18.0.0/15", "240.0.0.0/4"],
        )
    {
        Some("reserved")
    } else {
        None
    }
}

fn refused_v6(a: Ipv6Addr) -> Option<&'static str> {
    let ip = IpAddr::V6(a);
    if within(ip, &["fc00::/7"]) {
        Some("private")
    } else if a.is_loopback() {
        Some("loopback")
    } else if within(ip, &["fe80::/10"]) {
        Some("link-local")
    } else if within(ip, &["2001:db8::/32", "3fff::/20"]) {
        Some("documentation")
    } else if a.is_unspecified() || a.is_multicast() || within(ip, &["100::/64", "64:ff9b:1::/48"])
    {
        Some("reserved")
    } else {
        None
    }
}

/// The comment: the rule, type and counts, in characters that cannot
/// make markup or a second field of anything (rule and type names come
/// from the config and the command line, never from a log).
pub fn comment(rule: &str, kind: &str, hits: u64, within: &str) -> String {
    comment_by("scan", rule, kind, hits, within)
}

/// [`comment`] for a ban that `by` made (`scan`, `watch`).
pub fn comment_by(by: &str, rule: &str, kind: &str, hits: u64, within: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | ',' | ':' | '-'))
            .take(64)
            .collect()
    };
    let mut c = format!(
        "fwctl {} rule {} ({}): {hits} matching log lines within {}",
        clean(by),
        clean(rule),
        clean(kind),
        clean(within)
    );
    c.truncate(MAX_COMMENT);
    c
}

/// What a run reports, and when each address was last reported (kept in
/// the state directory so cron runs respect the 15 minutes), with the
/// counts the metrics show.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub reported: BTreeMap<IpAddr, i64>,
    pub sent: u64,
    pub failed: u64,
    /// Never reported: private, documentation, trusted...
    pub refused: u64,
    /// Reported within the last 15 minutes already, or over a run's limit.
    pub limited: u64,
}

/// One report to post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub ip: IpAddr,
    pub categories: Vec<u8>,
    pub comment: String,
}

/// One ban a run made, to report.
pub struct Ban {
    pub ip: IpAddr,
    pub categories: Vec<u8>,
    pub comment: String,
}

/// What a run did, for its report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub sent: u32,
    pub failed: u32,
    pub refused: u32,
    pub limited: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A failure stopped the reports (the key refused, the quota used up,
    /// the service unreachable): watch pauses its reports then.
    #[serde(skip)]
    pub stopped: bool,
}

impl Ledger {
    /// Choose the reports of `bans` at `now` and mark them reported (so a
    /// run at the same moment does not report them again; a failed post
    /// is not retried for 15 minutes either). Forgets reports older than
    /// 15 minutes, which bounds the ledger.
    pub fn choose(
        &mut self,
        bans: Vec<Ban>,
        trusted: &[IpNet],
        now: i64,
        s: &mut Summary,
    ) -> Vec<Report> {
        self.reported
            .retain(|_, at| now - *at < EVERY && *at <= now);
        let mut out = Vec::new();
        for b in bans {
            if refused(b.ip, trusted).is_some() {
                s.refused += 1;
                self.refused += 1;
            } else if self.reported.contains_key(&b.ip)
                || out.len() >= MAX_PER_RUN
                || self.reported.len() >= MAX_LEDGER
            {
                s.limited += 1;
                self.limited += 1;
            } else {
                self.reported.insert(b.ip, now);
                out.push(Report {
                    ip: b.ip,
                    categories: b.categories,
                    comment: b.comment,
                });
            }
        }
        out
    }
}

/// Why a ledger file's text is not a ledger (serde_json's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Corrupt(pub String);

pub fn parse(text: &[u8]) -> Result<Ledger, Corrupt> {
    serde_json::from_slice(text).map_err(|e| Corrupt(e.to_string()))
}

pub fn to_text(l: &Ledger) -> Vec<u8> {
    let mut t = serde_json::to_vec(l).expect("a ledger serializes");
    t.push(b'\n');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_documentation_reserved_and_trusted_addresses_are_never_reported() {
        let trusted: Vec<IpNet> = vec!["8.8.4.0/24".parse().unwrap()];
        for (a, why) in [
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("127.0.0.1", "loopback"),
            ("169.254.1.1", "link-local"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("0.1.2.3", "reserved"),
            ("224.0.0.1", "reserved"),
            ("255.255.255.255", "reserved"),
            ("fd00::1", "private"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("::ffff:192.0.2.1", "documentation"),
            ("ff02::1", "reserved"),
            ("8.8.4.4", "trusted"),
        ] {
            assert_eq!(refused(ip(a), &trusted), Some(why), "{a}");
        }
        // A public address is reportable (it is only looked at, never sent
        // a packet, here).
        assert_eq!(refused(ip("8.8.8.8"), &trusted), None);
        assert_eq!(refused(ip("2a00:1450::1"), &trusted), None);
    }

    #[test]
    fn categories_follow_what_was_seen() {
        use category::*;
        assert_eq!(categories("kernel", "blocked", &[]), [PORT_SCAN]);
        assert_eq!(categories("kernel", "bandwidth", &[]), [DDOS]);
        assert_eq!(categories("sshd", "sshd", &[]), [BRUTE_FORCE, SSH]);
        assert_eq!(categories("nginx", "nginx", &[]), [BAD_WEB_BOT]);
        assert_eq!(
            categories("apache", "apache", &["sql-injection".into(), "xss".into()]),
            [SQL_INJECTION, WEB_APP_ATTACK]
        );
        assert_eq!(
            categories("nginx", "nginx", &["wp-login".into()]),
            [WEB_APP_ATTACK]
        );
        assert_eq!(
            categories("vsftpd", "vsftpd", &[]),
            [FTP_BRUTE_FORCE, BRUTE_FORCE]
        );
        assert_eq!(
            categories("postfix-sasl", "postfix-sasl", &[]),
            [BRUTE_FORCE]
        );
        assert_eq!(categories("my-app", "my-app", &[]), [HACKING]);
    }

    #[test]
    fn watch_categories_never_claim_what_was_not_kept() {
        use category::*;
        assert_eq!(watch_categories("nginx", "nginx", true), [WEB_APP_ATTACK]);
        assert_eq!(watch_categories("apache", "apache", false), [BAD_WEB_BOT]);
        assert_eq!(watch_categories("sshd", "sshd", false), [BRUTE_FORCE, SSH]);
        assert_eq!(
            comment_by("watch", "sshd", "ssh", 6, "10m"),
            "fwctl watch rule sshd (ssh): 6 matching log lines within 10m"
        );
    }

    #[test]
    fn the_comment_holds_only_fwctls_words() {
        let c = comment("blocked", "tcp", 501, "30m");
        assert_eq!(
            c,
            "fwctl scan rule blocked (tcp): 501 matching log lines within 30m"
        );
        let c = comment("x<script>&y=\"1\"\n", "4xx match:sql-injection", 7, "10m");
        assert!(!c.contains(['<', '>', '&', '=', '"', '\n']), "{c}");
        assert!(c.len() <= MAX_COMMENT);
    }

    fn ban(a: &str) -> Ban {
        Ban {
            ip: ip(a),
            categories: vec![14],
            comment: "c".into(),
        }
    }

    #[test]
    fn an_address_is_reported_at_most_once_in_15_minutes_and_a_run_is_bounded() {
        let mut l = Ledger::default();
        let mut s = Summary::default();
        let got = l.choose(
            vec![ban("8.8.8.8"), ban("192.0.2.1"), ban("8.8.8.8")],
            &[],
            1000,
            &mut s,
        );
        assert_eq!(got.len(), 1);
        assert_eq!((s.refused, s.limited), (1, 1));
        // 14 minutes later: still not; 15 minutes later: again.
        let mut s = Summary::default();
        assert!(l
            .choose(vec![ban("8.8.8.8")], &[], 1000 + 14 * 60, &mut s)
            .is_empty());
        assert_eq!(s.limited, 1);
        assert_eq!(
            l.choose(vec![ban("8.8.8.8")], &[], 1000 + EVERY, &mut s)
                .len(),
            1
        );
        // Survives the file.
        let back = parse(&to_text(&l)).unwrap();
        assert_eq!(back, l);
        // A run reports at most MAX_PER_RUN; the ledger forgets old ones.
        let many: Vec<Ban> = (0..200u32)
            .map(|i| Ban {
                ip: IpAddr::V4(Ipv4Addr::from(0x0808_0000 + i)),
                categories: vec![14],
                comment: String::new(),
            })
            .collect();
        let mut s = Summary::default();
        assert_eq!(l.choose(many, &[], 5000, &mut s).len(), MAX_PER_RUN);
        assert_eq!(s.limited as usize, 200 - MAX_PER_RUN);
        l.choose(vec![], &[], 5000 + EVERY, &mut s);
        assert!(l.reported.is_empty());
    }
}
