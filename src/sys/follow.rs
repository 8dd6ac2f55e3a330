//! Following a log as it is written, for `fwctl watch`: whole lines, each
//! once, across what logrotate and admins do to a log.
//!
//! - Rotation by rename (`create`): the old file is read to its end, then
//!   kept open and read on for a while (the writer may not have reopened
//!   yet), while the new file is read from its start.
//! - `copytruncate`: the file shrinks under us (seen by each read, which
//!   starts at the bytes last read and finds them gone, even when the
//!   file grew past our position again before we looked). The lines written between
//!   our last read and the truncation are in the copy (`NAME.1`,
//!   `NAME-DATE`): found by the bytes just before our position, and read
//!   from there. Lines written between logrotate's copy and its truncate
//!   are lost by logrotate itself (its documented race).
//! - A log that does not exist yet, or is deleted and created again: read
//!   from its start when it appears.
//! - A restart: from the saved position, in the same file or, if it was
//!   rotated meanwhile, in the rotated file found by its inode.
//!
//! The first start without a saved position begins at the log's end (as
//! `tail -f`): what is already there is the cron scan's to read.
//! Wakeups come from inotify on the log itself (its writes) and on its
//! directory (its name created, moved, deleted: never the writes of the
//! directory's other files, which would wake watch for every line another
//! program logs), and say what changed: a write to the log is read with
//! one `read` (`Follower::read_said`), and only a change of the log's name
//! or a lost event looks the name up again. `Follower::poll` does every
//! check, and is also called on a timer: a lost event delays a line by at
//! most that tick.

use crate::core::watch::positions::{hex, unhex, FilePos, TAIL};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A line longer than this is cut here and the rest skipped: no log line
/// of the sources is near it, and a writer must not make us hold more.
pub const MAX_LINE: usize = 16 * 1024;

/// How long a rotated-away file is read on after it last grew.
const RETIRE_AFTER: Duration = Duration::from_secs(30);

/// Open a followed log for reading without updating its access time: on a
/// `relatime` mount a read after a write updates it, so every reading of a
/// busy log would dirty its inode (a journal write on ext4). `O_NOATIME`
/// needs the file's owner or CAP_FOWNER (watch runs as root); without
/// either the log is opened as usual.
fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        r => r,
    }
}

/// What a follower read, for the metrics and the run's notes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub lines: u64,
    pub bytes: u64,
    /// Lines longer than MAX_LINE, skipped.
    pub overlong: u64,
    pub rotations: u64,
    pub truncations: u64,
}

/// What inotify said about one followed log since it was last read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Said {
    /// Written to (or truncated, or closed after writing).
    pub written: bool,
    /// Its name was created, moved or deleted, its attributes changed,
    /// its directory changed or came, or events were lost: look the name
    /// up again.
    pub renamed: bool,
}

/// `v` becomes the last TAIL bytes of `v` followed by `b`, in place (no
/// allocation once `v` has held TAIL bytes: this runs at every read).
fn push_tail(v: &mut Vec<u8>, b: &[u8]) {
    if b.len() >= TAIL {
        v.clear();
        v.extend_from_slice(&b[b.len() - TAIL..]);
        return;
    }
    let keep = TAIL - b.len();
    if v.len() > keep {
        v.drain(..v.len() - keep);
    }
    v.extend_from_slice(b);
}

/// One open file and how far its whole lines were read.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    /// Just after the last whole line handed out (where a restart or a
    /// copy resumes).
    offset: u64,
    /// The file's cursor: what was read.
    read_pos: u64,
    /// The bytes of the line begun after `offset` (none while skipping).
    partial: Vec<u8>,
    /// Inside an overlong line: skip to its newline.
    skipping: bool,
    /// Up to TAIL bytes just before `offset`.
    tail: Vec<u8>,
    /// Up to TAIL bytes just before `read_pos`.
    recent: Vec<u8>,
    grew: Instant,
    /// The last `drain` found other bytes than `recent` before `read_pos`:
    /// the file was truncated (or rewritten) under us.
    rewritten: bool,
}

impl Open {
    /// `file` with its cursor at `offset`, `tail` the bytes before it.
    fn new(file: File, offset: u64, tail: Vec<u8>) -> io::Result<Open> {
        let m = file.metadata()?;
        Ok(Open {
            file,
            dev: m.dev(),
            ino: m.ino(),
            offset,
            read_pos: offset,
            partial: Vec::new(),
            skipping: false,
            recent: tail.clone(),
            tail,
            grew: Instant::now(),
            rewritten: false,
        })
    }

    /// Read to the end, handing out whole lines. Returns the bytes read.
    ///
    /// Each read starts at the bytes last read (`recent`) and checks they
    /// are still there: a file truncated and written again past our
    /// position before we looked (copytruncate then a burst of lines)
    /// would otherwise be read on from the middle of a new line. Then
    /// nothing is read and `rewritten` says so. One `pread` per read, as a
    /// `read` would be.
    fn drain(
        &mut self,
        buf: &mut [u8],
        stats: &mut Stats,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let mut k = self.recent.len().min(self.read_pos as usize);
        let mut total = 0;
        loop {
            let n = match self.file.read_at(buf, self.read_pos - k as u64) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if k > 0 && (n < k || buf[..k] != self.recent[self.recent.len() - k..]) {
                self.rewritten = true;
                break;
            }
            if n > k {
                total += (n - k) as u64;
                self.take(&buf[k..n], stats, sink);
            }
            // A regular file reads short only at its end: no second read
            // to hear that (one system call per wake-up, not two).
            if n < buf.len() {
                break;
            }
            k = 0;
        }
        if total > 0 {
            self.grew = Instant::now();
            stats.bytes += total;
        }
        Ok(total)
    }

    fn take(&mut self, data: &[u8], stats: &mut Stats, sink: &mut dyn FnMut(&[u8])) {
        let mut start = 0;
        let mut last_nl = None;
        for i in memchr::memchr_iter(b'\n', data) {
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                sink(&data[start..i]);
                stats.lines += 1;
            } else {
                self.partial.extend_from_slice(&data[start..i]);
                if self.partial.len() <= MAX_LINE {
                    sink(&self.partial);
                    stats.lines += 1;
                } else {
                    stats.overlong += 1;
                }
                self.partial.clear();
            }
            start = i + 1;
            last_nl = Some(i);
        }
        if let Some(i) = last_nl {
            self.offset = self.read_pos + i as u64 + 1;
            self.tail.clear();
            self.tail.extend_from_slice(&self.recent);
            push_tail(&mut self.tail, &data[..=i]);
        }
        let rest = &data[start..];
        if !self.skipping && !rest.is_empty() {
            if self.partial.len() + rest.len() > MAX_LINE {
                self.partial.clear();
                self.skipping = true;
                stats.overlong += 1;
            } else {
                self.partial.extend_from_slice(rest);
            }
        }
        push_tail(&mut self.recent, data);
        self.read_pos += data.len() as u64;
    }

    /// A rotated file read for the last time: its last line, if it has no
    /// newline, is whole all the same.
    fn finish(&mut self, stats: &mut Stats, sink: &mut dyn FnMut(&[u8])) {
        if !self.skipping && !self.partial.is_empty() {
            sink(&self.partial);
            stats.lines += 1;
        }
        self.partial.clear();
    }

    fn position(&self, path: &Path) -> FilePos {
        FilePos {
            path: path.display().to_string(),
            dev: self.dev,
            ino: self.ino,
            offset: self.offset,
            tail: hex(&self.tail),
        }
    }
}

fn identity(path: &Path) -> io::Result<(u64, u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino(), m.len()))
}

/// Whether `file` holds `tail` just before `offset` (an empty tail: the
/// position is the file's start).
fn holds_at(file: &mut File, offset: u64, tail: &[u8]) -> bool {
    if (tail.len() as u64) > offset {
        return false;
    }
    let mut got = vec![0; tail.len()];
    file.seek(SeekFrom::Start(offset - tail.len() as u64))
        .is_ok()
        && file.read_exact(&mut got).is_ok()
        && got == tail
}

/// The rotated copies of `path` in its directory (`NAME.1`, `NAME-DATE`,
/// `NAME.1.gz` excluded), newest first, at most a few.
fn rotated_siblings(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(std::time::SystemTime, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.len() > name.len()
                    && n.starts_with(name)
                    && matches!(n.as_bytes()[name.len()], b'.' | b'-')
                    && !n.ends_with(".gz")
                    && !n.ends_with(".xz")
                    && !n.ends_with(".zst")
            })
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.0));
    v.truncate(4);
    v.into_iter().map(|x| x.1).collect()
}

/// The file in `path`'s directory with this device and inode (a log
/// rotated while watch was stopped).
fn find_inode(path: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    let dir = path.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| m.dev() == dev && m.ino() == ino && m.is_file())
        })
        .map(|e| e.path())
}

/// One followed log.
pub struct Follower {
    path: PathBuf,
    cur: Option<Open>,
    /// Rotated away, read on until quiet (oldest first).
    retired: Vec<Open>,
    /// Where the last run stopped, for the first poll.
    resume: Option<FilePos>,
    started: bool,
    pub stats: Stats,
    buf: Vec<u8>,
}

impl Follower {
    pub fn new(path: PathBuf, resume: Option<FilePos>) -> Follower {
        Follower {
            path,
            cur: None,
            retired: Vec::new(),
            resume,
            started: false,
            stats: Stats::default(),
            buf: vec![0; 1 << 16],
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where to resume after a restart: the current file's position.
    pub fn position(&self) -> Option<FilePos> {
        match &self.cur {
            Some(o) => Some(o.position(&self.path)),
            None => self.resume.clone(),
        }
    }

    /// Read what was written since the last poll, handing out each whole
    /// line once, oldest file first, after every check (shrunk, replaced).
    /// Returns what happened, for people.
    pub fn poll(&mut self, sink: &mut dyn FnMut(&[u8])) -> Vec<String> {
        self.read_said(
            Said {
                written: true,
                renamed: true,
            },
            sink,
        )
    }

    /// As `poll`, doing only what `said` calls for: the log written, one
    /// read (and a size check only if that read found nothing: a
    /// truncation is a write too); its name changed, every check; neither,
    /// only the rotated-away files are read.
    pub fn read_said(&mut self, said: Said, sink: &mut dyn FnMut(&[u8])) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.started {
            self.started = true;
            self.start(&mut notes, sink);
        }
        // Rotated files first: their lines are the older ones.
        let mut keep = Vec::new();
        for mut o in std::mem::take(&mut self.retired) {
            let _ = o.drain(&mut self.buf, &mut self.stats, sink);
            // Rewritten (a copy made over it): what it holds now is
            // another file's, not to be read.
            if !o.rewritten && o.grew.elapsed() < RETIRE_AFTER {
                keep.push(o);
            } else {
                o.finish(&mut self.stats, sink);
            }
        }
        self.retired = keep;
        if let Some(o) = self.cur.as_mut().filter(|_| said.written || said.renamed) {
            if let Err(e) = o.drain(&mut self.buf, &mut self.stats, sink) {
                notes.push(format!("{}: read error: {e}", self.path.display()));
            }
            // Shrunk (or rewritten) under us: copytruncate.
            if o.rewritten {
                self.stats.truncations += 1;
                notes.push(truncated(
                    &self.path,
                    o,
                    &mut self.buf,
                    &mut self.stats,
                    sink,
                ));
                let _ = o.drain(&mut self.buf, &mut self.stats, sink);
            }
        }
        if !said.renamed {
            return notes;
        }
        // Replaced under us: renamed away, or deleted and created again.
        match identity(&self.path) {
            Ok((dev, ino, _)) => {
                let same = self
                    .cur
                    .as_ref()
                    .is_some_and(|o| o.dev == dev && o.ino == ino);
                if !same {
                    if let Some(old) = self.cur.take() {
                        self.stats.rotations += 1;
                        notes.push(format!(
                            "{}: a new file took its name (rotated, or deleted and created again); reading the new one from its start and the old one to its end",
                            self.path.display()
                        ));
                        self.retired.push(old);
                        if self.retired.len() > 4 {
                            let mut o = self.retired.remove(0);
                            o.finish(&mut self.stats, sink);
                        }
                    }
                    self.open_from_start(&mut notes, sink);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => notes.push(format!("{}: {e}", self.path.display())),
        }
        notes
    }

    fn open_from_start(&mut self, notes: &mut Vec<String>, sink: &mut dyn FnMut(&[u8])) {
        match open_log(&self.path).and_then(|f| Open::new(f, 0, Vec::new())) {
            Ok(mut o) => {
                if let Err(e) = o.drain(&mut self.buf, &mut self.stats, sink) {
                    notes.push(format!("{}: read error: {e}", self.path.display()));
                }
                self.cur = Some(o);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => notes.push(format!(
                "{}: cannot open it ({e}); fix: let fwctl read it (it runs as root)",
                self.path.display()
            )),
        }
    }

    /// The first poll: resume where the last run stopped, or begin at the
    /// end of what is there.
    fn start(&mut self, notes: &mut Vec<String>, sink: &mut dyn FnMut(&[u8])) {
        let here = identity(&self.path).ok();
        let resume = self
            .resume
            .take()
            .filter(|r| r.path == self.path.display().to_string());
        if let Some(r) = resume {
            let tail = unhex(&r.tail).unwrap_or_default();
            if here.is_some_and(|(d, i, _)| (d, i) == (r.dev, r.ino)) {
                // The same file: on from the position, unless it was
                // truncated (or rewritten) meanwhile.
                if let Ok(mut f) = open_log(&self.path) {
                    if holds_at(&mut f, r.offset, &tail) {
                        if let Ok(o) = f
                            .seek(SeekFrom::Start(r.offset))
                            .and_then(|_| Open::new(f, r.offset, tail))
                        {
                            self.cur = Some(o);
                            return;
                        }
                    } else if let Ok(mut o) = Open::new(f, r.offset, tail) {
                        // Truncated (or rewritten) while stopped.
                        self.stats.truncations += 1;
                        notes.push(truncated(
                            &self.path,
                            &mut o,
                            &mut self.buf,
                            &mut self.stats,
                            sink,
                        ));
                        let _ = o.drain(&mut self.buf, &mut self.stats, sink);
                        self.cur = Some(o);
                        return;
                    }
                }
            } else if let Some(old) = find_inode(&self.path, r.dev, r.ino) {
                // Rotated while stopped: the rest of the old file first.
                if let Ok(mut f) = open_log(&old) {
                    if holds_at(&mut f, r.offset, &tail)
                        && f.seek(SeekFrom::Start(r.offset)).is_ok()
                    {
                        if let Ok(mut o) = Open::new(f, r.offset, tail) {
                            notes.push(format!(
                                "{}: rotated while watch was stopped; reading {} on from where it stopped",
                                self.path.display(),
                                old.display()
                            ));
                            let _ = o.drain(&mut self.buf, &mut self.stats, sink);
                            self.retired.push(o);
                        }
                    }
                }
            }
            // A new file since: all of it is new.
            self.open_from_start(notes, sink);
            return;
        }
        // No position: from the end, as tail -f.
        match open_log(&self.path) {
            Ok(mut f) => {
                let end = f.seek(SeekFrom::End(0)).unwrap_or(0);
                let mut tail = vec![0; (end as usize).min(TAIL)];
                let ok = f.seek(SeekFrom::Start(end - tail.len() as u64)).is_ok()
                    && f.read_exact(&mut tail).is_ok();
                // Only whole lines: a line being written at the end is
                // read when its newline comes.
                let cut = if ok {
                    tail.iter().rposition(|&b| b == b'\n').map(|i| i + 1)
                } else {
                    None
                };
                let (offset, tail) = match cut {
                    Some(i) => (end - (tail.len() - i) as u64, tail[..i].to_vec()),
                    None if end == 0 => (0, Vec::new()),
                    // No newline in the last TAIL bytes: take the end.
                    None => (end, tail),
                };
                if f.seek(SeekFrom::Start(offset)).is_ok() {
                    self.cur = Open::new(f, offset, tail).ok();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => notes.push(format!(
                "{}: does not exist yet; it is read from its start when it appears",
                self.path.display()
            )),
            Err(e) => notes.push(format!(
                "{}: cannot open it ({e}); fix: let fwctl read it (it runs as root)",
                self.path.display()
            )),
        }
    }
}

/// `o` shrank under us: read what it held after our position from its
/// copy, if one holds our position, then go on from its start.
fn truncated(
    path: &Path,
    o: &mut Open,
    buf: &mut [u8],
    stats: &mut Stats,
    sink: &mut dyn FnMut(&[u8]),
) -> String {
    let mut from_copy = None;
    for c in rotated_siblings(path) {
        let Ok(mut f) = open_log(&c) else { continue };
        if f.metadata().map_or(true, |m| m.len() < o.offset) {
            continue;
        }
        if holds_at(&mut f, o.offset, &o.tail) && f.seek(SeekFrom::Start(o.offset)).is_ok() {
            if let Ok(mut copy) = Open::new(f, o.offset, o.tail.clone()) {
                let _ = copy.drain(buf, stats, sink);
                copy.finish(stats, sink);
                from_copy = Some(c);
                break;
            }
        }
    }
    o.partial.clear();
    o.skipping = false;
    o.rewritten = false;
    o.offset = 0;
    o.read_pos = 0;
    o.tail.clear();
    o.recent.clear();
    let _ = o.file.seek(SeekFrom::Start(0));
    match from_copy {
        Some(c) => format!(
            "{}: truncated (copytruncate); its last lines were read from {}, and it is read on from its start",
            path.display(),
            c.display()
        ),
        None => format!(
            "{}: truncated (copytruncate) and no copy holds where reading stopped; read on from its start",
            path.display()
        ),
    }
}

/// inotify on the followed logs and their directories: a wakeup when a
/// log is written or a name in its directory changes, and what it was, per
/// followed log. A directory that does not exist yet is tried again; a
/// log's file is watched again whenever its name is said to have changed
/// (a new file under it).
pub struct Wakeup {
    inotify: Inotify,
    dirs: Vec<(PathBuf, bool)>,
    /// The followed logs' paths and file names, and what was said of each.
    paths: Vec<PathBuf>,
    names: Vec<Vec<u8>>,
    said: Vec<Said>,
    /// The watches on the logs' files (a rotated file keeps its watch
    /// until it is deleted and closed, or `FILE_WATCHES` newer ones of its
    /// log push it out: a late line to it wakes too): descriptor, log.
    files: Vec<(i32, usize)>,
    /// Whether a watch could not be added for want of room (warned once).
    full: bool,
    buf: Vec<u8>,
}

/// Watches kept on one log's files: its current file and the rotated ones
/// still read (logrotate keeps the last one or two uncompressed).
const FILE_WATCHES: usize = 4;

/// inotify's event header: wd, mask, cookie, len (then len bytes of name).
const EVENT_HEAD: usize = 16;

impl Wakeup {
    pub fn new(paths: &[&Path]) -> io::Result<Wakeup> {
        use std::os::unix::ffi::OsStrExt;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(io::Error::from)?;
        let mut dirs: Vec<(PathBuf, bool)> = Vec::new();
        for p in paths {
            let d = p.parent().unwrap_or(Path::new("/")).to_path_buf();
            if !dirs.iter().any(|(x, _)| *x == d) {
                dirs.push((d, false));
            }
        }
        let names = paths
            .iter()
            .map(|p| p.file_name().map_or(Vec::new(), |n| n.as_bytes().to_vec()))
            .collect();
        let mut w = Wakeup {
            inotify,
            dirs,
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
            names,
            said: vec![Said::default(); paths.len()],
            files: Vec::new(),
            full: false,
            // Room for many events; a write stream queues one IN_MODIFY
            // per log (the kernel merges repeats while they are unread).
            buf: vec![0; 1 << 14],
        };
        w.add_missing();
        w.rewatch();
        Ok(w)
    }

    /// Watch log `i`'s file for writes (if it exists; when it is created
    /// its directory says so, and it is watched then).
    fn watch_file(&mut self, i: usize) -> Option<String> {
        match add_write_watch(self.inotify.as_fd(), &self.paths[i]) {
            Ok(wd) => {
                if !self.files.contains(&(wd, i)) {
                    self.files.push((wd, i));
                }
                // The oldest of this log's watches beyond FILE_WATCHES go
                // (a log rotated by rename and never deleted, `rotate -1`).
                while self.files.iter().filter(|&&(_, l)| l == i).count() > FILE_WATCHES {
                    let at = self.files.iter().position(|&(_, l)| l == i)?;
                    let (old, _) = self.files.remove(at);
                    if !self.files.iter().any(|&(w, _)| w == old) {
                        remove_watch(self.inotify.as_fd(), old);
                    }
                }
                None
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && !self.full => {
                self.full = true;
                Some(format!(
                    "{}: no room for another inotify watch (fs.inotify.max_user_watches): its lines are read once a second instead of as they are written; fix: raise the limit (sysctl -w fs.inotify.max_user_watches=65536)",
                    self.paths[i].display()
                ))
            }
            Err(_) => None,
        }
    }

    /// Watch each log's file as its name now points (a symlinked log's
    /// target rotated in another directory, a watch that could not be added
    /// before): called once a second. An unchanged file keeps its watch.
    /// A warning the first time there is no room for a watch.
    pub fn rewatch(&mut self) -> Option<String> {
        let mut warning = None;
        for i in 0..self.paths.len() {
            warning = warning.or(self.watch_file(i));
        }
        warning
    }

    /// Watch the directories not watched yet (made since). A directory
    /// newly watched may hold its logs already: they are looked up.
    fn add_missing(&mut self) {
        // Names only: the logs' writes come from their own watches.
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        let mut added = false;
        for (d, watched) in &mut self.dirs {
            if !*watched {
                *watched = self.inotify.add_watch(d.as_path(), mask).is_ok();
                added |= *watched;
            }
        }
        if added {
            self.all_renamed();
        }
    }

    fn all_renamed(&mut self) {
        for s in &mut self.said {
            s.renamed = true;
        }
    }

    /// Wait until something changed or `timeout` passed (or an `extra` fd
    /// is readable, or a signal came); true if woken by a change.
    pub fn wait(&mut self, timeout: Duration, extra: &[std::os::fd::BorrowedFd]) -> bool {
        use nix::poll::{PollFd, PollFlags};
        let me = PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN);
        let woke = if extra.is_empty() {
            poll_for(&mut [me], timeout)
        } else {
            let mut fds = vec![me];
            fds.extend(extra.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)));
            poll_for(&mut fds, timeout)
        };
        self.collect();
        woke
    }

    /// Sleep `timeout` whatever the logs do (waking for an `extra` fd or
    /// a signal): a busy log is read once for many writes. inotify is not
    /// read: what it queued meanwhile (one IN_MODIFY per log, the kernel
    /// merges repeats) wakes the next `wait` at once.
    pub fn sleep(&mut self, timeout: Duration, extra: &[std::os::fd::BorrowedFd]) {
        use nix::poll::{PollFd, PollFlags};
        let mut fds: Vec<PollFd> = extra
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        poll_for(&mut fds, timeout);
    }

    /// What was said of the `i`-th log since the last `take`.
    pub fn take(&mut self, i: usize) -> Said {
        self.said.get_mut(i).map(std::mem::take).unwrap_or_default()
    }

    /// Read every queued event (non-blocking) into `said`.
    fn collect(&mut self) {
        loop {
            match nix::unistd::read(self.inotify.as_fd(), &mut self.buf) {
                Ok(n) if n > 0 => {
                    let (said, names) = (&mut self.said, &self.names);
                    let lost = note_events(&self.buf[..n], names, &mut self.files, said);
                    if lost {
                        // The directory itself went or moved, or the
                        // queue overflowed: watch again, look everything up.
                        for d in &mut self.dirs {
                            d.1 = false;
                        }
                        self.all_renamed();
                    }
                    // Short: the queue was empty a moment ago.
                    if n + EVENT_HEAD + 256 < self.buf.len() {
                        break;
                    }
                }
                _ => break,
            }
        }
        if self.dirs.iter().any(|(_, w)| !w) {
            self.add_missing();
        }
        // A log whose name changed may be a new file: watch it.
        for i in 0..self.said.len() {
            if self.said[i].renamed {
                let _ = self.watch_file(i);
            }
        }
    }
}

/// inotify_add_watch(2) for a file's writes; the descriptor as the events
/// carry it (nix's watch descriptor does not show its number).
fn add_write_watch(fd: std::os::fd::BorrowedFd, path: &Path) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a NUL-terminated path alive for the call, `fd` an
    // inotify instance open for the call (borrowed); the call reads the
    // path and changes only the instance's watches.
    let wd = unsafe {
        libc::inotify_add_watch(
            fd.as_raw_fd(),
            c.as_ptr(),
            libc::IN_MODIFY | libc::IN_CLOSE_WRITE,
        )
    };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}

/// inotify_rm_watch(2): the kernel answers with IN_IGNORED for it.
fn remove_watch(fd: std::os::fd::BorrowedFd, wd: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain integers; the call changes only the inotify instance's
    // watches (an unknown descriptor is EINVAL, ignored).
    unsafe {
        libc::inotify_rm_watch(fd.as_raw_fd(), wd);
    }
}

/// poll(2) for up to `timeout` (rounded up to the millisecond, at most a
/// minute); true if an fd is ready.
fn poll_for(fds: &mut [nix::poll::PollFd], timeout: Duration) -> bool {
    use nix::poll::{poll, PollTimeout};
    let ms = timeout.as_micros().div_ceil(1000).min(60_000) as u16;
    matches!(poll(fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

/// Mark in `said` what the raw inotify events in `data` say of the logs
/// named `names` (in their directories) and of the logs' own files
/// (`files`: a watch the kernel drops, its file deleted, is forgotten);
/// true if an event was about a directory itself or events were lost (a
/// name is not enough then).
fn note_events(
    data: &[u8],
    names: &[Vec<u8>],
    files: &mut Vec<(i32, usize)>,
    said: &mut [Said],
) -> bool {
    let word = |i: usize| {
        data.get(i..i + 4)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let written = (AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CLOSE_WRITE).bits();
    let mut lost = false;
    let mut i = 0;
    while i + EVENT_HEAD <= data.len() {
        let mask = word(i + 4);
        let len = word(i + 12) as usize;
        let name = data
            .get(i + EVENT_HEAD..i + EVENT_HEAD + len)
            .unwrap_or(&[]);
        // The name is padded with NULs.
        let name = &name[..memchr::memchr(0, name).unwrap_or(name.len())];
        let wd = word(i) as i32;
        i += EVENT_HEAD + len;
        if name.is_empty() && files.iter().any(|&(w, _)| w == wd) {
            // A log's own file: written, or its watch gone.
            for &(_, log) in files.iter().filter(|&&(w, _)| w == wd) {
                if let Some(s) = said.get_mut(log) {
                    s.written |= mask & written != 0;
                }
            }
            if mask & AddWatchFlags::IN_IGNORED.bits() != 0 {
                files.retain(|&(w, _)| w != wd);
            }
            continue;
        }
        if name.is_empty() && mask == AddWatchFlags::IN_IGNORED.bits() {
            // A watch removed here (a log's oldest file): a directory's
            // going says IN_DELETE_SELF or IN_MOVE_SELF first.
            continue;
        }
        if name.is_empty() {
            // The directory itself (moved, deleted, unwatched), or
            // IN_Q_OVERFLOW.
            lost = true;
            continue;
        }
        // Two logs of one name in two directories: both hear it (a look
        // too many, never one too few).
        for (n, s) in names.iter().zip(said.iter_mut()) {
            if n.as_slice() == name {
                if mask & written != 0 {
                    s.written = true;
                }
                if mask & !written != 0 {
                    s.renamed = true;
                }
            }
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(p: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Every line the follower hands out at this poll.
    fn poll(f: &mut Follower) -> (Vec<String>, Vec<String>) {
        let mut got = Vec::new();
        let notes = f.poll(&mut |l| got.push(String::from_utf8_lossy(l).into_owned()));
        (got, notes)
    }

    fn lines(a: std::ops::Range<u32>) -> String {
        a.map(|i| format!("line {i}\n")).collect()
    }

    fn names(a: std::ops::Range<u32>) -> Vec<String> {
        a.map(|i| format!("line {i}")).collect()
    }

    #[test]
    fn starts_at_the_end_then_hands_out_whole_lines_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.log");
        append(&p, &lines(0..3));
        append(&p, "half a li");
        let mut f = Follower::new(p.clone(), None);
        assert_eq!(
            poll(&mut f).0,
            Vec::<String>::new(),
            "what was there is the cron scan's"
        );
        append(&p, "ne\n");
        append(&p, &lines(3..5));
        append(&p, "line 5 not yet");
        assert_eq!(poll(&mut f).0, ["half a line", "line 3", "line 4"]);
        assert_eq!(poll(&mut f).0, Vec::<String>::new());
        append(&p, " done\n");
        assert_eq!(poll(&mut f).0, ["line 5 not yet done"]);
        assert_eq!(f.stats.lines, 4);
    }

    #[test]
    fn reading_a_busy_log_leaves_its_access_time_alone() {
        let d = tempfile::tempdir().unwrap();
        // An access time before the last write: a relatime mount updates
        // it at the next read.
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let age = |p: &Path| {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_times(std::fs::FileTimes::new().set_accessed(old))
                .unwrap();
        };
        let atime = |p: &Path| std::fs::metadata(p).unwrap().accessed().unwrap();
        // First, that this mount updates access times at all (not noatime):
        // a plain read of another file does.
        let control = d.path().join("control.log");
        append(&control, "a line\n");
        age(&control);
        File::open(&control)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap();
        if atime(&control) == old {
            eprintln!("this mount does not update access times: nothing to check");
            return;
        }
        let p = d.path().join("auth.log");
        append(&p, &lines(0..3));
        let mut f = Follower::new(p.clone(), None);
        poll(&mut f);
        append(&p, &lines(3..5));
        age(&p);
        assert_eq!(poll(&mut f).0, names(3..5));
        assert_eq!(atime(&p), old, "watch's reading updated the access time");
    }

    #[test]
    fn rotation_by_rename_loses_nothing_and_counts_nothing_twice() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.log");
        append(&p, "");
        let mut f = Follower::new(p.clone(), None);
        poll(&mut f);
        append(&p, &lines(0..3));
        assert_eq!(poll(&mut f).0, names(0..3));
        // Written, then rotated before the next poll; the writer keeps
        // writing to the old file a moment before it reopens.
        append(&p, &lines(3..5));
        std::fs::rename(&p, d.path().join("auth.log.1")).unwrap();
        append(&d.path().join("auth.log.1"), &lines(5..6));
        append(&p, &lines(6..8));
        let (got, notes) = poll(&mut f);
        assert_eq!(got, names(3..8));
        assert!(notes[0].contains("a new file took its name"), "{notes:?}");
        // A late line to the old file is still read, once.
        append(&d.path().join("auth.log.1"), &lines(8..9));
        append(&p, &lines(9..10));
        assert_eq!(poll(&mut f).0, names(8..10));
        assert_eq!(poll(&mut f).0, Vec::<String>::new());
        assert_eq!(f.stats.rotations, 1);
    }

    /// What logrotate's copytruncate does to the live file.
    fn truncate(p: &std::path::Path) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    #[test]
    fn copytruncate_reads_the_rest_from_the_copy() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("access.log");
        append(&p, &lines(0..2));
        let mut f = Follower::new(p.clone(), None);
        poll(&mut f);
        append(&p, &lines(2..4));
        assert_eq!(poll(&mut f).0, names(2..4));
        // Written but not read yet when logrotate copies and truncates.
        append(&p, &lines(4..7));
        std::fs::copy(&p, d.path().join("access.log.1")).unwrap();
        truncate(&p);
        append(&p, &lines(7..8));
        let (got, notes) = poll(&mut f);
        assert_eq!(got, names(4..8));
        assert!(notes[0].contains("access.log.1"), "{notes:?}");
        // Without a copy: on from the start, and said so.
        append(&p, &lines(8..9));
        poll(&mut f);
        std::fs::remove_file(d.path().join("access.log.1")).unwrap();
        truncate(&p);
        append(&p, "x\n");
        let (got, notes) = poll(&mut f);
        assert_eq!(got, ["x"]);
        assert!(notes[0].contains("no copy"), "{notes:?}");
        assert_eq!(f.stats.truncations, 2);
    }

    #[test]
    fn a_log_that_does_not_exist_yet_and_one_deleted_and_created_again() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("later.log");
        let mut f = Follower::new(p.clone(), None);
        let (got, notes) = poll(&mut f);
        assert!(got.is_empty() && notes[0].contains("does not exist yet"));
        append(&p, &lines(0..2));
        assert_eq!(poll(&mut f).0, names(0..2), "read from its start");
        append(&p, &lines(2..3));
        std::fs::remove_file(&p).unwrap();
        assert_eq!(poll(&mut f).0, names(2..3), "the deleted file's last line");
        append(&p, &lines(3..5));
        assert_eq!(poll(&mut f).0, names(3..5));
    }

    #[test]
    fn truncated_and_written_past_the_position_before_a_read_is_still_truncated() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("access.log");
        append(&p, &lines(0..2));
        let mut f = Follower::new(p.clone(), None);
        poll(&mut f);
        append(&p, &lines(2..3));
        assert_eq!(poll(&mut f).0, names(2..3));
        // Copied and truncated, then more written than had been read,
        // all before the next read: the size alone would not tell.
        append(&p, &lines(3..5));
        std::fs::copy(&p, d.path().join("access.log.1")).unwrap();
        truncate(&p);
        let long = "x".repeat(40);
        append(&p, &format!("{long}\n"));
        append(&p, &lines(5..6));
        let (got, notes) = poll(&mut f);
        assert_eq!(got, [&names(3..5)[..], &[long], &names(5..6)[..]].concat());
        assert!(notes[0].contains("access.log.1"), "{notes:?}");
        assert_eq!(f.stats.truncations, 1);
    }

    #[test]
    fn a_restart_resumes_where_it_stopped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.log");
        append(&p, &lines(0..2));
        let mut f = Follower::new(p.clone(), None);
        poll(&mut f);
        append(&p, &lines(2..4));
        append(&p, "part");
        assert_eq!(poll(&mut f).0, names(2..4));
        let pos = f.position().unwrap();
        drop(f);
        // Written while stopped: read once, the partial line whole.
        append(&p, " of a line\n");
        append(&p, &lines(4..5));
        let mut f = Follower::new(p.clone(), Some(pos.clone()));
        assert_eq!(poll(&mut f).0, ["part of a line", "line 4"]);
        let pos = f.position().unwrap();
        // Rotated while stopped: the old file's rest, then the new one.
        append(&p, &lines(5..6));
        std::fs::rename(&p, d.path().join("auth.log.1")).unwrap();
        append(&p, &lines(6..7));
        let mut f = Follower::new(p.clone(), Some(pos));
        let (got, notes) = poll(&mut f);
        assert_eq!(got, names(5..7));
        assert!(
            notes[0].contains("rotated while watch was stopped"),
            "{notes:?}"
        );
        let pos = f.position().unwrap();
        // Truncated while stopped, with a copy.
        append(&p, &lines(7..8));
        std::fs::copy(&p, d.path().join("auth.log.1")).unwrap();
        truncate(&p);
        append(&p, &lines(8..9));
        let mut f = Follower::new(p.clone(), Some(pos));
        assert_eq!(poll(&mut f).0, names(7..9));
        // A position of another file is not used.
        let other = FilePos {
            path: "/elsewhere".into(),
            ..f.position().unwrap()
        };
        let mut f = Follower::new(p.clone(), Some(other));
        append(&p, &lines(9..10));
        assert_eq!(poll(&mut f).0, Vec::<String>::new(), "as a first start");
    }

    #[test]
    fn an_overlong_line_is_skipped_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.log");
        append(&p, "");
        let mut f = Follower::new(p.clone(), None);
        poll(&mut f);
        append(&p, &"A".repeat(MAX_LINE + 10));
        assert!(poll(&mut f).0.is_empty());
        append(&p, &format!("{}\nline 1\n", "B".repeat(100_000)));
        assert_eq!(poll(&mut f).0, ["line 1"]);
        assert_eq!(f.stats.overlong, 1);
        let line = "C".repeat(MAX_LINE);
        append(&p, &format!("{line}\n"));
        assert_eq!(poll(&mut f).0, [line]);
    }

    #[test]
    fn inotify_wakes_on_a_write_in_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.log");
        let mut w = Wakeup::new(&[&p]).unwrap();
        assert!(!w.wait(Duration::from_millis(1), &[]));
        append(&p, "x\n");
        assert!(w.wait(Duration::from_secs(5), &[]));
        // A directory made later is watched once it exists.
        let later = d.path().join("sub").join("a.log");
        let mut w = Wakeup::new(&[&later]).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        assert!(!w.wait(Duration::from_millis(1), &[]));
        assert!(
            w.take(0).renamed,
            "a directory newly watched: look its logs up"
        );
        append(&later, "x\n");
        assert!(w.wait(Duration::from_secs(5), &[]));
    }

    const WROTE: Said = Said {
        written: true,
        renamed: false,
    };

    #[test]
    fn a_log_is_watched_for_writes_from_its_creation_and_each_new_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.log");
        // Two entries on one path, the log not there yet.
        let mut w = Wakeup::new(&[&p, &p]).unwrap();
        append(&p, "a\n");
        assert!(w.wait(Duration::ZERO, &[]));
        assert!(w.take(0).renamed && w.take(1).renamed);
        append(&p, "b\n");
        assert!(w.wait(Duration::ZERO, &[]));
        assert_eq!((w.take(0), w.take(1)), (WROTE, WROTE));
        // Deleted and created again: the new file's writes wake.
        std::fs::remove_file(&p).unwrap();
        append(&p, "c\n");
        assert!(w.wait(Duration::ZERO, &[]));
        assert!(w.take(0).renamed);
        append(&p, "d\n");
        assert!(w.wait(Duration::ZERO, &[]));
        assert_eq!(w.take(0), WROTE);
        // Rotated by rename and never deleted, again and again: at most
        // FILE_WATCHES watches a log, and the ones removed here are not
        // taken for lost events.
        for k in 0..2 * FILE_WATCHES {
            std::fs::rename(&p, d.path().join(format!("auth.log.{k}"))).unwrap();
            append(&p, "e\n");
            assert!(w.wait(Duration::ZERO, &[]));
            w.take(0);
            w.take(1);
        }
        for log in 0..2 {
            let n = w.files.iter().filter(|&&(_, l)| l == log).count();
            assert!(n <= FILE_WATCHES, "{n} watches on log {log}");
        }
        // (the removal's IN_IGNORED may wake: it says nothing)
        w.wait(Duration::ZERO, &[]);
        assert_eq!(w.take(0), Said::default(), "a removed watch said nothing");
        append(&p, "f\n");
        assert!(w.wait(Duration::ZERO, &[]));
        assert_eq!(w.take(0), WROTE);
    }

    #[test]
    fn a_symlinked_logs_target_rotated_elsewhere_is_watched_again_at_the_tick() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::create_dir(d.path().join("logs")).unwrap();
        let target = d.path().join("real").join("x.log");
        append(&target, "");
        let p = d.path().join("logs").join("auth.log");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let mut w = Wakeup::new(&[&p]).unwrap();
        w.take(0);
        append(&target, "a\n");
        assert!(w.wait(Duration::ZERO, &[]));
        assert_eq!(w.take(0), WROTE);
        // The target rotated in its own directory: nothing the log's
        // directory hears, so the new target's writes wake only once the
        // tick's rewatch watches it.
        std::fs::rename(&target, d.path().join("real").join("x.log.1")).unwrap();
        append(&target, "b\n");
        assert!(!w.wait(Duration::ZERO, &[]));
        assert_eq!(w.rewatch(), None);
        append(&target, "c\n");
        assert!(w.wait(Duration::ZERO, &[]));
        assert_eq!(w.take(0), WROTE);
    }

    fn read(f: &mut Follower, said: Said) -> (Vec<String>, Vec<String>) {
        let mut got = Vec::new();
        let notes = f.read_said(said, &mut |l| {
            got.push(String::from_utf8_lossy(l).into_owned())
        });
        (got, notes)
    }

    /// What inotify said, after a wait that must find something.
    fn said(w: &mut Wakeup) -> Said {
        assert!(w.wait(Duration::from_secs(5), &[]));
        w.take(0)
    }

    #[test]
    fn led_by_inotify_alone_a_write_rotation_copytruncate_and_recreation_are_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.log");
        append(&p, "");
        let mut w = Wakeup::new(&[&p]).unwrap();
        let mut f = Follower::new(p.clone(), None);
        read(&mut f, w.take(0));
        // A write is only a write; another file's writes do not even wake
        // (the event is queued by the write itself: no wait needed).
        append(&d.path().join("other.log"), "x\n");
        // (its creation is a name: it wakes, and is consumed here)
        assert!(w.wait(Duration::ZERO, &[]));
        w.take(0);
        append(&d.path().join("other.log"), "y\n");
        assert!(!w.wait(Duration::ZERO, &[]), "another file's write woke");
        append(&p, &lines(0..2));
        append(&d.path().join("other.log"), "x\n");
        assert_eq!(said(&mut w), WROTE);
        assert_eq!(read(&mut f, WROTE).0, names(0..2));
        // Rotation by rename: the name changed, both files read.
        append(&p, &lines(2..3));
        std::fs::rename(&p, d.path().join("auth.log.1")).unwrap();
        append(&p, &lines(3..4));
        let s = said(&mut w);
        assert!(s.renamed, "{s:?}");
        let (got, notes) = read(&mut f, s);
        assert_eq!(got, names(2..4));
        assert!(notes[0].contains("a new file took its name"), "{notes:?}");
        // A late line to the rotated file: its watch (kept with it) says
        // the log was written, and it is read.
        append(&d.path().join("auth.log.1"), &lines(4..5));
        assert_eq!(said(&mut w), WROTE);
        assert_eq!(read(&mut f, WROTE).0, names(4..5));
        // copytruncate is only writes to the log (the copy has another
        // name): the read that finds nothing looks at the size.
        append(&p, &lines(5..7));
        assert_eq!(read(&mut f, said(&mut w)).0, names(5..7));
        append(&p, &lines(7..9));
        std::fs::copy(&p, d.path().join("auth.log-20261207")).unwrap();
        truncate(&p);
        append(&p, &lines(9..10));
        let s = said(&mut w);
        assert_eq!(s, WROTE);
        let (got, notes) = read(&mut f, s);
        assert_eq!(got, names(7..10));
        assert!(notes[0].contains("auth.log-20261207"), "{notes:?}");
        assert_eq!(f.stats.truncations, 1);
        // Deleted and created again.
        append(&p, &lines(10..11));
        std::fs::remove_file(&p).unwrap();
        append(&p, &lines(11..12));
        let s = said(&mut w);
        assert!(s.renamed, "{s:?}");
        assert_eq!(read(&mut f, s).0, names(10..12));
        assert_eq!(f.stats.rotations, 2);
        // Nothing said, nothing read from the log (the timer's `poll`
        // reads it).
        append(&p, &lines(12..13));
        assert_eq!(read(&mut f, Said::default()).0, Vec::<String>::new());
        assert_eq!(poll(&mut f).0, names(12..13));
    }

    #[test]
    fn the_tail_kept_in_place_is_the_last_bytes_of_all_that_came() {
        let mut all = Vec::new();
        let mut v = Vec::new();
        for (i, n) in [0, 3, 70, 1, 63, 64, 65, 200, 5].into_iter().enumerate() {
            let b: Vec<u8> = (0..n).map(|k| (i * 31 + k) as u8).collect();
            all.extend_from_slice(&b);
            push_tail(&mut v, &b);
            assert_eq!(v, all[all.len().saturating_sub(TAIL)..], "after {n} bytes");
        }
    }

    #[test]
    fn a_lost_event_or_the_directory_itself_says_look_everything_up() {
        let ev = |mask: AddWatchFlags, name: &[u8]| {
            let mut v = Vec::new();
            v.extend_from_slice(&1i32.to_ne_bytes());
            v.extend_from_slice(&mask.bits().to_ne_bytes());
            v.extend_from_slice(&0u32.to_ne_bytes());
            let len = name.len().div_ceil(16) * 16;
            v.extend_from_slice(&(len as u32).to_ne_bytes());
            v.extend_from_slice(name);
            v.resize(v.len() + len - name.len(), 0);
            v
        };
        let names = [b"auth.log".to_vec(), b"syslog".to_vec()];
        let mut files = Vec::new();
        let mut said = [Said::default(); 2];
        let mut data = ev(AddWatchFlags::IN_MODIFY, b"auth.log");
        data.extend(ev(AddWatchFlags::IN_CREATE, b"syslog"));
        data.extend(ev(AddWatchFlags::IN_MODIFY, b"auth.log.1"));
        assert!(!note_events(&data, &names, &mut files, &mut said));
        assert_eq!(
            said,
            [
                Said {
                    written: true,
                    renamed: false
                },
                Said {
                    written: false,
                    renamed: true
                }
            ]
        );
        assert!(note_events(
            &ev(AddWatchFlags::IN_Q_OVERFLOW, b""),
            &names,
            &mut files,
            &mut said
        ));
        assert!(note_events(
            &ev(AddWatchFlags::IN_MOVE_SELF, b""),
            &names,
            &mut files,
            &mut said
        ));
        // A cut event (the kernel hands out whole ones) reads no name
        // beyond the buffer: look everything up.
        let mut none = [Said::default(); 2];
        assert!(note_events(&data[..20], &names, &mut files, &mut none));
        assert_eq!(none, [Said::default(); 2]);
        // An event of a log's own file (descriptor 1 here, nameless): a
        // write to that log; its watch dropped (file deleted): forgotten,
        // and then a nameless event of that descriptor is a lost one.
        let mut files = vec![(1, 1), (2, 0)];
        let mut said = [Said::default(); 2];
        assert!(!note_events(
            &ev(AddWatchFlags::IN_MODIFY, b""),
            &names,
            &mut files,
            &mut said
        ));
        assert_eq!(
            said[1],
            Said {
                written: true,
                renamed: false
            }
        );
        assert_eq!(said[0], Said::default());
        assert!(!note_events(
            &ev(AddWatchFlags::IN_IGNORED, b""),
            &names,
            &mut files,
            &mut said
        ));
        assert_eq!(files, [(2, 0)]);
        assert!(note_events(
            &ev(AddWatchFlags::IN_MODIFY, b""),
            &names,
            &mut files,
            &mut said
        ));
    }
}
