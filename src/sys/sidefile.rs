//! Small files that live beside the state file and are changed by every
//! scan run (the baseline's counts, the AbuseIPDB report ledger): read
//! fresh and written atomically under a lock of their own, as the state
//! file is, so two cron scans at the same minute lose nothing. A file that
//! does not parse is moved aside (`PATH.corrupt-<unix time>`) with a
//! warning and started anew: a bad counts file must never stop a scan.

use super::lock;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a writer waits for another (they hold it for milliseconds).
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// The most a side file may hold; a bigger one is corrupt.
const MAX_BYTES: u64 = 8 << 20;

/// Why a side file could not be changed; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum SideError {
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SideError + '_ {
    move |err| SideError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// The file's value (the default when missing), and a warning when it was
/// unreadable as one (a reader leaves it; `update` moves it aside).
pub fn read<T: Default, E: std::fmt::Display>(
    path: &Path,
    parse: impl Fn(&[u8]) -> Result<T, E>,
) -> Result<(T, Option<String>), SideError> {
    let text = match std::fs::File::open(path) {
        Ok(f) => {
            use std::io::Read;
            let mut t = Vec::new();
            f.take(MAX_BYTES + 1)
                .read_to_end(&mut t)
                .map_err(io(path))?;
            t
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((T::default(), None)),
        Err(e) => return Err(io(path)(e)),
    };
    if text.len() as u64 > MAX_BYTES {
        return Ok((
            T::default(),
            Some(format!(
                "{} is larger than {MAX_BYTES} bytes",
                path.display()
            )),
        ));
    }
    Ok(match parse(&text) {
        Ok(v) => (v, None),
        Err(why) => (
            T::default(),
            Some(format!("{} is corrupt ({why})", path.display())),
        ),
    })
}

/// Change the file under its lock: read it fresh, let `f` change the
/// value, write it back atomically (mode 0644: counts, nothing secret).
/// Returns `f`'s result and a warning when a corrupt file was set aside.
pub fn update<T: Default, E: std::fmt::Display, R>(
    path: &Path,
    now: i64,
    parse: impl Fn(&[u8]) -> Result<T, E>,
    to_text: impl Fn(&T) -> Vec<u8>,
    f: impl FnOnce(&mut T) -> R,
) -> Result<(R, Option<String>), SideError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    super::dirs::create_private(&dir).map_err(io(&dir))?;
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let _lock = lock::acquire_file(Path::new(&lock_name), LOCK_WAIT)?;
    let (mut value, mut warning) = read(path, &parse)?;
    if let Some(w) = &mut warning {
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".corrupt-{now}"));
        std::fs::rename(path, &aside).map_err(io(path))?;
        w.push_str(&format!(
            "; moved it to {} and started anew",
            Path::new(&aside).display()
        ));
    }
    let out = f(&mut value);
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io(path))?;
    tmp.write_all(&to_text(&value)).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644));
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    Ok((out, warning))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::baseline::{self, Baseline, Key, What};

    #[test]
    fn a_corrupt_baseline_is_set_aside_with_a_warning_and_started_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/baseline.json");
        let k = Key::new(What::Bans, "blocked", "tcp");
        let add = |n| {
            update(
                &path,
                100,
                baseline::parse,
                baseline::to_text,
                |b: &mut Baseline| b.add(&k, 7200, n),
            )
            .unwrap()
        };
        assert!(add(2).1.is_none());
        assert!(add(3).1.is_none());
        let (b, w) = read(&path, baseline::parse).unwrap();
        assert!(w.is_none());
        assert_eq!(b.get(&k).unwrap().get(2), Some(5));

        std::fs::write(&path, b"{\"version\":1,\"series\":[{\"what\":").unwrap();
        let (b, w) = read(&path, baseline::parse).unwrap();
        assert!(b.series.is_empty() && w.unwrap().contains("is corrupt"));
        let (_, w) = add(1);
        let w = w.unwrap();
        assert!(
            w.contains("is corrupt")
                && w.contains("baseline.json.corrupt-100")
                && w.contains("started anew"),
            "{w}"
        );
        assert!(dir.path().join("state/baseline.json.corrupt-100").exists());
        let (b, _) = read(&path, baseline::parse).unwrap();
        assert_eq!(b.get(&k).unwrap().get(2), Some(1));
    }
}
