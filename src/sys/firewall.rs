//! The configured backend, opened: its tools found (and nft's version
//! checked) before anything changes, so a missing one is refused with the fix.

use super::iptables::Iptables;
use super::nft::Nft;
use super::nftfw::Nftables;
use super::tools::{Missing, System};
use crate::core::config::firewall::Backend;
use crate::ports::Firewall;

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
