//! Reading and writing the state file (`/var/lib/fwctl/state.json`): written
//! atomically (a temporary file in the same directory, fsync, rename, fsync
//! of the directory), so a crash leaves the old file or the new one, never
//! half. Every writer (apply, scan, ban, unban, capture) changes it under a
//! lock file beside it, reading the file fresh, so no writer loses another's
//! change.

use super::lock::{self, LockError};
use crate::core::state::{self, State};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the state file could not be read or written. Each message names the
/// file and the fix; the I/O error is part of the message.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {}: {err}; fix: run as root or pass another --state", path.display())]
    Read { path: PathBuf, err: io::Error },
    #[error("state file {} is corrupt ({why}) and cannot be moved aside: {err}; fix: remove it", path.display())]
    Aside {
        path: PathBuf,
        why: state::Corrupt,
        err: io::Error,
    },
    #[error("cannot create state directory {}: {err}", dir.display())]
    Dir { dir: PathBuf, err: io::Error },
    #[error("cannot write state file {}: {err}", path.display())]
    Write { path: PathBuf, err: io::Error },
    #[error(transparent)]
    Lock(#[from] LockError),
}

type Result<T> = std::result::Result<T, StateError>;

/// How long a writer waits for another one (they hold the lock for milliseconds).
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What loading found.
pub struct Loaded {
    pub state: State,
    /// Set when the file was unreadable as state (and, for a writer, moved aside).
    pub warning: Option<String>,
}

fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StateError::Read {
            path: path.to_path_buf(),
            err,
        }),
    }
}

/// A file that lives beside the state file (outboxes, the feeds' copies):
/// in its directory, or the current one for a bare file name.
pub fn beside(state: &Path, name: &str) -> std::path::PathBuf {
    state
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(name)
}

/// Read without changing anything (status, list): a corrupt file reads as
/// empty with a warning.
pub fn read(path: &Path) -> Result<Loaded> {
    let Some(text) = read_bytes(path)? else {
        return Ok(Loaded {
            state: State::default(),
            warning: None,
        });
    };
    Ok(match state::parse(&text) {
        Ok(state) => Loaded {
            state,
            warning: None,
        },
        Err(why) => Loaded {
            state: State::default(),
            warning: Some(format!(
                "state file {} is corrupt ({why}); the next fwctl run that writes it moves it aside",
                path.display()
            )),
        },
    })
}

/// Read for writing. A missing file is an empty state. A corrupt one is
/// renamed to `PATH.corrupt-<unix time>` with a warning, so a bad file never
/// turns into a crash loop and is still there to look at.
pub fn load(path: &Path, now: i64) -> Result<Loaded> {
    let Some(text) = read_bytes(path)? else {
        return Ok(Loaded {
            state: State::default(),
            warning: None,
        });
    };
    match state::parse(&text) {
        Ok(state) => Ok(Loaded {
            state,
            warning: None,
        }),
        Err(why) => {
            let aside = match set_aside(path, now) {
                Ok(a) => a,
                Err(err) => {
                    return Err(StateError::Aside {
                        path: path.to_path_buf(),
                        why,
                        err,
                    })
                }
            };
            Ok(Loaded {
                state: State::default(),
                warning: Some(format!(
                    "state file {} is corrupt ({why}); moved it to {} and started with no ban history",
                    path.display(),
                    aside.display()
                )),
            })
        }
    }
}

/// Move a corrupt file to `PATH.corrupt-<now>` (or `-<now>-2`, `-3`, ...):
/// linked under the new name first, which fails rather than replace a file
/// set aside before, then unlinked, so no corrupt file is ever lost.
fn set_aside(path: &Path, now: i64) -> io::Result<PathBuf> {
    for n in 1.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{now}"));
        if n > 1 {
            name.push(format!("-{n}"));
        }
        let aside = PathBuf::from(name);
        match std::fs::hard_link(path, &aside) {
            Ok(()) => {
                std::fs::remove_file(path)?;
                return Ok(aside);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("an unbounded range")
}

fn lock_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Change the state file under its lock: load it fresh, let `f` change it,
/// write it back atomically. Returns `f`'s result and a load warning.
pub fn update<T>(
    path: &Path,
    now: i64,
    f: impl FnOnce(&mut State) -> T,
) -> Result<(T, Option<String>)> {
    let mut out = None;
    let (_, warning) = update_state(path, now, |st| out = Some(f(st)))?;
    Ok((out.expect("update ran the change"), warning))
}

/// `update`, returning the state as written: a writer that keeps the state
/// in memory (capture) takes it back without copying it.
pub fn update_state(
    path: &Path,
    now: i64,
    f: impl FnOnce(&mut State),
) -> Result<(State, Option<String>)> {
    let _lock = locked(path)?;
    let mut loaded = load(path, now)?;
    f(&mut loaded.state);
    // What is returned is what the file holds (capture keeps it).
    loaded.state.history.trim_evidence();
    save(path, &loaded.state)?;
    Ok((loaded.state, loaded.warning))
}

/// The writers' lock, its directory made first.
fn locked(path: &Path) -> Result<lock::Lock> {
    let dir = dir_of(path);
    super::dirs::create_private(&dir).map_err(|err| StateError::Dir {
        dir: dir.clone(),
        err,
    })?;
    Ok(lock::acquire_file(&lock_name(path), LOCK_WAIT)?)
}

/// A long-running writer's copy of the state as it last wrote it (watch
/// records its bans once a second): the next [`update_cached`] parses the
/// file again only when its bytes are not the ones written last (another
/// writer changed it; checked by length and hash, which costs a read, not
/// a parse).
#[derive(Default)]
pub struct Cached {
    state: Option<State>,
    written: Option<(usize, u64)>,
    /// How many times the file was parsed.
    pub loads: u64,
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// [`update`] for a writer that keeps a [`Cached`] copy: the same lock,
/// the same atomic write, without parsing its own last write again. The
/// copy's evidence is trimmed as the file's is, so it stays as small.
pub fn update_cached<T>(
    path: &Path,
    now: i64,
    cache: &mut Cached,
    f: impl FnOnce(&mut State) -> T,
) -> Result<(T, Option<String>)> {
    let _lock = locked(path)?;
    // Taken out: a failure below leaves no copy, and the next update parses.
    let held = cache.state.take();
    let mine = match (held, read_bytes(path)?, cache.written.take()) {
        (Some(s), Some(b), Some((len, hash))) if b.len() == len && digest(&b) == hash => Some(s),
        _ => None,
    };
    let (mut state, warning) = match mine {
        Some(s) => (s, None),
        None => {
            cache.loads += 1;
            let l = load(path, now)?;
            (l.state, l.warning)
        }
    };
    let out = f(&mut state);
    state.history.trim_evidence();
    let text = state::to_text(&state);
    save_text(path, &text)?;
    cache.written = Some((text.len(), digest(&text)));
    cache.state = Some(state);
    Ok((out, warning))
}

/// Write the state atomically, creating the directory if needed. Callers
/// other than `update` must hold the lock or own the file alone.
pub fn save(path: &Path, state: &State) -> Result<()> {
    save_text(path, &state::to_text(state))
}

fn save_text(path: &Path, text: &[u8]) -> Result<()> {
    let dir = dir_of(path);
    super::dirs::create_private(&dir).map_err(|err| StateError::Dir {
        dir: dir.clone(),
        err,
    })?;
    let write = |err| StateError::Write {
        path: path.to_path_buf(),
        err,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(write)?;
    tmp.write_all(text).map_err(write)?;
    tmp.as_file().sync_all().map_err(write)?;
    // Readable by status/list run by an admin's monitoring user; nothing secret.
    use std::os::unix::fs::PermissionsExt;
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644));
    tmp.persist(path).map_err(|e| write(e.error))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::history::History;
    use crate::core::state::ScanRun;

    fn state() -> State {
        let mut h = History::default();
        h.record("203.0.113.9/32".parse().unwrap(), "blacklist", 2, 50, 7200);
        State {
            history: h,
            ..State::default()
        }
    }

    #[test]
    fn a_cached_writer_reads_again_only_what_another_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut cache = Cached::default();
        let a: std::net::IpAddr = "203.0.113.1".parse().unwrap();
        let b: std::net::IpAddr = "203.0.113.2".parse().unwrap();
        let c: std::net::IpAddr = "203.0.113.3".parse().unwrap();
        update_cached(&path, 100, &mut cache, |st| {
            st.history.record(a.into(), "blacklist", 1, 100, 60)
        })
        .unwrap();
        // Another writer in between: its change is read, not lost.
        update(&path, 101, |st| {
            st.history.record(b.into(), "blacklist", 1, 101, 60)
        })
        .unwrap();
        update_cached(&path, 102, &mut cache, |st| {
            st.history.record(c.into(), "blacklist", 1, 102, 60)
        })
        .unwrap();
        let got = read(&path).unwrap().state;
        assert_eq!(got.history.iter().count(), 3);
        assert_eq!(cache.state.as_ref(), Some(&got));
        // Parsed at the first update and after the other writer's, never
        // for its own last write.
        assert_eq!(cache.loads, 2);
        update_cached(&path, 102, &mut cache, |_| ()).unwrap();
        assert_eq!(cache.loads, 2);
        // The same length, other bytes (an edit in place): parsed again.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("203.0.113.3", "203.0.113.9")).unwrap();
        update_cached(&path, 102, &mut cache, |_| ()).unwrap();
        assert_eq!(cache.loads, 3);
        assert!(cache
            .state
            .as_ref()
            .unwrap()
            .history
            .iter()
            .any(|r| r.addr.to_string() == "203.0.113.9/32"));
        // The file taken away (a hand removal): the copy is not written back.
        std::fs::remove_file(&path).unwrap();
        update_cached(&path, 103, &mut cache, |_| ()).unwrap();
        assert_eq!(read(&path).unwrap().state.history.iter().count(), 0);
    }

    #[test]
    fn save_load_and_corrupt_file_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let s = state();
        save(&path, &s).unwrap();
        let got = load(&path, 100).unwrap();
        assert_eq!(got.state, s);
        assert!(got.warning.is_none());

        std::fs::write(&path, b"{ not json").unwrap();
        // A reader only warns and leaves the file alone.
        let got = read(&path).unwrap();
        assert!(got.state.history.is_empty() && got.warning.is_some());
        assert!(path.exists());
        let got = load(&path, 100).unwrap();
        assert!(got.state.history.is_empty());
        let w = got.warning.unwrap();
        assert!(
            w.contains("corrupt") && w.contains("state.json.corrupt-100"),
            "{w}"
        );
        assert!(!path.exists());
        assert!(dir.path().join("sub/state.json.corrupt-100").exists());

        // Another corrupt file set aside in the same second keeps both.
        std::fs::write(&path, b"second").unwrap();
        let w = load(&path, 100).unwrap().warning.unwrap();
        assert!(w.contains("state.json.corrupt-100-2"), "{w}");
        assert_eq!(
            std::fs::read(dir.path().join("sub/state.json.corrupt-100")).unwrap(),
            b"{ not json"
        );
        assert_eq!(
            std::fs::read(dir.path().join("sub/state.json.corrupt-100-2")).unwrap(),
            b"second"
        );

        assert!(load(&dir.path().join("missing.json"), 1)
            .unwrap()
            .state
            .history
            .is_empty());
    }

    #[test]
    fn update_keeps_what_other_writers_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &state()).unwrap();
        let run = ScanRun {
            at: 60,
            rule: "blocked".into(),
            kind: "tcp".into(),
            ipset: "throttle-hard".into(),
            lines_matched: 10,
            offenders: 1,
            added: 1,
            lines_read: 20,
            lines_malformed: 0,
            duration_ms: 5,
        };
        update(&path, 60, |s| s.note_scan(run.clone())).unwrap();
        update(&path, 61, |s| {
            s.note_scan(ScanRun {
                at: 61,
                ..run.clone()
            });
            s.history.record(
                "2001:db8::5/128".parse().unwrap(),
                "blacklist_v6",
                1,
                61,
                60,
            );
        })
        .unwrap();
        let got = read(&path).unwrap().state;
        assert_eq!(got.history.len(), 2);
        assert_eq!(got.scans.len(), 1, "one entry per rule");
        assert_eq!(got.scans[0].at, 61);
        assert!(dir.path().join("state.json.lock").exists());
    }
}
