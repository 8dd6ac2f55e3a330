//! Secrets (webhook keys, passwords, API keys) come from files of their own,
//! never from the config: the file must not be readable by group or others,
//! and its content is the secret without a trailing newline. Secrets are
//! never printed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {}: {err}; fix: create it (chmod 600) or correct the path", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("secret file {} is readable by group or others (mode {mode:04o}); fix: chmod 600 {}", path.display(), path.display())]
    Open { path: PathBuf, mode: u32 },
    #[error("secret file {} is empty; fix: put the secret in it", path.display())]
    Empty { path: PathBuf },
}

pub fn read(path: &Path) -> Result<Vec<u8>, SecretError> {
    let err = |err| SecretError::Read {
        path: path.to_path_buf(),
        err,
    };
    let mode = std::fs::metadata(path).map_err(err)?.permissions().mode() & 0o7777;
    if mode & 0o044 != 0 {
        return Err(SecretError::Open {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = std::fs::read(path).map_err(err)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_must_be_private_and_loses_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("mode 0644") && e.contains("chmod 600") && !e.contains("s3cret"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&p).unwrap(), b"s3cret");
        std::fs::write(&p, "\n").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("is empty"));
        assert!(read(&dir.path().join("none"))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }
}
