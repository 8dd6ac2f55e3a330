//! The `nft` tool for the nftables backend: scripts run as one transaction
//! (`nft -f -`, never through a shell), and fwctl's table read back as
//! typed data. `nft -j` (its JSON schema) is parsed here, next to the tool
//! that prints it, and nowhere else; serde_json's `Value` is enough for the
//! few fields read, so no schema crate is pulled in for them.

use super::tools::{locate_tool, Missing};
use crate::core::ruleset::nft::{FAMILY, TABLE};
use crate::ports::{StepError, StepResult};
use crate::units::addr::Family;
use ipnet::IpNet;
use serde_json::Value;
use std::path::PathBuf;

/// One of fwctl's sets as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftSet {
    pub name: String,
    pub family: Family,
    pub size: Option<u32>,
    /// Members, with the seconds they have left (None: no timeout, a
    /// member of the config).
    pub members: Vec<(IpNet, Option<u64>)>,
}

/// The `nft` program, found once.
pub struct Nft {
    path: PathBuf,
}

impl Nft {
    pub fn locate() -> Result<Nft, Missing> {
        Ok(Nft {
            path: locate_tool("nft", "nftables")?,
        })
    }

    fn run(&self, args: &[&str], input: Option<&str>) -> StepResult<String> {
        super::tools::run_step("nft", &self.path, args, input)
    }

    /// Run `script` as one transaction: all of it, or nothing.
    pub fn transaction(&self, script: &str) -> StepResult<()> {
        self.run(&["-f", "-"], Some(script)).map(drop)
    }

    /// Whether fwctl's table exists.
    pub fn has_table(&self) -> StepResult<bool> {
        let out = self.run(&["-j", "list", "tables", FAMILY], None)?;
        Ok(parse_tables(&out).iter().any(|t| t == TABLE))
    }

    /// fwctl's table without set elements (`nft -t`), as the kernel prints
    /// it: what drift detection compares. None when there is no table.
    pub fn terse_table(&self) -> StepResult<Option<String>> {
        if !self.has_table()? {
            return Ok(None);
        }
        self.run(&["-t", "list", "table", FAMILY, TABLE], None)
            .map(Some)
    }

    /// Every set of fwctl's table with its members.
    pub fn sets(&self) -> StepResult<Vec<NftSet>> {
        if !self.has_table()? {
            return Ok(Vec::new());
        }
        let out = self.run(&["-j", "list", "sets", FAMILY], None)?;
        parse_sets(&out).map_err(|detail| StepError {
            step: "nft -j list sets".into(),
            detail,
        })
    }

    /// `nft --version`: (major, minor, patch).
    pub fn version(&self) -> StepResult<(u32, u32, u32)> {
        let out = self.run(&["--version"], None)?;
        parse_version(&out).ok_or_else(|| StepError {
            step: "nft --version".into(),
            detail: format!("unexpected answer {:?}", out.trim()),
        })
    }
}

/// `nftables v1.0.6 (Lester Gooch #5)` → (1, 0, 6).
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let v = s.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut it = v.split('.').map(|x| x.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

fn objects<'a>(v: &'a Value, kind: &str) -> impl Iterator<Item = &'a Value> {
    let kind = kind.to_string();
    v.get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(move |o| o.get(&kind))
}

/// The names of the tables in `nft -j list tables` output.
pub fn parse_tables(json: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    objects(&v, "table")
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from))
        .collect()
}

/// One element's value: an address or `{"prefix": {"addr", "len"}}`.
fn net_of(v: &Value) -> Option<IpNet> {
    if let Some(s) = v.as_str() {
        return s.parse::<std::net::IpAddr>().ok().map(IpNet::from);
    }
    let p = v.get("prefix")?;
    let addr: std::net::IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
    let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
    IpNet::new(addr, len).ok()
}

/// The sets of fwctl's table in `nft -j list sets` output.
pub fn parse_sets(json: &str) -> Result<Vec<NftSet>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not nft JSON: {e}"))?;
    let mut out = Vec::new();
    for s in objects(&v, "set") {
        if s.get("table").and_then(Value::as_str) != Some(TABLE)
            || s.get("family").and_then(Value::as_str) != Some(FAMILY)
        {
            continue;
        }
        let family = match s.get("type").and_then(Value::as_str) {
            Some("ipv4_addr") => Family::V4,
            Some("ipv6_addr") => Family::V6,
            _ => continue,
        };
        let name = s
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a set without a name")?
            .to_string();
        let mut members = Vec::new();
        for e in s
            .get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (val, left) = match e.get("elem") {
                Some(inner) => (
                    inner.get("val").unwrap_or(&Value::Null),
                    inner
                        .get("expires")
                        .and_then(Value::as_u64)
                        .or_else(|| inner.get("timeout").and_then(Value::as_u64)),
                ),
                None => (e, None),
            };
            let net = net_of(val).ok_or_else(|| format!("set {name}: unreadable element {val}"))?;
            members.push((crate::units::addr::unmap(net), left));
        }
        out.push(NftSet {
            name,
            family,
            size: s
                .get("size")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            members,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_read_with_their_time_left() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"set": {"family": "inet", "name": "blacklist", "table": "fwctl", "type": "ipv4_addr", "size": 262144,
            "flags": ["interval", "timeout"], "elem": [
              {"elem": {"val": "192.0.2.77", "timeout": 300, "expires": 299}},
              {"elem": {"val": {"prefix": {"addr": "192.0.2.128", "len": 26}}, "timeout": 3600, "expires": 3599}},
              "198.51.100.66", {"prefix": {"addr": "203.0.113.0", "len": 28}}]}},
          {"set": {"family": "inet", "name": "blacklist_v6", "table": "fwctl", "type": "ipv6_addr",
            "elem": [{"elem": {"val": {"prefix": {"addr": "2001:db8:1::", "len": 64}}, "timeout": 300, "expires": 12}}]}},
          {"set": {"family": "inet", "name": "other", "table": "firewalld", "type": "ipv4_addr", "elem": ["192.0.2.1"]}},
          {"set": {"family": "inet", "name": "fwctl-icmp", "table": "fwctl", "type": "ipv4_addr", "flags": ["dynamic"]}}]}"#;
        let sets = parse_sets(json).unwrap();
        assert_eq!(sets.len(), 3, "another table's set is not ours");
        assert_eq!(sets[0].name, "blacklist");
        assert_eq!(sets[0].size, Some(262_144));
        let m: Vec<(String, Option<u64>)> = sets[0]
            .members
            .iter()
            .map(|(n, t)| (crate::units::addr::member(n), *t))
            .collect();
        assert_eq!(
            m,
            [
                ("192.0.2.77".to_string(), Some(299)),
                ("192.0.2.128/26".to_string(), Some(3599)),
                ("198.51.100.66".to_string(), None),
                ("203.0.113.0/28".to_string(), None),
            ]
        );
        assert_eq!(sets[1].family, Family::V6);
        assert_eq!(sets[1].members[0].1, Some(12));
        assert!(parse_sets("garbage").is_err());
    }

    #[test]
    fn version_and_tables() {
        assert_eq!(
            parse_version("nftables v1.0.6 (Lester Gooch #5)\n"),
            Some((1, 0, 6))
        );
        assert_eq!(parse_version("nftables v1.1\n"), Some((1, 1, 0)));
        assert_eq!(parse_version("what"), None);
        assert_eq!(
            parse_tables(
                r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "inet", "name": "fwctl"}}]}"#
            ),
            ["fwctl"]
        );
    }
}
