//! The context of one run of a command that changes the kernel (ban, unban,
//! scan, apply, status, feeds update, fleet purge), built the same way for
//! each: root checked with the command's own refusal, the backend's tools
//! found, THE lock taken, the notifier and the fleet publisher started (a bad
//! secret file refused), all before the first change. `finish` lets go of the
//! lock, flushes the notifier and the publisher within their waits and leaves
//! the metrics textfile.

use super::fleet::{Publisher, FLEET_WAIT};
use super::notify::{Life, Notifier, NOTIFY_WAIT};
use super::Invocation;
use crate::core::config::Config;
use crate::core::notify::Notice;
use crate::ports::{Firewall, SetStore};
use crate::sys::{firewall, host, lock};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Duration;

/// How long a run waits for another fwctl run to end, the same for every
/// command. The longest waiter decides: apply at boot must not give up (and
/// leave the host without its rules) because a scan cron started a moment
/// before is reading a big log, so 30 s (apply's wait); a cron'd scan that
/// waits as long still ends well before its next tick.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// What a command says when it is not run as root: `fwctl COMMAND DOES; fix: FIX`.
pub struct NotRoot(pub &'static str, pub &'static str, pub String);

impl NotRoot {
    pub fn text(&self) -> String {
        format!("fwctl {} {}; fix: {}", self.0, self.1, self.2)
    }

    /// Refuse (the one line, nothing changed) unless `root`.
    pub fn check(&self, root: bool) -> Result<()> {
        match root {
            true => Ok(()),
            false => bail!(self.text()),
        }
    }
}

/// What a run opens, in this order, after root: the backend's rules
/// ([`Firewall`]) and sets ([`SetStore`]), the run lock (held to the end),
/// the [[notify]] sinks, the [fleet] publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs(u8);

impl Needs {
    pub const NOTHING: Needs = Needs(0);
    pub const FIREWALL: Needs = Needs(1);
    pub const SETS: Needs = Needs(2);
    pub const LOCK: Needs = Needs(4);
    pub const NOTIFY: Needs = Needs(8);
    pub const FLEET: Needs = Needs(16);

    fn has(self, n: Needs) -> bool {
        self.0 & n.0 != 0
    }
}

impl std::ops::BitOr for Needs {
    type Output = Needs;
    fn bitor(self, o: Needs) -> Needs {
        Needs(self.0 | o.0)
    }
}

/// One run's context; see the module.
pub struct Run {
    pub state_file: PathBuf,
    textfile_dir: Option<PathBuf>,
    /// `[geo]` and its countries, for the metrics' `country` label.
    geo: Option<(
        crate::core::config::geo::Geo,
        Vec<crate::core::geo::Country>,
    )>,
    pub fw: Option<Box<dyn Firewall>>,
    pub sets: Option<Box<dyn SetStore + Send>>,
    held: Option<lock::Lock>,
    pub notifier: Option<Notifier>,
    pub publisher: Option<Publisher>,
}

/// THE run lock, with THE wait.
pub fn take_lock() -> Result<lock::Lock> {
    Ok(lock::acquire(&lock::run_dir(), LOCK_WAIT)?)
}

impl Run {
    /// `root`: None for a run that needs none (a dry run).
    pub fn start(
        cfg: &Config,
        inv: &Invocation,
        root: Option<NotRoot>,
        needs: Needs,
    ) -> Result<Run> {
        if let Some(r) = root {
            r.check(host::is_root())?;
        }
        let backend = cfg.firewall.backend;
        let mut run = Run {
            state_file: cfg.state_path(inv.state()),
            textfile_dir: cfg.metrics.textfile_dir.clone(),
            geo: cfg.geo.clone().map(|g| (g, cfg.countries.clone())),
            fw: None,
            sets: None,
            held: None,
            notifier: None,
            publisher: None,
        };
        if needs.has(Needs::FIREWALL) {
            run.fw = Some(firewall::open(backend)?);
        }
        if needs.has(Needs::SETS) {
            run.sets = Some(firewall::sets(backend)?);
        }
        if needs.has(Needs::LOCK) {
            run.lock()?;
        }
        if needs.has(Needs::NOTIFY) {
            run.notifier = Notifier::start(cfg, &run.state_file, Life::Run)?;
        }
        if needs.has(Needs::FLEET) {
            run.publisher = Publisher::start(cfg, &run.state_file, Life::Run)?;
        }
        Ok(run)
    }

    /// Take the run lock now (feeds update takes it after the downloads).
    pub fn lock(&mut self) -> Result<()> {
        if self.held.is_none() {
            self.held = Some(take_lock()?);
        }
        Ok(())
    }

    /// The backend's sets; opened by [`Needs::SETS`].
    pub fn sets(&mut self) -> &mut (dyn SetStore + Send) {
        self.sets.as_deref_mut().expect("Needs::sets")
    }

    /// The backend's rules; opened by [`Needs::FIREWALL`].
    pub fn firewall(&mut self) -> &mut dyn Firewall {
        self.fw.as_deref_mut().expect("Needs::firewall")
    }

    /// The rules and the sets together (status reads both).
    pub fn kernel(&mut self) -> (&mut dyn Firewall, &mut dyn SetStore) {
        let fw = self.fw.as_deref_mut().expect("Needs::firewall");
        let sets = self.sets.as_deref_mut().expect("Needs::sets");
        (fw, sets)
    }

    /// Hand `notice` to the sinks, if any.
    pub fn tell(&self, notice: Notice) {
        if let Some(n) = &self.notifier {
            n.send(notice);
        }
    }

    /// The end of the run: the lock goes first (the kernel is done with; the
    /// flushes below may take seconds), then the fleet and the sinks get at
    /// most their short waits (what they have not taken waits in their
    /// outboxes), then the metrics textfile is written from the state file.
    /// Let other runs in before this one ends: its kernel changes and
    /// state are written (what follows has locks of its own).
    pub fn release_lock(&mut self) {
        self.held = None;
    }

    pub fn finish(mut self) {
        self.held = None;
        if let Some(p) = self.publisher.take() {
            p.finish(FLEET_WAIT);
        }
        if let Some(n) = self.notifier.take() {
            n.finish(NOTIFY_WAIT);
        }
        super::metrics::write_textfile(
            self.textfile_dir.as_deref(),
            &self.state_file,
            self.geo.as_ref(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_run_without_root_is_refused_in_its_own_words() {
        let does = "reads the kernel's rules and sets, which needs root";
        let r = NotRoot("status", does, Invocation::default().fix("status"));
        assert_eq!(
            r.check(false).unwrap_err().to_string(),
            "fwctl status reads the kernel's rules and sets, which needs root; fix: sudo fwctl status"
        );
        assert!(r.check(true).is_ok());
    }

    /// A run that needs nothing opens nothing: `scan --dryrun` works
    /// without root, tools, lock or sinks.
    #[test]
    fn a_run_that_needs_nothing_opens_nothing() {
        let all = Needs::FIREWALL | Needs::SETS | Needs::LOCK | Needs::NOTIFY | Needs::FLEET;
        assert!(all.has(Needs::LOCK) && !(Needs::SETS | Needs::NOTIFY).has(Needs::LOCK));
        let cfg = Config::builtin();
        let run = Run::start(&cfg, &Invocation::default(), None, Needs::NOTHING).unwrap();
        assert!(run.fw.is_none() && run.sets.is_none() && run.held.is_none());
        assert!(run.notifier.is_none() && run.publisher.is_none());
    }
}
