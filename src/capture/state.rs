//! The state file: ban history kept across restarts and reboots. Written
//! atomically (a temporary file in the same directory, fsync, rename, fsync of
//! the directory), so a crash leaves the old file or the new one, never half.

use super::history::{History, StateFile, STATE_VERSION};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/var/lib/fwctl/state.json";

/// What loading found.
pub struct Loaded {
    pub history: History,
    /// Set when the file was unreadable as state and moved aside.
    pub warning: Option<String>,
}

/// Read the state file. A missing file is an empty history. A corrupt one is
/// renamed to `PATH.corrupt-<unix time>` with a warning, so a bad file never
/// turns into a crash loop and is still there to look at.
pub fn load(path: &Path, now: i64) -> Result<Loaded> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded {
                history: History::default(),
                warning: None,
            })
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot read state file {}; fix: check its permissions or pass another --state",
                    path.display()
                )
            })
        }
    };
    let parsed: Result<StateFile, String> = serde_json::from_slice::<StateFile>(&text)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            if s.version == STATE_VERSION {
                Ok(s)
            } else {
                Err(format!("unknown version {}", s.version))
            }
        });
    match parsed {
        Ok(s) => Ok(Loaded {
            history: History::from_records(s.bans),
            warning: None,
        }),
        Err(why) => {
            let aside = aside_name(path, now);
            std::fs::rename(path, &aside).with_context(|| {
                format!(
                    "state file {} is corrupt ({why}) and cannot be moved aside; fix: remove it",
                    path.display()
                )
            })?;
            Ok(Loaded {
                history: History::default(),
                warning: Some(format!(
                    "state file {} is corrupt ({why}); moved it to {} and started with no ban history",
                    path.display(),
                    aside.display()
                )),
            })
        }
    }
}

fn aside_name(path: &Path, now: i64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{now}"));
    PathBuf::from(name)
}

/// Write the history atomically, creating the directory if needed.
pub fn save(path: &Path, history: &History) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in state directory {}", dir.display()))?;
    let body = serde_json::to_vec_pretty(&history.to_state()).expect("state serializes");
    tmp.write_all(&body)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot replace state file {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_corrupt_file_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let mut h = History::default();
        h.record("203.0.113.9/32".parse().unwrap(), "blacklist", 2, 50, 7200);
        save(&path, &h).unwrap();
        let got = load(&path, 100).unwrap();
        assert_eq!(got.history, h);
        assert!(got.warning.is_none());

        std::fs::write(&path, b"{ not json").unwrap();
        let got = load(&path, 100).unwrap();
        assert!(got.history.is_empty());
        let w = got.warning.unwrap();
        assert!(
            w.contains("corrupt") && w.contains("state.json.corrupt-100"),
            "{w}"
        );
        assert!(!path.exists());
        assert!(dir.path().join("sub/state.json.corrupt-100").exists());

        assert!(load(&dir.path().join("missing.json"), 1)
            .unwrap()
            .history
            .is_empty());
    }
}
