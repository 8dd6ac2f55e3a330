//! The command line: every subcommand, option and help text, defined once.
//! `main` parses with it and dispatches; the man pages, the completions and
//! the README test (every command line in README.md and docs/ must parse) read it too.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "fwctl",
    version,
    about = "Host firewall toolkit: a default-drop dual-stack iptables/ipset ruleset from one TOML file",
    long_about = "fwctl renders a default-drop, dual-stack (iptables + ip6tables) ruleset backed by ipsets \
(whitelist, blacklist, throttle-soft, throttle-hard, each with an _v6 twin) from a TOML config and installs \
it atomically, rolling back if any step fails (apply). It bans sources over LOG-line thresholds from cron \
(scan), bans port scanners as they scan (capture), and keeps bans across reboots in its state file. \
Day to day: status (drift, set fullness, expiries), ban, unban, list, doctor (what an install lacks)."
)]
pub struct Cli {
    /// The config file [default: /etc/fwctl/fwctl.toml; when that does not
    /// exist, every command but a real apply runs on built-in defaults].
    #[arg(long, global = true, value_name = "PATH", env = "FWCTL_CONFIG")]
    pub config: Option<PathBuf>,
    /// The state file: active bans with their end times, repeat offenders,
    /// the last scan runs and the last apply (default: the config's
    /// [capture] state_file, /var/lib/fwctl/state.json).
    #[arg(long, global = true, value_name = "FILE", env = "FWCTL_STATE")]
    pub state: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Install the ruleset and sets from the config (root), or print them with --dry-run.
    ///
    /// fwctl owns its FWCTL-* chains, one jump at the top of INPUT and the INPUT policy;
    /// other chains and tables (Docker's, other tools') are left alone. Bans in the sets
    /// (members with a timeout) survive a re-apply. Before installing, the peers of the
    /// established TCP connections to this host (sock_diag netlink) are checked: a ruleset
    /// that would drop a new connection from one of them is refused without --confirm or
    /// --force (a dry run says so and exits 2).
    Apply {
        /// Print the ipset and iptables-restore input that would be installed; change nothing.
        /// Without root the kernel is not read, so the output assumes nothing is installed yet.
        #[arg(long)]
        dry_run: bool,
        /// After installing, wait this long (e.g. 60s, 5m) for Enter on the terminal or
        /// `fwctl confirm` from another shell; without it the old rules are put back.
        #[arg(long, value_name = "DURATION", value_parser = crate::units::duration::parse_confirm)]
        confirm: Option<std::time::Duration>,
        /// Install even when the new ruleset would drop new connections from a peer
        /// connected now (e.g. your SSH session): without it (or --confirm) apply refuses.
        #[arg(long)]
        force: bool,
    },
    /// Ban the sources with too many LOG lines of a rule within a time window (for cron).
    ///
    /// Reads the log rsyslog writes (only the part inside the window), counts the
    /// matching lines per source address, and adds every source with MORE than
    /// --howmany of them to --ipset (IPv6 ones to its _v6 twin) for --removeafter,
    /// in one `ipset restore`. Never banned: the config's trusted networks, members of
    /// the whitelist sets, loopback and this host's own addresses. Addresses already
    /// in the set keep their timeout.
    Scan(crate::cmd::scan::Options),
    /// Show what a log source (built in or [[source]]) makes of a log or of one line.
    ///
    /// For a log: lines read, matched per kind, the addresses found with their counts,
    /// and the lines of the source's program that no pattern matched, grouped by shape
    /// with an example each. With --line: matched or not, address, time, kind, and which
    /// part of the pattern took each. Warns when a pattern's addr is not anchored.
    /// Reads only, needs no root; exit status 1 when nothing matched.
    TestSource(crate::cmd::test_source::Options),
    /// Follow the [[watch]] logs as they are written and ban at once (a long-running service).
    ///
    /// Each [[watch]] entry of the config is a cron scan line's flags as keys (source,
    /// log or journal, rule/type/match/status, howmany, within, ipset, removeafter).
    /// watch follows each log with inotify across rotation (rename or copytruncate),
    /// deletion and re-creation, keeps a sliding window per source, and bans a source
    /// the moment it has more than howmany lines within the window. Never banned: the
    /// config's trusted networks, the whitelist sets, this host's addresses. Positions
    /// are kept beside the state file, so a restart neither loses nor recounts lines.
    Watch(crate::cmd::watch::Options),
    /// Say everything fwctl knows and would do about one address or network.
    ///
    /// Which of fwctl's sets hold it now and the time left (as root), each ban of it the
    /// state file remembers (rule or scan type, window, hits, first and last seen, offence,
    /// origin, and up to [history] evidence pieces of evidence: the log lines that crossed
    /// the threshold, or a summary of what was counted), whether the never-ban policy
    /// protects it and why, and its cached reputation score. Reads only.
    Why(crate::cmd::why::Options),
    /// Watch packets and ban port scanners as they scan (a long-running service).
    ///
    /// Reads probes (TCP without ACK: SYN, FIN, NULL, XMAS and odd flag sets; and UDP)
    /// addressed to this host from an AF_PACKET socket with a kernel BPF filter, counts
    /// the distinct ports each source probes within the profile's window, and bans a
    /// source that crosses the threshold into the [capture] ban_set (blacklist and
    /// blacklist_v6 by default) for a time that grows with each repeat offence. Also
    /// reports distributed scans (many sources on one port). Never banned: trusted
    /// networks and this host's addresses. Events go to stdout, one line each.
    /// SIGINT/SIGTERM save the ban history and exit. --pcap replays a capture file
    /// through the same detector without touching the kernel.
    Capture(crate::cmd::capture::Options),
    /// Show whether fwctl's rules are installed and unchanged, how full each
    /// set is, the soonest expiries, the last scan runs and whether capture runs.
    ///
    /// Drift (rules flushed or edited behind fwctl's back) is found by comparing
    /// the kernel's rules with what the last apply installed, and with the config.
    /// Exit status: 0 all well, 2 something needs attention (listed with its fix),
    /// 1 status itself failed.
    Status(crate::cmd::status::Options),
    /// Ban an address or network by hand (IPv4 or IPv6; the family's set is picked).
    ///
    /// Refused for trusted (whitelisted) addresses, this host's own addresses and
    /// the whitelist set. Banning an address that is already banned sets its new
    /// time. The ban is recorded in the state file, so a reboot's apply restores
    /// it with the time it has left.
    Ban(crate::cmd::ban::BanOptions),
    /// Lift a ban: take the address out of every ban set and end it in the state file.
    Unban(crate::cmd::unban::UnbanOptions),
    /// List the members of fwctl's sets (or of one) with the time each ban has left.
    List(crate::cmd::list::ListOptions),
    /// Check what a working install needs, and say how to fix each miss.
    ///
    /// Root, the iptables tools and which backend (nf_tables or legacy) the
    /// system uses, ipset and the kernel modules, the tmpfs log mount, the rsyslog
    /// rule and whether the log is written, the cron entries or timer, the state
    /// file. Exit status 0 when every check passes, 2 otherwise.
    Doctor(crate::cmd::doctor::Options),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Example:\n  fwctl completions bash > /etc/bash_completion.d/fwctl")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page fwctl(8) (roff), or write one page per subcommand into --dir.
    #[command(
        after_help = "Examples:\n  fwctl man > /usr/local/share/man/man8/fwctl.8\n  fwctl man --dir /usr/local/share/man/man8"
    )]
    Man {
        /// Write fwctl.8 and fwctl-SUBCOMMAND.8 into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Apply the fleet's bans here: follow the [fleet] Redis stream (a service).
    ///
    /// Catches up from the fleet's index of running bans, then follows the
    /// stream: each remote ban goes into the local set of its role with the time
    /// it has left (capped by [fleet] max_ban), unless this host's policy forbids
    /// it (trusted networks, the whitelist sets, its own addresses) or it has a
    /// longer ban already; remote unbans lift what the fleet put here. Also
    /// publishes what this host's commands could not while Redis was away.
    Sync(crate::cmd::sync::Options),
    /// The fleet's keys and bans: `fwctl fleet keygen --out PATH`, `fwctl fleet purge --host NAME`.
    Fleet {
        #[command(subcommand)]
        command: crate::cmd::fleet_admin::FleetCommand,
    },
    /// Threat feeds: `fwctl feeds update [--feed NAME] [--force]`.
    Feeds {
        #[command(subcommand)]
        command: crate::cmd::feeds::FeedsCommand,
    },
    /// Webhook notifications: `fwctl notify test [--sink NAME]`.
    Notify {
        #[command(subcommand)]
        command: crate::cmd::notify::NotifyCommand,
    },
    /// Prove the config's ruleset on a private twin of this host (root).
    ///
    /// Builds three network namespaces of its own (fwst-PID-host, a twin carrying the
    /// config's ruleset, installed by fwctl's own apply with a temp state file; a client;
    /// an attacker; documentation addresses only), checks one row each (every
    /// [[service]] reachable over TCP or UDP, a closed port dropped and logged with the
    /// configured prefix, a banned and a fed address dropped, a rate-limited service
    /// refusing over its rate, the whitelist getting in, IPv6 neighbour discovery, a LOG
    /// line banned by scan, capture banning a SYN scan and a decoy handshake) and deletes
    /// the namespaces, also on failure and Ctrl-C. The host's own firewall, sets and
    /// /var/lib/fwctl are never touched; nf_log_all_netns is set for the run and put back.
    #[command(
        after_help = "Exit status: 0 every check passed (or was skipped, with the reason), 1 a check failed, 2 the selftest could not run (not root, no ip or firewall tool, interrupted).\n\nExample:\n  fwctl selftest --json"
    )]
    Selftest(crate::cmd::selftest::Options),
    /// selftest's services inside the twin (internal).
    #[command(hide = true)]
    SelftestListen(crate::cmd::selftest::ListenOptions),
    /// Keep the rules of an `apply --confirm` that is waiting.
    Confirm,
    /// Take fwctl's rules out: jump, FWCTL-* chains, and the INPUT policy back to ACCEPT.
    Remove {
        /// Also destroy fwctl's sets (and with them every ban in them).
        #[arg(long)]
        sets: bool,
    },
}
