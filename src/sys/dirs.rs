//! fwctl's own directories (the state directory, `feeds/`, the run
//! directory): created 0700 whatever the umask, and checked before fwctl
//! loads anything from one. fwctl runs as root and turns what it reads
//! there into firewall rules, so a directory another user can write is a
//! way to choose them.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Create `dir` and any missing parent, each 0700 (set explicitly: the
/// umask only ever takes bits away, and a umask of 0277 would leave us a
/// directory we cannot write). A directory that exists is left as it is.
pub fn create_private(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_private(parent)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    // fchmod of what we created, never through a link swapped in meanwhile.
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    d.set_permissions(std::fs::Permissions::from_mode(0o700))
}

/// Why fwctl must not load from `dir` (None: it may): it belongs to another
/// user than root or us, or group or others can write it. The text ends
/// with the fix.
pub fn unsafe_to_load(dir: &Path) -> io::Result<Option<String>> {
    let m = std::fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    let shown = dir.display();
    if m.uid() != 0 && m.uid() != me {
        return Ok(Some(format!(
            "belongs to uid {}, neither root nor the user fwctl runs as (uid {me}); fix: chown root {shown} && chmod 700 {shown}",
            m.uid()
        )));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Ok(Some(format!(
            "is writable by group or others (mode {mode:04o}); fix: chmod 700 {shown}"
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn directories_are_created_0700_and_existing_ones_left_alone() {
        let top = tempfile::tempdir().unwrap();
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let deep = top.path().join("var/lib/fwctl/feeds");
        create_private(&deep).unwrap();
        for d in ["var", "var/lib", "var/lib/fwctl", "var/lib/fwctl/feeds"] {
            assert_eq!(mode(&top.path().join(d)), 0o700, "{d}");
        }
        assert_eq!(
            mode(top.path()),
            0o755,
            "an existing directory is not changed"
        );
        create_private(&deep).unwrap();
        assert_eq!(unsafe_to_load(&deep).unwrap(), None);
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = unsafe_to_load(&deep).unwrap().unwrap();
        assert!(
            why.contains("writable by group or others (mode 0777)")
                && why.contains(&format!("fix: chmod 700 {}", deep.display())),
            "{why}"
        );
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o1770)).unwrap();
        assert!(unsafe_to_load(&deep).unwrap().is_some());
        if nix::unistd::geteuid().is_root() {
            std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&deep, Some(65534), None).unwrap();
            let why = unsafe_to_load(&deep).unwrap().unwrap();
            assert!(
                why.contains("belongs to uid 65534") && why.contains("chown root"),
                "{why}"
            );
        }
    }
}
