//! `[web]`: settings of `scan --source nginx|apache` (beside the
//! `[[pattern]]`s): the reverse proxies whose X-Forwarded-For is believed.

use crate::units::addr::parse_net;
use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeSet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Web {
    /// `trusted_proxies`: `--client forwarded` reads X-Forwarded-For only
    /// on lines whose peer is inside one, and walks it past them.
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    #[serde(default)]
    trusted_proxies: Vec<Net>,
}

/// A network as [trusted] takes them (no host bits, no /0), checked inside
/// serde so that an error names its line.
struct Net(IpNet);

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_net(s.trim(), false)
            .map(Net)
            .map_err(de::Error::custom)
    }
}

impl RawWeb {
    pub fn validate(self) -> Web {
        let nets: BTreeSet<IpNet> = self.trusted_proxies.into_iter().map(|n| n.0).collect();
        Web {
            trusted_proxies: nets.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/fwctl/t.toml"), &|_| {
            Err(std::io::Error::other("no feeds"))
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn trusted_proxies_are_networks_without_host_bits() {
        let c =
            parse("[web]\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::1\", \"10.0.0.0/8\"]\n")
                .unwrap();
        assert_eq!(
            c.web.trusted_proxies,
            [
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::1/128".parse().unwrap()
            ]
        );
        assert!(parse("").unwrap().web.trusted_proxies.is_empty());
        let e = parse("[web]\ntrusted_proxies = [\"10.0.0.1/8\"]\n").unwrap_err();
        assert!(
            e.contains(":2:") && e.contains("did you mean 10.0.0.0/8"),
            "{e}"
        );
        let e = parse("[web]\ntrusted_proxies = [\"0.0.0.0/0\"]\n").unwrap_err();
        assert!(e.contains("covers every address"), "{e}");
        let e = parse("[web]\ntrusted_proxy = []\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
