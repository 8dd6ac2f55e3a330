//! `fwctl scan`: read the LOG lines rsyslog writes, find the sources over a
//! threshold inside a time window, and ban them into an ipset.
//!
//! Order of work: every check that can refuse the run (arguments, config,
//! root, ipset binary, lock, target sets) comes before the log is read, and
//! the kernel is changed once, at the end, by one batch of set changes.

use super::notify::Notifier;
use super::run::{Needs, NotRoot, Run};
use super::Invocation;
use crate::core::ban::check_ban_sets;
use crate::core::config::pattern::Pattern;
use crate::core::config::{Config, Prefixes};
use crate::core::logline::Parser;
use crate::core::logsource::{LineParser, Source};
use crate::core::notify::{self, Notice, Origin};
use crate::core::policy::{Members, Policy};
use crate::core::scan::count::{Counting, Tally, TypeFilter};
use crate::core::scan::decide::{self, Known};
use crate::core::scan::report::{self, Report};
use crate::core::scan::{parse_now, FileRead};
use crate::core::sets::SetHead;
use crate::core::web_log::{Client, Statuses, WebParser};
use crate::ports::SetStore;
use crate::sys::firewall;
use crate::sys::{host, logfile, statefile};
use crate::units::duration::{parse_timeout, parse_window};
use crate::units::names::SetName;
use crate::units::time::{utc, Zone};
use anyhow::{anyhow, bail, Result};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples (cron, as in cron/fwctl):
  fwctl scan --rule blocked --type tcp --howmany 500 --within 30m --ipset throttle-hard --removeafter 2h
  fwctl scan --rule blocked --howmany 2000 --within 1h --ipset blacklist --removeafter 1d
  fwctl scan --source nginx --status 4xx --howmany 100 --within 10m --ipset throttle-hard --removeafter 1h
  fwctl scan --source nginx --match all --howmany 5 --within 1h --ipset blacklist --removeafter 1d
  fwctl scan --source sshd --howmany 10 --within 10m --ipset blacklist --removeafter 1d
  fwctl scan --source postfix-sasl --howmany 5 --within 10m --ipset blacklist --removeafter 1d
Behind reverse proxies of your own that append X-Forwarded-For, log it as the last quoted
field after the user agent (nginx: log_format ... '\"$http_user_agent\" \"$http_x_forwarded_for\"';
Apache: \"%{User-agent}i\" \"%{X-Forwarded-For}i\") and pass --client forwarded with
--trusted-proxy CIDR (or the config's [web] trusted_proxies). On a line whose peer is a trusted
proxy the header is walked from its right end past trusted proxies, as nginx's real_ip_recursive
does: the first other address is the client (the ones before it, anybody could write). A line
whose peer is not a trusted proxy counts against its peer. A trusted proxy is never banned.
  fwctl scan --source nginx --client forwarded --trusted-proxy 10.0.0.0/24 --status 4xx --howmany 100 --within 10m --ipset throttle-hard --removeafter 1h
Audit an old log without changing anything:
  fwctl scan --dryrun --log rules/sample-iptables.log --now 2026-11-21T12:00:00Z --rule blocked --howmany 50 --within 30m --ipset throttle-hard --removeafter 2h")]
pub struct Options {
    /// What the log is: kernel (the kernel's LOG lines), nginx or apache
    /// (access logs), sshd (auth.log), a built-in regex source
    /// (postfix-sasl, dovecot, vsftpd, proftpd, mariadb, nginx-limit-req,
    /// nginx-http-auth) or a [[source]] of the config.
    #[arg(long, value_name = "SOURCE", default_value = "kernel", value_parser = Source::parse)]
    pub source: Source,
    /// The log (`-` reads standard input); default: /ram/iptables.log,
    /// /var/log/nginx/access.log, /var/log/apache2/access.log,
    /// /var/log/auth.log or a built-in source's log by --source (a
    /// [[source]] of its own name needs --log). When the window starts before the
    /// file's first line, PATH.1 (the last rotation) is read too.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// --source sshd or a regex source: read the journal (journalctl: the
    /// ssh and sshd units, or the source's syslog programs) for the window
    /// instead of a file.
    #[arg(long, conflicts_with = "log")]
    pub journal: bool,
    /// --source kernel: which LOG lines count, a rule name of the config's
    /// [logging.prefixes] (allowed, blocked, whitelisted, blacklisted,
    /// throttled, bandwidth); both its IPv4 and IPv6 prefix match. Default:
    /// blocked.
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// --source kernel: which protocol counts (icmp also matches ICMPv6).
    /// Default: all.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: Option<TypeFilter>,
    /// --source nginx/apache: count only these responses: 4xx, 5xx,
    /// 401,403,404,444, 400-499 (default: every request).
    #[arg(long, value_name = "CODES")]
    pub status: Option<String>,
    /// --source nginx/apache: count only requests matching this named
    /// pattern (repeatable; `all` for every one): the built-in
    /// path-traversal, sql-injection, xss, env-file, wp-login, cgi-bin, and
    /// the config's [[pattern]]s.
    #[arg(long = "match", value_name = "NAME")]
    pub patterns: Vec<String>,
    /// --source nginx/apache: where the client's address is (see below).
    #[arg(long, value_enum, value_name = "FIELD", default_value = "remote")]
    pub client: Client,
    /// --client forwarded: a reverse proxy of yours (an address or
    /// network; repeatable), besides the config's [web] trusted_proxies.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A source is an offender with MORE than N matching lines in the window.
    #[arg(long, value_name = "N")]
    pub howmany: u64,
    /// The window: this long, ending now (e.g. 90s, 30m, 1h, 1d).
    #[arg(long, value_name = "DURATION", value_parser = parse_window)]
    pub within: u64,
    /// The set offenders go into; IPv6 offenders go into NAME_v6.
    #[arg(long, value_name = "NAME")]
    pub ipset: String,
    /// How long a ban lasts (the set member's timeout, e.g. 2h).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub removeafter: u64,
    /// Report what would be banned; change nothing. Works without root (then
    /// the kernel's sets are not read, so whitelist and already-listed are not checked).
    #[arg(long, alias = "dry-run")]
    pub dryrun: bool,
    /// Print one JSON document instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Pretend it is this moment, to audit an old log: RFC 3339
    /// (2026-11-21T10:30:00Z, with an offset or Z) or local "2026-11-21 10:30:00".
    #[arg(long, value_name = "TIMESTAMP")]
    pub now: Option<String>,
    /// Print the lines of the window that counted for this address (or
    /// every address of a CIDR), oldest file first, and ban nothing.
    #[arg(long, value_name = "ADDRESS")]
    pub explain: Option<String>,
}

/// A --trusted-proxy value: as the config's networks (no host bits, no /0).
fn parse_proxy(s: &str) -> Result<ipnet::IpNet, String> {
    crate::units::addr::parse_net(s.trim(), false).map_err(|e| e.0)
}

/// Everything checked and worked out before anything is read or touched.
pub struct Plan {
    pub opts: Options,
    pub cfg: Config,
    /// --source kernel: the LOG prefixes of the rule, and the protocols.
    pub prefixes: Vec<Vec<u8>>,
    pub kind: TypeFilter,
    /// --source nginx/apache: the statuses and the patterns that count.
    pub statuses: Statuses,
    pub patterns: Vec<Pattern>,
    /// --client forwarded: the trusted proxies (flags and config).
    pub proxies: Vec<ipnet::IpNet>,
    /// A regex source: its definition (built in or the config's).
    pub regex: Option<crate::core::logs::Def>,
    /// The log (None: the journal).
    pub log: Option<PathBuf>,
    /// What the report and the state file call the run: the rule and type
    /// (kernel), or the source and what it counts.
    pub rule: String,
    pub kind_name: String,
    /// Target sets: IPv4, IPv6.
    pub sets: [String; 2],
    pub whitelist: [String; 2],
    /// The apply command that creates the sets, for the fixes.
    pub apply_fix: String,
}

impl Plan {
    /// Which journal entries `--journal` (or watch's `journal = true`)
    /// reads for this source.
    pub fn journal_matches(&self) -> crate::core::watch::journal::Matches {
        use crate::core::watch::journal::Matches;
        match &self.regex {
            Some(def) => Matches::of(def),
            None => Matches::ssh(),
        }
    }

    /// What it reads, as the baseline tells logs apart (each log's lines
    /// are counted once into a series): the log's real path (links and
    /// `..` resolved, so that two spellings of one file are one log). The
    /// journal is named by the source's default log: rsyslog writes the
    /// same lines there (Debian's auth.log), and a cron scan of that file
    /// beside a watch of the journal must not count them twice. A source
    /// without one: the journal's matches.
    pub fn read_from(&self) -> String {
        let default = || {
            self.opts
                .source
                .default_log()
                .map(PathBuf::from)
                .or_else(|| self.regex.as_ref()?.default_log.as_ref().map(PathBuf::from))
        };
        match self.log.clone().or_else(default) {
            Some(l) if l.as_os_str() == "-" => "-".into(),
            Some(l) => std::fs::canonicalize(&l).unwrap_or(l).display().to_string(),
            None => self.journal_matches().shown(),
        }
    }

    pub fn new(opts: &Options, cfg: Config) -> Result<Plan> {
        let src = &opts.source;
        let regex = match src {
            Source::Regex(name) => Some(crate::core::logs::registry::find(&cfg.sources, name).inspect(|_| {
                if let Some(c) = crate::core::logs::registry::caveat(&cfg.sources, name) {
                    super::say!("fwctl: warning: --source {name}: {c}");
                }
            }).ok_or_else(|| {
                anyhow!(
                    "--source {name}: no such source; fix: use one of {}, or add a [[source]] named {name} to {}",
                    crate::core::logs::registry::known(&cfg.sources).join(", "),
                    cfg.path.display()
                )
            })?),
            _ => None,
        };
        let only = |flag: &str, given: bool, which: &str| -> Result<()> {
            if given {
                bail!(
                    "{flag} is for --source {which}, not {}; fix: drop it",
                    src.name()
                );
            }
            Ok(())
        };
        if *src != Source::Kernel {
            only("--rule", opts.rule.is_some(), "kernel")?;
            only("--type", opts.kind.is_some(), "kernel")?;
        }
        if !src.is_web() {
            only("--status", opts.status.is_some(), "nginx or apache")?;
            only("--match", !opts.patterns.is_empty(), "nginx or apache")?;
            only("--client", opts.client != Client::Remote, "nginx or apache")?;
            only(
                "--trusted-proxy",
                !opts.trusted_proxies.is_empty(),
                "nginx or apache",
            )?;
        }
        let mut proxies = Vec::new();
        if opts.client == Client::Forwarded {
            proxies.extend(cfg.web.trusted_proxies.iter().copied());
            proxies.extend(opts.trusted_proxies.iter().copied());
            proxies.sort();
            proxies.dedup();
            if proxies.is_empty() {
                bail!(
                    "--client forwarded: no trusted proxy, so any client could name any address in X-Forwarded-For; fix: pass --trusted-proxy CIDR (your reverse proxy's address), or set [web] trusted_proxies in {}",
                    cfg.path.display()
                );
            }
        } else if src.is_web() && !opts.trusted_proxies.is_empty() {
            bail!("--trusted-proxy is for --client forwarded; fix: add --client forwarded, or drop it");
        }
        if !matches!(src, Source::Sshd | Source::Regex(_)) {
            only("--journal", opts.journal, "sshd or a regex source")?;
        }
        let rule = opts.rule.clone().unwrap_or_else(|| "blocked".into());
        let mut prefixes = Vec::new();
        if *src == Source::Kernel {
            let pair = cfg.prefixes.get(&rule).ok_or_else(|| {
                anyhow!(
                    "--rule {rule}: no such rule; fix: use one of {} (the LOG prefixes of {})",
                    Prefixes::RULES.join(", "),
                    cfg.path.display()
                )
            })?;
            prefixes.push(pair.v4.as_str().as_bytes().to_vec());
            if pair.v6.as_str() != pair.v4.as_str() {
                prefixes.push(pair.v6.as_str().as_bytes().to_vec());
            }
        }
        let statuses = match &opts.status {
            Some(s) => Statuses::parse(s).map_err(|e| anyhow!(e))?,
            None => Statuses::all(),
        };
        let patterns = if opts.patterns.is_empty() {
            Vec::new()
        } else {
            let all = crate::core::patterns::for_source(&cfg.patterns, src.name());
            crate::core::patterns::select(&all, &opts.patterns)?
        };
        let kind = opts.kind.unwrap_or(TypeFilter::All);
        let (rule_name, kind_name) = match src {
            Source::Kernel => (rule, kind.as_str().to_string()),
            Source::Sshd => ("sshd".to_string(), "ssh".to_string()),
            Source::Regex(name) => {
                let kinds: Vec<&str> = regex
                    .iter()
                    .flat_map(|d| d.rules.iter().map(|r| r.kind.as_str()))
                    .fold(Vec::new(), |mut v, k| {
                        if !v.contains(&k) {
                            v.push(k);
                        }
                        v
                    });
                (name.clone(), kinds.join(","))
            }
            web => {
                let mut k = vec![opts.status.clone().unwrap_or_else(|| "all".into())];
                if !patterns.is_empty() {
                    let names: Vec<&str> = patterns.iter().map(|p| p.name.as_str()).collect();
                    k.push(format!("match:{}", names.join(",")));
                }
                (web.name().to_string(), k.join(" "))
            }
        };
        let log = if opts.journal {
            None
        } else {
            let default = src
                .default_log()
                .map(str::to_string)
                .or_else(|| regex.as_ref().and_then(|d| d.default_log.clone()));
            match (&opts.log, default) {
                (Some(l), _) => Some(l.clone()),
                (None, Some(d)) => Some(d.into()),
                (None, None) => bail!(
                    "--source {}: a [[source]] has no default log; fix: pass --log PATH",
                    src.name()
                ),
            }
        };
        let base =
            SetName::parse(&opts.ipset).map_err(|e| anyhow!("--ipset {}: {e}", opts.ipset))?;
        let sets = [base.for_family(false), base.for_family(true)];
        let whitelist = [
            cfg.sets.whitelist.for_family(false),
            cfg.sets.whitelist.for_family(true),
        ];
        if sets.iter().any(|s| whitelist.contains(s)) {
            bail!(
                "--ipset {}: that is the whitelist set, whose members are let in, not kept out; fix: name a blacklist or throttle set",
                opts.ipset
            );
        }
        Ok(Plan {
            opts: opts.clone(),
            cfg,
            prefixes,
            kind,
            statuses,
            patterns,
            proxies,
            regex,
            log,
            rule: rule_name,
            kind_name,
            sets,
            whitelist,
            apply_fix: "sudo fwctl apply".into(),
        })
    }

    /// The line parser of this plan's source, for a window ending at `now`
    /// (which also places yearless timestamps).
    pub fn parser(&self, zone: Zone, now: i64, window: (i64, i64)) -> Result<LineParser> {
        let o = &self.opts;
        Ok(match &o.source {
            Source::Kernel => {
                let prefixes: Vec<&[u8]> = self.prefixes.iter().map(Vec::as_slice).collect();
                LineParser::Kernel(Parser::new(&prefixes, zone.clone(), now, window))
            }
            Source::Nginx | Source::Apache => LineParser::Web(WebParser::new(
                zone.clone(),
                now,
                window,
                (o.client, self.proxies.clone()),
                self.statuses.clone(),
                (!self.patterns.is_empty()).then(|| crate::core::patterns::compile(&self.patterns)),
            )),
            Source::Sshd => LineParser::Ssh(crate::core::ssh_log::SshParser::new(
                zone.clone(),
                now,
                window,
            )),
            Source::Regex(_) => {
                let def = self
                    .regex
                    .as_ref()
                    .expect("a regex source's plan has its definition");
                LineParser::Regex(
                    crate::core::logs::regex_source::RegexSource::new(
                        def,
                        zone.clone(),
                        now,
                        window,
                    )
                    .map_err(|e| anyhow!(e))?,
                )
            }
        })
    }

    /// A target set must exist, be of the right family and take timeouts.
    fn check_target(&self, headers: &std::collections::BTreeMap<String, SetHead>) -> Result<()> {
        Ok(check_ban_sets(
            &self.sets,
            headers,
            &self.apply_fix,
            "or name an existing set with --ipset",
        )?)
    }
}

/// The host facts a run uses.
pub struct Host {
    pub now: i64,
    pub zone: Zone,
    pub own: Vec<IpAddr>,
}

/// [reputation]: the service to ask, and the scores the state file keeps
/// (new ones are added to it).
pub struct Intel<'a> {
    pub cfg: &'a crate::core::config::intel::Reputation,
    pub port: &'a mut dyn crate::ports::ReputationCheck,
    pub cache: &'a mut crate::core::scan::reputation::Cache,
}

/// Ask about the candidates (stopping at the first failure that says the
/// service cannot answer this run), then the offenders the scores add.
fn reputation(
    intel: Intel,
    tally: &Tally,
    howmany: u64,
    now: i64,
) -> (
    Vec<(IpAddr, crate::core::scan::count::Source)>,
    crate::core::scan::reputation::Summary,
) {
    use crate::core::scan::reputation as rep;
    let mut s = rep::Summary::default();
    let ask = rep::candidates(tally, howmany, intel.cfg, intel.cache, now);
    let near = (howmany * rep::NEAR_PERCENT / 100).max(1);
    s.cached = tally
        .sources
        .iter()
        .filter(|(_, x)| x.hits >= near)
        .map(|(k, _)| crate::core::scan::count::addr(*k))
        .filter(|a| rep::fresh(intel.cache, a, intel.cfg, now).is_some())
        .count() as u32;
    for a in ask {
        match intel.port.check(a) {
            Ok(score) => {
                s.asked += 1;
                intel.cache.insert(a, rep::Score { score, at: now });
            }
            Err((e, fatal)) => {
                s.failed += 1;
                s.error.get_or_insert(e);
                if fatal {
                    break;
                }
            }
        }
    }
    let extra = rep::below_threshold(tally, howmany, intel.cfg, intel.cache, now);
    s.by_score = extra.len() as u32;
    rep::prune(intel.cache, intel.cfg.cache, now);
    (extra, s)
}

/// Read the log through `read` and decide; with a store, read the sets and
/// (unless dry) add the bans. Returns the report.
pub fn execute(
    plan: &Plan,
    host: &Host,
    intel: Option<Intel>,
    mut store: Option<&mut dyn SetStore>,
    read: impl FnOnce(&LineParser, Counting) -> Result<(Tally, Vec<FileRead>), logfile::LogError>,
) -> Result<Report> {
    let started = std::time::Instant::now();
    let o = &plan.opts;
    let mut notes = Vec::new();
    let headers = match store.as_deref_mut() {
        Some(s) => {
            let h = s.heads()?;
            match plan.check_target(&h) {
                Ok(()) => {}
                Err(e) if o.dryrun => notes.push(format!("a real run would fail: {e:#}")),
                Err(e) => return Err(e),
            }
            Some(h)
        }
        None => {
            notes.push(
                "the kernel's sets were not read (not root, or no ipset): whitelist members and already-listed addresses were not checked".into(),
            );
            None
        }
    };

    let window = (host.now - o.within as i64, host.now);
    let parser = plan.parser(host.zone.clone(), host.now, window)?;
    let kinds: Vec<String> = match (&o.source, &parser) {
        (Source::Sshd, _) => crate::core::ssh_log::KINDS
            .iter()
            .map(|k| k.to_string())
            .collect(),
        (_, LineParser::Regex(p)) => p.kinds.clone(),
        _ => Vec::new(),
    };
    // IPv6 offenders per [aggregate] v6_count_prefix, as capture counts
    // them; per address only for a target set that takes no networks.
    // Known before the read, so each hit is counted under its network
    // straight away (no second table after the read).
    let count = plan.cfg.aggregate.v6_count_prefix;
    let takes_nets = match headers.as_ref().and_then(|h| h.get(&plan.sets[1])) {
        Some(h) => h.holds == crate::core::sets::Holds::Networks,
        None => !matches!(
            crate::core::ban::role_of(&plan.cfg, &plan.sets[1]),
            Some(("throttle-hard" | "throttle-soft", _))
        ),
    };
    let counting = Counting {
        kind: plan.kind,
        v6_prefix: if takes_nets { count } else { 128 },
    };
    let (mut tally, files) = read(&parser, counting)?;
    notes.extend(crate::core::scan::window_notes(&files, window));
    if takes_nets {
        tally.fold_v6(count);
    } else if count < 128 {
        notes.push(format!(
            "IPv6 offenders were counted per address, not per /{count}: {} holds single addresses (hash:ip)",
            plan.sets[1]
        ));
    }
    let mut offenders = tally.offenders(o.howmany);
    let mut scores = std::collections::BTreeMap::new();
    let mut rep_summary = None;
    if let Some(intel) = intel {
        let (cfg, now) = (intel.cfg.clone(), host.now);
        let (extra, s) = reputation(
            Intel {
                cfg: &cfg,
                port: intel.port,
                cache: &mut *intel.cache,
            },
            &tally,
            o.howmany,
            now,
        );
        for (a, _) in &offenders {
            if let Some(sc) = crate::core::scan::reputation::fresh(intel.cache, a, &cfg, now) {
                scores.insert(*a, (sc, false));
            }
        }
        for (a, src) in extra {
            let sc = crate::core::scan::reputation::fresh(intel.cache, &a, &cfg, now).unwrap_or(0);
            scores.insert(a, (sc, true));
            offenders.push((a, src));
        }
        if s.failed > 0 {
            notes.push(format!(
                "reputation: {} of the lookups failed ({}); the scan went on without them",
                s.failed,
                s.error.clone().unwrap_or_default()
            ));
        }
        rep_summary = Some((s, cfg.min_score));
    }

    let mut known = Known {
        policy: Policy {
            // A trusted proxy is never banned: a line it answered itself (a
            // health check, an X-Forwarded-For of "-", a chain of proxies
            // only) counts against it, and banning it takes the site down.
            trusted: plan
                .cfg
                .trusted
                .iter()
                .chain(&plan.proxies)
                .copied()
                .collect(),
            whitelist_name: plan.whitelist[0].clone(),
            own: host.own.clone(),
            ..Policy::default()
        },
        blocked_names: [
            plan.cfg.sets.blacklist.for_family(false),
            plan.cfg.sets.blacklist.for_family(true),
        ],
        v6_prefix: Some(tally.v6_prefix),
        ..Known::default()
    };
    // An offender the blacklist covers is dropped already: the config's
    // entries, and (below) what the kernel's blacklist holds.
    for n in &plan.cfg.blacklist {
        known.blocked.insert(*n);
    }
    if let (Some(s), Some(h)) = (store.as_deref_mut(), &headers) {
        for w in &plan.whitelist {
            if h.contains_key(w) {
                known.policy.whitelist.extend(Members::of(&s.members(w)?));
            }
        }
        for (fam, set) in plan.sets.iter().enumerate() {
            let wanted = offenders
                .iter()
                .any(|(a, _)| usize::from(a.is_ipv6()) == fam);
            if !wanted {
                continue;
            }
            let mut target_members = None;
            if let Some(hdr) = h.get(set) {
                let members = s.members(set)?;
                known.listed.extend(Members::of(&members));
                known.room[fam] = hdr.maxelem.map(|m| m.saturating_sub(hdr.entries));
                target_members = Some(members);
            }
            let bl = known.blocked_names[fam].clone();
            if h.contains_key(&bl) {
                let members = match target_members {
                    Some(m) if bl == *set => m,
                    _ => s.members(&bl)?,
                };
                known.blocked.extend(Members::of(&members));
            }
        }
    }
    let apply = !o.dryrun && store.is_some();
    let decisions = decide::decide(offenders, &known, &plan.sets, apply);
    let ops = decide::ops(&decisions, o.removeafter);
    let (mut added, mut restore_ms) = (0, None);
    if apply && !ops.is_empty() {
        let s = store.expect("apply implies a store");
        let t = std::time::Instant::now();
        s.change(&ops)
            .map_err(|e| anyhow!("adding the bans: {e}"))?;
        restore_ms = Some(t.elapsed().as_millis() as u64);
        added = ops.len() as u64;
    }
    Ok(Report {
        source: o.source.name().to_string(),
        top_label: o.source.top_label(),
        rule: plan.rule.clone(),
        kind: plan.kind_name.clone(),
        howmany: o.howmany,
        within_secs: o.within,
        removeafter_secs: o.removeafter,
        window_start: utc(window.0),
        window_end: utc(window.1),
        dryrun: o.dryrun,
        files,
        lines_read: tally.lines,
        lines_matched: tally.matched,
        lines_outside_window: tally.outside,
        lines_other_type: tally.other_type,
        lines_malformed: tally.malformed_total(),
        malformed: report::malformed(&tally),
        offenders: report::offenders(
            &decisions,
            &kinds,
            &plan.patterns,
            &scores,
            rep_summary.as_ref().map(|r| r.1),
        ),
        reputation: rep_summary.map(|r| r.0),
        minutes: tally.minutes.counts(),
        added,
        restore_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        notes,
    })
}

/// Record a real run in the state file: its bans (so a reboot's apply
/// restores them with the time left) and the run itself (for `status`).
/// A failure only warns: the bans are in the kernel already.
/// Returns each ban's offence number (for the notifications).
fn record(
    report: &Report,
    ipset: &str,
    path: &Path,
    now: i64,
    scores: &crate::core::scan::reputation::Cache,
    keep: usize,
) -> Vec<u32> {
    let added: Vec<(ipnet::IpNet, &str, crate::core::history::Why)> = report
        .offenders
        .iter()
        .filter(|o| o.added())
        .filter_map(|o| {
            Some((
                crate::units::addr::parse_addr(&o.address).ok()?,
                o.set.as_str(),
                why(report, o),
            ))
        })
        .collect();
    let secs = report.removeafter_secs;
    let run = crate::core::state::ScanRun {
        at: now,
        rule: report.rule.clone(),
        kind: report.kind.to_string(),
        ipset: ipset.to_string(),
        lines_matched: report.lines_matched,
        offenders: report.offenders.len() as u64,
        added: report.added,
        lines_read: report.lines_read,
        lines_malformed: report.lines_malformed,
        duration_ms: report.duration_ms,
    };
    let count = added.len();
    let result = statefile::update(path, now, |st| {
        let mut offences = Vec::new();
        for (addr, set, why) in added {
            let (n, _) = st.history.next_ban(&addr, now, &[secs]);
            st.history.record(addr, set, n, now, secs);
            st.history.explain(&addr, why, keep);
            offences.push(n);
        }
        st.note_scan(run);
        for (a, s) in scores {
            st.reputation.insert(*a, *s);
        }
        offences
    });
    match result {
        Ok((offences, warning)) => {
            if let Some(w) = warning {
                eprintln!("fwctl: warning: {w}");
            }
            offences
        }
        Err(e) => {
            eprintln!(
                "fwctl: warning: the bans are in, but the state file was not written ({e}); they will not be restored after a reboot"
            );
            vec![1; count]
        }
    }
}

/// Why a scan banned an offender, for `fwctl why`: the rule, the window's
/// count, and what was counted (its top ports, statuses or kinds; the
/// lines themselves `fwctl scan --explain` prints again from the log).
fn why(report: &Report, o: &report::Offender) -> crate::core::history::Why {
    let zone = Zone::fixed(0);
    let t = |s: &str| crate::core::scan::parse_now(s, &zone).unwrap_or(0);
    let mut evidence = Vec::new();
    if !o.kinds.is_empty() {
        evidence.push(format!("kinds: {}", o.kinds.join(", ")));
    }
    if !o.top_ports.is_empty() && o.kinds.is_empty() {
        let label = report.top_label.to_lowercase();
        let top: Vec<String> = o
            .top_ports
            .iter()
            .map(|p| format!("{} ({})", p.port, p.hits))
            .collect();
        evidence.push(format!("{label}: {}", top.join(", ")));
    }
    if !o.patterns.is_empty() {
        evidence.push(format!("patterns: {}", o.patterns.join(", ")));
    }
    crate::core::history::Why {
        origin: "scan".into(),
        rule: format!("{} {} ({})", report.source, report.rule, report.kind),
        hits: o.hits,
        window_s: report.within_secs,
        first: t(&o.first_seen),
        last: t(&o.last_seen),
        evidence,
    }
}

/// The notifications of a real run that banned: one `ip_blocked` per ban
/// (the sinks gather them into a summary) and the `scan_run`.
fn notify(n: &Notifier, report: &Report, offences: &[u32], now: i64) {
    let added: Vec<&report::Offender> = report.offenders.iter().filter(|o| o.added()).collect();
    if added.is_empty() {
        return;
    }
    let secs = report.removeafter_secs;
    let within = crate::units::duration::human(report.within_secs);
    let each = added.len().min(notify::SCAN_EACH);
    let mut all = Vec::with_capacity(each + 1);
    for (o, offence) in added
        .iter()
        .zip(offences.iter().chain(std::iter::repeat(&1)))
        .take(each)
    {
        all.push(Notice::IpBlocked {
            address: o.address.clone(),
            set: o.set.clone(),
            reason: format!(
                "scan rule {}: {} {} lines within {within} (more than {})",
                report.rule, o.hits, report.kind, report.howmany
            ),
            offence: *offence,
            duration_s: secs,
            until: utc(now + secs as i64),
            origin: Origin::Scan,
        });
    }
    all.push(Notice::ScanRun {
        rule: report.rule.clone(),
        kind: report.kind.to_string(),
        ipset: added[0].set.trim_end_matches("_v6").to_string(),
        lines_read: report.lines_read,
        lines_matched: report.lines_matched,
        offenders: report.offenders.len() as u64,
        added: report.added,
        addresses: added.iter().map(|o| o.address.clone()).collect(),
        unlisted: (added.len() - each) as u64,
    });
    // Together: a quiet sink gets the whole run as one message.
    n.send_all(all);
}

/// The role of each set a run banned into (one per family).
fn set_roles(cfg: &crate::core::config::Config, report: &Report) -> Vec<(String, &'static str)> {
    let mut roles: Vec<(String, &'static str)> = Vec::new();
    for o in report.offenders.iter().filter(|o| o.added()) {
        if !roles.iter().any(|(s, _)| *s == o.set) {
            if let Some((r, _)) = crate::core::ban::role_of(cfg, &o.set) {
                roles.push((o.set.clone(), r));
            }
        }
    }
    roles
}

/// The fleet entries of a run's bans.
fn fleet_entries(
    m: &super::fleet::Member,
    roles: &[(String, &'static str)],
    report: &Report,
    offences: &[u32],
) -> Vec<crate::core::fleet::Entry> {
    let within = crate::units::duration::human(report.within_secs);
    report
        .offenders
        .iter()
        .filter(|o| o.added())
        .zip(offences.iter().chain(std::iter::repeat(&1)))
        .filter_map(|(o, offence)| {
            let addr = crate::units::addr::parse_addr(&o.address).ok()?;
            let role = roles.iter().find(|(s, _)| *s == o.set)?.1;
            Some(m.entry(
                crate::core::fleet::Op::Ban,
                addr,
                role,
                report.removeafter_secs,
                &format!(
                    "scan rule {}: {} {} lines within {within}",
                    report.rule, o.hits, report.kind
                ),
                *offence,
                "scan",
            ))
        })
        .collect()
}

/// After the run's bans: `[aggregate]` gathers bans of one prefix. A
/// failure warns; the run's own bans stand.
fn gather(plan: &Plan, run: &mut Run, own: &[IpAddr], state: &Path, now: i64) {
    let Some(sets) = run.sets.as_mut() else {
        return;
    };
    let extra = plan.proxies.clone();
    match super::aggregate::after_bans(&plan.cfg, sets.as_mut(), state, own, &extra, now) {
        Ok(done) => {
            for l in super::aggregate::lines(&done) {
                eprintln!("fwctl: {l}");
            }
            if let Some(n) = &run.notifier {
                n.send_all(super::aggregate::notices(&done, &plan.cfg, now));
            }
            if let Some(p) = &run.publisher {
                p.share(super::aggregate::fleet_entries(
                    p.member(),
                    &plan.cfg,
                    &done,
                    "scan",
                    now,
                ));
            }
        }
        Err(e) => eprintln!("fwctl: warning: aggregating the bans: {e:#}"),
    }
}

/// `--explain ADDRESS`: the lines of the window that counted for it, as
/// the run would count them (same parser, window and filters). Reads only.
fn explain(opts: &Options, inv: &Invocation, address: &str) -> Result<()> {
    let query = crate::units::addr::parse_addr(address.trim())
        .map_err(|e| anyhow!("--explain {address}: {e}"))?;
    let plan = Plan::new(opts, inv.load()?)?;
    // An IPv6 address counts with its /v6_count_prefix, as the run counts.
    let count = plan.cfg.aggregate.v6_count_prefix;
    let query = match query {
        ipnet::IpNet::V6(n) if n.prefix_len() > count => ipnet::IpNet::new(n.addr().into(), count)
            .expect("prefix <= 128")
            .trunc(),
        q => q,
    };
    let Some(log) = plan.log.clone() else {
        bail!("--explain reads a log file, not the journal; fix: pass --log PATH instead of --journal");
    };
    let real_now = host::now();
    let now = match &opts.now {
        Some(s) => parse_now(s, &host::local_zone(real_now))?,
        None => real_now,
    };
    let window = (now - opts.within as i64, now);
    let mut parser = plan.parser(host::local_zone(now), now, window)?;
    let mut files = Vec::new();
    if log.as_os_str() != "-" {
        let mut older = log.as_os_str().to_owned();
        older.push(".1");
        let older = PathBuf::from(older);
        if older.exists() {
            files.push(older);
        }
    }
    files.push(log);
    let mut lines = Vec::new();
    let mut hits = 0u64;
    for f in &files {
        logfile::each_line(f, 64 * 1024, |line| {
            if let crate::core::logline::Line::Hit(h) = parser.parse(line) {
                if plan.kind.wants(h.proto) && query.contains(&h.src) {
                    hits += u64::from(h.n);
                    lines.push(crate::core::history::evidence_text(
                        &line[..line.len().min(4096)],
                    ));
                }
            }
        })?;
    }
    let text = if opts.json {
        serde_json::to_string_pretty(&serde_json::json!({
            "address": query.to_string(),
            "window_start": utc(window.0),
            "window_end": utc(window.1),
            "hits": hits,
            "howmany": opts.howmany,
            "lines": lines,
        }))
        .expect("json")
            + "\n"
    } else {
        let mut t = format!(
            "{query}: {hits} hits within {} .. {} ({}over --howmany {}){}\n",
            utc(window.0),
            utc(window.1),
            if hits > opts.howmany { "" } else { "not " },
            opts.howmany,
            if lines.is_empty() {
                ""
            } else {
                ", from these lines:"
            }
        );
        for l in &lines {
            t.push_str(l);
            t.push('\n');
        }
        t
    };
    super::out(text)
}

/// The human line of the AbuseIPDB reports.
fn abuse_line(s: &crate::core::scan::abuse::Summary) -> String {
    format!(
        "abuseipdb: {} reported, {} failed{}, {} never reported (private, documentation, trusted), {} reported within 15 minutes already or over the run's limit\n",
        s.sent,
        s.failed,
        s.error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        s.refused,
        s.limited
    )
}

/// The command: checks, lock, read, decide, ban, print.
pub fn run(opts: &Options, inv: &Invocation) -> Result<()> {
    if let Some(a) = &opts.explain {
        return explain(opts, inv, a);
    }
    let mut plan = Plan::new(opts, inv.load()?)?;
    plan.apply_fix = inv.fix("apply");
    // A dry run needs nothing; as root it still reads the sets it can.
    let (root, needs) = match opts.dryrun {
        true => (None, Needs::NOTHING),
        false => (
            Some(NotRoot(
                "scan",
                "adds bans to ipsets and must run as root",
                "sudo fwctl scan ... (or add --dryrun to only look)".into(),
            )),
            Needs::SETS | Needs::LOCK | Needs::NOTIFY | Needs::FLEET,
        ),
    };
    let mut run = Run::start(&plan.cfg, inv, root, needs)?;
    if opts.dryrun && host::is_root() {
        run.sets = firewall::sets(plan.cfg.firewall.backend).ok();
    }
    let state_file = run.state_file.clone();
    let real_now = host::now();
    let now = match &opts.now {
        Some(s) => parse_now(s, &host::local_zone(real_now))?,
        None => real_now,
    };
    let h = Host {
        now,
        zone: host::local_zone(now),
        own: host::own_addresses(),
    };
    // [reputation]: the key is read (and checked) before the log; the scores
    // already had come from the state file.
    let mut abuse = match &plan.cfg.reputation {
        Some(r) => {
            let key = crate::sys::secret::read_secret(&r.key_file)?;
            Some(crate::sys::http::AbuseIpdb::new(&r.url, key, r.timeout))
        }
        None => None,
    };
    let mut cache = match &plan.cfg.reputation {
        Some(_) => statefile::read(&state_file)
            .map(|l| l.state.reputation)
            .unwrap_or_default(),
        None => Default::default(),
    };
    let log = plan.log.clone();
    let journal = plan.journal_matches();
    let intel = match (&plan.cfg.reputation, abuse.as_mut()) {
        (Some(cfg), Some(port)) => Some(Intel {
            cfg,
            port,
            cache: &mut cache,
        }),
        _ => None,
    };
    let report = execute(
        &plan,
        &h,
        intel,
        run.sets.as_mut().map(|s| s.as_mut() as &mut dyn SetStore),
        |p, kind| {
            let Some(log) = log else {
                return crate::sys::journal::read(p, kind, &journal);
            };
            if log.as_os_str() == "-" {
                let t = logfile::read_stream(std::io::stdin().lock(), p, kind).map_err(|err| {
                    logfile::LogError::Read {
                        path: log.clone(),
                        err,
                    }
                })?;
                Ok((
                    t,
                    vec![FileRead {
                        path: log.clone(),
                        size: 0,
                        from: 0,
                        to: 0,
                        shrank: false,
                        first_time: None,
                        last_time: None,
                        note: None,
                    }],
                ))
            } else {
                logfile::read_log(&log, p, kind)
            }
        },
    )?;
    // Shared with the fleet publisher's thread, which makes its entries.
    let report = std::sync::Arc::new(report);
    if !opts.dryrun {
        let offences = record(
            &report,
            &opts.ipset,
            &state_file,
            real_now,
            &cache,
            plan.cfg.evidence,
        );
        // Handed over now; their threads work while the report is written.
        if let Some(n) = &run.notifier {
            notify(n, &report, &offences, real_now);
        }
        if let Some(p) = &run.publisher {
            let roles = set_roles(&plan.cfg, &report);
            let (report, offences) = (std::sync::Arc::clone(&report), offences);
            p.share_later(move |m| fleet_entries(m, &roles, &report, &offences));
        }
        // Not for an audit (--now): its lines are not this hour's.
        if opts.now.is_none() {
            super::afterscan::count(
                &plan.cfg,
                &state_file,
                &report,
                &plan.read_from(),
                real_now,
                run.notifier.as_ref(),
            );
        }
        if report.added > 0 {
            gather(&plan, &mut run, &h.own, &state_file, real_now);
        }
    }
    // [reputation] report: after every other handover, bounded in time,
    // and outside the run lock (the ledger has its own): a slow AbuseIPDB
    // never holds up the next scan.
    let reported = match (&plan.cfg.reputation, abuse.as_mut()) {
        (Some(rep), Some(port)) if rep.report && !opts.dryrun => {
            run.release_lock();
            Some(super::afterscan::report_bans(
                &plan.cfg,
                &state_file,
                &report,
                real_now,
                &mut |r| port.report(&rep.report_url, r),
            ))
        }
        _ => None,
    };
    let text = match (opts.json, &reported) {
        (true, Some(s)) => {
            let mut v = serde_json::to_value(&*report).expect("plain data");
            v["abuseipdb"] = serde_json::to_value(s).expect("plain data");
            serde_json::to_string_pretty(&v).expect("plain data") + "\n"
        }
        (true, None) => report.json(),
        (false, s) => report.human() + &s.as_ref().map(abuse_line).unwrap_or_default(),
    };
    // A closed pipe (`| head`) ends the run quietly; the bans are in already.
    let printed = super::out(text);
    // At most a short wait each: what Redis has not taken by then waits in
    // the fleet outbox, and what the sinks have not, in the notify outbox.
    if !opts.dryrun {
        run.finish();
    }
    printed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake::Fake;
    use crate::testing::loggen::{self, Spec};

    const SETS: &str = "create whitelist hash:net family inet hashsize 1024 maxelem 65536\n\
        add whitelist 203.0.113.2\n\
        create whitelist_v6 hash:net family inet6 hashsize 1024 maxelem 65536\n\
        create throttle-hard hash:ip family inet hashsize 1024 maxelem 65536 timeout 0\n\
        add throttle-hard 203.0.113.3 timeout 500\n\
        create throttle-hard_v6 hash:ip family inet6 hashsize 1024 maxelem 65536 timeout 0\n";

    fn opts(dryrun: bool) -> Options {
        Options {
            source: Source::Kernel,
            log: Some(PathBuf::from("generated")),
            journal: false,
            rule: Some("blocked".into()),
            kind: Some(TypeFilter::Tcp),
            status: None,
            patterns: Vec::new(),
            client: Client::Remote,
            trusted_proxies: Vec::new(),
            howmany: 50,
            within: 1800,
            ipset: "throttle-hard".into(),
            removeafter: 7200,
            dryrun,
            json: false,
            now: None,
            explain: None,
        }
    }

    /// The shipped config.
    fn shipped() -> Config {
        crate::sys::configfile::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/fwctl.toml"),
        )
        .unwrap()
    }

    /// The shipped config without its blacklist (which covers the
    /// generated offenders).
    fn config() -> Config {
        let mut c = shipped();
        c.blacklist.clear();
        c
    }

    /// Run against a generated log (offenders 203.0.113.1, .2, .3, .4 and
    /// 2001:db8:bad::2) and a fake ipset holding `sets`.
    fn run_fake(o: &Options, sets: &str) -> (Result<Report>, Fake) {
        run_fake_with(o, config(), sets)
    }

    /// A reputation service that answers from a table and records who it
    /// was asked about.
    struct Scores {
        table: Vec<(IpAddr, crate::ports::Verdict)>,
        asked: Vec<IpAddr>,
    }

    impl crate::ports::ReputationCheck for Scores {
        fn check(&mut self, a: IpAddr) -> crate::ports::Verdict {
            self.asked.push(a);
            self.table
                .iter()
                .find(|(x, _)| *x == a)
                .map(|(_, r)| r.clone())
                .unwrap_or(Ok(0))
        }
    }

    fn rep_cfg() -> crate::core::config::intel::Reputation {
        toml::from_str::<crate::core::config::intel::RawReputation>(
            "abuseipdb_key_file = \"/k\"\nmin_score = 90",
        )
        .unwrap()
        .validate()
        .unwrap()
    }

    #[test]
    fn a_high_score_bans_a_near_miss_and_a_dead_service_stops_the_lookups() {
        let spec = Spec {
            offenders: 5,
            ..Spec::default()
        };
        let mut log = Vec::new();
        let m = loggen::generate(&spec, &mut log).unwrap();
        let near = m.near_misses[0]; // exactly --howmany hits: not an offender by count
        let plan = Plan::new(&opts(true), config()).unwrap();
        let host = Host {
            now: spec.end,
            zone: Zone::fixed(0),
            own: vec![],
        };
        let cfg = rep_cfg();
        let mut port = Scores {
            table: vec![(near, Ok(97))],
            asked: vec![],
        };
        let mut cache = Default::default();
        let r = execute(
            &plan,
            &host,
            Some(Intel {
                cfg: &cfg,
                port: &mut port,
                cache: &mut cache,
            }),
            None,
            |p, kind| Ok((logfile::read_stream(&log[..], p, kind).unwrap(), vec![])),
        )
        .unwrap();
        let o = r
            .offenders
            .iter()
            .find(|o| o.address == near.to_string())
            .expect("banned for its score");
        assert_eq!(o.score, Some(97));
        assert!(
            o.banned_for
                .as_deref()
                .unwrap()
                .contains("score 97 >= min_score 90"),
            "{o:?}"
        );
        let rep = r.reputation.as_ref().unwrap();
        assert_eq!((rep.by_score, rep.failed), (1, 0));
        // Only sources near the threshold were asked, each once.
        assert!(port.asked.len() <= 100 && port.asked.contains(&near));
        assert!(
            r.offenders.len() == 6,
            "{:?}",
            r.offenders.iter().map(|o| &o.address).collect::<Vec<_>>()
        );
        // Cached now: a second run asks nobody it already knows.
        let before = port.asked.len();
        let _ = execute(
            &plan,
            &host,
            Some(Intel {
                cfg: &cfg,
                port: &mut port,
                cache: &mut cache,
            }),
            None,
            |p, kind| Ok((logfile::read_stream(&log[..], p, kind).unwrap(), vec![])),
        )
        .unwrap();
        assert_eq!(port.asked.len(), before);

        // The service down: one try, the scan goes on and says so.
        let mut down = Scores {
            table: m
                .offenders
                .iter()
                .map(|(a, _)| (*a, Err(("connection refused".to_string(), true))))
                .collect(),
            asked: vec![],
        };
        let mut empty = Default::default();
        let r = execute(
            &plan,
            &host,
            Some(Intel {
                cfg: &cfg,
                port: &mut down,
                cache: &mut empty,
            }),
            None,
            |p, kind| Ok((logfile::read_stream(&log[..], p, kind).unwrap(), vec![])),
        )
        .unwrap();
        assert_eq!(down.asked.len(), 1);
        assert_eq!(r.offenders.len(), 5);
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("reputation: 1 of the lookups failed (connection refused)")),
            "{:?}",
            r.notes
        );
    }

    fn run_fake_with(o: &Options, cfg: Config, sets: &str) -> (Result<Report>, Fake) {
        let spec = Spec {
            offenders: 5,
            ..Spec::default()
        };
        let mut log = Vec::new();
        loggen::generate(&spec, &mut log).unwrap();
        let plan = Plan::new(o, cfg).unwrap();
        let host = Host {
            now: spec.end,
            zone: Zone::fixed(0),
            own: vec!["203.0.113.4".parse().unwrap()],
        };
        let mut fake = Fake {
            sets: sets.into(),
            ..Fake::default()
        };
        let r = execute(&plan, &host, None, Some(&mut fake), |p, kind| {
            Ok((logfile::read_stream(&log[..], p, kind).unwrap(), vec![]))
        });
        (r, fake)
    }

    fn actions(r: &Report) -> Vec<(String, &'static str, Option<String>)> {
        r.offenders
            .iter()
            .map(|o| (o.address.clone(), o.action.word(), o.reason.clone()))
            .collect()
    }

    #[test]
    fn bans_go_in_one_restore_and_the_exceptions_are_kept() {
        let (r, fake) = run_fake(&opts(false), SETS);
        let r = r.unwrap();
        let mut got = actions(&r);
        got.sort();
        let s = |a: &str, act: &'static str, why: Option<&str>| {
            (a.to_string(), act, why.map(str::to_string))
        };
        assert_eq!(
            got,
            vec![
                s("2001:db8:bad::2", "added", None),
                s("203.0.113.1", "added", None),
                s("203.0.113.2", "skipped", Some("in the whitelist set")),
                s("203.0.113.3", "already listed", None),
                s("203.0.113.4", "skipped", Some("this host's own address")),
            ]
        );
        assert_eq!(r.added, 2);
        // One batched add, after reading only the sets that matter.
        assert_eq!(
            fake.calls,
            [
                "heads",
                "members whitelist",
                "members whitelist_v6",
                "members throttle-hard",
                "members throttle-hard_v6",
                "change"
            ]
        );
        assert!(fake.sets.ends_with(
            "add throttle-hard 203.0.113.1 timeout 7200\nadd throttle-hard_v6 2001:db8:bad::2 timeout 7200\n"
        ) || fake.sets.ends_with(
            "add throttle-hard_v6 2001:db8:bad::2 timeout 7200\nadd throttle-hard 203.0.113.1 timeout 7200\n"
        ), "{}", fake.sets);
        // The trusted network of the config is honoured too.
        assert!(r.human().contains("added: 2"));
    }

    /// The shipped config blacklists 203.0.113.0/28 and 2001:db8:bad::/48,
    /// where the generated offenders sit: they are dropped already, so they
    /// are reported as blocked and go into no other set.
    #[test]
    fn offenders_the_blacklist_covers_are_reported_not_banned_again() {
        for (sets, kernel) in [(SETS.to_string(), false), (format!("{SETS}create blacklist hash:net family inet hashsize 1024 maxelem 65536 timeout 0\nadd blacklist 203.0.113.0/28\n"), true)] {
            let mut cfg = shipped();
            if kernel {
                // Only the kernel's blacklist knows it.
                cfg.blacklist.retain(|n| n.addr().is_ipv6());
            }
            let (r, fake) = run_fake_with(&opts(false), cfg, &sets);
            let r = r.unwrap();
            let by: Vec<(String, Option<String>)> = r
                .offenders
                .iter()
                .filter(|o| o.action == decide::ActionKind::AlreadyBlocked)
                .map(|o| (o.address.clone(), o.blocked_by.clone()))
                .collect();
            assert!(
                by.contains(&("203.0.113.1".into(), Some("blacklist 203.0.113.0/28".into()))),
                "{by:?}"
            );
            assert!(by.contains(&(
                "2001:db8:bad::2".into(),
                Some("blacklist_v6 2001:db8:bad::/48".into())
            )));
            assert!(r.human().contains("already blocked by blacklist 203.0.113.0/28"));
            assert_eq!(r.added, 0);
            assert!(!fake.calls.iter().any(|c| c == "change"), "{:?}", fake.calls);
        }
    }

    #[test]
    fn dryrun_adds_nothing_and_says_would_add() {
        let (r, fake) = run_fake(&opts(true), SETS);
        let r = r.unwrap();
        assert!(actions(&r).iter().any(|a| a.1 == "would add"));
        assert!(!fake.calls.iter().any(|c| c == "change"));
        assert_eq!(fake.sets, SETS);
    }

    #[test]
    fn a_missing_or_wrong_target_set_stops_the_run_before_any_change() {
        let cases = [
            (SETS.replace("create throttle-hard_v6 hash:ip family inet6", "create other hash:ip family inet6"), "ipset throttle-hard_v6 does not exist"),
            (SETS.replace("create throttle-hard_v6 hash:ip family inet6", "create throttle-hard_v6 hash:ip family inet"), "has family inet but takes the IPv6 offenders"),
            (SETS.replace("create throttle-hard hash:ip family inet hashsize 1024 maxelem 65536 timeout 0", "create throttle-hard hash:ip family inet hashsize 1024 maxelem 65536"), "without timeout support"),
            (SETS.replace("create throttle-hard hash:ip", "create throttle-hard bitmap:port"), "cannot take single addresses"),
        ];
        for (sets, want) in cases {
            let (r, fake) = run_fake(&opts(false), &sets);
            let e = format!("{:#}", r.unwrap_err());
            assert!(e.contains(want) && e.contains("fix:"), "{e}");
            assert_eq!(fake.calls, ["heads"], "{want}");
            // A dry run says so instead of failing.
            let (r, _) = run_fake(&opts(true), &sets);
            assert!(r.unwrap().notes.iter().any(|n| n.contains(want)));
        }
    }

    #[test]
    fn a_log_is_named_once_whatever_the_spelling_and_the_journal_by_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("auth.log");
        std::fs::write(&real, "").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link.log")).unwrap();
        let sshd = |log: Option<PathBuf>, journal| {
            let o = Options {
                source: Source::Sshd,
                log,
                journal,
                rule: None,
                kind: None,
                ..opts(false)
            };
            Plan::new(&o, config()).unwrap().read_from()
        };
        let canonical = std::fs::canonicalize(&real).unwrap().display().to_string();
        for spelling in [
            real.clone(),
            dir.path().join("link.log"),
            dir.path().join(".").join("auth.log"),
        ] {
            assert_eq!(sshd(Some(spelling), false), canonical);
        }
        // sshd's journal entries are the lines rsyslog writes to auth.log:
        // a cron scan of that file and a watch of the journal are one log.
        assert_eq!(
            sshd(None, true),
            sshd(Some("/var/log/auth.log".into()), false)
        );
        assert_eq!(sshd(Some("-".into()), false), "-");
    }

    #[test]
    fn the_whitelist_is_never_a_target_and_rules_must_exist() {
        let o = Options {
            ipset: "whitelist".into(),
            ..opts(false)
        };
        let e = Plan::new(&o, config()).err().unwrap().to_string();
        assert!(e.contains("whitelist set"), "{e}");
        let o = Options {
            rule: Some("nosuch".into()),
            ..opts(false)
        };
        let e = Plan::new(&o, config()).err().unwrap().to_string();
        assert!(e.contains("allowed, blocked"), "{e}");
        let o = Options {
            ipset: "bad name!".into(),
            ..opts(false)
        };
        assert!(Plan::new(&o, config()).is_err());
    }
}
