//! Reading and writing the state file (`/var/lib/fwctl/state.json`): written
//! atomically (a temporary file in the same directory, fsync, rename, fsync
//! of the directory), so a crash leaves the old file or the new one, never
//! half. Every writer (apply, scan, ban, unban, capture, watch) changes it
//! under a lock file beside it, reading the file fresh, so no writer loses
//! another's change. watch appends its records to a journal beside it
//! (`state.json.journal`, see [`crate::core::statejournal`]) that every read
//! applies and every whole write takes in and removes.

use super::lock::{self, LockError};
use crate::core::state::{self, State};
use crate::core::statejournal::{self, Op};
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
/// empty with a warning. The journal beside it is applied. Read again
/// (three times at most) if the file was replaced meanwhile: the file and
/// its journal are then read as one.
pub fn read(path: &Path) -> Result<Loaded> {
    for _ in 0..3 {
        let before = ident(path);
        let l = read_once(path)?;
        if ident(path) == before {
            return Ok(l);
        }
    }
    read_once(path)
}

fn read_once(path: &Path) -> Result<Loaded> {
    let Some(text) = read_bytes(path)? else {
        let mut state = State::default();
        let warning = with_journal(path, None, &mut state).warning(path);
        return Ok(Loaded { state, warning });
    };
    Ok(match state::parse(&text) {
        Ok(mut state) => {
            let warning = with_journal(path, Some(&text), &mut state).warning(path);
            Loaded { state, warning }
        }
        Err(why) => Loaded {
            state: State::default(),
            warning: Some(format!(
                "state file {} is corrupt ({why}); the next fwctl run that writes it moves it aside",
                path.display()
            )),
        },
    })
}

/// The journal of a state file (see [`crate::core::statejournal`]).
pub fn journal_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// The most of a journal that is read; a writer folds it into the state
/// file long before ([`fold_at`]).
const MAX_JOURNAL: u64 = 64 << 20;

/// A journal is folded into the state file once it is longer than the file
/// (or 256 KiB): what a reader replays stays small, and the whole file is
/// written at most once for every file's worth of records appended; and
/// always long before a reader would refuse it.
fn fold_at(file_len: u64) -> u64 {
    file_len.clamp(256 << 10, MAX_JOURNAL / 2)
}

/// What became of the journal beside a state file.
enum Journal {
    /// None there, or applied whole.
    Fine,
    /// Not applied whole: it names another state file (the file was
    /// edited by hand or written by an fwctl that knows no journal), or a
    /// line is no record, or it is over [`MAX_JOURNAL`].
    NotWhole(String),
    /// Not read: an I/O error, or not a regular file.
    Unreadable(io::Error),
}

impl Journal {
    fn warning(self, path: &Path) -> Option<String> {
        let jp = journal_name(path);
        match self {
            Journal::Fine => None,
            Journal::NotWhole(why) => Some(format!(
                "state journal {} is not applied whole ({why}); the next fwctl run that writes the state moves it aside",
                jp.display()
            )),
            Journal::Unreadable(e) => Some(format!(
                "cannot read state journal {} ({e}); the newest ban records are left out; fix: run as root, or remove it if it is not a file",
                jp.display()
            )),
        }
    }
}

/// Apply the journal beside `path` to `st`, parsed from the state file's
/// bytes `file` (None: there is none). Opened without following a link
/// and without blocking on a FIFO; only a regular file is read.
fn with_journal(path: &Path, file: Option<&[u8]>, st: &mut State) -> Journal {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let jp = journal_name(path);
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&jp)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Journal::Fine,
        Err(e) => return Journal::Unreadable(e),
    };
    match f.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Journal::Unreadable(io::Error::other("not a regular file")),
        Err(e) => return Journal::Unreadable(e),
    }
    let mut text = Vec::new();
    if let Err(e) = f.take(MAX_JOURNAL + 1).read_to_end(&mut text) {
        return Journal::Unreadable(e);
    }
    if text.len() as u64 > MAX_JOURNAL {
        return Journal::NotWhole(format!(
            "over {} MiB, which fwctl never writes",
            MAX_JOURNAL >> 20
        ));
    }
    let r = statejournal::replay(&text, &statejournal::digest(file), st);
    match (r.stale, r.bad) {
        (true, _) => Journal::NotWhole(
            "it names another state file: edited by hand, or written by an fwctl without journals"
                .into(),
        ),
        (_, Some(why)) => Journal::NotWhole(format!("{why}; the records before it are applied")),
        _ => Journal::Fine,
    }
}

/// For a writer: the journal applied, or an error (a whole write would
/// remove a journal it could not read), or, not applied whole, moved aside
/// to `PATH.journal.aside-<now>` with a warning, never lost.
fn writer_journal(
    path: &Path,
    file: Option<&[u8]>,
    st: &mut State,
    now: i64,
) -> Result<Option<String>> {
    let jp = journal_name(path);
    match with_journal(path, file, st) {
        Journal::Fine => Ok(None),
        Journal::Unreadable(err) => Err(StateError::Read { path: jp, err }),
        Journal::NotWhole(why) => match set_aside_as(&jp, "aside", now) {
            Ok(aside) => Ok(Some(format!(
                "state journal {} is not applied whole ({why}); moved it to {}",
                jp.display(),
                aside.display()
            ))),
            Err(err) => Err(StateError::Read { path: jp, err }),
        },
    }
}

/// Read for writing, the journal applied. A missing file is an empty state. A corrupt one is
/// renamed to `PATH.corrupt-<unix time>` with a warning, so a bad file never
/// turns into a crash loop and is still there to look at.
pub fn load(path: &Path, now: i64) -> Result<Loaded> {
    let Some(text) = read_bytes(path)? else {
        let mut state = State::default();
        let warning = writer_journal(path, None, &mut state, now)?;
        return Ok(Loaded { state, warning });
    };
    match state::parse(&text) {
        Ok(mut state) => {
            let warning = writer_journal(path, Some(&text), &mut state, now)?;
            Ok(Loaded { state, warning })
        }
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
    set_aside_as(path, "corrupt", now)
}

fn set_aside_as(path: &Path, tag: &str, now: i64) -> io::Result<PathBuf> {
    for n in 1.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{tag}-{now}"));
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

/// A long-running writer's copy of the state as it last left it (watch
/// records its bans once a second): [`update_cached`] appends the records
/// to the journal while the state file and the journal are the ones it
/// left, and reads them again only when another writer changed them.
#[derive(Default)]
pub struct Cached {
    state: Option<State>,
    /// The state file as written last, and its length and digest.
    file: Option<Ident>,
    file_len: u64,
    base: String,
    /// The journal as appended last (None: there is none), and its length.
    journal: Option<Ident>,
    journal_len: u64,
    /// How many times the file was parsed.
    pub loads: u64,
    /// How many times the whole file was written.
    pub writes: u64,
}

/// What tells a file from one written in its place: every fwctl writer
/// writes a new file and renames it (a new inode); an edit in place
/// changes the times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ident {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn ident(path: &Path) -> Option<Ident> {
    std::fs::symlink_metadata(path).ok().map(|m| ident_of(&m))
}

fn ident_of(m: &std::fs::Metadata) -> Ident {
    use std::os::unix::fs::MetadataExt;
    Ident {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    }
}

/// Apply `ops` to the state, for a writer that keeps a [`Cached`] copy:
/// under the same lock as [`update`]; appended to the journal (one write
/// and a data sync of a few hundred bytes a ban) while the file and the
/// journal are the ones it left, the whole file written otherwise and when
/// the journal has grown to the file's length. Returns each op's result
/// (a ban's offence) and a load warning.
pub fn update_cached(
    path: &Path,
    now: i64,
    cache: &mut Cached,
    ops: &[Op],
) -> Result<(Vec<u32>, Option<String>)> {
    update_cached_with(path, now, cache, |_| ops.to_vec())
}

/// [`update_cached`] with the ops `decide`d under the lock from the state
/// as it stands (`[aggregate]` gathers from the records as they are, the
/// kernel's sets changed in between); none decided: nothing is written
/// (unless the cached copy was not the file's, which is then written
/// whole, as `update_cached` does).
pub fn update_cached_with(
    path: &Path,
    now: i64,
    cache: &mut Cached,
    decide: impl FnOnce(&State) -> Vec<Op>,
) -> Result<(Vec<u32>, Option<String>)> {
    let _lock = locked(path)?;
    let jp = journal_name(path);
    // Taken out: a failure below leaves no copy, and the next update parses.
    let held = cache.state.take();
    let mine = held.filter(|_| {
        cache.file.is_some() && ident(path) == cache.file && ident(&jp) == cache.journal
    });
    let (mut st, warning, whole) = match mine {
        Some(s) => (s, None, false),
        None => {
            cache.loads += 1;
            let l = load(path, now)?;
            (l.state, l.warning, true)
        }
    };
    let ops = decide(&st);
    let out: Vec<u32> = ops.iter().map(|op| op.apply(&mut st)).collect();
    st.history.trim_evidence();
    let lines = statejournal::lines(&ops);
    if whole || cache.journal_len + lines.len() as u64 > fold_at(cache.file_len) {
        write_whole(path, &st, cache)?;
    } else if !ops.is_empty() {
        append(&jp, cache, &lines)?;
    }
    cache.state = Some(st);
    Ok((out, warning))
}

/// Fold the journal into the state file (watch at stop): the file is then
/// whole for whatever reads it next, an older fwctl included.
pub fn fold(path: &Path, now: i64, cache: &mut Cached) -> Result<()> {
    if ident(&journal_name(path)).is_none() {
        return Ok(());
    }
    let _lock = locked(path)?;
    let l = load(path, now)?;
    cache.loads += 1;
    write_whole(path, &l.state, cache)?;
    cache.state = Some(l.state);
    Ok(())
}

fn write_whole(path: &Path, st: &State, cache: &mut Cached) -> Result<()> {
    let text = state::to_text(st);
    save_text(path, &text)?;
    cache.writes += 1;
    cache.file = ident(path);
    cache.file_len = text.len() as u64;
    cache.base = statejournal::digest(Some(&text));
    cache.journal = None;
    cache.journal_len = 0;
    Ok(())
}

/// Append journal lines (a new journal starts with its header naming the
/// state file it extends), synced before the lock is let go.
fn append(jp: &Path, cache: &mut Cached, lines: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let write = |err| StateError::Write {
        path: jp.to_path_buf(),
        err,
    };
    let fresh = cache.journal.is_none();
    // A new journal is created, never one found there taken over; an old
    // one is the one checked under the lock. Never through a link.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create_new(fresh)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(jp)
        .map_err(write)?;
    let mut buf = if fresh {
        statejournal::header(&cache.base)
    } else {
        Vec::new()
    };
    buf.extend_from_slice(lines);
    f.write_all(&buf).map_err(write)?;
    f.sync_data().map_err(write)?;
    if fresh {
        if let Ok(d) = std::fs::File::open(dir_of(jp)) {
            let _ = d.sync_all();
        }
    }
    cache.journal_len += buf.len() as u64;
    cache.journal = f.metadata().ok().map(|m| ident_of(&m));
    Ok(())
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
    // The whole state is written (loaded with the journal applied): the
    // journal goes. Left behind by a failure, it names the file before
    // this one and is never applied.
    match std::fs::remove_file(journal_name(path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StateError::Write {
            path: journal_name(path),
            err: e,
        }),
        _ => Ok(()),
    }
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

    fn ban(addr: &str, at: i64) -> Op {
        Op::Ban {
            addr: addr.parse().unwrap(),
            set: "blacklist".into(),
            at,
            removeafter_s: 60,
            why: crate::core::history::Why {
                origin: "watch".into(),
                rule: "w (sshd ssh)".into(),
                hits: 6,
                window_s: 600,
                first: at,
                last: at,
                evidence: vec![format!("sshd[1]: Failed password from {addr}")],
            },
            keep: 5,
        }
    }

    fn count(path: &Path) -> usize {
        read(path).unwrap().state.history.iter().count()
    }

    #[test]
    fn a_cached_writer_appends_and_reads_again_only_what_another_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let jp = journal_name(&path);
        let mut cache = Cached::default();
        // The first update writes the whole file (nothing is known of it).
        let (n, _) = update_cached(&path, 100, &mut cache, &[ban("203.0.113.1/32", 100)]).unwrap();
        assert_eq!(n, vec![1]);
        assert_eq!((cache.loads, cache.writes), (1, 1));
        assert!(!jp.exists());
        // Then its own bans go to the journal: the file is not written,
        // and every reader sees them.
        let file = std::fs::read(&path).unwrap();
        update_cached(&path, 101, &mut cache, &[ban("203.0.113.2/32", 101)]).unwrap();
        update_cached(&path, 102, &mut cache, &[ban("203.0.113.1/32", 102)]).unwrap();
        assert_eq!((cache.loads, cache.writes), (1, 1));
        assert_eq!(std::fs::read(&path).unwrap(), file);
        assert!(jp.exists());
        let got = read(&path).unwrap();
        assert!(got.warning.is_none());
        assert_eq!(Some(&got.state), cache.state.as_ref());
        assert_eq!(load(&path, 103).unwrap().state, got.state);
        // The repeat offender counted twice, through the journal.
        let rec = got.state.history.records();
        assert_eq!(rec.iter().map(|r| r.offences).max(), Some(2));
        // Another writer in between: it takes the journal in, writes the
        // whole file, removes the journal; its change is read, not lost.
        update(&path, 104, |st| {
            st.history
                .record("203.0.113.3/32".parse().unwrap(), "blacklist", 1, 104, 60)
        })
        .unwrap();
        assert!(!jp.exists());
        assert_eq!(count(&path), 3);
        update_cached(&path, 105, &mut cache, &[ban("203.0.113.4/32", 105)]).unwrap();
        assert_eq!((cache.loads, cache.writes), (2, 2));
        assert_eq!(count(&path), 4);
        assert_eq!(read(&path).unwrap().state, *cache.state.as_ref().unwrap());
        // An edit in place (same inode, later times): parsed again.
        update_cached(&path, 106, &mut cache, &[ban("203.0.113.5/32", 106)]).unwrap();
        assert_eq!(cache.loads, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        use std::io::Write as _;
        (&f).write_all(text.replace("203.0.113.4", "203.0.113.9").as_bytes())
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        drop(f);
        // The edit made the journal stale (it names the file before it):
        // readers say so; the next write moves it aside, with a warning
        // that says where (203.0.113.5, journalled after the file was
        // written, is there, not in the edited file).
        assert!(read(&path)
            .unwrap()
            .warning
            .unwrap()
            .contains("another state file"));
        let (_, warning) = update_cached(&path, 107, &mut cache, &[]).unwrap();
        assert_eq!(cache.loads, 3);
        let aside = dir.path().join("state.json.journal.aside-107");
        assert!(warning.unwrap().contains("state.json.journal.aside-107"));
        assert!(std::fs::read_to_string(&aside)
            .unwrap()
            .contains("203.0.113.5"));
        assert!(!jp.exists());
        let st = read(&path).unwrap().state;
        assert!(st
            .history
            .iter()
            .any(|r| r.addr.to_string() == "203.0.113.9/32"));
        assert!(!st
            .history
            .iter()
            .any(|r| r.addr.to_string() == "203.0.113.5/32"));
        // Taken away by hand: the copy is not written back.
        std::fs::remove_file(&path).unwrap();
        update_cached(&path, 108, &mut cache, &[]).unwrap();
        assert_eq!(count(&path), 0);
    }

    #[test]
    fn a_gathering_decided_from_the_cached_state_is_one_journal_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let jp = journal_name(&path);
        let mut cache = Cached::default();
        let bans: Vec<Op> = (1..=3)
            .map(|i| ban(&format!("203.0.113.{i}/32"), 100))
            .collect();
        update_cached(&path, 100, &mut cache, &bans).unwrap();
        let file = std::fs::read(&path).unwrap();
        // Nothing decided: nothing written, no journal.
        let (n, _) = update_cached_with(&path, 101, &mut cache, |_| Vec::new()).unwrap();
        assert!(n.is_empty());
        assert!(!jp.exists());
        // Decided from the records as they stand (the three bans).
        let (_, _) = update_cached_with(&path, 102, &mut cache, |st| {
            let members: Vec<ipnet::IpNet> = st.history.iter().map(|r| r.addr).collect();
            assert_eq!(members.len(), 3);
            vec![Op::Gather {
                prefix: "203.0.113.0/24".parse().unwrap(),
                set: "blacklist".into(),
                until: 3700,
                members,
                why: crate::core::history::Why {
                    origin: "aggregate".into(),
                    rule: "3 bans within 1h".into(),
                    hits: 3,
                    window_s: 3600,
                    first: 100,
                    last: 100,
                    evidence: Vec::new(),
                },
                at: 102,
            }]
        })
        .unwrap();
        assert_eq!((cache.loads, cache.writes), (1, 1));
        assert_eq!(std::fs::read(&path).unwrap(), file);
        assert!(jp.exists());
        // Every reader sees the prefix with its members, and their bans
        // ended.
        let st = read(&path).unwrap().state;
        assert_eq!(Some(&st), cache.state.as_ref());
        let prefix = st
            .history
            .iter()
            .find(|r| r.addr.to_string() == "203.0.113.0/24")
            .unwrap();
        assert_eq!((prefix.members.len(), prefix.until), (3, 3700));
        assert!(st
            .history
            .iter()
            .filter(|r| r.addr.prefix_len() == 32)
            .all(|r| r.until <= 102));
    }

    #[test]
    fn the_journal_is_folded_when_it_outgrows_the_file_and_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let jp = journal_name(&path);
        let mut cache = Cached::default();
        update_cached(&path, 100, &mut cache, &[ban("203.0.113.1/32", 100)]).unwrap();
        let mut appended = 0;
        // Some 300 bytes a ban: folded past 256 KiB, some 900 bans.
        let mut n = 1;
        for i in 0..3000u32 {
            if cache.writes > 1 && appended > 100 {
                break;
            }
            n += 1;
            let a = format!("198.51.{}.{}/32", 100 + i / 250, i % 250);
            let before = cache.writes;
            update_cached(&path, 101, &mut cache, &[ban(&a, 101)]).unwrap();
            if cache.writes == before {
                appended += 1;
            }
            // Never longer than fold_at of the file it extends.
            let j = std::fs::metadata(&jp).map_or(0, |m| m.len());
            assert!(j <= fold_at(cache.file_len), "{j}");
        }
        assert!(cache.writes > 1, "folded at least once");
        assert!(appended > 800, "{appended}");
        assert_eq!(count(&path), n);
        fold(&path, 102, &mut cache).unwrap();
        assert!(!jp.exists());
        let whole = state::parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(whole.history.iter().count(), n);
        // A huge state file: its journal is still folded long before a
        // reader would refuse it.
        assert!(fold_at(1 << 30) <= MAX_JOURNAL / 2);
        // Nothing to fold: nothing written.
        let w = cache.writes;
        fold(&path, 103, &mut cache).unwrap();
        assert_eq!(cache.writes, w);
    }

    #[test]
    fn a_stale_torn_or_oversized_journal_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let jp = journal_name(&path);
        save(&path, &state()).unwrap();
        let file = std::fs::read(&path).unwrap();
        let base = statejournal::digest(Some(&file));
        // Torn: the whole lines only.
        let mut j = statejournal::header(&base);
        j.extend(statejournal::lines(&[ban("203.0.113.1/32", 100)]));
        let cut = statejournal::lines(&[ban("203.0.113.2/32", 100)]);
        j.extend_from_slice(&cut[..cut.len() / 2]);
        std::fs::write(&jp, &j).unwrap();
        let got = read(&path).unwrap();
        assert!(got.warning.is_none());
        assert_eq!(got.state.history.iter().count(), 2);
        // Stale: a journal of another file is not applied.
        let mut j = statejournal::header(&statejournal::digest(Some(b"other")));
        j.extend(statejournal::lines(&[ban("203.0.113.1/32", 100)]));
        std::fs::write(&jp, &j).unwrap();
        let got = read(&path).unwrap();
        assert_eq!(got.state, state());
        assert!(got.warning.unwrap().contains("another state file"));
        // Garbage: a warning that names the journal.
        std::fs::write(&jp, b"not a journal\n").unwrap();
        let got = load(&path, 100).unwrap();
        assert!(got.warning.unwrap().contains("state.json.journal"));
        assert_eq!(got.state, state());
        // Too long: not read past its bound.
        let f = std::fs::File::create(&jp).unwrap();
        f.set_len(MAX_JOURNAL + 1).unwrap();
        let got = read(&path).unwrap();
        assert!(got.warning.unwrap().contains("over 64 MiB"));
        // A writer moves it aside.
        update(&path, 100, |_| ()).unwrap();
        assert!(!jp.exists());
        // Not a file (a directory, a FIFO): a reader warns and does not
        // block; a writer stops, since its whole write would remove it.
        for fifo in [false, true] {
            if fifo {
                nix::unistd::mkfifo(&jp, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            } else {
                std::fs::create_dir(&jp).unwrap();
            }
            let got = read(&path).unwrap();
            assert!(got.warning.unwrap().contains("cannot read state journal"));
            assert_eq!(got.state, state());
            assert!(matches!(load(&path, 100), Err(StateError::Read { .. })));
            assert!(update(&path, 100, |_| ()).is_err());
            if fifo {
                std::fs::remove_file(&jp).unwrap();
            } else {
                std::fs::remove_dir(&jp).unwrap();
            }
        }
        // A link in its place is not followed.
        std::os::unix::fs::symlink(&path, &jp).unwrap();
        assert!(read(&path)
            .unwrap()
            .warning
            .unwrap()
            .contains("cannot read state journal"));
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
