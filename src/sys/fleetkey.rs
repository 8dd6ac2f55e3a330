//! This host's fleet signing key on disk: `[fleet] key_file` holds the
//! Ed25519 private key (its 32-byte seed in base64, one line), a secret file
//! read under the rules of [`super::secret`]. `fwctl fleet keygen` makes one
//! from the system's CSPRNG.

use crate::core::fleetsig::{KeyError, PublicKey, SigningKey, SEED_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FleetKeyError {
    #[error(transparent)]
    Secret(#[from] super::secret::SecretError),
    #[error("[fleet] key_file {}: the file {why}", path.display())]
    Bad { path: PathBuf, why: KeyError },
    #[error("{} exists; fix: keep it (it is this host's key), or remove it first to make a new one, then give the other hosts the new public key", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write {}: {err}; fix: check the directory exists and is writable", path.display())]
    Write { path: PathBuf, err: std::io::Error },
    #[error("the system's random number generator failed")]
    Random,
}

/// The key in `path`, checked as any secret file.
pub fn load(path: &Path) -> Result<SigningKey, FleetKeyError> {
    let mut text = super::secret::read(path)?;
    let key = SigningKey::from_text(&text).map_err(|why| FleetKeyError::Bad {
        path: path.to_path_buf(),
        why,
    });
    text.fill(0);
    key
}

/// A new key into `path` (mode 0600, never over an existing file); returns
/// its public half.
pub fn generate(path: &Path) -> Result<PublicKey, FleetKeyError> {
    let mut seed = [0u8; SEED_LEN];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| FleetKeyError::Random)?;
    let key = SigningKey::from_seed(&seed).map_err(|why| FleetKeyError::Bad {
        path: path.to_path_buf(),
        why,
    })?;
    let mut text = SigningKey::seed_text(&seed).into_bytes();
    seed.fill(0);
    let werr = |err| FleetKeyError::Write {
        path: path.to_path_buf(),
        err,
    };
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(FleetKeyError::Exists {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(werr(e)),
    };
    let written = f.write_all(&text).and_then(|()| f.sync_all());
    text.fill(0);
    written.map_err(werr)?;
    Ok(key.public())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_key_is_private_never_overwritten_and_loads_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fleet.key");
        let public = generate(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&p).unwrap().public(), public);
        let before = std::fs::read(&p).unwrap();
        let again = generate(&p).unwrap_err().to_string();
        assert!(again.contains("exists; fix:"), "{again}");
        assert_eq!(std::fs::read(&p).unwrap(), before);
        // Two keys differ.
        assert_ne!(generate(&d.path().join("other.key")).unwrap(), public);
        // A readable key file is refused with the fix, as any secret file.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = load(&p).unwrap_err().to_string();
        assert!(open.contains("chmod 600"), "{open}");
        // Not a key.
        let junk = d.path().join("junk.key");
        std::fs::write(&junk, "hello\n").unwrap();
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let bad = load(&junk).unwrap_err().to_string();
        assert!(
            bad.contains("key_file") && bad.contains("fwctl fleet keygen"),
            "{bad}"
        );
        assert!(!bad.contains("hello"));
    }
}
