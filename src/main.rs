//! fwctl: argument parsing and dispatch only; the work is in the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fwctl",
    version,
    about = "Host firewall toolkit: a default-drop dual-stack iptables/ipset ruleset from one TOML file",
    long_about = "fwctl renders a default-drop, dual-stack (iptables + ip6tables) ruleset backed by ipsets \
(whitelist, blacklist, throttle-soft, throttle-hard, each with an _v6 twin) from a TOML config and installs \
it atomically, rolling back if any step fails."
)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, value_name = "PATH", default_value = fwctl::config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the ruleset and sets from the config (root), or print them with --dry-run.
    ///
    /// fwctl owns its FWCTL-* chains, one jump at the top of INPUT and the INPUT policy;
    /// other chains and tables (Docker's, other tools') are left alone. Bans in the sets
    /// (members with a timeout) survive a re-apply.
    Apply {
        /// Print the ipset and iptables-restore input that would be installed; change nothing.
        /// Without root the kernel is not read, so the output assumes nothing is installed yet.
        #[arg(long)]
        dry_run: bool,
        /// After installing, wait this long (e.g. 60s, 5m) for Enter on the terminal or
        /// `fwctl confirm` from another shell; without it the old rules are put back.
        #[arg(long, value_name = "DURATION", value_parser = fwctl::commands::parse_confirm)]
        confirm: Option<std::time::Duration>,
    },
    /// Ban the sources with too many LOG lines of a rule within a time window (for cron).
    ///
    /// Reads the log rsyslog writes (only the part inside the window), counts the
    /// matching lines per source address, and adds every source with MORE than
    /// --howmany of them to --ipset (IPv6 ones to its _v6 twin) for --removeafter,
    /// in one `ipset restore`. Never banned: the config's trusted networks, members of
    /// the whitelist sets, loopback and this host's own addresses. Addresses already
    /// in the set keep their timeout. Example (cron):
    ///
    ///   fwctl scan --rule blocked --type tcp --howmany 500 --within 30m --ipset throttle-hard --removeafter 2h
    Scan(fwctl::scan::Options),
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
    Capture(fwctl::capture::Options),
    /// Keep the rules of an `apply --confirm` that is waiting.
    Confirm,
    /// Take fwctl's rules out: jump, FWCTL-* chains, and the INPUT policy back to ACCEPT.
    Remove {
        /// Also destroy fwctl's sets (and with them every ban in them).
        #[arg(long)]
        sets: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Apply { dry_run, confirm } => {
            fwctl::commands::apply(&cli.config, dry_run, confirm)
        }
        Command::Scan(opts) => fwctl::scan::run(&opts, &cli.config),
        Command::Capture(opts) => fwctl::capture::run(&opts, &cli.config),
        Command::Confirm => fwctl::commands::confirm(),
        Command::Remove { sets } => fwctl::commands::remove(&cli.config, sets),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: anyhow's alternate form joins the context chain with ": ".
            eprintln!("fwctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
