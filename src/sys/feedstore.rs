//! A feed's last good copy and what is known of it, in `feeds/` beside the
//! state file: `NAME.list` (one entry a line) and `NAME.json` (validators,
//! times, the last error), each written atomically.

use crate::core::feeds::{list_text, parse_list, Meta};
use ipnet::IpNet;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn dir_for(state: &Path) -> PathBuf {
    super::statefile::beside(state, "feeds")
}

fn write(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut t = tempfile::NamedTempFile::new_in(dir)?;
    t.write_all(text)?;
    t.as_file().sync_all()?;
    t.persist(path).map(drop).map_err(|e| e.error)
}

pub fn meta(dir: &Path, name: &str) -> Meta {
    std::fs::read(dir.join(format!("{name}.json")))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

pub fn save_meta(dir: &Path, name: &str, m: &Meta) -> std::io::Result<()> {
    write(
        &dir.join(format!("{name}.json")),
        &serde_json::to_vec_pretty(m).expect("plain data"),
    )
}

/// The last good copy (empty when there is none yet).
pub fn list(dir: &Path, name: &str) -> Vec<IpNet> {
    std::fs::read_to_string(dir.join(format!("{name}.list")))
        .map(|t| parse_list(&t))
        .unwrap_or_default()
}

pub fn save_list(dir: &Path, name: &str, nets: &[IpNet]) -> std::io::Result<()> {
    write(
        &dir.join(format!("{name}.list")),
        list_text(nets).as_bytes(),
    )
}
