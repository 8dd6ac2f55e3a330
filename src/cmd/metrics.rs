//! The metrics a command leaves behind: node_exporter's textfile
//! (`fwctl.prom` in [metrics] textfile_dir), written atomically from the
//! state file after every scan, apply and status.

use crate::core::metrics::textfile;
use crate::sys::{outbox, statefile};
use std::io::Write;
use std::path::Path;

/// Write `fwctl.prom` into `[metrics] textfile_dir`, if the config names
/// one; a failure only warns (the command's work is done).
pub fn write_textfile(
    dir: Option<&Path>,
    state_file: &Path,
    geo: Option<&(
        crate::core::config::geo::Geo,
        Vec<crate::core::geo::Country>,
    )>,
) {
    let Some(dir) = dir else {
        return;
    };
    let result = (|| -> anyhow::Result<()> {
        let state = statefile::read(state_file)?.state;
        let mut text = textfile(&state, outbox::waiting(&outbox::path_for(state_file)));
        // `[geo]`: running bans per country (a database that cannot be
        // read only leaves the family out, with a warning).
        if let Some((g, countries)) = geo {
            if let Some(db) = crate::sys::geodb::lookup_for(Some(g), &mut |w| super::say!("{w}")) {
                let now = crate::sys::host::now();
                let addrs = state.history.active(now).into_iter().map(|r| r.addr.addr());
                let look = |a| crate::ports::GeoLookup::lookup(&db, a);
                text.push_str(&crate::core::geo::bans_by_country(addrs, &look, countries));
            }
        }
        text.push_str(&side_metrics(state_file));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(text.as_bytes())?;
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        tmp.persist(dir.join("fwctl.prom"))?;
        Ok(())
    })();
    if let Err(e) = result {
        super::say!(
            "fwctl: warning: cannot write {}/fwctl.prom ({e:#}); fix: create the directory or correct [metrics] textfile_dir",
            dir.display()
        );
    }
}

/// The baseline's gauges and the AbuseIPDB report counters, from their
/// files beside the state file (an unreadable one adds nothing).
fn side_metrics(state_file: &Path) -> String {
    use crate::sys::sidefile;
    let mut e = crate::core::metrics::Exposition::default();
    if let Ok((b, _)) = sidefile::read(
        &super::afterscan::baseline_path(state_file),
        crate::core::baseline::parse,
    ) {
        crate::core::baseline::metrics(&b, &mut e);
    }
    if let Ok((l, _)) = sidefile::read(
        &super::afterscan::ledger_path(state_file),
        crate::core::scan::abuse::parse,
    ) {
        crate::core::metrics::abuse_reports(&l, &mut e);
    }
    e.text()
}
