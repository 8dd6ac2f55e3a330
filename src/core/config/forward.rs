//! `[forward]`: whether fwctl's bans, throttles and default drop also cover
//! forwarded traffic (Docker's published ports, or any routed connection).

use serde::Deserialize;

/// `protect`: which forwarded connections fwctl judges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protect {
    /// Key absent: `docker` when a `DOCKER-USER` chain exists at apply
    /// time (Docker runs here), else `off`. See [`Protect::resolve`].
    #[default]
    #[serde(skip)]
    Auto,
    /// New connections to Docker's published ports (DNATed ones), judged
    /// from the first rule of `DOCKER-USER`.
    Docker,
    /// Every new routed connection, judged from the first rule of FORWARD.
    All,
    /// Forwarded traffic is left alone.
    Off,
}

/// Where fwctl's forward chain is jumped from, once `Auto` is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// The first rule of Docker's `DOCKER-USER` chain (created if absent).
    DockerUser,
    /// The first rule of the builtin FORWARD chain.
    Forward,
}

impl Hook {
    /// The chain the jump sits in.
    pub fn chain(self) -> &'static str {
        match self {
            Hook::DockerUser => DOCKER_USER,
            Hook::Forward => "FORWARD",
        }
    }
}

/// Docker's chain for the admin's own rules: Docker jumps to it from the
/// top of FORWARD and keeps its contents across its restarts.
pub const DOCKER_USER: &str = "DOCKER-USER";

impl Protect {
    /// The hook this setting means on a host where `DOCKER-USER` does or
    /// does not exist now (pure: the backend reads the kernel).
    pub fn resolve(self, docker_user_exists: bool) -> Option<Hook> {
        match self {
            Protect::Auto if docker_user_exists => Some(Hook::DockerUser),
            Protect::Auto | Protect::Off => None,
            Protect::Docker => Some(Hook::DockerUser),
            Protect::All => Some(Hook::Forward),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protect::Auto => "auto",
            Protect::Docker => "docker",
            Protect::All => "all",
            Protect::Off => "off",
        }
    }
}

/// `default`: what happens to a new forwarded connection that no rule of
/// fwctl's took (not a `[[service]]` port, not whitelisted, not banned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Handed back to the next rule (Docker's): published ports stay open.
    #[default]
    Accept,
    /// Logged with the `blocked` prefix and dropped: only services are open.
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    #[serde(default)]
    pub protect: Protect,
    #[serde(default)]
    pub default: Fallback,
}

impl Default for Forward {
    fn default() -> Forward {
        Forward {
            protect: Protect::Auto,
            default: Fallback::Accept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/t.toml"), &|_| Ok(String::new())).map_err(|e| e.to_string())
    }

    #[test]
    fn protect_is_auto_unless_named_and_default_accepts() {
        let c = parse("").unwrap();
        assert_eq!(c.forward, Forward::default());
        assert_eq!(c.forward.protect, Protect::Auto);
        let c = parse("[forward]\nprotect = \"all\"\ndefault = \"drop\"\n").unwrap();
        assert_eq!(
            (c.forward.protect, c.forward.default),
            (Protect::All, Fallback::Drop)
        );
        for bad in [
            "[forward]\nprotect = \"auto\"\n",
            "[forward]\nprotect = \"yes\"\n",
            "[forward]\ndefault = \"reject\"\n",
            "[forward]\nprotec = \"docker\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("[forward]\nprotect = \"yes\"\n").unwrap_err();
        assert!(e.contains("docker") && e.contains("off"), "{e}");
    }

    /// The auto default is a decision on data: does DOCKER-USER exist?
    #[test]
    fn auto_means_docker_only_where_docker_user_exists() {
        assert_eq!(Protect::Auto.resolve(true), Some(Hook::DockerUser));
        assert_eq!(Protect::Auto.resolve(false), None);
        assert_eq!(Protect::Off.resolve(true), None);
        assert_eq!(Protect::Docker.resolve(false), Some(Hook::DockerUser));
        assert_eq!(Protect::All.resolve(true), Some(Hook::Forward));
        assert_eq!(Hook::Forward.chain(), "FORWARD");
    }
}
