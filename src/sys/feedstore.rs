//! A feed's last good copy and what is known of it, in `feeds/` beside the
//! state file: `NAME.list` (one entry a line) and `NAME.json` (validators,
//! times, the last error), each written atomically. The directory is made
//! 0700; `apply` loads the lists into the kernel, so a directory another
//! user could write is refused before anything is read from it.

use crate::core::feeds::{list_text, parse_list, Meta};
use ipnet::IpNet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the lists cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FeedStoreError {
    #[error("feeds directory {} {why} (fwctl loads the feeds' last good copies into the firewall from it; nothing was loaded)", dir.display())]
    Unsafe { dir: PathBuf, why: String },
    #[error("cannot read feeds directory {}: {err}", dir.display())]
    Io { dir: PathBuf, err: std::io::Error },
}

pub fn dir_for(state: &Path) -> PathBuf {
    super::statefile::beside(state, "feeds")
}

/// Refuse a feeds directory another user could have written (a missing
/// one is fine: there is nothing to load yet).
pub fn check(dir: &Path) -> Result<(), FeedStoreError> {
    match super::dirs::unsafe_to_load(dir) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(FeedStoreError::Unsafe {
            dir: dir.to_path_buf(),
            why,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(FeedStoreError::Io {
            dir: dir.to_path_buf(),
            err,
        }),
    }
}

fn write(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    super::dirs::create_private(dir)?;
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

/// The last good copy (empty when there is none yet), from a directory
/// that passes [`check`].
pub fn list(dir: &Path, name: &str) -> Result<Vec<IpNet>, FeedStoreError> {
    check(dir)?;
    Ok(std::fs::read_to_string(dir.join(format!("{name}.list")))
        .map(|t| parse_list(&t))
        .unwrap_or_default())
}

pub fn save_list(dir: &Path, name: &str, nets: &[IpNet]) -> std::io::Result<()> {
    write(
        &dir.join(format!("{name}.list")),
        list_text(nets).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lists_are_not_loaded_from_a_directory_others_can_write() {
        let top = tempfile::tempdir().unwrap();
        let dir = dir_for(&top.path().join("state.json"));
        assert!(list(&dir, "drop").unwrap().is_empty(), "none yet");
        let nets: Vec<IpNet> = vec!["203.0.113.0/24".parse().unwrap()];
        save_list(&dir, "drop", &nets).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(list(&dir, "drop").unwrap(), nets);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = list(&dir, "drop").unwrap_err().to_string();
        assert!(
            e.contains("writable by group or others (mode 0777)") && e.contains("fix: chmod 700"),
            "{e}"
        );
    }
}
