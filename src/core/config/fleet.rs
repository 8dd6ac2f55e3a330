//! The `[fleet]` section: the Redis that hosts share their bans through,
//! what this host publishes and what it accepts from the others.

use crate::core::fleetsig::PublicKey;
use crate::units::duration::{human, MAX_TIMEOUT};
use crate::units::names::BAN_ROLES;
use crate::units::Invalid;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The origins of local bans, as `share` names them.
pub const ORIGINS: [&str; 3] = ["capture", "scan", "manual"];
pub const DEFAULT_STREAM: &str = "fwctl:bans";
/// A remote ban lasts at most this long unless `max_ban` says otherwise.
pub const DEFAULT_MAX_BAN: u64 = 7 * 86_400;
/// Remote networks wider than these are refused (a /3 of IPv6 is all of it).
pub const DEFAULT_MIN_PREFIX_V4: u8 = 24;
pub const DEFAULT_MIN_PREFIX_V6: u8 = 48;
/// Running remote bans one fleet host may have here: a scan's worth of
/// bans, and a small part of a default set (262 144), so no one host, nor a
/// few, can take the room of the others'.
pub const DEFAULT_MAX_ENTRIES_PER_HOST: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    /// `redis://` or `rediss://` (TLS) URL, without a password.
    pub redis: String,
    pub tls: bool,
    pub password_file: Option<PathBuf>,
    /// This host's name in the fleet (None: the host name, read at run time).
    pub host: Option<String>,
    pub stream: String,
    /// Origins of the local bans that are published.
    pub share: Vec<String>,
    /// Roles remote bans may use here.
    pub accept: Vec<String>,
    /// The longest a remote ban lasts here, in seconds.
    pub max_ban: u64,
    /// Publish capture's bans on evidence a forger can produce (probes,
    /// floods counted on SYNs) too; off by default.
    pub share_spoofable: bool,
    /// The widest remote network accepted, per family (prefix lengths).
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    /// Running remote bans one origin host may have here.
    pub max_entries_per_host: usize,
    /// This host's Ed25519 private key (a secret file): its entries are signed.
    pub key_file: Option<PathBuf>,
    /// Host name → public key. Not empty: only entries signed by the key of
    /// the host they name are applied.
    pub peers: BTreeMap<String, PublicKey>,
}

impl Fleet {
    pub fn shares(&self, origin: &str) -> bool {
        self.share.iter().any(|s| s == origin)
    }

    pub fn accepts(&self, role: &str) -> bool {
        self.accept.iter().any(|r| r == role)
    }

    /// The shortest prefix a remote network of this family may have.
    pub fn min_prefix(&self, v6: bool) -> u8 {
        if v6 {
            self.min_prefix_v6
        } else {
            self.min_prefix_v4
        }
    }

    /// The sorted set of active bans (member "role address", score: end time).
    pub fn active_key(&self) -> String {
        format!("{}:active", self.stream)
    }

    /// The hash of the active bans' entries (field: the same member).
    pub fn info_key(&self) -> String {
        format!("{}:info", self.stream)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    redis: String,
    password_file: Option<PathBuf>,
    host: Option<String>,
    stream: Option<String>,
    share: Option<Vec<String>>,
    accept: Option<Vec<String>>,
    max_ban: Option<String>,
    share_spoofable: Option<bool>,
    min_prefix_v4: Option<u8>,
    min_prefix_v6: Option<u8>,
    max_entries_per_host: Option<usize>,
    key_file: Option<PathBuf>,
    peers: Option<BTreeMap<String, String>>,
}

/// A fleet name (host or stream): printable, no spaces, short.
fn check_token(what: &str, v: &str) -> Result<(), Invalid> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
    if ok {
        Ok(())
    } else {
        Err(Invalid(format!(
            "[fleet] {what} = \"{v}\": fix: 1 to 128 printable characters without spaces or quotes"
        )))
    }
}

impl RawFleet {
    pub fn validate(self) -> Result<Fleet, Invalid> {
        let url = url::Url::parse(&self.redis).map_err(|e| {
            Invalid(format!(
                "[fleet] redis = \"{}\" is not a URL ({e}); fix: e.g. \"redis://203.0.113.100:6379/0\"",
                self.redis
            ))
        })?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            s => {
                return Err(Invalid(format!(
                    "[fleet] redis: scheme \"{s}\" is not redis:// or rediss:// (TLS)"
                )))
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Invalid(format!(
                "[fleet] redis = \"{}\" names no host; fix: e.g. \"redis://203.0.113.100:6379/0\"",
                self.redis
            )));
        }
        if url.password().is_some() {
            return Err(Invalid(
                "[fleet] redis holds a password; fix: keep secrets out of the config: put it in the file that password_file names (chmod 600)".into(),
            ));
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(Invalid(format!(
                "[fleet] redis: \"/{db}\" is not a database number; fix: e.g. /0"
            )));
        }
        if let Some(h) = &self.host {
            check_token("host", h)?;
        }
        let stream = self.stream.unwrap_or_else(|| DEFAULT_STREAM.to_string());
        check_token("stream", &stream)?;
        let share = match self.share {
            None => ORIGINS.iter().map(|s| s.to_string()).collect(),
            Some(v) => {
                for s in &v {
                    if !ORIGINS.contains(&s.as_str()) {
                        return Err(Invalid(format!(
                            "[fleet] share: unknown origin \"{s}\"; fix: any of {}",
                            ORIGINS.join(", ")
                        )));
                    }
                }
                v
            }
        };
        let accept = match self.accept {
            None => BAN_ROLES.iter().map(|s| s.to_string()).collect(),
            Some(v) => {
                for r in &v {
                    if !BAN_ROLES.contains(&r.as_str()) {
                        return Err(Invalid(format!(
                            "[fleet] accept: unknown role \"{r}\"; fix: any of {}",
                            BAN_ROLES.join(", ")
                        )));
                    }
                }
                v
            }
        };
        let max_ban = match &self.max_ban {
            None => DEFAULT_MAX_BAN,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if d.as_secs() >= 1 && d.as_secs() <= MAX_TIMEOUT => d.as_secs(),
                _ => {
                    return Err(Invalid(format!(
                        "[fleet] max_ban = \"{s}\"; fix: a duration from 1s to {} (the kernel's longest ipset timeout)",
                        human(MAX_TIMEOUT)
                    )))
                }
            },
        };
        let min_prefix_v4 = self.min_prefix_v4.unwrap_or(DEFAULT_MIN_PREFIX_V4);
        let min_prefix_v6 = self.min_prefix_v6.unwrap_or(DEFAULT_MIN_PREFIX_V6);
        for (k, v, max) in [
            ("min_prefix_v4", min_prefix_v4, 32),
            ("min_prefix_v6", min_prefix_v6, 128),
        ] {
            if v > max {
                return Err(Invalid(format!(
                    "[fleet] {k} = {v}; fix: a prefix length from 0 to {max}"
                )));
            }
        }
        let max_entries_per_host = self
            .max_entries_per_host
            .unwrap_or(DEFAULT_MAX_ENTRIES_PER_HOST);
        if !(1..=10_000_000).contains(&max_entries_per_host) {
            return Err(Invalid(format!(
                "[fleet] max_entries_per_host = {max_entries_per_host}; fix: 1 to 10000000 (leave accept out of a role to take none)"
            )));
        }
        let mut peers = BTreeMap::new();
        for (h, k) in self.peers.unwrap_or_default() {
            check_token("peers: host", &h)?;
            let key = PublicKey::parse(&k).map_err(|why| {
                Invalid(format!(
                    "[fleet.peers] \"{h}\" {why}; fix: the public key `fwctl fleet keygen` printed on {h} (44 characters of base64)"
                ))
            })?;
            peers.insert(h, key);
        }
        Ok(Fleet {
            redis: self.redis,
            tls,
            password_file: self.password_file,
            host: self.host,
            stream,
            share,
            accept,
            max_ban,
            share_spoofable: self.share_spoofable.unwrap_or(false),
            min_prefix_v4,
            min_prefix_v6,
            max_entries_per_host,
            key_file: self.key_file,
            peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(extra: &str) -> Result<Fleet, Invalid> {
        let text = format!("redis = \"redis://203.0.113.100:6379/0\"\n{extra}");
        toml::from_str::<RawFleet>(&text).unwrap().validate()
    }

    #[test]
    fn defaults_and_refusals() {
        let f = raw("").unwrap();
        assert_eq!(f.stream, "fwctl:bans");
        assert_eq!(f.active_key(), "fwctl:bans:active");
        assert!(f.shares("capture") && f.shares("manual"));
        assert!(f.accepts("throttle-soft"));
        assert_eq!(f.max_ban, 7 * 86_400);
        assert!(!f.tls);
        assert!(!f.share_spoofable);
        assert!(raw("share_spoofable = true").unwrap().share_spoofable);
        assert_eq!((f.min_prefix(false), f.min_prefix(true)), (24, 48));
        assert_eq!(f.max_entries_per_host, 4096);
        assert!(f.peers.is_empty() && f.key_file.is_none());
        let key = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=";
        let p = raw(&format!(
            "min_prefix_v4 = 16\nmin_prefix_v6 = 32\nmax_entries_per_host = 10\nkey_file = \"/etc/fwctl/fleet.key\"\n[peers]\n\"web-2\" = \"{key}\""
        ))
        .unwrap();
        assert_eq!(
            (p.min_prefix_v4, p.min_prefix_v6, p.max_entries_per_host),
            (16, 32, 10)
        );
        assert_eq!(p.peers["web-2"].to_text(), key);
        for (extra, want) in [
            (
                "min_prefix_v4 = 33",
                "min_prefix_v4 = 33; fix: a prefix length from 0 to 32",
            ),
            ("min_prefix_v6 = 129", "from 0 to 128"),
            ("max_entries_per_host = 0", "max_entries_per_host = 0"),
            ("[peers]\n\"web-2\" = \"AAAA\"", "\"web-2\" is 3 bytes"),
            ("[peers]\n\"web 2\" = \"AAAA\"", "without spaces"),
            ("share = [\"cron\"]", "unknown origin \"cron\""),
            ("accept = [\"whitelist\"]", "unknown role \"whitelist\""),
            ("max_ban = \"90d\"", "max_ban = \"90d\""),
            ("host = \"web 1\"", "without spaces"),
        ] {
            let e = raw(extra).unwrap_err().0;
            assert!(e.contains(want), "{extra}: {e}");
        }
        let bad = |url: &str| {
            toml::from_str::<RawFleet>(&format!("redis = \"{url}\""))
                .unwrap()
                .validate()
                .unwrap_err()
                .0
        };
        assert!(bad("redis://:pw@203.0.113.100/").contains("password_file"));
        assert!(bad("http://203.0.113.100/").contains("not redis://"));
        assert!(bad("redis://203.0.113.100/x").contains("database number"));
        let t = toml::from_str::<RawFleet>("redis = \"rediss://fwctl@203.0.113.100:6380/1\"")
            .unwrap()
            .validate()
            .unwrap();
        assert!(t.tls);
    }
}
