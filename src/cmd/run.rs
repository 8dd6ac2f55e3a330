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
#[derive(Clone, Debug)]
pub struct NotRoot {
    pub command: &'static str,
    /// What it does that needs root, ending the sentence.
    pub does: &'static str,
    pub fix: String,
}

impl NotRoot {
    pub fn text(&self) -> String {
        format!("fwctl {} {}; fix: {}", self.command, self.does, self.fix)
    }

    /// Refuse (the one line, nothing changed) unless `root`.
    pub fn check(&self, root: bool) -> Result<()> {
        if !root {
            bail!(self.text());
        }
        Ok(())
    }
}

/// What a command's run needs; each piece is opened in this order by
/// [`Run::start`].
#[derive(Debug, Default)]
pub struct Needs {
    root: Option<NotRoot>,
    firewall: bool,
    sets: bool,
    lock: bool,
    notify: bool,
    fleet: bool,
}

impl Needs {
    /// Nothing (a dry run): no root, no tools, no lock, no sinks.
    pub fn nothing() -> Needs {
        Needs::default()
    }

    /// Root, refused with `fwctl COMMAND DOES; fix: FIX`.
    pub fn root(command: &'static str, does: &'static str, fix: impl Into<String>) -> Needs {
        Needs {
            root: Some(NotRoot {
                command,
                does,
                fix: fix.into(),
            }),
            ..Needs::default()
        }
    }

    /// Refuse now unless root (a command with a check of its own between
    /// root and the rest: apply's lock-out check).
    pub fn check_root(&self) -> Result<()> {
        match &self.root {
            Some(r) => r.check(host::is_root()),
            None => Ok(()),
        }
    }

    /// The configured backend's rules ([`Firewall`]).
    pub fn firewall(self) -> Needs {
        Needs {
            firewall: true,
            ..self
        }
    }

    /// The configured backend's sets ([`SetStore`]).
    pub fn sets(self) -> Needs {
        Needs { sets: true, ..self }
    }

    /// The run lock, for the whole run.
    pub fn lock(self) -> Needs {
        Needs { lock: true, ..self }
    }

    /// The [[notify]] sinks.
    pub fn notify(self) -> Needs {
        Needs {
            notify: true,
            ..self
        }
    }

    /// The [fleet] publisher.
    pub fn fleet(self) -> Needs {
        Needs {
            fleet: true,
            ..self
        }
    }
}

/// One run's context; see the module.
pub struct Run {
    pub state_file: PathBuf,
    textfile_dir: Option<PathBuf>,
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
    pub fn start(cfg: &Config, inv: &Invocation, needs: Needs) -> Result<Run> {
        needs.check_root()?;
        let backend = cfg.firewall.backend;
        let mut run = Run {
            state_file: cfg.state_path(inv.state()),
            textfile_dir: cfg.metrics.textfile_dir.clone(),
            fw: needs
                .firewall
                .then(|| firewall::open(backend))
                .transpose()?,
            sets: needs.sets.then(|| firewall::sets(backend)).transpose()?,
            held: None,
            notifier: None,
            publisher: None,
        };
        if needs.lock {
            run.lock()?;
        }
        if needs.notify {
            run.notifier = Notifier::start(cfg, &run.state_file, Life::Run)?;
        }
        if needs.fleet {
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

    /// The backend's sets; opened by [`Needs::sets`].
    pub fn sets(&mut self) -> &mut (dyn SetStore + Send) {
        self.sets.as_deref_mut().expect("Needs::sets")
    }

    /// The backend's rules; opened by [`Needs::firewall`].
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
    pub fn finish(mut self) {
        self.held = None;
        if let Some(p) = self.publisher.take() {
            p.finish(FLEET_WAIT);
        }
        if let Some(n) = self.notifier.take() {
            n.finish(NOTIFY_WAIT);
        }
        super::metrics::write_textfile(self.textfile_dir.as_deref(), &self.state_file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_run_without_root_is_refused_in_its_own_words() {
        let r = Needs::root(
            "status",
            "reads the kernel's rules and sets, which needs root",
            Invocation::default().fix("status"),
        )
        .root
        .unwrap();
        assert_eq!(
            r.check(false).unwrap_err().to_string(),
            "fwctl status reads the kernel's rules and sets, which needs root; fix: sudo fwctl status"
        );
        assert!(r.check(true).is_ok());
    }

    #[test]
    fn needs_name_only_what_they_ask_for() {
        let n = Needs::nothing();
        assert!(n.root.is_none() && !n.firewall && !n.sets && !n.lock && !n.notify && !n.fleet);
        let n = Needs::root("ban", "x", "y").sets().lock().notify().fleet();
        assert!(n.root.is_some() && !n.firewall && n.sets && n.lock && n.notify && n.fleet);
        let n = Needs::root("apply", "x", "y").firewall().lock().notify();
        assert!(n.firewall && !n.sets && n.lock && n.notify && !n.fleet);
    }

    /// A run that needs nothing opens nothing: `scan --dryrun` works
    /// without root, tools, lock or sinks.
    #[test]
    fn a_run_that_needs_nothing_opens_nothing() {
        let cfg = Config::builtin();
        let run = Run::start(&cfg, &Invocation::default(), Needs::nothing()).unwrap();
        assert!(run.fw.is_none() && run.sets.is_none() && run.held.is_none());
        assert!(run.notifier.is_none() && run.publisher.is_none());
    }
}
