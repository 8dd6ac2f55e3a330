//! Facts about this host that the pure core takes as inputs: the clock, the
//! local time zone's offsets, the host's own addresses, who we run as, and
//! our memory use.

use crate::units::time::Zone;
use std::net::IpAddr;

/// Seconds since the epoch.
pub fn now() -> i64 {
    (now_micros() / 1_000_000) as i64
}

/// The wall clock in microseconds since the epoch (capture: frames without a
/// kernel timestamp, and ban latency against the kernel's receive time).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The system clock as a [`crate::ports::Clock`].
pub struct SystemClock;

impl crate::ports::Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        now_micros()
    }
}

/// This host's name, for notifications ("localhost" if it has none).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// net.ipv4.tcp_syncookies of this network namespace: on (1 or 2), off
/// (0), or unknown (no such file).
pub fn syncookies() -> Option<bool> {
    let v = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_syncookies").ok()?;
    Some(v.trim() != "0")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Local minus UTC at `t`, from the C library (honours `TZ`).
fn offset_at(t: i64) -> i64 {
    // SAFETY: localtime_r writes only into the tm we pass.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let tt = t as libc::time_t;
        if libc::localtime_r(&tt, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff as i64
        }
    }
}

/// The zone's offsets from 400 days before `now` to a day after: daily
/// samples (zones change their offset at most a few times a year, months
/// apart), each change located to the second by bisection.
pub fn local_zone(now: i64) -> Zone {
    let start = now - 400 * 86_400;
    let mut changes = vec![(start, offset_at(start))];
    let mut t = start;
    while t < now + 86_400 {
        let next = t + 86_400;
        let (a, b) = (offset_at(t), offset_at(next));
        if a != b {
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(mid) == a {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            changes.push((hi, b));
        }
        t = next;
    }
    Zone::new(changes)
}

/// Every address configured on this host's interfaces (in the current
/// network namespace), loopback included.
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            if let Some(v4) = sa.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                out.push(IpAddr::V6(v6.ip()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Resident and peak memory in kB, from /proc/self/status.
pub fn memory_kb() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_among_our_addresses() {
        assert!(own_addresses().contains(&IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)));
    }

    /// The zone as sampled, against the C library every 7 hours over the
    /// span it covers.
    fn zone_matches_the_c_library() -> Zone {
        let now = now();
        let z = local_zone(now);
        for k in 0..(399 * 24 / 7) {
            let t = now - k * 7 * 3600;
            assert_eq!(z.offset_at(t), offset_at(t), "{t}");
        }
        z
    }

    /// Under UTC (the usual zone of CI) no offset ever changes and the
    /// comparison proves little; so it runs again in a child process in a
    /// zone with daylight saving time, given as a POSIX rule (no tzdata
    /// needed), and that child must see two offsets.
    #[test]
    fn the_local_zone_agrees_with_the_c_library() {
        let z = zone_matches_the_c_library();
        let here = "sys::host::tests::the_local_zone_agrees_with_the_c_library";
        if std::env::var_os("FWCTL_ZONE_CHILD").is_some() {
            let t = now();
            assert_ne!(
                z.offset_at(t),
                z.offset_at(t - 182 * 86_400),
                "TZ={:?} has no DST change in the sampled year",
                std::env::var("TZ")
            );
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", here, "--test-threads", "1"])
            .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
            .env("FWCTL_ZONE_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
