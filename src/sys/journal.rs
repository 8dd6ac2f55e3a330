//! The journal as a log source: `journalctl` for sshd's units over the
//! window (plus the reader's margin), its output read as a stream through
//! the same parser and tally as a file.

use super::logfile::{read_stream, LogError, MARGIN};
use super::tools::locate_tool;
use crate::core::logsource::LineParser;
use crate::core::scan::count::{Tally, TypeFilter};
use crate::core::scan::FileRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The units sshd runs as: `ssh` on Debian, `sshd` elsewhere.
const UNITS: [&str; 2] = ["ssh.service", "sshd.service"];

pub fn read_ssh(
    parser: &LineParser,
    filter: TypeFilter,
) -> Result<(Tally, Vec<FileRead>), LogError> {
    let shown = PathBuf::from("journal (ssh.service, sshd.service)");
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
    for u in UNITS {
        cmd.args(["-u", u]);
    }
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
