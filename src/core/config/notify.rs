//! The `[[notify]]` and `[metrics]` sections: webhook sinks and where the
//! Prometheus metrics go, validated while the file and line are known.

use crate::units::Invalid;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The event names, as the config writes them.
pub const EVENTS: [&str; 17] = [
    "decoy_touched",
    "signature_matched",
    "ip_blocked",
    "scan_detected",
    "distributed_scan",
    "connection_flood",
    "syn_flood",
    "scan_run",
    "unban",
    "apply",
    "apply_failed",
    "rollback",
    "drift",
    "capture_down",
    "feed_refused",
    "anomaly",
    "test",
];

/// A sink's wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// fwctl's own document: the envelope, or a summary of several.
    Json,
    /// `{"text": "..."}`, one readable message.
    Slack,
}

/// A URL as every message shows it: scheme, host and port, never the user
/// info, path or query, which is where webhook services (Slack, Discord,
/// Mattermost) and some feeds put their secret token:
/// `https://hooks.example.net/…`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.host_str() {
            Some(host) => format!(
                "{}://{host}{}/\u{2026}",
                u.scheme(),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            None => format!("{}:\u{2026}", u.scheme()),
        },
        Err(_) => "(a URL that does not parse)".into(),
    }
}

/// A sink name: what logs and `notify test --sink` show.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Invalid(format!(
            "[[notify]] name = \"{name}\": fix: 1 to 32 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// One webhook sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifySink {
    pub name: String,
    /// http:// or https://.
    pub url: String,
    pub format: Format,
    /// The HMAC key's file (never the key itself in the config).
    pub secret_file: Option<PathBuf>,
    /// The events it takes (all when the config names none).
    pub events: Vec<String>,
    /// How long one request may take.
    pub timeout: Duration,
}

impl NotifySink {
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    name: String,
    url: String,
    #[serde(default = "json")]
    format: Format,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    events: Vec<String>,
    timeout: Option<String>,
}

fn json() -> Format {
    Format::Json
}

impl RawNotify {
    pub fn validate(self) -> Result<NotifySink, Invalid> {
        check_name(&self.name)?;
        let n = &self.name;
        // Shown redacted: a webhook's path holds its secret token.
        let shown = redact(&self.url);
        let url = url::Url::parse(&self.url).map_err(|e| {
            Invalid(format!(
                "[[notify]] {n}: url is not a URL ({e}); fix: e.g. https://hooks.example.net/fwctl"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Invalid(format!(
                "[[notify]] {n}: url \"{shown}\" must be http:// or https:// with a host"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid(format!(
                "[[notify]] {n}: url \"{shown}\" holds a user name or password; fix: keep secrets out of the config (secret_file signs the requests)"
            )));
        }
        for e in &self.events {
            if !EVENTS.contains(&e.as_str()) {
                return Err(Invalid(format!(
                    "[[notify]] {n}: unknown event \"{e}\"; fix: one of {}",
                    EVENTS.join(", ")
                )));
            }
        }
        let timeout = match &self.timeout {
            None => Duration::from_secs(5),
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(60) => d,
                _ => {
                    return Err(Invalid(format!(
                        "[[notify]] {n}: timeout = \"{t}\"; fix: a duration from 100ms to 60s, e.g. \"5s\""
                    )))
                }
            },
        };
        Ok(NotifySink {
            name: self.name,
            url: self.url,
            format: self.format,
            secret_file: self.secret_file,
            events: self.events,
            timeout,
        })
    }
}

/// Where the metrics go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// capture's /metrics endpoint (None: off).
    pub listen: Option<SocketAddr>,
    /// watch's /metrics endpoint (None: off): its own port, as capture and
    /// watch run side by side.
    pub watch_listen: Option<SocketAddr>,
    /// The node_exporter textfile directory scan, apply and status write
    /// `fwctl.prom` into (None: off).
    pub textfile_dir: Option<PathBuf>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";
pub const DEFAULT_WATCH_LISTEN: &str = "127.0.0.1:9470";

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: Some(DEFAULT_LISTEN.parse().expect("valid")),
            watch_listen: Some(DEFAULT_WATCH_LISTEN.parse().expect("valid")),
            textfile_dir: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    listen: Option<String>,
    watch_listen: Option<String>,
    textfile_dir: Option<PathBuf>,
}

impl RawMetrics {
    pub fn validate(self) -> Result<Metrics, Invalid> {
        let addr = |v: Option<&str>, key: &str, default: &str| {
            match v {
            None => Ok(Some(default.parse::<SocketAddr>().expect("valid"))),
            Some("") => Ok(None),
            Some(s) => s.parse::<SocketAddr>().map(Some).map_err(|_| {
                Invalid(format!(
                    "[metrics] {key} = \"{s}\" is not ADDRESS:PORT; fix: e.g. \"{default}\", or \"\" to turn the endpoint off"
                ))
            }),
        }
        };
        let listen = addr(self.listen.as_deref(), "listen", DEFAULT_LISTEN)?;
        let watch_listen = addr(
            self.watch_listen.as_deref(),
            "watch_listen",
            DEFAULT_WATCH_LISTEN,
        )?;
        if let Some(both) = listen.filter(|l| Some(*l) == watch_listen) {
            return Err(Invalid(format!(
                "[metrics] listen and watch_listen are both {both}; fix: capture and watch each need a port of their own"
            )));
        }
        if let Some(d) = &self.textfile_dir {
            if !d.is_absolute() {
                return Err(Invalid(format!(
                    "[metrics] textfile_dir = \"{}\" is relative; fix: an absolute directory, e.g. /var/lib/prometheus/node-exporter",
                    d.display()
                )));
            }
        }
        Ok(Metrics {
            listen,
            watch_listen,
            textfile_dir: self.textfile_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(text: &str) -> Result<NotifySink, String> {
        let raw: RawNotify = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.0)
    }

    #[test]
    fn capture_and_watch_each_get_an_endpoint() {
        let m = |t: &str| toml::from_str::<RawMetrics>(t).unwrap().validate();
        let d = m("").unwrap();
        assert_eq!(
            (d.listen.unwrap().port(), d.watch_listen.unwrap().port()),
            (9469, 9470)
        );
        assert!(m("watch_listen = \"\"").unwrap().watch_listen.is_none());
        let e = m("listen = \"127.0.0.1:9000\"\nwatch_listen = \"127.0.0.1:9000\"")
            .unwrap_err()
            .0;
        assert!(e.contains("a port of their own"), "{e}");
        assert!(m("watch_listen = \"nine\"")
            .unwrap_err()
            .0
            .contains("[metrics] watch_listen"));
    }

    #[test]
    fn sinks_and_their_mistakes() {
        let s = sink("name = \"ops\"\nurl = \"https://hooks.example.net/fwctl\"\nformat = \"slack\"\nevents = [\"ip_blocked\", \"drift\"]\ntimeout = \"2s\"\n").unwrap();
        assert_eq!(
            (s.format, s.timeout),
            (Format::Slack, Duration::from_secs(2))
        );
        assert!(s.wants("drift") && !s.wants("apply"));
        let all = sink("name = \"a\"\nurl = \"http://192.0.2.1:8080/x\"\n").unwrap();
        assert!(all.wants("apply") && all.timeout == Duration::from_secs(5));
        for (text, want) in [
            ("name = \"a b\"\nurl = \"http://x\"", "letters, digits"),
            ("name = \"a\"\nurl = \"ftp://x/y\"", "http:// or https://"),
            ("name = \"a\"\nurl = \"not a url\"", "is not a URL"),
            (
                "name = \"a\"\nurl = \"https://u:pw@x/y\"",
                "keep secrets out",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nevents = [\"ip_banned\"]",
                "unknown event \"ip_banned\"",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\ntimeout = \"5m\"",
                "100ms to 60s",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nformat = \"xml\"",
                "unknown variant",
            ),
            (
                "name = \"a\"\nurl = \"http://x\"\nsecret = \"hunter2\"",
                "unknown field",
            ),
        ] {
            let e = sink(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        // The token in a webhook's path, or a password, is never in the error.
        for text in [
            "name = \"a\"\nurl = \"ftp://hooks.example.net/T0/tok3n\"",
            "name = \"a\"\nurl = \"https://u:pw0rd@hooks.example.net/T0/tok3n\"",
            "name = \"a\"\nurl = \"https://hooks.example.net:99999/T0/tok3n\"",
        ] {
            let e = sink(text).unwrap_err();
            assert!(!e.contains("tok3n") && !e.contains("pw0rd"), "{e}");
        }
    }

    #[test]
    fn metrics_default_on_localhost_and_can_be_off() {
        let m: RawMetrics = toml::from_str("").unwrap();
        assert_eq!(
            m.validate().unwrap().listen,
            Some(DEFAULT_LISTEN.parse().unwrap())
        );
        let m: RawMetrics = toml::from_str("listen = \"\"").unwrap();
        assert_eq!(m.validate().unwrap().listen, None);
        let m: RawMetrics = toml::from_str("listen = \"9469\"").unwrap();
        assert!(m.validate().unwrap_err().0.contains("ADDRESS:PORT"));
        let m: RawMetrics = toml::from_str("textfile_dir = \"prom\"").unwrap();
        assert!(m.validate().unwrap_err().0.contains("relative"));
    }
}
