//! Where `fwctl watch` stopped in each log: kept in the state directory, so
//! a restart reads on from there (lines written while it was down are
//! read once; lines it had read are not read again).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The file `watch` keeps its positions in, beside the state file.
pub const FILE: &str = "watch-positions.json";

/// One followed file: which file (device and inode, as a rotation renames
/// it), how far it was read, and the bytes just before that point, to
/// find the place again in a copy (`copytruncate`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePos {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// Up to [`TAIL`] bytes before `offset`, hex.
    #[serde(default)]
    pub tail: String,
}

/// How many bytes before the position identify it.
pub const TAIL: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    /// By `[[watch]]` name.
    #[serde(default)]
    pub files: BTreeMap<String, FilePos>,
    /// The journal cursor after the last entry read, by `[[watch]]` name.
    #[serde(default)]
    pub journal: BTreeMap<String, String>,
}

impl Positions {
    /// Read the file's text; a damaged file is a fresh start (with the
    /// reason, to say): positions only save work, they never decide a ban.
    pub fn parse(text: &str) -> Result<Positions, crate::units::Invalid> {
        let p: Positions =
            serde_json::from_str(text).map_err(|e| crate::units::Invalid(e.to_string()))?;
        // Written by fwctl itself, but bounded anyway.
        if p.files.len() + p.journal.len() > 256
            || p.journal.values().any(|c| c.len() > 512)
            || p.files.values().any(|f| f.tail.len() > 2 * TAIL)
        {
            return Err(crate::units::Invalid(
                "more or longer entries than fwctl writes".into(),
            ));
        }
        Ok(p)
    }

    pub fn text(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable") + "\n"
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_damage_is_refused() {
        let mut p = Positions::default();
        p.files.insert(
            "sshd".into(),
            FilePos {
                path: "/var/log/auth.log".into(),
                dev: 2049,
                ino: 77,
                offset: 1234,
                tail: hex(b"port 22 ssh2\n"),
            },
        );
        p.journal.insert("sshd-journal".into(), "s=abc;i=1".into());
        assert_eq!(Positions::parse(&p.text()).unwrap(), p);
        assert_eq!(unhex(&hex(b"\x00\xffab")).unwrap(), b"\x00\xffab");
        assert!(unhex("abc").is_none() && unhex("zz").is_none());
        assert!(Positions::parse("{\"files\": 3}").is_err());
        assert!(Positions::parse("").is_err());
    }
}
