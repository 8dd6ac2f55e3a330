//! Reading the config file and the blacklist feed files it names. Parsing and
//! validation are the core's (`Config::parse`); this is only the file system,
//! with a size bound so that a path to a device or a runaway file is an error
//! rather than all of memory.

use crate::core::config::{Config, ConfigError, DEFAULT_PATH};
use std::io::{self, Read};
use std::path::Path;

/// The most bytes a config file may have (the shipped one is a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The most bytes a `[blacklist] files` list may have: room for millions of
/// entries (the sets' maxelem), not for a device that never ends.
pub const MAX_FEED_BYTES: u64 = 256 << 20;

/// Read and validate a config file and the blacklist feeds it names.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        msg: format!(
            "cannot read config: {e}; fix: pass --config PATH, or copy rules/fwctl.toml to {DEFAULT_PATH}"
        ),
    })?;
    Config::parse(&text, path, &|p| read(p, MAX_FEED_BYTES))
}

/// The config file's text (bounded as [`load`] reads it), for a command
/// that writes a changed copy (selftest's twin).
pub fn text(path: &Path) -> io::Result<String> {
    read(path, MAX_CONFIG_BYTES)
}

/// A text file of at most `max` bytes; the errors read as
/// `std::fs::read_to_string`'s.
fn read(path: &Path, max: u64) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    // Sized once from the file's length (a 100 000-line feed grew through
    // eleven copies); the bound still holds for a file that grows meanwhile.
    let len = file.metadata().map(|m| m.len()).unwrap_or(0).min(max + 1);
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0) + 1);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other(format!("the file is over {max} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_over_the_bound_is_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.toml");
        let mut text = String::from("# padding\n");
        while (text.len() as u64) <= MAX_CONFIG_BYTES {
            text.push_str("# ..............................................\n");
        }
        std::fs::write(&p, &text).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains(
                "cannot read config: the file is over 1048576 bytes; fix: pass --config PATH"
            ),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_config_loads_and_a_missing_one_says_how_to_fix_it() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/fwctl.toml");
        load(&shipped).unwrap();
        let e = load(Path::new("/nonexistent/fwctl.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read config: No such file or directory"),
            "{e}"
        );
        assert!(e.contains(DEFAULT_PATH), "{e}");
    }

    #[test]
    fn text_that_is_not_utf8_is_an_error_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin.toml");
        std::fs::write(&p, b"mode = \"\xff\"\n").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("stream did not contain valid UTF-8"), "{e}");
    }
}
