//! The configured backend, opened: its tools found (and nft's version
//! checked) before anything changes, so a missing one is refused with the fix.

use super::iptables::Iptables;
use super::nft::Nft;
use super::nftfw::Nftables;
use super::tools::{Missing, System};
use crate::core::config::firewall::Backend;
use crate::ports::{Firewall, SetStore};

/// Why the backend's tools cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error(transparent)]
    Missing(#[from] Missing),
    #[error("backend nftables needs nft 1.0 or newer, this is {0}; fix: apt-get install nftables from a newer release, or set [firewall] backend = \"iptables\"")]
    Old(String),
    #[error("backend nftables: {0}; fix: check that nft runs (and the kernel has nf_tables: modprobe nf_tables), or set [firewall] backend = \"iptables\"")]
    Broken(String),
}

/// The lowest nft fwctl's scripts are written for.
pub const NFT_MIN: (u32, u32, u32) = (1, 0, 0);

pub fn open(backend: Backend) -> Result<Box<dyn Firewall>, Unusable> {
    Ok(match backend {
        Backend::Iptables => Box::new(Iptables::new(System::locate()?)),
        Backend::Nftables => {
            let nft = Nft::locate()?;
            let v = nft.version().map_err(|e| Unusable::Broken(e.to_string()))?;
            if v < NFT_MIN {
                return Err(Unusable::Old(format!("{}.{}.{}", v.0, v.1, v.2)));
            }
            Box::new(Nftables::new(nft))
        }
    })
}

/// The configured backend's sets (ipset's, or those of `table inet
/// fwctl`), for the commands that ban, unban, list and count.
pub fn sets(backend: Backend) -> Result<Box<dyn SetStore + Send>, Unusable> {
    Ok(match backend {
        Backend::Iptables => Box::new(System::locate_only(&["ipset"])?),
        Backend::Nftables => Box::new(Nft::locate()?),
    })
}

/// Capture's ban path for the configured backend: one netlink message per
/// ban, no process started.
pub enum Bans {
    Ipset(super::netlink::Ipset),
    Nft(super::nftlink::NftSets),
}

pub fn banner(backend: Backend) -> std::io::Result<Bans> {
    Ok(match backend {
        Backend::Iptables => Bans::Ipset(super::netlink::Ipset::open()?),
        Backend::Nftables => Bans::Nft(super::nftlink::NftSets::open(
            crate::core::ruleset::nft::TABLE,
        )?),
    })
}

impl crate::ports::Banner for Bans {
    fn add(
        &mut self,
        set: &str,
        net: ipnet::IpNet,
        secs: u32,
    ) -> Result<crate::core::capture::engine::Added, crate::core::capture::engine::BanFailed> {
        match self {
            Bans::Ipset(b) => b.add(set, net, secs),
            Bans::Nft(b) => b.add(set, net, secs),
        }
    }
}
