//! `fwctl doctor`, the checks (pure): what a working install needs, each
//! check with its fix, judged from facts the system layer gathers
//! (`sys::doctor`) without changing anything.

use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Which iptables a backend is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

/// fwctl's footprint in one backend: chains named FWCTL-*, rules in them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub chains: usize,
    /// Every rule of the filter table (ours or not).
    pub rules: usize,
}

/// The `nft` tool, as far as the nftables backend needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NftTool {
    /// Not found (the error says where it was looked for).
    Missing(String),
    /// Its version, and whether the kernel answered `nft list tables`
    /// (why not, if it did not).
    Found((u32, u32, u32), Option<String>),
}

/// What the machine showed.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// `[firewall] backend` (iptables without a config).
    pub firewall: &'static str,
    /// With backend nftables: the nft tool and the kernel's nf_tables.
    pub nft_tool: Option<NftTool>,
    /// fwctl's nftables table is in the kernel.
    pub nft_table: bool,
    /// `sudo fwctl` with the --config and --state the user gave, for the fixes.
    pub invoke: String,
    pub root: bool,
    /// Tools missing from PATH (with their package).
    pub missing_tools: Vec<(String, String)>,
    /// `iptables -V` (e.g. "iptables v1.8.9 (nf_tables)").
    pub iptables_version: Option<String>,
    /// fwctl's chains in each backend (None: that backend was not readable).
    pub nft: Option<Footprint>,
    pub legacy: Option<Footprint>,
    /// Why `ipset list -n` failed (None: it worked).
    pub ipset_error: Option<String>,
    /// Kernel modules fwctl's rules use that are neither loaded, built in
    /// nor installed; None when the machine cannot tell (no module lists).
    pub modules_missing: Option<Vec<String>>,
    pub config_error: Option<String>,
    pub config_path: PathBuf,
    /// The log path and the file system holding its directory
    /// (mount point, type), from /proc/self/mountinfo.
    pub log: PathBuf,
    pub log_mount: Option<(String, String)>,
    /// Age of the log's last write in seconds (None: no file).
    pub log_age: Option<u64>,
    /// rsyslog config files that route the fwctl prefixes to the log.
    pub rsyslog_rules: Vec<PathBuf>,
    pub rsyslog_running: bool,
    /// Files with `fwctl scan` cron lines, and an enabled fwctl-scan timer.
    pub cron_files: Vec<PathBuf>,
    pub scan_timer: bool,
    /// Boot apply: an enabled fwctl-apply.service or an @reboot line.
    pub boot_apply: bool,
    pub state_path: PathBuf,
    /// Why the state file cannot be written (None: it can).
    pub state_error: Option<String>,
    /// Each [[notify]] sink and what is wrong with its secret file, if anything.
    pub notify: Vec<(String, Option<String>)>,
    /// Notifications waiting in the outbox (undelivered by earlier runs).
    pub outbox_waiting: usize,
    /// [metrics] textfile_dir, and why fwctl.prom cannot be written there.
    pub textfile: Option<(PathBuf, Option<String>)>,
    /// With [fleet]: Redis answered (what it said), or why not.
    pub fleet: Option<Result<String, String>>,
    /// With a config: the connected peers its ruleset would lock out and
    /// how the connections were learned, or why they could not be read.
    pub lockout: Option<Result<(Vec<super::lockout::Lockout>, String), String>>,
    /// What shows Docker runs here ("DOCKER-USER chain", "DOCKER chain",
    /// "docker0"); empty: no sign of it.
    pub docker: Vec<&'static str>,
    /// The filter table has Docker's DOCKER-USER chain (what "auto" asks).
    pub docker_user: bool,
    /// The config's `[forward] protect` (None: no valid config).
    pub protect: Option<crate::core::config::forward::Protect>,
    /// With [[watch]] entries: the logs missing, or why watch refuses them.
    pub watch: Option<Result<Vec<String>, String>>,
    /// With [geo]: its databases opened (what they are), or why not.
    pub geo: Option<Result<String, String>>,
}

fn check(name: &'static str, level: Level, detail: String, fix: Option<&str>) -> Check {
    Check {
        name,
        level,
        detail,
        fix: fix.map(str::to_string),
    }
}

pub fn backend_of(version: &str) -> Option<Backend> {
    if version.contains("nf_tables") {
        Some(Backend::Nft)
    } else if version.contains("legacy") {
        Some(Backend::Legacy)
    } else {
        None
    }
}

/// "problem; fix: the fix" as a check's detail and fix.
fn split_fix(name: &'static str, level: Level, e: &str) -> Check {
    match e.split_once("; fix: ") {
        Some((d, fix)) => check(name, level, d.to_string(), Some(fix)),
        None => check(name, level, e.to_string(), None),
    }
}

/// The notification sinks and the metrics textfile, when configured.
fn telemetry_checks(f: &Facts, v: &mut Vec<Check>) {
    use Level::*;
    if !f.notify.is_empty() {
        let bad: Vec<String> = f
            .notify
            .iter()
            .filter_map(|(n, e)| e.as_ref().map(|e| format!("sink {n}: {e}")))
            .collect();
        v.push(if let Some(first) = bad.first() {
            // A bad secret file stops every command that notifies.
            split_fix("notify", Fail, first)
        } else if f.outbox_waiting > 0 {
            check(
                "notify",
                Warn,
                format!(
                    "{} wait in the outbox: the endpoint did not take them",
                    crate::units::duration::count(
                        f.outbox_waiting as u64,
                        "notification",
                        "notifications"
                    )
                ),
                Some(&format!("{} notify test", f.invoke)),
            )
        } else {
            let names: Vec<&str> = f.notify.iter().map(|(n, _)| n.as_str()).collect();
            check(
                "notify",
                Ok,
                format!("sinks {}; nothing waits in the outbox", names.join(", ")),
                None,
            )
        });
    }
    match &f.fleet {
        Some(Result::Ok(detail)) => v.push(check("fleet", Ok, detail.clone(), None)),
        Some(Result::Err(e)) => v.push(split_fix("fleet", Fail, e)),
        None => {}
    }
    if let Some((dir, err)) = &f.textfile {
        v.push(match err {
            None => check(
                "metrics",
                Ok,
                format!("fwctl.prom can be written in {}", dir.display()),
                None,
            ),
            Some(e) => check(
                "metrics",
                Fail,
                format!("[metrics] textfile_dir {}: {e}", dir.display()),
                Some(&format!(
                    "mkdir -p {} (or correct textfile_dir)",
                    dir.display()
                )),
            ),
        });
    }
}

/// The checks, in the order an install goes.
/// On a Docker host: whether `[forward]` covers its published ports
/// (Docker's DNAT sends them past INPUT, so INPUT's bans and default drop
/// do not apply to them). No line without Docker.
fn forward_check(f: &Facts) -> Option<Check> {
    use crate::core::config::forward::Protect;
    if f.docker.is_empty() {
        return None;
    }
    let protect = f.protect.unwrap_or_default();
    let on = protect.resolve(f.docker_user).is_some();
    let seen = f.docker.join(", ");
    Some(if on {
        check(
            "forward",
            Level::Ok,
            format!(
                "Docker runs here ({seen}); [forward] protect = \"{}\" covers its published ports",
                protect.as_str()
            ),
            None,
        )
    } else {
        check(
            "forward",
            Level::Warn,
            format!("Docker runs here ({seen}) but [forward] protect is {}: bans and the default drop do not reach published container ports (Docker's DNAT sends them past INPUT)", if protect == Protect::Off { "\"off\"" } else { "off (no DOCKER-USER chain yet)" }),
            Some("set [forward] protect = \"docker\" in the config and fwctl apply"),
        )
    })
}

pub fn checks(f: &Facts) -> Vec<Check> {
    use Level::*;
    let mut v = Vec::new();
    v.push(if f.root {
        check("root", Ok, "running as root".into(), None)
    } else {
        check(
            "root",
            Fail,
            "not root: the kernel's rules and sets cannot be read, so several checks below are partial".into(),
            Some(&format!("{} doctor", f.invoke)),
        )
    });
    v.push(match &f.config_error {
        None => check(
            "config",
            Ok,
            format!("{} is valid", f.config_path.display()),
            None,
        ),
        Some(e) => check(
            "config",
            Fail,
            e.clone(),
            Some("cp rules/fwctl.toml /etc/fwctl/fwctl.toml and edit it, or pass --config"),
        ),
    });
    v.push(if f.missing_tools.is_empty() {
        check(
            "tools",
            Ok,
            "iptables, ip6tables (save/restore) and ipset found".into(),
            None,
        )
    } else {
        let names: Vec<&str> = f.missing_tools.iter().map(|t| t.0.as_str()).collect();
        let mut pkgs: Vec<&str> = f.missing_tools.iter().map(|t| t.1.as_str()).collect();
        pkgs.dedup();
        check(
            "tools",
            Fail,
            format!("not found: {}", names.join(", ")),
            Some(&format!("apt-get install {}", pkgs.join(" "))),
        )
    });
    v.push(firewall_check(f));
    v.push(backend_check(f));
    v.push(match &f.ipset_error {
        None => check(
            "ipset",
            Ok,
            "ipset talks to the kernel (ip_set loaded)".into(),
            None,
        ),
        Some(e) => check(
            "ipset",
            Fail,
            format!("ipset cannot reach the kernel: {e}"),
            Some("load the module: modprobe ip_set (package linux-modules-extra on some kernels)"),
        ),
    });
    v.push(match &f.modules_missing {
        Some(m) if m.is_empty() => check("modules", Ok, "the netfilter modules fwctl uses are built in, loaded or installed".into(), None),
        Some(m) => check("modules", Fail, format!("not in this kernel: {}", m.join(", ")), Some("install your kernel's extra modules package (linux-modules-extra-$(uname -r)) or a kernel with them")),
        None if f.nft_table || f.nft.as_ref().is_some_and(|n| n.chains > 0) || f.legacy.as_ref().is_some_and(|n| n.chains > 0) => check("modules", Ok, "no module list on this machine, but fwctl's rules are installed, so the kernel has what they use".into(), None),
        None => check("modules", Warn, "no module list on this machine (/lib/modules): cannot tell; `fwctl apply` will say if a match is missing".into(), None),
    });
    let dir = f
        .log
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    v.push(match &f.log_mount {
        Some((mp, t)) if t == "tmpfs" => check("tmpfs", Ok, format!("{dir} is on tmpfs (mounted at {mp})"), None),
        Some((mp, t)) => check(
            "tmpfs",
            Fail,
            format!("{dir} is on {t} (mounted at {mp}), not a RAM disk: a flood of LOG lines wears the disk"),
            Some("systemctl enable --now ram.mount (by hand: cp systemd/ram.mount /etc/systemd/system/ first; or add tmpfs/fstab to /etc/fstab and mount /ram)"),
        ),
        None => check("tmpfs", Fail, format!("{dir} does not exist"), Some("mkdir /ram and mount it as tmpfs (systemd/ram.mount or the line in tmpfs/fstab)")),
    });
    v.push(if f.rsyslog_rules.is_empty() {
        check(
            "rsyslog rule",
            Fail,
            format!(
                "no rsyslog rule sends the fwctl LOG prefixes to {}",
                f.log.display()
            ),
            Some("cp rsyslog/10-iptables.conf /etc/rsyslog.d/ (the .deb installs it there) && systemctl restart rsyslog"),
        )
    } else {
        let files: Vec<String> = f
            .rsyslog_rules
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        check("rsyslog rule", Ok, format!("in {}", files.join(", ")), None)
    });
    v.push(if f.rsyslog_running {
        check("rsyslog", Ok, "rsyslogd is running".into(), None)
    } else {
        check(
            "rsyslog",
            Fail,
            "rsyslogd is not running: nothing writes the log".into(),
            Some("apt-get install rsyslog && systemctl enable --now rsyslog"),
        )
    });
    v.push(match f.log_age {
        Some(a) if a <= 3600 => check("log", Ok, format!("{} written {a}s ago", f.log.display()), None),
        Some(a) => check(
            "log",
            Warn,
            format!("{} last written {}h ago: a quiet host, or the LOG lines do not arrive", f.log.display(), a / 3600),
            Some("check with: logger -p kern.warning 'IPTABLES-BLOCKED: test' (the line should appear in the log)"),
        ),
        None => check("log", Fail, format!("{} does not exist: `fwctl scan` has nothing to read", f.log.display()), Some("install the rsyslog rule and restart rsyslog; apply the ruleset so the kernel logs")),
    });
    v.push(if !f.cron_files.is_empty() || f.scan_timer {
        let mut what: Vec<String> = f
            .cron_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if f.scan_timer {
            what.push("fwctl-scan.timer".into());
        }
        check(
            "scan schedule",
            Ok,
            format!("scan runs from {}", what.join(", ")),
            None,
        )
    } else {
        check(
            "scan schedule",
            Fail,
            "no cron entry and no timer runs `fwctl scan`".into(),
            Some("systemctl enable --now fwctl-scan.timer, or uncomment the scan lines of /etc/cron.d/fwctl (by hand: cp cron/fwctl /etc/cron.d/fwctl)"),
        )
    });
    if let Some(c) = forward_check(f) {
        v.push(c);
    }
    v.push(if f.boot_apply {
        check("boot apply", Ok, "the ruleset and bans are restored at boot".into(), None)
    } else {
        check("boot apply", Fail, "nothing runs `fwctl apply` at boot: after a reboot the host is open and bans are gone".into(), Some("systemctl enable fwctl-apply.service (by hand: cp systemd/fwctl-apply.service /etc/systemd/system/ first; or the @reboot line of cron/fwctl)"))
    });
    v.push(match &f.state_error {
        None => check(
            "state file",
            Ok,
            format!("{} can be written", f.state_path.display()),
            None,
        ),
        Some(e) => check(
            "state file",
            Fail,
            format!("{}: {e}", f.state_path.display()),
            Some(&format!(
                "mkdir -p {} (as root), or pass --state",
                f.state_path
                    .parent()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| ".".into())
            )),
        ),
    });
    if let Some(l) = &f.lockout {
        v.push(lockout_check(l));
    }
    telemetry_checks(f, &mut v);
    if let Some(w) = &f.watch {
        v.push(watch_row(w));
    }
    match &f.geo {
        Some(Result::Ok(d)) => v.push(check("geo", Ok, d.clone(), None)),
        Some(Result::Err(e)) => v.push(split_fix("geo", Fail, e)),
        None => {}
    }
    v
}

fn watch_row(w: &Result<Vec<String>, String>) -> Check {
    match w {
        Ok(missing) if missing.is_empty() => check(
            "watch",
            Level::Ok,
            "the [[watch]] entries are valid and their logs exist (fwctl watch --check shows them)".into(),
            None,
        ),
        Ok(missing) => check(
            "watch",
            Level::Warn,
            format!("{}; watch reads such a log from its start when it appears", missing.join("; ")),
            Some("correct the entry's log, or let the program write it (journal = true for sshd on a journal-only host)"),
        ),
        Err(e) => split_fix("watch", Level::Fail, e),
    }
}

/// The peers connected now that the config's ruleset would lock out, as
/// `apply` would refuse them.
fn lockout_check(l: &Result<(Vec<super::lockout::Lockout>, String), String>) -> Check {
    use Level::*;
    match l {
        Result::Err(e) => check(
            "lock-out",
            Warn,
            format!("cannot tell whether the config locks out a connected peer: {e}"),
            Some("over SSH, apply with --confirm"),
        ),
        Result::Ok((found, via)) if found.is_empty() => check(
            "lock-out",
            Ok,
            format!("the config's ruleset lets every connected peer connect again (from {via})"),
            None,
        ),
        Result::Ok((found, _)) => {
            const SHOWN: usize = 5;
            let mut peers: Vec<String> = found
                .iter()
                .take(SHOWN)
                .map(|l| format!("{} to port {}", l.peer, l.port))
                .collect();
            if found.len() > SHOWN {
                peers.push(format!("{} more", found.len() - SHOWN));
            }
            check(
                "lock-out",
                Fail,
                format!(
                    "the config's ruleset drops new connections from peers connected now: {}; `apply` refuses it",
                    peers.join(", ")
                ),
                Some(&match found.as_slice() {
                    [one] => one.line().split_once("; fix: ").map_or(String::new(), |(_, fix)| fix.to_string()),
                    _ => "a [[service]] with each port, or each peer (or its network) in [trusted] networks".into(),
                }),
            )
        }
    }
}

/// Which backend `apply` drives, and whether what it needs is here.
fn firewall_check(f: &Facts) -> Check {
    use Level::*;
    let Some(nft) = &f.nft_tool else {
        return check(
            "firewall",
            Ok,
            format!(
                "backend {}: iptables, ip6tables and ipset (see tools)",
                if f.firewall.is_empty() {
                    "iptables"
                } else {
                    f.firewall
                }
            ),
            None,
        );
    };
    match nft {
        NftTool::Missing(e) => split_fix("firewall", Fail, &format!("backend nftables: {e}")),
        NftTool::Found(v, _) if *v < (1, 0, 0) => check(
            "firewall",
            Fail,
            format!("backend nftables needs nft 1.0 or newer, this is {}.{}.{}", v.0, v.1, v.2),
            Some("install nftables from a newer release, or set [firewall] backend = \"iptables\""),
        ),
        NftTool::Found(v, Some(e)) => check(
            "firewall",
            Fail,
            format!("backend nftables: nft {}.{}.{} runs, but the kernel did not answer: {e}", v.0, v.1, v.2),
            Some("modprobe nf_tables (a kernel with nf_tables), or set [firewall] backend = \"iptables\""),
        ),
        NftTool::Found(v, None) => check(
            "firewall",
            Ok,
            format!("backend nftables: nft {}.{}.{}, the kernel's nf_tables answers; fwctl's rules are table inet fwctl", v.0, v.1, v.2),
            None,
        ),
    }
}

fn backend_check(f: &Facts) -> Check {
    use Level::*;
    let Some(version) = &f.iptables_version else {
        return check(
            "backend",
            Fail,
            "iptables -V did not run".into(),
            Some("apt-get install iptables"),
        );
    };
    let Some(used) = backend_of(version) else {
        return check(
            "backend",
            Warn,
            format!("cannot tell the backend from \"{version}\""),
            None,
        );
    };
    let (ours, other, name, other_name, switch) = match used {
        Backend::Nft => (
            &f.nft,
            &f.legacy,
            "nf_tables",
            "legacy",
            "update-alternatives --set iptables /usr/sbin/iptables-legacy",
        ),
        Backend::Legacy => (
            &f.legacy,
            &f.nft,
            "legacy",
            "nf_tables",
            "update-alternatives --set iptables /usr/sbin/iptables-nft",
        ),
    };
    let theirs = other.clone().unwrap_or_default();
    if theirs.chains > 0 && ours.as_ref().is_none_or(|o| o.chains == 0) {
        return check(
            "backend",
            Fail,
            format!("iptables is {name}, but fwctl's chains are in the {other_name} backend: a new apply would install a second copy and the old rules keep dropping"),
            Some(&{
                let other = if used == Backend::Nft { "legacy" } else { "nft" };
                let tools = ["iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"]
                    .map(|t| {
                        let (fam, verb) = t.split_once('-').expect("tool-verb");
                        format!("FWCTL_{}={fam}-{other}-{verb}", t.to_uppercase().replace('-', "_"))
                    })
                    .join(" ");
                let rest = f.invoke.strip_prefix("sudo fwctl").unwrap_or("");
                format!("remove them with the other backend (sudo env {tools} fwctl{rest} remove) or switch: {switch}")
            }),
        );
    }
    if theirs.rules > 0 {
        return check(
            "backend",
            Warn,
            format!("iptables is {name}; the {other_name} backend also has {} rules (another tool's?): packets pass both, and a drop in either wins", theirs.rules),
            Some("make every firewall tool use one backend (update-alternatives --config iptables)"),
        );
    }
    check(
        "backend",
        Ok,
        format!("iptables is {name} ({version}); nothing in the {other_name} backend"),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firewall_row_names_the_backend_and_what_it_lacks() {
        let mut f = good();
        assert_eq!(level(&f, "firewall").0, Level::Ok);
        assert!(level(&f, "firewall").1.contains("backend iptables"));
        f.firewall = "nftables";
        f.nft_tool = Some(NftTool::Found((1, 0, 6), None));
        let (l, text) = level(&f, "firewall");
        assert!(l == Level::Ok && text.contains("nft 1.0.6"), "{text}");
        f.nft_tool = Some(NftTool::Found((0, 9, 8), None));
        assert_eq!(level(&f, "firewall").0, Level::Fail);
        f.nft_tool = Some(NftTool::Found(
            (1, 0, 6),
            Some("Operation not supported".into()),
        ));
        assert!(level(&f, "firewall").1.contains("kernel did not answer"));
        f.nft_tool = Some(NftTool::Missing(
            "nft not found; fix: apt-get install nftables".into(),
        ));
        let c = checks(&f)
            .into_iter()
            .find(|c| c.name == "firewall")
            .unwrap();
        assert_eq!(c.fix.as_deref(), Some("apt-get install nftables"));
    }

    fn good() -> Facts {
        Facts {
            invoke: "sudo fwctl --config /srv/f.toml".into(),
            root: true,
            iptables_version: Some("iptables v1.8.9 (nf_tables)".into()),
            nft: Some(Footprint {
                chains: 6,
                rules: 40,
            }),
            legacy: None,
            modules_missing: Some(vec![]),
            config_path: "/etc/fwctl/fwctl.toml".into(),
            log: "/ram/iptables.log".into(),
            log_mount: Some(("/ram".into(), "tmpfs".into())),
            log_age: Some(5),
            rsyslog_rules: vec!["/etc/rsyslog.d/10-iptables.conf".into()],
            rsyslog_running: true,
            cron_files: vec!["/etc/cron.d/fwctl".into()],
            boot_apply: true,
            state_path: "/var/lib/fwctl/state.json".into(),
            ..Facts::default()
        }
    }

    #[test]
    fn an_unreadable_country_database_fails_with_its_fix() {
        let mut f = good();
        f.geo = Some(Err(
            "[geo] country_db /x.mmdb: not a MaxMind DB; fix: download it again".into(),
        ));
        let c = checks(&f).into_iter().find(|c| c.name == "geo").unwrap();
        assert_eq!(c.level, Level::Fail);
        assert_eq!(c.fix.as_deref(), Some("download it again"));
        f.geo = None;
        assert!(
            checks(&f).iter().all(|c| c.name != "geo"),
            "no [geo], no row"
        );
    }

    fn level(f: &Facts, name: &str) -> (Level, String) {
        let c = checks(f).into_iter().find(|c| c.name == name).unwrap();
        (
            c.level,
            format!("{} {}", c.detail, c.fix.unwrap_or_default()),
        )
    }

    #[test]
    fn a_connected_peer_the_config_locks_out_is_a_problem() {
        use crate::core::lockout::Lockout;
        let mut f = good();
        let l = |peer: &str| Lockout {
            peer: peer.parse().unwrap(),
            port: 22,
        };
        f.lockout = Some(Ok((vec![], "sock_diag".into())));
        assert_eq!(level(&f, "lock-out").0, Level::Ok);
        f.lockout = Some(Ok((vec![l("203.0.113.5")], "sock_diag".into())));
        let (lv, text) = level(&f, "lock-out");
        assert_eq!(lv, Level::Fail);
        for want in [
            "203.0.113.5 to port 22",
            "[[service]] with port = 22",
            "[trusted]",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        let many: Vec<Lockout> = (1..=7).map(|i| l(&format!("203.0.113.{i}"))).collect();
        f.lockout = Some(Ok((many, "sock_diag".into())));
        let (_, text) = level(&f, "lock-out");
        assert!(text.contains("203.0.113.5 to port 22, 2 more"), "{text}");
        f.lockout = Some(Err("EPERM".into()));
        assert_eq!(level(&f, "lock-out").0, Level::Warn);
    }

    #[test]
    fn a_good_install_passes_every_check() {
        let all = checks(&good());
        assert!(all.iter().all(|c| c.level == Level::Ok), "{all:#?}");
        assert_eq!(all.len(), 14);
    }

    #[test]
    fn each_miss_fails_with_its_fix() {
        type Change = Box<dyn Fn(&mut Facts)>;
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "root",
                Box::new(|f| f.root = false),
                "sudo fwctl --config /srv/f.toml doctor",
            ),
            (
                "tools",
                Box::new(|f| f.missing_tools = vec![("ipset".into(), "ipset".into())]),
                "apt-get install ipset",
            ),
            (
                "tmpfs",
                Box::new(|f| f.log_mount = Some(("/".into(), "ext4".into()))),
                "ram.mount",
            ),
            (
                "rsyslog rule",
                Box::new(|f| f.rsyslog_rules.clear()),
                "10-iptables.conf",
            ),
            (
                "rsyslog",
                Box::new(|f| f.rsyslog_running = false),
                "enable --now rsyslog",
            ),
            ("log", Box::new(|f| f.log_age = None), "does not exist"),
            (
                "scan schedule",
                Box::new(|f| f.cron_files.clear()),
                "cron/fwctl",
            ),
            (
                "boot apply",
                Box::new(|f| f.boot_apply = false),
                "fwctl-apply.service",
            ),
            (
                "ipset",
                Box::new(|f| f.ipset_error = Some("Kernel error".into())),
                "modprobe ip_set",
            ),
            (
                "modules",
                Box::new(|f| f.modules_missing = Some(vec!["xt_set".into()])),
                "xt_set",
            ),
            (
                "state file",
                Box::new(|f| f.state_error = Some("read-only".into())),
                "mkdir -p /var/lib/fwctl",
            ),
            (
                "notify",
                Box::new(|f| {
                    f.notify = vec![
                        ("chat".into(), None),
                        ("ops".into(), Some("secret file /etc/fwctl/k is readable by group or others (mode 0644); fix: chmod 600 /etc/fwctl/k".into())),
                    ]
                }),
                "sink ops: secret file /etc/fwctl/k is readable by group or others (mode 0644) chmod 600 /etc/fwctl/k",
            ),
            (
                "metrics",
                Box::new(|f| f.textfile = Some(("/var/lib/node".into(), Some("not a directory".into())))),
                "mkdir -p /var/lib/node",
            ),
            (
                "fleet",
                Box::new(|f| {
                    f.fleet = Some(Err("redis connect to redis://203.0.113.100/: WRONGPASS; fix: check [fleet] password_file".into()))
                }),
                "WRONGPASS check [fleet] password_file",
            ),
        ];
        for (name, change, want) in cases {
            let mut f = good();
            change(&mut f);
            let (l, text) = level(&f, name);
            assert_eq!(l, Level::Fail, "{name}: {text}");
            assert!(text.contains(want), "{name}: {text}");
        }
        let mut f = good();
        f.log_age = Some(7200);
        assert_eq!(level(&f, "log").0, Level::Warn);
        f.cron_files.clear();
        f.scan_timer = true;
        assert_eq!(level(&f, "scan schedule").0, Level::Ok);
        // Sinks that work, with events left over from an outage: a warning.
        f.notify = vec![("ops".into(), None)];
        assert_eq!(level(&f, "notify").0, Level::Ok);
        f.outbox_waiting = 3;
        let (l, text) = level(&f, "notify");
        assert_eq!(l, Level::Warn);
        assert!(
            text.contains("3 notifications wait") && text.contains("notify test"),
            "{text}"
        );
        // Nothing configured: no check at all.
        assert!(checks(&good())
            .iter()
            .all(|c| c.name != "notify" && c.name != "metrics"));
    }

    #[test]
    fn the_backend_check_finds_rules_where_nothing_reads_them() {
        let mut f = good();
        assert!(level(&f, "backend").1.contains("iptables is nf_tables"));
        // Installed earlier with iptables-legacy; the system now uses nft.
        f.nft = Some(Footprint {
            chains: 0,
            rules: 0,
        });
        f.legacy = Some(Footprint {
            chains: 6,
            rules: 40,
        });
        let (l, text) = level(&f, "backend");
        assert_eq!(l, Level::Fail);
        assert!(text.contains("chains are in the legacy backend"), "{text}");
        // Someone else's rules in the other backend: a warning.
        f.nft = Some(Footprint {
            chains: 6,
            rules: 40,
        });
        f.legacy = Some(Footprint {
            chains: 0,
            rules: 3,
        });
        assert_eq!(level(&f, "backend").0, Level::Warn);
        f.iptables_version = Some("iptables v1.8.9 (legacy)".into());
        f.legacy = Some(Footprint {
            chains: 6,
            rules: 40,
        });
        f.nft = Some(Footprint::default());
        assert!(level(&f, "backend").1.contains("iptables is legacy"));
        assert_eq!(backend_of("iptables v1.4.21"), None);
    }

    #[test]
    fn watch_entries_are_checked_as_watch_would() {
        let mut f = good();
        f.watch = Some(Ok(vec![]));
        assert_eq!(level(&f, "watch").0, Level::Ok);
        f.watch = Some(Ok(vec![
            "sshd: /var/log/auth.log does not exist (yet)".into()
        ]));
        assert_eq!(level(&f, "watch").0, Level::Warn);
        f.watch = Some(Err(
            "[[watch]] nginx: status is for source nginx or apache, not sshd; fix: drop it".into(),
        ));
        let (l, d) = level(&f, "watch");
        assert!(l == Level::Fail && d.contains("status"), "{d}");
    }

    #[test]
    fn docker_without_forward_protection_is_a_warning() {
        use crate::core::config::forward::Protect;
        let mut f = good();
        assert!(
            checks(&f).iter().all(|c| c.name != "forward"),
            "no Docker, no line"
        );
        f.docker = vec!["docker0"];
        let (lv, text) = level(&f, "forward");
        assert_eq!(lv, Level::Warn);
        assert!(
            text.contains("docker0")
                && text.contains("no DOCKER-USER chain yet")
                && text.contains("protect = \"docker\""),
            "{text}"
        );
        f.docker = vec!["DOCKER-USER chain", "DOCKER chain"];
        f.docker_user = true;
        f.protect = Some(Protect::Auto);
        assert_eq!(level(&f, "forward").0, Level::Ok);
        f.protect = Some(Protect::Off);
        let (lv, text) = level(&f, "forward");
        assert_eq!(lv, Level::Warn);
        assert!(text.contains("is \"off\""), "{text}");
        f.protect = Some(Protect::All);
        assert_eq!(level(&f, "forward").0, Level::Ok);
    }
}
