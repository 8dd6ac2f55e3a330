//! `[firewall]`: which kernel firewall fwctl drives.

use serde::Deserialize;

/// `backend`: iptables/ip6tables with ipset (the default), or one native
/// nftables table (`table inet fwctl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Iptables,
    Nftables,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    #[serde(default)]
    pub backend: Backend,
}

#[cfg(test)]
mod tests {
    use crate::core::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/t.toml"), &|_| Ok(String::new())).map_err(|e| e.to_string())
    }

    #[test]
    fn the_backend_is_iptables_unless_nftables_is_named() {
        use super::Backend;
        assert_eq!(parse("").unwrap().firewall.backend, Backend::Iptables);
        let c = parse("[firewall]\nbackend = \"nftables\"\n").unwrap();
        assert_eq!(c.firewall.backend, Backend::Nftables);
        let e = parse("[firewall]\nbackend = \"pf\"\n").unwrap_err();
        assert!(
            e.contains("unknown variant `pf`") && e.contains("iptables"),
            "{e}"
        );
        assert!(parse("[firewall]\nbakend = \"nftables\"\n").is_err());
    }
}
