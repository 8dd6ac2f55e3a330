//! The journal as a log source: `journalctl` for a source's entries (sshd's
//! units, or a regex source's programs), over a scan's window or followed
//! by watch.

use super::logfile::{read_stream, LogError, MARGIN};
use super::tools::locate_tool;
use crate::core::logsource::LineParser;
use crate::core::scan::count::{Counting, Tally};
use crate::core::scan::FileRead;
use crate::core::watch::journal::Matches;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// journalctl's arguments for `m`. A program goes as one `--identifier=`
/// argument: a name that starts with `-` cannot become an option.
fn match_args(m: &Matches) -> Vec<String> {
    match m {
        Matches::Units(units) => units.iter().map(|u| format!("--unit={u}")).collect(),
        Matches::Identifiers(ids) => ids.iter().map(|i| format!("--identifier={i}")).collect(),
        Matches::Everything => Vec::new(),
    }
}

/// `scan --journal`: the entries `m` names over the window (plus the
/// reader's margin), read as a stream through the same parser and tally
/// as a file.
pub fn read(
    parser: &LineParser,
    filter: Counting,
    m: &Matches,
) -> Result<(Tally, Vec<FileRead>), LogError> {
    let shown = PathBuf::from(m.shown());
    let fail = |err| LogError::Read {
        path: shown.clone(),
        err,
    };
    let tool = locate_tool("journalctl", "systemd").map_err(|m| {
        fail(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            m.to_string(),
        ))
    })?;
    let (from, to) = parser.window();
    let mut cmd = Command::new(tool);
    cmd.args(match_args(m));
    cmd.args(["-o", "short-iso-precise", "--no-pager", "--quiet"])
        .arg(format!("--since=@{}", from.saturating_sub(MARGIN)))
        .arg(format!("--until=@{}", to.saturating_add(MARGIN)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(fail)?;
    let out = child.stdout.take().expect("piped");
    let tally = read_stream(out, parser, filter).map_err(fail)?;
    let done = child.wait_with_output().map_err(fail)?;
    if !done.status.success() {
        let why = String::from_utf8_lossy(&done.stderr).trim().to_string();
        return Err(fail(std::io::Error::other(format!(
            "journalctl failed ({}): {why}; fix: run as root or in the systemd-journal group",
            done.status
        ))));
    }
    Ok((
        tally,
        vec![FileRead {
            path: shown,
            size: 0,
            from: 0,
            to: 0,
            shrank: false,
            first_time: None,
            last_time: None,
            note: None,
        }],
    ))
}

/// `journal = true` in a `[[watch]]`: `journalctl -f -o json` for the
/// entries `m` names, from the saved cursor (or from now), its entries
/// handed out as lines. If journalctl ends, it is started again after the
/// last cursor.
pub struct JournalFollower {
    matches: Matches,
    child: Option<std::process::Child>,
    partial: Vec<u8>,
    cursor: Option<String>,
    /// When to try starting journalctl again.
    retry: Option<std::time::Instant>,
    pub lines: u64,
}

const JSON_LINE_MAX: usize = 64 * 1024;

impl JournalFollower {
    pub fn new(matches: Matches, cursor: Option<String>) -> JournalFollower {
        JournalFollower {
            matches,
            child: None,
            partial: Vec::new(),
            cursor,
            retry: Some(std::time::Instant::now()),
            lines: 0,
        }
    }

    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    fn start(&mut self) -> std::io::Result<()> {
        let tool = locate_tool("journalctl", "systemd")
            .map_err(|m| std::io::Error::new(std::io::ErrorKind::NotFound, m.to_string()))?;
        let mut cmd = Command::new(tool);
        cmd.args(match_args(&self.matches));
        cmd.args(["-f", "-o", "json", "--no-pager", "--quiet"]);
        match &self.cursor {
            Some(c) => cmd.arg(format!("--after-cursor={c}")),
            // A first start reads from now on, as a file's does.
            None => cmd.args(["--lines=0"]),
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let child = cmd.spawn()?;
        let out = child.stdout.as_ref().expect("piped");
        let fd = std::os::fd::AsFd::as_fd(out);
        let fl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let fl = nix::fcntl::OFlag::from_bits_truncate(fl) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(fl))?;
        self.child = Some(child);
        self.partial.clear();
        Ok(())
    }

    /// journalctl's output, for waiting on it.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.child
            .as_ref()
            .and_then(|c| c.stdout.as_ref())
            .map(std::os::fd::AsFd::as_fd)
    }

    /// Hand out the entries journalctl wrote since the last poll.
    pub fn poll(&mut self, sink: &mut dyn FnMut(&[u8])) -> Vec<String> {
        let mut notes = Vec::new();
        if self.child.is_none() {
            if self.retry.is_some_and(|t| t <= std::time::Instant::now()) {
                self.retry = None;
                if let Err(e) = self.start() {
                    notes.push(format!(
                        "journal: cannot run journalctl: {e}; tried again in 5s"
                    ));
                    self.retry =
                        Some(std::time::Instant::now() + std::time::Duration::from_secs(5));
                }
            }
            if self.child.is_none() {
                return notes;
            }
        }
        let mut buf = [0u8; 1 << 16];
        let mut ended = false;
        loop {
            let out = self
                .child
                .as_mut()
                .and_then(|c| c.stdout.as_mut())
                .expect("running");
            match std::io::Read::read(out, &mut buf) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => self.take(&buf[..n], sink),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    notes.push(format!("journal: read error: {e}"));
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let status = c.wait().map(|s| s.to_string()).unwrap_or_default();
                notes.push(format!(
                    "journal: journalctl ended ({status}); started again in 1s after the last entry read"
                ));
            }
            self.retry = Some(std::time::Instant::now() + std::time::Duration::from_secs(1));
        }
        notes
    }

    fn take(&mut self, mut data: &[u8], sink: &mut dyn FnMut(&[u8])) {
        while let Some(i) = memchr::memchr(b'\n', data) {
            let line = if self.partial.is_empty() {
                &data[..i]
            } else {
                self.partial.extend_from_slice(&data[..i]);
                &self.partial[..]
            };
            if line.len() <= JSON_LINE_MAX {
                if let Some(e) = crate::core::watch::journal::entry(line) {
                    sink(&e.line);
                    self.lines += 1;
                    self.cursor = Some(e.cursor);
                }
            }
            self.partial.clear();
            data = &data[i + 1..];
        }
        if self.partial.len() + data.len() <= JSON_LINE_MAX {
            self.partial.extend_from_slice(data);
        } else {
            // Too long to be an entry of sshd: dropped when its end comes.
            self.partial.clear();
            self.partial.resize(JSON_LINE_MAX + 1, b' ');
        }
    }
}

impl Drop for JournalFollower {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
