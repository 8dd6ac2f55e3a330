//! Validated names and small value types that end up on a command line or in a
//! restore script. Everything that reaches `ipset` or `iptables-restore` passes
//! through one of these constructors first, so a config value can never smuggle
//! an option or a second command into what we run.

/// The sets a ban may go into, by their role names (each host maps a role
/// to its own kernel set names in [sets]).
pub const BAN_ROLES: [&str; 3] = ["blacklist", "throttle-hard", "throttle-soft"];

use super::Invalid;
use std::fmt;

/// ipset's limit is 31 characters (IPSET_MAXNAMELEN 32 with the NUL). fwctl adds
/// `_v6` for the IPv6 twin, so a base name may use at most 28.
pub const SET_BASE_MAX: usize = 28;
pub const V6_SUFFIX: &str = "_v6";

/// A base ipset name (the IPv4 set; the IPv6 twin is `<name>_v6`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetName(String);

impl SetName {
    pub fn parse(s: &str) -> Result<SetName, Invalid> {
        if s.is_empty() {
            return Err(Invalid::new(
                "set name is empty; fix: use letters, digits, '-', '_' or '.'",
            ));
        }
        if s.len() > SET_BASE_MAX {
            return Err(Invalid(format!(
                "set name \"{s}\" is {} characters; ipset allows 31 and fwctl adds \"{V6_SUFFIX}\" \
                 for the IPv6 twin, so use at most {SET_BASE_MAX}",
                s.len()
            )));
        }
        if s.starts_with('-') {
            return Err(Invalid(format!(
                "set name \"{s}\" starts with '-', which ipset reads as an option; fix: start with a letter or digit"
            )));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(Invalid(format!(
                "set name \"{s}\" contains {c:?}; fix: use only letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(SetName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kernel set name for one address family.
    pub fn for_family(&self, v6: bool) -> String {
        if v6 {
            format!("{}{V6_SUFFIX}", self.0)
        } else {
            self.0.clone()
        }
    }
}

impl fmt::Display for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A LOG prefix. The kernel keeps 29 characters; we also refuse characters that
/// would need escaping inside the double-quoted `--log-prefix` of a restore file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPrefix(String);

pub const LOG_PREFIX_MAX: usize = 29;

impl LogPrefix {
    pub fn parse(s: &str) -> Result<LogPrefix, Invalid> {
        if s.trim().is_empty() {
            return Err(
                "LOG prefix is empty; fix: use something like \"IPTABLES-BLOCKED: \"".into(),
            );
        }
        if s.len() > LOG_PREFIX_MAX {
            return Err(Invalid(format!(
                "LOG prefix \"{s}\" is {} characters; the kernel keeps at most {LOG_PREFIX_MAX}",
                s.len()
            )));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_graphic() || *c == ' ') || matches!(c, '"' | '\\' | '\''))
        {
            return Err(Invalid(format!(
                "LOG prefix \"{s}\" contains {c:?}; fix: use printable ASCII without quotes or backslashes"
            )));
        }
        if s.contains("SRC=") || s.contains("IN=") {
            return Err(Invalid(format!(
                "LOG prefix \"{s}\" contains a field name (IN=/SRC=) that would confuse the log parser"
            )));
        }
        Ok(LogPrefix(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A rate such as `10/minute`, as hashlimit understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: RateUnit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Rate {
    pub fn parse(s: &str) -> Result<Rate, Invalid> {
        let fix = "fix: write COUNT/UNIT, e.g. \"10/minute\" (unit: second, minute, hour or day)";
        let (n, unit) = s
            .split_once('/')
            .ok_or_else(|| Invalid(format!("rate \"{s}\" has no '/'; {fix}")))?;
        let count: u32 = n.trim().parse().map_err(|_| {
            Invalid(format!(
                "rate \"{s}\": \"{n}\" is not a whole number; {fix}"
            ))
        })?;
        if count == 0 {
            return Err(Invalid(format!("rate \"{s}\" is zero; {fix}")));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => RateUnit::Second,
            "m" | "min" | "minute" => RateUnit::Minute,
            "h" | "hour" => RateUnit::Hour,
            "d" | "day" => RateUnit::Day,
            other => {
                return Err(Invalid(format!(
                    "rate \"{s}\": unknown unit \"{other}\"; {fix}"
                )))
            }
        };
        // hashlimit stores the interval between tokens in its own units; rates
        // faster than this overflow its arithmetic and iptables refuses them.
        if per == RateUnit::Second && count > 1_000_000 {
            return Err(Invalid(format!(
                "rate \"{s}\" is above hashlimit's 1000000/second"
            )));
        }
        Ok(Rate { count, per })
    }

    /// Events a second.
    pub fn per_second(self) -> f64 {
        let secs = match self.per {
            RateUnit::Second => 1.0,
            RateUnit::Minute => 60.0,
            RateUnit::Hour => 3600.0,
            RateUnit::Day => 86_400.0,
        };
        f64::from(self.count) / secs
    }

    /// The form iptables prints back in `iptables-save`, so renders compare equal.
    pub fn to_iptables(self) -> String {
        let unit = match self.per {
            RateUnit::Second => "sec",
            RateUnit::Minute => "min",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        };
        format!("{}/{unit}", self.count)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A per-source byte rate such as `20mb/s`, as hashlimit's byte mode takes
/// it: `b`, `kb` (1024) or `mb` (1024 * 1024) per second, the units
/// iptables prints back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRate {
    pub count: u32,
    /// 1, 1024 or 1048576.
    pub unit: u32,
}

impl ByteRate {
    /// hashlimit keeps a byte rate in 32 bits: 4095mb/s is about its top.
    pub const MAX_BYTES: u64 = 4000 << 20;

    pub fn parse(s: &str) -> Result<ByteRate, Invalid> {
        let fix = "fix: write COUNT then kb/s or mb/s, e.g. \"20mb/s\" (1 mb = 1048576 bytes, as iptables counts)";
        let t = s.trim().to_ascii_lowercase();
        let body = t
            .strip_suffix("/s")
            .or_else(|| t.strip_suffix("/second"))
            .ok_or_else(|| Invalid(format!("byte rate \"{s}\" is not per second; {fix}")))?;
        let (num, unit) = if let Some(n) = body.strip_suffix("mb") {
            (n, 1 << 20)
        } else if let Some(n) = body.strip_suffix("kb") {
            (n, 1 << 10)
        } else if let Some(n) = body.strip_suffix('b') {
            (n, 1)
        } else {
            return Err(Invalid(format!("byte rate \"{s}\" has no unit; {fix}")));
        };
        let count: u32 = num.trim().parse().map_err(|_| {
            Invalid(format!(
                "byte rate \"{s}\": \"{num}\" is not a whole number; {fix}"
            ))
        })?;
        let bytes = u64::from(count) * u64::from(unit);
        if count == 0 || !(1024..=Self::MAX_BYTES).contains(&bytes) {
            return Err(Invalid(format!(
                "byte rate \"{s}\" is outside 1kb/s to 4000mb/s; {fix}"
            )));
        }
        Ok(ByteRate { count, unit })
    }

    /// In the largest unit that divides it, as `iptables-save` prints small
    /// rates (`2048b/s` is `2kb/s`). hashlimit keeps a byte rate as a 32-bit
    /// cost in 16-byte steps, so the kernel rounds some: 3000b/s runs as
    /// 2992b/s, 1000mb/s as 1008mb/s (docs/config.md says so).
    pub fn to_iptables(self) -> String {
        let b = self.bytes_per_second();
        if b.is_multiple_of(1 << 20) {
            format!("{}mb/s", b >> 20)
        } else if b.is_multiple_of(1 << 10) {
            format!("{}kb/s", b >> 10)
        } else {
            format!("{b}b/s")
        }
    }

    pub fn bytes_per_second(self) -> u64 {
        u64::from(self.count) * u64::from(self.unit)
    }
}

/// A destination port or inclusive range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn parse(s: &str) -> Result<PortRange, Invalid> {
        let fix = "fix: a port 1-65535 or a range like \"8000-8080\"";
        let one = |p: &str| -> Result<u16, Invalid> {
            match p.trim().parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                _ => Err(Invalid(format!("port \"{s}\" is not a port number; {fix}"))),
            }
        };
        let (first, last) = match s.split_once(['-', ':']) {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let p = one(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(Invalid(format!("port range \"{s}\" runs backwards; {fix}")));
        }
        Ok(PortRange { first, last })
    }

    pub fn from_number(n: i64) -> Result<PortRange, Invalid> {
        if (1..=65535).contains(&n) {
            Ok(PortRange {
                first: n as u16,
                last: n as u16,
            })
        } else {
            Err(Invalid(format!(
                "port {n} is out of range; fix: a port 1-65535 or a range like \"8000-8080\""
            )))
        }
    }

    pub fn to_iptables(self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}:{}", self.first, self.last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names() {
        assert!(SetName::parse("throttle-hard").is_ok());
        assert!(SetName::parse(&"a".repeat(28)).is_ok());
        assert!(SetName::parse(&"a".repeat(29))
            .unwrap_err()
            .as_str()
            .contains("at most 28"));
        assert!(SetName::parse("-exist").is_err());
        assert!(SetName::parse("bad name").is_err());
        assert!(SetName::parse("x;rm").is_err());
        assert!(SetName::parse("").is_err());
        assert_eq!(SetName::parse("bl").unwrap().for_family(true), "bl_v6");
    }

    #[test]
    fn prefixes() {
        assert!(LogPrefix::parse("IPTABLES-BLOCKED: ").is_ok());
        assert!(LogPrefix::parse(&"X".repeat(30)).is_err());
        assert!(LogPrefix::parse("a\"b").is_err());
        assert!(LogPrefix::parse("a\nb").is_err());
        assert!(LogPrefix::parse("  ").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("10/minute").unwrap().to_iptables(), "10/min");
        assert_eq!(Rate::parse("5/s").unwrap().to_iptables(), "5/sec");
        assert!(Rate::parse("0/second").is_err());
        let b = ByteRate::parse("20mb/s").unwrap();
        assert_eq!(
            (b.to_iptables(), b.bytes_per_second()),
            ("20mb/s".into(), 20 << 20)
        );
        assert_eq!(
            ByteRate::parse(" 512KB/second").unwrap().to_iptables(),
            "512kb/s"
        );
        assert_eq!(ByteRate::parse("2048b/s").unwrap().bytes_per_second(), 2048);
        assert_eq!(ByteRate::parse("2048b/s").unwrap().to_iptables(), "2kb/s");
        assert_eq!(ByteRate::parse("1024kb/s").unwrap().to_iptables(), "1mb/s");
        for bad in [
            "20mb",
            "20 mbit/s",
            "0mb/s",
            "100b/s",
            "4001mb/s",
            "x mb/s",
            "-1kb/s",
            "20gb/s",
        ] {
            assert!(ByteRate::parse(bad).is_err(), "{bad}");
        }
        assert!(Rate::parse("10").is_err());
        assert!(Rate::parse("10/fortnight").is_err());
        assert!(Rate::parse("x/second").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(PortRange::parse("22").unwrap().to_iptables(), "22");
        assert_eq!(
            PortRange::parse("8000-8080").unwrap().to_iptables(),
            "8000:8080"
        );
        assert!(PortRange::parse("0").is_err());
        assert!(PortRange::parse("65536").is_err());
        assert!(PortRange::parse("90-80").is_err());
        assert!(PortRange::from_number(70000).is_err());
    }
}
