//! Secrets (webhook keys, Redis passwords, API keys, private keys) come from
//! files of their own, never from the config. Every secret file is read here
//! and nowhere else, with the checks ssh makes of a private key: it is
//! opened without following a symbolic link (O_NOFOLLOW), must be a plain
//! file, must belong to root or to the user fwctl runs as, and must not be
//! readable or writable by group or others (a file someone else can write
//! is a key someone else chose). Each refusal names the file and the fix.
//! The content is the secret without a trailing newline; it is never
//! printed.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest secret file read (a key or password is far smaller).
pub const MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {}: {err}; fix: create it (chmod 600) or correct the path", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("secret file {} is a symbolic link; fix: point the config at the file itself (readlink -f {})", path.display(), path.display())]
    Symlink { path: PathBuf },
    #[error("secret file {} is not a plain file; fix: point the config at a file holding the secret", path.display())]
    NotFile { path: PathBuf },
    #[error("secret file {} is {} by group or others (mode {mode:04o}); fix: chmod 600 {}", path.display(), access(*mode), path.display())]
    Open { path: PathBuf, mode: u32 },
    #[error("secret file {} belongs to uid {uid}, neither root nor the user fwctl runs as (uid {me}); fix: chown root {}", path.display(), path.display())]
    Owner { path: PathBuf, uid: u32, me: u32 },
    #[error("secret file {} is over {MAX_BYTES} bytes; fix: put only the secret in it", path.display())]
    TooBig { path: PathBuf },
    #[error("secret file {} is empty; fix: put the secret in it", path.display())]
    Empty { path: PathBuf },
    #[error("secret file {} is not UTF-8 text; fix: put the secret in it as text", path.display())]
    NotText { path: PathBuf },
}

fn access(mode: u32) -> &'static str {
    match (mode & 0o044 != 0, mode & 0o022 != 0) {
        (true, true) => "readable and writable",
        (true, false) => "readable",
        (false, true) => "writable",
        (false, false) => "executable",
    }
}

/// Open a secret file and check it (see the module's comment); the file
/// checked is the file read (fstat of the open descriptor, no race).
fn open(path: &Path) -> Result<File, SecretError> {
    let p = || path.to_path_buf();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => SecretError::Symlink { path: p() },
            _ => SecretError::Read { path: p(), err },
        })?;
    let m = file
        .metadata()
        .map_err(|err| SecretError::Read { path: p(), err })?;
    if !m.file_type().is_file() {
        return Err(SecretError::NotFile { path: p() });
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != 0 && m.uid() != me {
        return Err(SecretError::Owner {
            path: p(),
            uid: m.uid(),
            me,
        });
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Open { path: p(), mode });
    }
    Ok(file)
}

/// The file's bytes as they are (a binary key): checked, bounded, not empty.
pub fn read_raw(path: &Path) -> Result<Vec<u8>, SecretError> {
    let file = open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| SecretError::Read {
            path: path.to_path_buf(),
            err,
        })?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(SecretError::TooBig {
            path: path.to_path_buf(),
        });
    }
    if bytes.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The secret as bytes, without its trailing newline (`\n` or `\r\n`).
pub fn read(path: &Path) -> Result<Vec<u8>, SecretError> {
    let mut text = read_raw(path)?;
    for end in [b'\n', b'\r'] {
        if text.last() == Some(&end) {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

/// The secret as text (a password, an API key, a PEM key), without its
/// trailing newline.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    String::from_utf8(read(path)?).map_err(|_| SecretError::NotText {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_secret_file_must_be_private_and_loses_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "s3cret\n").unwrap();
        chmod(&p, 0o644);
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("mode 0644") && e.contains("chmod 600") && !e.contains("s3cret"),
            "{e}"
        );
        chmod(&p, 0o600);
        assert_eq!(read(&p).unwrap(), b"s3cret");
        assert_eq!(read_secret(&p).unwrap(), "s3cret");
        assert_eq!(read_raw(&p).unwrap(), b"s3cret\n");
        std::fs::write(&p, "\n").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("is empty"));
        assert!(read(&dir.path().join("none"))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(read_secret(&p).unwrap_err().to_string().contains("UTF-8"));
        assert_eq!(read(&p).unwrap(), [0xff, 0xfe]);
    }

    /// A key someone else can write, or a link to wherever, is refused as
    /// ssh refuses such a private key: with the fix.
    #[test]
    fn a_writable_linked_or_foreign_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "s3cret\n").unwrap();
        for (mode, says) in [
            (0o620, "is writable by group or others (mode 0620)"),
            (0o602, "is writable by group or others (mode 0602)"),
            (0o666, "readable and writable by group or others"),
        ] {
            chmod(&p, mode);
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("fix: chmod 600"), "{e}");
        }
        chmod(&p, 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = read_secret(&link).unwrap_err().to_string();
        assert!(
            e.contains("is a symbolic link") && e.contains("fix:") && !e.contains("s3cret"),
            "{e}"
        );
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a plain file"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'k'; MAX_BYTES as usize + 1]).unwrap();
        chmod(&big, 0o600);
        assert!(read(&big).unwrap_err().to_string().contains("over 65536"));
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
            let e = read(&p).unwrap_err().to_string();
            assert!(
                e.contains("belongs to uid 65534") && e.contains("fix: chown root"),
                "{e}"
            );
        }
    }
}
