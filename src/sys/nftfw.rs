//! The nftables backend: everything fwctl installs in one table, `table
//! inet fwctl`. An apply keeps the sets the kernel holds as the plan wants
//! them (their elements, bans with their own time, stay; only the
//! difference to the config's members is sent) and puts the rules in with
//! one `nft -f` transaction (all of it or nothing). Sets that are new are
//! declared empty first and filled over netlink in one batch (no rule
//! names them yet, so nothing a packet meets changes before the rules go
//! in); a failure after that takes them (or the new table) out again.
//! Rolled back and removed with one transaction each. No other table is
//! ever named in a script, so firewalld's, Docker's and anyone's stay.
//! `nft`'s output is read here and in `sys::nft`, nowhere else.

use crate::core::apply::{restore_bans, Ban};
use crate::core::ruleset::forward::CHAIN as FORWARD_CHAIN;
use crate::core::ruleset::nft::{self as render, FAMILY, TABLE};
use crate::core::ruleset::{nftmark, Current, Family, Plan, CHAIN_PREFIX, MAIN_CHAIN, RAW_CHAIN};
use crate::ports::{ApplyError, Firewall, Installed, Prepared, StepError};
use crate::sys::nft::{Nft, NftSet};
use ipnet::IpNet;

/// What to check by hand when a rollback fails.
const CHECK: &str = "`nft list table inet fwctl`";

/// fwctl's table as `prepare` read it: its sets' members, and for a
/// rollback its rules and sets without elements (`nft -t`; None: no table);
/// and the steps of the install.
struct Read {
    terse: Option<Option<String>>,
    sets: Vec<NftSet>,
    steps: render::Install,
    /// Whether Docker's DOCKER-USER was there, per family (v4, v6): what
    /// `[forward]`'s "auto" was decided by, for the drift record too.
    docker_user: (bool, bool),
}

pub struct Nftables {
    nft: Nft,
    read: Option<Read>,
    /// Whether `prepare` keeps the table's rules for a rollback: nft 1.0
    /// reads every set element to print them (2 s per 100 000), so only
    /// when one may follow (`--confirm`).
    rollback: bool,
    /// Whether `prepare` reads every set whole, markers or not.
    whole: bool,
}

impl Nftables {
    pub fn new(nft: Nft) -> Nftables {
        Nftables {
            nft,
            read: None,
            rollback: false,
            whole: false,
        }
    }

    /// The table's sets now (none without the table).
    fn sets(&self) -> Result<Vec<NftSet>, StepError> {
        self.nft.sets()
    }
}

/// The bans (members with time left) of fwctl's sets in `sets`, as
/// rendering carries them: by role (`blacklist/net`'s under `blacklist`).
fn carried(plan: &Plan, sets: &[NftSet]) -> Current {
    let mut now = Current::default();
    for s in sets {
        let role = s.name.strip_suffix(render::NET_SUFFIX).unwrap_or(&s.name);
        if !plan.sets.iter().any(|p| p.name == role) {
            continue;
        }
        now.sets.insert(s.name.clone());
        let timed: Vec<(String, u32)> = s
            .members
            .iter()
            .filter_map(|(n, left)| {
                let secs = u32::try_from((*left)?).unwrap_or(u32::MAX).max(1);
                Some((crate::units::addr::member(n), secs))
            })
            .collect();
        if !timed.is_empty() {
            now.carried
                .entry(role.to_string())
                .or_default()
                .extend(timed);
        }
    }
    now
}

/// The transaction that puts the table back as `then` had it (or takes it
/// out when there was none): its chains and sets, the config's members of
/// then (no timeout) and the bans of `now` with the time they have left (a
/// ban made meanwhile is kept; one that ended meanwhile stays ended).
pub fn rollback_script(then: Option<&str>, then_sets: &[NftSet], now_sets: &[NftSet]) -> String {
    let mut out = render::render_removal();
    let Some(terse) = then else {
        return out;
    };
    out.push_str(terse);
    out.push('\n');
    for s in then_sets {
        let mut members: Vec<(IpNet, Option<u32>)> = s
            .members
            .iter()
            .filter(|(_, left)| left.is_none())
            .map(|(n, _)| (*n, None))
            .collect();
        if let Some(now) = now_sets.iter().find(|n| n.name == s.name) {
            members.extend(now.members.iter().filter_map(|(n, left)| {
                Some((*n, Some(u32::try_from((*left)?).unwrap_or(u32::MAX).max(1))))
            }));
        }
        out.push_str(&render::render_add_elements(&s.name, members));
    }
    out
}

/// fwctl's rules in `nft -t list table inet fwctl` output, per family, in
/// the line form drift compares (see [`Installed`]). Chains are named as
/// the plan names them (`FWCTL6-BLOCK` is IPv6's `FWCTL-BLOCK`); the base
/// chain `input` gives the policy and where each family's jump sits.
pub fn installed_of(terse: &str) -> Installed {
    let mut out = Installed::default();
    let mut chain: Option<String> = None;
    // Rules of the base chain each family's packets meet so far.
    let mut met = [0usize; 2];
    let mut met_forward = [0usize; 2];
    let mut met_raw = [0usize; 2];
    for line in terse.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("chain ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            chain = Some(name.to_string());
            if let Some((family, plain)) = plan_name(name) {
                lines(&mut out, family).push(format!(":{plain}"));
            }
            continue;
        }
        if line == "}" || line.starts_with("set ") || line.is_empty() {
            if line == "}" {
                chain = None;
            }
            continue;
        }
        let Some(c) = chain.as_deref() else {
            continue;
        };
        if c == "forward" {
            // fwctl's base chain on the forward hook (`[forward]`): where
            // each family's jump to its FORWARD chain sits, as iptables'
            // FORWARD. A rule put ahead of it, or the jump gone, is drift.
            if !line.starts_with("type ") {
                base_rule(&mut out, &mut met_forward, line, FORWARD_CHAIN, "FORWARD");
            }
            continue;
        }
        if c == "prerouting" {
            // The base chain at priority raw: where each family's jump to
            // its raw chain sits, as iptables' raw PREROUTING. The jump
            // gone, no ban drops a packet (the drops are in FWCTL-RAW).
            if !line.starts_with("type ") {
                base_rule(&mut out, &mut met_raw, line, RAW_CHAIN, "PREROUTING");
            }
            continue;
        }
        if c == "input" {
            if line.starts_with("type ") {
                let policy = line
                    .split("policy ")
                    .nth(1)
                    .map(|p| p.trim_end_matches(';').to_uppercase())
                    .unwrap_or_else(|| "ACCEPT".into());
                out.v4.push(format!("policy INPUT {policy}"));
                out.v6.push(format!("policy INPUT {policy}"));
                continue;
            }
            base_rule(&mut out, &mut met, line, MAIN_CHAIN, "INPUT");
            continue;
        }
        if let Some((family, plain)) = plan_name(c) {
            if !line.starts_with("type ") {
                lines(&mut out, family).push(format!("-A {plain} {}", uncounted(line)));
            }
        }
    }
    out
}

/// One rule of a base chain (`input`, `forward`, `prerouting`): counted for each family
/// whose packets meet it (`met`), and where it jumps to fwctl's `target`
/// chain, recorded as `jump at HOOK N`.
fn base_rule(out: &mut Installed, met: &mut [usize; 2], line: &str, target: &str, hook: &str) {
    for (i, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let other = if i == 0 { "ipv6" } else { "ipv4" };
        if line.contains(&format!("meta nfproto {other}")) {
            continue;
        }
        met[i] += 1;
        let jump = format!("jump {}", render::chain_name(target, family));
        if line.ends_with(&jump) {
            lines(out, family).push(format!("jump at {hook} {}", met[i]));
        }
    }
}

/// A rule without its counter's values (`counter packets 3 bytes 180` reads
/// `counter`): a packet the rule counted is no change to the rule.
fn uncounted(line: &str) -> String {
    const AT: &str = "counter packets ";
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(AT) {
        let after = &rest[i + AT.len()..];
        let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let p = digits(after);
        let Some(b) = after[p..].strip_prefix(" bytes ") else {
            out.push_str(&rest[..i + AT.len()]);
            rest = after;
            continue;
        };
        out.push_str(&rest[..i]);
        out.push_str("counter");
        rest = &b[digits(b)..];
    }
    out.push_str(rest);
    out
}

fn lines(i: &mut Installed, family: Family) -> &mut Vec<String> {
    match family {
        Family::V4 => &mut i.v4,
        Family::V6 => &mut i.v6,
    }
}

/// A chain of fwctl's: its family and the plan's name for it.
fn plan_name(chain: &str) -> Option<(Family, String)> {
    if let Some(rest) = chain.strip_prefix("FWCTL6-") {
        return Some((Family::V6, format!("{CHAIN_PREFIX}{rest}")));
    }
    chain
        .starts_with(CHAIN_PREFIX)
        .then(|| (Family::V4, chain.to_string()))
}

impl Firewall for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn expect_rollback(&mut self) {
        self.rollback = true;
    }

    fn read_whole_sets(&mut self) {
        self.whole = true;
    }

    fn prepare(&mut self, plan: &Plan, bans: &[Ban]) -> Result<Prepared, StepError> {
        let terse = match self.rollback {
            true => Some(self.nft.terse_table()?),
            false => None,
        };
        // Every set, and the elements of those whose marker does not name
        // the plan's config members (`nftmark`): the kernel's dump starts
        // over for every 32 KB, 1-1.6 s for 100 000 members.
        let marks = self.nft.marks()?.unwrap_or_default();
        let heads: Vec<render::KernelSet> = self
            .nft
            .table_sets(&|_| false)?
            .unwrap_or_default()
            .iter()
            .map(kernel_set)
            .collect();
        // (No marker, as on a first install: no set to leave unread, and
        // the plan's 100 000 members not sorted an extra time.)
        let unread = match self.whole || marks.is_empty() {
            true => Default::default(),
            false => nftmark::unread(
                &render::kernel_sets(plan, &Current::default()),
                &heads,
                &marks,
            ),
        };
        let table = self.nft.table_sets(&|name| !unread.contains(name))?;
        let sets = table.clone().unwrap_or_default();
        // One listing of every chain: fwctl's, and Docker's DOCKER-USER
        // in `table ip filter` / `ip6 filter` as iptables-nft writes it
        // (an error reads as none).
        let all = match table {
            Some(_) => self.nft.chains()?,
            None => self.nft.chains().unwrap_or_default(),
        };
        let chains: Vec<String> = all
            .iter()
            .filter(|(f, t, _)| f == FAMILY && t == TABLE)
            .map(|(_, _, c)| c.clone())
            .collect();
        let docker = |family: &str| {
            let user = crate::core::config::forward::DOCKER_USER;
            all.iter()
                .any(|(f, t, c)| f == family && t == "filter" && c == user)
        };
        let mut now = carried(plan, &sets);
        now.v4.docker_user = docker("ip");
        now.v6.docker_user = docker("ip6");
        // A ban the state file has for a set kept unread is there unless
        // it ended: the kernel's is kept, none is added.
        let bans: Vec<Ban> = bans
            .iter()
            .filter(|(set, addr, _)| {
                let kernel = match render::is_address(addr) {
                    true => set.clone(),
                    false => render::net_set(set),
                };
                !unread.contains(&kernel)
            })
            .cloned()
            .collect();
        restore_bans(&mut now, plan, &bans);
        let have: Vec<render::KernelSet> = sets.iter().map(kernel_set).collect();
        let kernel = table.is_some().then_some(render::Kernel {
            sets: &have,
            chains: &chains,
            unread: &unread,
            marks: &marks,
        });
        let steps = render::plan_install(plan, &now, kernel);
        let prepared = Prepared {
            script: unread
                .iter()
                .map(|s| format!("# set {s}: kept as it is, not read (its marker names the config's members)\n"))
                .collect::<String>()
                + &steps_text(&steps),
            carried: now.carried.values().map(Vec::len).sum(),
            restored: now.restored,
            unread: unread.iter().cloned().collect(),
        };
        self.read = Some(Read {
            terse,
            sets,
            steps,
            docker_user: (now.v4.docker_user, now.v6.docker_user),
        });
        Ok(prepared)
    }

    fn install(&mut self, plan: &Plan) -> Result<Installed, ApplyError> {
        let read = self.read.as_mut().expect("prepare before install");
        // The new sets' members go to the netlink batch as they are (not
        // copied: 100 000 of them); nothing after the install reads them.
        let fill = fill_change(std::mem::take(&mut read.steps.fill));
        let steps = &read.steps;
        let nft = &self.nft;
        // The drift record: the rules as nft prints them, read in a
        // namespace of their own with empty sets (reading them here would
        // read every element, 2 s per 100 000), beside the install. When
        // the install's transaction takes, the kernel holds exactly these
        // rules.
        let mut bare = plan.clone();
        for s in &mut bare.sets {
            s.members.clear();
        }
        // "auto" decided as the install decides it (a record made as if
        // Docker were absent lacked the forward chain: drift at once).
        let mut as_now = Current::default();
        (as_now.v4.docker_user, as_now.v6.docker_user) = read.docker_user;
        let script = render::render_install(&bare, &as_now);
        let (done, printed) = std::thread::scope(|scope| {
            let printed = scope.spawn(|| nft.printed(&script).map(|t| installed_of(&t)));
            let done = install_steps(nft, steps, &fill);
            let printed = printed.join().unwrap_or_else(|_| {
                Err(StepError {
                    step: "printing the ruleset".into(),
                    detail: "the thread panicked".into(),
                })
            });
            (done, printed)
        });
        done?;
        printed.map_err(|failed| ApplyError {
            failed,
            rollback: Err(StepError {
                step: "rollback".into(),
                detail: "not attempted: the rules are in, only reading them back failed".into(),
            }),
            check: CHECK,
        })
    }

    fn roll_back(&mut self, _plan: &Plan) -> Result<(), StepError> {
        let read = self.read.as_ref().expect("prepare before roll_back");
        let then = read
            .terse
            .as_ref()
            .expect("expect_rollback before prepare, for a roll_back");
        let now = self.sets()?;
        let script = rollback_script(then.as_deref(), &read.sets, &now);
        self.nft.transaction(&script)
    }

    fn remove(&mut self, plan: &Plan, destroy_sets: bool) -> Result<(), ApplyError> {
        let fail = |failed| ApplyError {
            failed,
            rollback: Ok(()),
            check: CHECK,
        };
        let Some(terse) = self.nft.terse_table().map_err(fail)? else {
            return Ok(());
        };
        let script = if destroy_sets {
            render::render_removal()
        } else {
            // Keep the table and fwctl's sets with their bans; take out
            // every chain (flushed first: a jump holds its target) and the
            // meters the rules used.
            let chains = chains_of(&terse);
            let mut s = String::new();
            for c in &chains {
                s += &format!("flush chain {FAMILY} {TABLE} {c}\n");
            }
            for c in &chains {
                s += &format!("delete chain {FAMILY} {TABLE} {c}\n");
            }
            let ours: Vec<String> = render::kernel_sets(plan, &Current::default())
                .into_iter()
                .map(|s| s.name)
                .collect();
            for set in sets_of(&terse).iter().filter(|s| !ours.contains(s)) {
                s += &format!("delete set {FAMILY} {TABLE} {set}\n");
            }
            s
        };
        self.nft.transaction(&script).map_err(fail)
    }

    fn installed(&mut self) -> Result<Installed, StepError> {
        Ok(self
            .nft
            .terse_table()?
            .map(|t| installed_of(&t))
            .unwrap_or_default())
    }
}

/// Run `steps`: the new sets (empty, named by no rule: when this fails,
/// nothing changed), their members over netlink, then the rules in one
/// transaction; when either of those fails, only the new sets (or table)
/// are there, and they go again.
fn install_steps(
    nft: &Nft,
    steps: &render::Install,
    fill: &crate::sys::nft::Change,
) -> Result<(), ApplyError> {
    if let Some(skeleton) = &steps.skeleton {
        nft.transaction(skeleton).map_err(|failed| ApplyError {
            failed,
            rollback: Ok(()),
            check: CHECK,
        })?;
    }
    let filled = nft.batch(fill);
    if let Err(failed) = filled.and_then(|()| nft.transaction(&steps.main)) {
        let undo = render::render_undo(steps);
        let rollback = match undo.is_empty() {
            true => Ok(()),
            false => nft.transaction(&undo),
        };
        return Err(ApplyError {
            failed,
            rollback,
            check: CHECK,
        });
    }
    Ok(())
}

/// A set as read, as the plan's sets are described.
fn kernel_set(s: &NftSet) -> render::KernelSet {
    render::KernelSet {
        name: s.name.clone(),
        family: s.family,
        interval: s.interval,
        timeout: s.timeout,
        size: s.size.unwrap_or(0),
        members: s
            .members
            .iter()
            .map(|(n, left)| {
                (
                    *n,
                    left.map(|l| u32::try_from(l).unwrap_or(u32::MAX).max(1)),
                )
            })
            .collect(),
    }
}

/// The netlink batch that fills the new sets.
fn fill_change(fill: Vec<render::KernelSet>) -> crate::sys::nft::Change {
    fill.into_iter()
        .map(|s| crate::sys::nft::SetChange {
            set: s.name,
            interval: s.interval,
            flush: false,
            dels: Vec::new(),
            adds: s.members,
        })
        .collect()
}

/// What a dry run prints: the steps in the order they run.
fn steps_text(steps: &render::Install) -> String {
    let mut out = String::new();
    if let Some(s) = &steps.skeleton {
        out += "# ---- nft -f (the new sets, empty) ----\n";
        out += s;
    }
    if !steps.fill.is_empty() {
        out += "# ---- one nf_tables batch over netlink: the new sets' members ----\n";
        for s in &steps.fill {
            out += &format!("# {}: {} members\n", s.name, s.members.len());
        }
    }
    out += "# ---- nft -f (one transaction) ----\n";
    out += &steps.main;
    out
}

/// The chains / sets declared in `nft -t list table` output.
fn chains_of(terse: &str) -> Vec<String> {
    declared(terse, "chain ")
}

fn sets_of(terse: &str) -> Vec<String> {
    declared(terse, "set ")
}

fn declared(terse: &str, kind: &str) -> Vec<String> {
    terse
        .lines()
        .filter_map(|l| l.trim().strip_prefix(kind)?.strip_suffix(" {"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ruleset::drift;

    const TERSE: &str = "table inet fwctl {\n\tset blacklist {\n\t\ttype ipv4_addr\n\t\tflags interval,timeout\n\t}\n\
        \tset fwctl-icmp {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 1s\n\t}\n\
        \tchain FWCTL-INPUT {\n\t\tiifname \"lo\" accept\n\t\tip saddr @blacklist drop\n\t}\n\
        \tchain FWCTL6-INPUT {\n\t\tiifname \"lo\" accept\n\t}\n\
        \tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\
        \t\tmeta nfproto ipv4 jump FWCTL-INPUT\n\t\tmeta nfproto ipv6 jump FWCTL6-INPUT\n\t}\n}\n";

    #[test]
    fn the_table_read_back_in_drifts_line_form() {
        let i = installed_of(TERSE);
        assert_eq!(
            i.v4,
            [
                ":FWCTL-INPUT",
                "-A FWCTL-INPUT iifname \"lo\" accept",
                "-A FWCTL-INPUT ip saddr @blacklist drop",
                "policy INPUT DROP",
                "jump at INPUT 1"
            ]
        );
        assert_eq!(
            i.v6,
            [
                ":FWCTL-INPUT",
                "-A FWCTL-INPUT iifname \"lo\" accept",
                "policy INPUT DROP",
                "jump at INPUT 1"
            ]
        );
        assert_eq!(chains_of(TERSE), ["FWCTL-INPUT", "FWCTL6-INPUT", "input"]);
        assert_eq!(sets_of(TERSE), ["blacklist", "fwctl-icmp"]);
    }

    /// `[forward]`'s base chain: its jumps are read back, so a jump
    /// deleted, or a rule put ahead of it, is drift.
    #[test]
    fn the_forward_base_chains_jumps_are_read_back() {
        let with = |body: &str| {
            TERSE.replace(
                "\tchain input {",
                &format!("\tchain forward {{\n\t\ttype filter hook forward priority filter - 1; policy accept;\n{body}\t}}\n\tchain input {{"),
            )
        };
        let then = installed_of(&with(
            "\t\tmeta nfproto ipv4 jump FWCTL-FORWARD\n\t\tmeta nfproto ipv6 jump FWCTL6-FORWARD\n",
        ));
        assert!(
            then.v4.contains(&"jump at FORWARD 1".to_string()),
            "{:?}",
            then.v4
        );
        assert!(
            then.v6.contains(&"jump at FORWARD 1".to_string()),
            "{:?}",
            then.v6
        );
        let gone = installed_of(&with("\t\tmeta nfproto ipv6 jump FWCTL6-FORWARD\n"));
        let d = drift::diff(&then.v4, &gone.v4);
        assert_eq!(d.missing, ["jump at FORWARD 1"]);
        assert!(drift::diff(&then.v6, &gone.v6).is_empty());
        let ahead = installed_of(&with(
            "\t\tmeta nfproto ipv4 accept\n\t\tmeta nfproto ipv4 jump FWCTL-FORWARD\n\t\tmeta nfproto ipv6 jump FWCTL6-FORWARD\n",
        ));
        let d = drift::diff(&then.v4, &ahead.v4);
        assert_eq!(
            (d.missing, d.extra),
            (
                vec!["jump at FORWARD 1".to_string()],
                vec!["jump at FORWARD 2".to_string()]
            )
        );
        assert!(drift::diff(&then.v6, &ahead.v6).is_empty());
    }

    /// The base chain at priority raw: its jumps are read back, so the
    /// jump that sends packets to the bans' drops, deleted, is drift.
    #[test]
    fn the_prerouting_base_chains_jumps_are_read_back() {
        let with = |body: &str| {
            TERSE.replace(
                "\tchain input {",
                &format!("\tchain prerouting {{\n\t\ttype filter hook prerouting priority raw; policy accept;\n{body}\t}}\n\tchain input {{"),
            )
        };
        let then = installed_of(&with(
            "\t\tmeta nfproto ipv4 jump FWCTL-RAW\n\t\tmeta nfproto ipv6 jump FWCTL6-RAW\n",
        ));
        for v in [&then.v4, &then.v6] {
            assert!(v.contains(&"jump at PREROUTING 1".to_string()), "{v:?}");
        }
        let gone = installed_of(&with("\t\tmeta nfproto ipv6 jump FWCTL6-RAW\n"));
        assert_eq!(
            drift::diff(&then.v4, &gone.v4).missing,
            ["jump at PREROUTING 1"]
        );
        assert!(drift::diff(&then.v6, &gone.v6).is_empty());
        // The whole chain deleted: both families' jumps missing.
        let none = installed_of(TERSE);
        assert_eq!(
            drift::diff(&then.v6, &none.v6).missing,
            ["jump at PREROUTING 1"]
        );
    }

    /// The raw chain's drops count packets: a ban that dropped one is no
    /// drift (status once called it "1 missing, 1 extra").
    #[test]
    fn counted_packets_are_no_drift() {
        let with = |n: &str| {
            TERSE.replace(
                "ip saddr @blacklist drop",
                &format!("ip saddr @blacklist counter packets {n} drop"),
            )
        };
        let then = installed_of(&with("0 bytes 0"));
        let now = installed_of(&with("12 bytes 720"));
        assert_eq!(then, now);
        assert!(now
            .v4
            .contains(&"-A FWCTL-INPUT ip saddr @blacklist counter drop".to_string()));
        assert_eq!(
            uncounted("log prefix \"counter packets x\" accept"),
            "log prefix \"counter packets x\" accept"
        );
    }

    #[test]
    fn a_rollback_keeps_then_config_members_and_now_bans() {
        let set = |members: Vec<(&str, Option<u64>)>| NftSet {
            name: "blacklist".into(),
            family: Family::V4,
            size: None,
            timeout: true,
            interval: true,
            members: members
                .into_iter()
                .map(|(m, t)| (m.parse().unwrap(), t))
                .collect(),
        };
        let then = [set(vec![
            ("198.51.100.0/24", None),
            ("203.0.113.7/32", Some(5)),
        ])];
        let now = [set(vec![
            ("192.0.2.0/24", None),
            ("203.0.113.9/32", Some(300)),
        ])];
        let s = rollback_script(Some(TERSE), &then, &now);
        assert!(s.starts_with("table inet fwctl\ndelete table inet fwctl\ntable inet fwctl {"));
        assert!(
            s.ends_with(
                "add element inet fwctl blacklist { 198.51.100.0/24, 203.0.113.9 timeout 300s }\n"
            ),
            "{s}"
        );
        // No table then: the rollback takes ours out, nothing else.
        assert_eq!(rollback_script(None, &[], &now), render::render_removal());
    }
}
