//! The one reader of `iptables-save` output (pure). Apply, rollback, drift
//! and doctor all look at the same data: which tables were printed, the
//! builtin chains' policies, the user chains declared, and every rule in
//! order. Counters are dropped; rules are kept as the kernel printed them.

use crate::core::ruleset::forward::{CHAIN as FORWARD_CHAIN, DOCKER_USER};
use crate::core::ruleset::{TableState, CHAIN_PREFIX, MAIN_CHAIN, RAW_CHAIN};

/// One table of an `iptables-save` text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// The table was printed at all (`*filter` ... `COMMIT`).
    pub found: bool,
    /// Builtin chains and their policies, in order (`:INPUT DROP`).
    pub policies: Vec<(String, String)>,
    /// User chains, in the order declared (`:DOCKER -`).
    pub chains: Vec<String>,
    /// Every rule: (chain, the whole `-A CHAIN ...` line), in order.
    pub rules: Vec<(String, String)>,
}

impl Saved {
    /// The `table` part of `save` (other tables are skipped).
    pub fn parse(save: &str, table: &str) -> Saved {
        let mut out = Saved::default();
        let mut inside = false;
        for line in save.lines().map(str::trim_end) {
            if let Some(t) = line.strip_prefix('*') {
                inside = t == table;
                out.found |= inside;
                continue;
            }
            if !inside {
                continue;
            }
            if line == "COMMIT" {
                inside = false;
            } else if let Some(decl) = line.strip_prefix(':') {
                let mut w = decl.split_whitespace();
                match (w.next(), w.next()) {
                    (Some(name), Some("-")) | (Some(name), None) => out.chains.push(name.into()),
                    (Some(name), Some(policy)) => out.policies.push((name.into(), policy.into())),
                    _ => {}
                }
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let chain = rest.split_whitespace().next().unwrap_or("");
                out.rules.push((chain.to_string(), line.to_string()));
            }
        }
        out
    }

    /// The filter table of `save`.
    pub fn filter(save: &str) -> Saved {
        Saved::parse(save, "filter")
    }

    pub fn policy(&self, chain: &str) -> Option<&str> {
        self.policies
            .iter()
            .find(|(c, _)| c == chain)
            .map(|(_, p)| p.as_str())
    }

    /// The user chains fwctl owns (named `FWCTL-*`).
    pub fn fwctl_chains(&self) -> impl Iterator<Item = &str> {
        self.chains
            .iter()
            .map(String::as_str)
            .filter(|c| c.starts_with(CHAIN_PREFIX))
    }

    /// The rules of one chain, in order.
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rules
            .iter()
            .filter(move |(c, _)| c == chain)
            .map(|(_, l)| l.as_str())
    }

    /// Where the jump to fwctl's main chain sits in INPUT (1-based).
    pub fn jump_positions(&self) -> Vec<usize> {
        self.jumps_in("INPUT", MAIN_CHAIN)
    }

    /// Where the plain jumps `-A BUILTIN -j TARGET` sit in `builtin` (1-based):
    /// fwctl's jumps carry no match, so a rule with one is someone else's.
    pub fn jumps_in(&self, builtin: &str, target: &str) -> Vec<usize> {
        let jump = format!("-A {builtin} -j {target}");
        self.rules_of(builtin)
            .enumerate()
            .filter(|(_, l)| *l == jump)
            .map(|(i, _)| i + 1)
            .collect()
    }

    /// The table as `iptables-restore` input (without --noflush it replaces
    /// the table); an empty filter table when none was printed.
    pub fn restore_text(&self, table: &str) -> String {
        if !self.found {
            return format!(
                "*{table}\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
            );
        }
        let mut out = format!("*{table}\n");
        for (c, p) in &self.policies {
            out += &format!(":{c} {p} [0:0]\n");
        }
        for c in &self.chains {
            out += &format!(":{c} - [0:0]\n");
        }
        for (_, l) in &self.rules {
            out += l;
            out.push('\n');
        }
        out + "COMMIT\n"
    }
}

/// The chains fwctl's forward jump may sit in (filter table).
pub const FORWARD_HOOKS: [&str; 2] = ["FORWARD", DOCKER_USER];

/// What rendering needs to know of the filter table of `iptables-save` output.
pub fn table_state(save: &str) -> TableState {
    state_of(&Saved::filter(save))
}

/// The same of the raw table (`iptables-save -t raw`, or a whole save).
pub fn raw_state(save: &str) -> TableState {
    state_of(&Saved::parse(save, "raw"))
}

pub fn state_of(saved: &Saved) -> TableState {
    TableState {
        input_jumps: saved.jump_positions().len(),
        prerouting_jumps: saved.jumps_in("PREROUTING", RAW_CHAIN).len(),
        forward_jumps: saved.jumps_in("FORWARD", FORWARD_CHAIN).len(),
        docker_user_jumps: saved.jumps_in(DOCKER_USER, FORWARD_CHAIN).len(),
        docker_user: saved.chains.iter().any(|c| c == DOCKER_USER),
        chains: saved.fwctl_chains().map(str::to_string).collect(),
    }
}

/// fwctl's lines of one family's `iptables-save`: the INPUT policy, fwctl's
/// chains, where the jump to fwctl's chain sits in INPUT, and the rules of
/// fwctl's chains, in the kernel's order. Counters are dropped; everything
/// else is kept as the kernel printed it.
pub fn ours(save: &str) -> Vec<String> {
    let s = Saved::filter(save);
    let mut out = Vec::new();
    if let Some(p) = s.policy("INPUT") {
        out.push(format!("policy INPUT {p}"));
    }
    out.extend(s.fwctl_chains().map(|c| format!(":{c}")));
    out.extend(
        s.jump_positions()
            .iter()
            .map(|k| format!("jump at INPUT {k}")),
    );
    for hook in FORWARD_HOOKS {
        out.extend(
            s.jumps_in(hook, FORWARD_CHAIN)
                .iter()
                .map(|k| format!("jump at {hook} {k}")),
        );
    }
    out.extend(
        s.rules
            .iter()
            .filter(|(c, _)| c.starts_with(CHAIN_PREFIX))
            .map(|(_, l)| l.clone()),
    );
    out
}

/// fwctl's lines of one family's raw table (`iptables-save -t raw`, or a
/// whole `iptables-save`): fwctl's chains, where the jump to FWCTL-RAW sits
/// in PREROUTING, and the rules of fwctl's chains. No policy: fwctl never
/// sets one in the raw table.
pub fn ours_raw(save: &str) -> Vec<String> {
    let s = Saved::parse(save, "raw");
    let mut out: Vec<String> = s.fwctl_chains().map(|c| format!(":{c}")).collect();
    out.extend(
        s.jumps_in("PREROUTING", RAW_CHAIN)
            .iter()
            .map(|k| format!("jump at PREROUTING {k}")),
    );
    out.extend(
        s.rules
            .iter()
            .filter(|(c, _)| c.starts_with(CHAIN_PREFIX))
            .map(|(_, l)| l.clone()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "# Generated\n*nat\n:FWCTL-X - [0:0]\n-A INPUT -j FWCTL-INPUT\nCOMMIT\n*filter\n:INPUT DROP [5:300]\n\
                        :FORWARD ACCEPT [0:0]\n:DOCKER - [0:0]\n:FWCTL-INPUT - [0:0]\n-A INPUT -s 192.0.2.9/32 -j ACCEPT\n\
                        -A INPUT -j FWCTL-INPUT\n-A FWCTL-INPUT -i lo -j ACCEPT\n-A DOCKER -j RETURN\nCOMMIT\n# Completed\n";

    #[test]
    fn the_filter_table_as_data() {
        let s = Saved::filter(SAVE);
        assert!(s.found);
        assert_eq!(s.policy("INPUT"), Some("DROP"));
        assert_eq!(s.chains, ["DOCKER", "FWCTL-INPUT"]);
        assert_eq!(s.fwctl_chains().collect::<Vec<_>>(), ["FWCTL-INPUT"]);
        assert_eq!(s.jump_positions(), [2]);
        assert_eq!(
            s.rules_of("FWCTL-INPUT").collect::<Vec<_>>(),
            ["-A FWCTL-INPUT -i lo -j ACCEPT"]
        );
        assert_eq!(s.rules.len(), 4);
        assert!(!Saved::filter("").found);
        assert!(Saved::filter("")
            .restore_text("filter")
            .contains(":INPUT ACCEPT"));
        let again = Saved::filter(&s.restore_text("filter"));
        assert_eq!(again, s);
    }

    #[test]
    fn the_raw_table_state_counts_prerouting_jumps_only() {
        let save = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:FWCTL-RAW - [0:0]\n\
                    -A PREROUTING -s 192.0.2.1/32 -j FWCTL-RAW\n-A PREROUTING -j FWCTL-RAW\n\
                    -A PREROUTING -j CT --notrack\n-A PREROUTING -j FWCTL-RAW\n-A OUTPUT -j FWCTL-RAW\nCOMMIT\n";
        let st = raw_state(save);
        assert_eq!(st.prerouting_jumps, 2, "the matched jump is not ours");
        assert_eq!(st.input_jumps, 0);
        assert_eq!(st.chains, ["FWCTL-RAW".to_string()].into());
        assert!(st.is_installed());
        assert_eq!(table_state(save), TableState::default());
        assert_eq!(raw_state(SAVE), TableState::default());
    }
}
