//! Reading the facts doctor judges: files under /etc and /proc, and a few
//! read-only tool runs (found as every other run finds them, `FWCTL_<TOOL>`
//! included). Nothing is changed: no table is created, no module loaded (the
//! legacy backend is read only when its filter table exists already).

use super::tools::{locate_tool, read_only};
use crate::core::doctor::{Facts, Footprint};
use crate::sys::iptables::save::Saved;
use std::path::{Path, PathBuf};

/// The tools fwctl runs, with their Debian package.
const TOOLS: [(&str, &str); 7] = [
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    ("iptables-save", "iptables"),
    ("iptables-restore", "iptables"),
    ("ip6tables-save", "iptables"),
    ("ip6tables-restore", "iptables"),
    ("ipset", "ipset"),
];

/// The modules behind the matches and targets fwctl's rules use.
/// What the nftables backend's table uses beyond nf_tables' core (sets,
/// dynamic sets and counters are in nf_tables itself).
const NFT_MODULES: [&str; 5] = [
    "nf_tables",
    "nft_ct",
    "nft_limit",
    "nft_log",
    "nf_log_syslog",
];

const MODULES: [&str; 8] = [
    "ip_set",
    "ip_set_hash_ip",
    "ip_set_hash_net",
    "xt_set",
    "xt_conntrack",
    "xt_hashlimit",
    "xt_limit",
    "nf_log_syslog",
];

/// stdout of a tool that succeeded; None if missing or failing.
fn output(tool: &str, args: &[&str]) -> Option<String> {
    read_only(tool, args).ok()
}

fn footprint(saves: &[Option<String>]) -> Option<Footprint> {
    let mut f = Footprint::default();
    for s in saves {
        let t = Saved::filter(s.as_ref()?);
        f.chains += t.fwctl_chains().count();
        f.rules += t.rules.len();
    }
    Some(f)
}

/// The legacy backend, read only where its filter table exists already:
/// reading a missing one would load the module and create it.
fn legacy() -> Option<Footprint> {
    let has = |f: &str| {
        std::fs::read_to_string(f)
            .map(|t| t.lines().any(|l| l == "filter"))
            .unwrap_or(false)
    };
    let mut saves = Vec::new();
    for (names, tool) in [
        ("/proc/net/ip_tables_names", "iptables-legacy-save"),
        ("/proc/net/ip6_tables_names", "ip6tables-legacy-save"),
    ] {
        saves.push(if has(names) {
            output(tool, &["-t", "filter"])
        } else {
            Some(String::new())
        });
    }
    footprint(&saves)
}

fn modules_missing(wanted: &[&str]) -> Option<Vec<String>> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let dir = Path::new("/lib/modules").join(release.trim());
    let lists: String = ["modules.builtin", "modules.dep"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .collect();
    let mut missing = Vec::new();
    for m in wanted {
        let loaded = Path::new("/sys/module").join(m).exists();
        let listed = lists.contains(&format!("/{m}.ko"));
        if !loaded && !listed {
            missing.push(m.to_string());
        }
    }
    // Without module lists, only a module seen loaded is known.
    if lists.is_empty() && !missing.is_empty() {
        return None;
    }
    Some(missing)
}

/// The mount holding `dir`: (mount point, type), from mountinfo text.
pub fn mount_of(mountinfo: &str, dir: &Path) -> Option<(String, String)> {
    let mut best: Option<(String, String)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let point = point.replace("\\040", " ");
        let kind = right.split(' ').next().unwrap_or("").to_string();
        if dir.starts_with(&point) && best.as_ref().is_none_or(|b| point.len() >= b.0.len()) {
            best = Some((point, kind));
        }
    }
    best
}

fn read_dir(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Live (uncommented) lines of a file.
fn live_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn rsyslog_running() -> bool {
    read_dir("/proc")
        .iter()
        .any(|p| std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == "rsyslogd"))
}

/// Why `path` cannot be written (None: it can), as doctor shows it.
fn writable(path: &Path) -> Option<String> {
    let access = |p: &Path| {
        nix::unistd::access(p, nix::unistd::AccessFlags::W_OK)
            .err()
            .map(|e| format!("{} is not writable: {e}", p.display()))
    };
    if path.exists() {
        return access(path);
    }
    // The nearest existing directory must let us create the rest.
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.exists() {
            return access(d);
        }
        dir = d.parent();
    }
    Some("no existing parent directory".into())
}

/// `log`: the log rsyslog should write (as for `fwctl scan --log`);
/// `builtin`: no config was named and none is at the default path;
/// `invoke`: `sudo fwctl` with the user's --config and --state.
/// The nft tool, the kernel's answer to it, and whether fwctl's table is
/// there (read only; one listing: each reads the whole table).
fn nft_tool() -> (crate::core::doctor::NftTool, bool) {
    use crate::core::doctor::NftTool;
    let nft = match super::nft::Nft::locate() {
        Ok(n) => n,
        Err(e) => return (NftTool::Missing(e.to_string()), false),
    };
    match nft.version() {
        Ok(v) => match nft.terse_table() {
            Ok(table) => (NftTool::Found(v, None), table.is_some()),
            Err(e) => (NftTool::Found(v, Some(e.to_string())), false),
        },
        Err(e) => (NftTool::Missing(e.to_string()), false),
    }
}

pub fn gather(
    log: &Path,
    config: &Path,
    builtin: bool,
    state: Option<&Path>,
    invoke: String,
) -> Facts {
    let cfg = if builtin {
        Err(format!(
            "no config: {} does not exist; every command but apply runs on the built-in defaults (no services, no trusted networks)",
            config.display()
        ))
    } else {
        super::configfile::load(config).map_err(|e| e.to_string())
    };
    let state_path = match &cfg {
        Ok(c) => c.state_path(state),
        Err(_) => state
            .map(Path::to_path_buf)
            .unwrap_or_else(|| crate::core::state::DEFAULT_PATH.into()),
    };
    let iptables_version = output("iptables", &["-V"]).map(|s| s.trim().to_string());
    let root = super::host::is_root();
    let nft = footprint(&[
        output("iptables-nft-save", &["-t", "filter"]),
        output("ip6tables-nft-save", &["-t", "filter"]),
    ]);
    let ipset_error = read_only("ipset", &["list", "-n"])
        .err()
        .map(|e| e.to_string());
    let log_dir = log.parent().unwrap_or(Path::new("/"));
    let log_mount = if log_dir.is_dir() {
        mount_of(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            log_dir,
        )
    } else {
        None
    };
    let log_age = std::fs::metadata(log)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| t.elapsed().map(|d| d.as_secs()).unwrap_or(0));
    let log_text = log.display().to_string();
    let mut rsyslog_files = vec![PathBuf::from("/etc/rsyslog.conf")];
    rsyslog_files.extend(read_dir("/etc/rsyslog.d"));
    let rsyslog_rules = rsyslog_files
        .into_iter()
        .filter(|p| {
            let l = live_lines(p).join("\n");
            l.contains(&log_text) && l.contains("IPTABLES-")
        })
        .collect();
    let mut cron = read_dir("/etc/cron.d");
    cron.push("/etc/crontab".into());
    cron.push("/var/spool/cron/crontabs/root".into());
    let cron_files = cron
        .iter()
        .filter(|p| live_lines(p).iter().any(|l| l.contains("fwctl scan")))
        .cloned()
        .collect();
    let reboot = cron.iter().any(|p| {
        live_lines(p)
            .iter()
            .any(|l| l.starts_with("@reboot") && l.contains("fwctl apply"))
    });
    let wants = read_dir("/etc/systemd/system");
    let enabled = |unit: &str| {
        wants
            .iter()
            .filter(|d| d.extension().is_some_and(|e| e == "wants"))
            .any(|d| d.join(unit).exists())
    };
    let firewall = cfg.as_ref().map(|c| c.firewall.backend).unwrap_or_default();
    // Docker's chains (in whichever iptables the system uses) or bridge.
    let filter = output("iptables-save", &["-t", "filter"])
        .map(|s| Saved::filter(&s))
        .unwrap_or_default();
    let has = |c: &str| filter.chains.iter().any(|x| x == c);
    let docker_user = has(crate::core::config::forward::DOCKER_USER);
    let docker: Vec<&'static str> = [
        (docker_user, "DOCKER-USER chain"),
        (has("DOCKER"), "DOCKER chain"),
        (Path::new("/sys/class/net/docker0").exists(), "docker0"),
    ]
    .into_iter()
    .filter(|(yes, _)| *yes)
    .map(|(_, what)| what)
    .collect();
    let (nft_tool, nft_table) = match firewall {
        crate::core::config::firewall::Backend::Nftables => {
            let (tool, table) = nft_tool();
            (Some(tool), table)
        }
        crate::core::config::firewall::Backend::Iptables => (None, false),
    };
    let modules: &[&str] = if nft_tool.is_some() {
        &NFT_MODULES
    } else {
        &MODULES
    };
    Facts {
        firewall: firewall.as_str(),
        nft_tool,
        invoke,
        root,
        missing_tools: TOOLS
            .iter()
            .filter(|(t, p)| locate_tool(t, p).is_err())
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect(),
        iptables_version,
        nft,
        legacy: legacy(),
        ipset_error,
        modules_missing: modules_missing(modules),
        nft_table,
        config_error: cfg.as_ref().err().cloned(),
        config_path: config.to_path_buf(),
        log: log.to_path_buf(),
        log_mount,
        log_age,
        rsyslog_rules,
        rsyslog_running: rsyslog_running(),
        cron_files,
        scan_timer: enabled("fwctl-scan.timer"),
        boot_apply: reboot || enabled("fwctl-apply.service"),
        state_error: writable(&state_path),
        docker,
        docker_user,
        protect: cfg.as_ref().ok().map(|c| c.forward.protect),
        // The command fills it in: the check is the watch command's own.
        watch: None,
        geo: cfg.as_ref().ok().and_then(|c| c.geo.as_ref()).map(|g| {
            super::geodb::Db::open(g)
                .map(|_| {
                    let mut d = format!("{} opens", g.country_db.display());
                    if let Some(a) = &g.asn_db {
                        d.push_str(&format!(", and {}", a.display()));
                    }
                    d
                })
                .map_err(|e| e.to_string())
        }),
        notify: cfg
            .as_ref()
            .map(|c| {
                c.notify
                    .iter()
                    .map(|s| {
                        let err = s
                            .secret_file
                            .as_ref()
                            .and_then(|p| super::secret::read(p).err().map(|e| e.to_string()));
                        (s.name.clone(), err)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        outbox_waiting: super::outbox::waiting(&super::outbox::path_for(&state_path)),
        textfile: cfg
            .as_ref()
            .ok()
            .and_then(|c| c.metrics.textfile_dir.clone())
            .map(|d| {
                let err = if d.is_dir() {
                    writable(&d)
                } else {
                    Some("not a directory".into())
                };
                (d, err)
            }),
        state_path,
        // Redis is asked by the command layer, which holds the client.
        fleet: None,
        // So are the connections (it holds the ruleset).
        lockout: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_mount_holding_the_directory_wins() {
        let info = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    40 22 0:35 / /ram rw,nosuid shared:20 - tmpfs tmpfs rw,size=262144k\n\
                    41 22 0:36 / /ram\\040disk rw shared:21 - tmpfs tmpfs rw\n\
                    42 22 0:37 / /rambo rw shared:22 - xfs /dev/sdb rw\n";
        assert_eq!(
            mount_of(info, Path::new("/ram")),
            Some(("/ram".into(), "tmpfs".into()))
        );
        assert_eq!(
            mount_of(info, Path::new("/rambo/x")),
            Some(("/rambo".into(), "xfs".into()))
        );
        assert_eq!(
            mount_of(info, Path::new("/var/log")),
            Some(("/".into(), "ext4".into()))
        );
        assert_eq!(
            mount_of(info, Path::new("/ram disk")),
            Some(("/ram disk".into(), "tmpfs".into()))
        );
    }
}
