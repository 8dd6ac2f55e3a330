//! A recording fake of the kernel's tables and sets: keeps the text of each
//! table and the sets as a real kernel would after a restore (as far as the
//! tests need), and can be told to fail a step.

use crate::ports::{Backend, SetStore, StepError, StepResult};
use crate::units::addr::Family;

/// A recording fake: keeps the text of each table and the sets as a real
/// kernel would after a restore (as far as the tests need), and can be told to
/// fail a step.
#[derive(Default, Debug)]
pub struct Fake {
    pub v4: String,
    pub v6: String,
    pub sets: String,
    /// Every call, in order, e.g. `restore v6 --noflush`.
    pub calls: Vec<String>,
    /// A call (as recorded in `calls`) that fails.
    pub fail_on: Option<String>,
}

impl Fake {
    fn record(&mut self, call: String) -> StepResult<()> {
        let fail = self.fail_on.as_deref() == Some(call.as_str());
        self.calls.push(call.clone());
        if fail {
            Err(StepError {
                step: call,
                detail: "injected failure".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Backend for Fake {
    fn save_table(&mut self, family: Family) -> StepResult<String> {
        self.record(format!("save {family:?}"))?;
        Ok(match family {
            Family::V4 => self.v4.clone(),
            Family::V6 => self.v6.clone(),
        })
    }

    fn restore_table(&mut self, family: Family, input: &str, noflush: bool) -> StepResult<()> {
        let flag = if noflush { " --noflush" } else { "" };
        self.record(format!("restore {family:?}{flag}"))?;
        let t = match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        *t = input.to_string();
        Ok(())
    }

    fn save_sets(&mut self) -> StepResult<String> {
        self.record("save sets".into())?;
        Ok(self.sets.clone())
    }

    fn restore_sets(&mut self, input: &str) -> StepResult<()> {
        self.record("restore sets".into())?;
        self.sets.push_str(input);
        Ok(())
    }
}

/// For the fake: `ipset save` text (`sets`) as `ipset list -t` would show it.
impl SetStore for Fake {
    fn headers(&mut self) -> StepResult<String> {
        self.record("list -t".into())?;
        let mut out = String::new();
        for (name, set) in crate::core::ruleset::ipset::parse_save(&self.sets) {
            let kind = set.kind().to_string();
            let header = set.params.get(1..).unwrap_or(&[]).join(" ");
            out += &format!(
                "Name: {name}\nType: {kind}\nRevision: 1\nHeader: {header}\nSize in memory: 1\nReferences: 0\nNumber of entries: {}\n\n",
                set.members.len()
            );
        }
        Ok(out)
    }

    fn save_set(&mut self, name: &str) -> StepResult<String> {
        self.record(format!("save {name}"))?;
        let prefix = |l: &str| {
            let mut w = l.split_whitespace().skip(1);
            w.next() == Some(name)
        };
        Ok(self
            .sets
            .lines()
            .filter(|l| prefix(l))
            .map(|l| format!("{l}\n"))
            .collect())
    }

    fn add_members(&mut self, input: &str) -> StepResult<()> {
        self.record("add members".into())?;
        self.sets.push_str(input);
        Ok(())
    }
}
