//! Golden files: the rendered ipset/iptables-restore/ip6tables-restore input of
//! every example config under rules/, against a clean kernel, is pinned under
//! tests/golden/NAME.txt, the raw table's iptables-restore/ip6tables-restore
//! input (banned sources dropped before conntrack) under tests/golden/NAME.raw,
//! and the nftables backend's `nft -f` input under tests/golden/NAME.nft. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff.

use fwctl::core::apply::dry_run_text;
use fwctl::core::ruleset::{self, Current};
use fwctl::sys::configfile;
use std::path::{Path, PathBuf};

/// Every example config under rules/, in name order.
fn example_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut entries: Vec<_> = std::fs::read_dir(root.join("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 2,
        "expected the example configs under rules/"
    );
    entries
}

/// `text` equals tests/golden/STEM.EXT (written there with UPDATE_GOLDEN).
fn check(config: &Path, ext: &str, text: &str) {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(config.file_stem().unwrap())
        .with_extension(ext);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            golden.display()
        )
    });
    assert!(
        text == want,
        "{} renders differently from {}; if intended, UPDATE_GOLDEN=1 and review the diff",
        config.display(),
        golden.display()
    );
}

#[test]
fn example_configs_render_as_pinned() {
    for path in example_configs() {
        let cfg = configfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let plan = ruleset::build(&cfg);
        let text = dry_run_text(
            cfg.mode.as_str(),
            &plan,
            &Current::default(),
            "golden: against a clean kernel",
        );
        check(&path, "txt", &text);
    }
}

/// The raw table's part, against a clean kernel (no jump, no chain yet).
#[test]
fn example_configs_render_their_raw_part_as_pinned() {
    for path in example_configs() {
        let cfg = fwctl::sys::configfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let plan = ruleset::build(&cfg);
        let clean = ruleset::TableState::default();
        let text = format!(
            "# mode {}\n# ---- iptables-restore --noflush ----\n{}# ---- ip6tables-restore --noflush ----\n{}",
            cfg.mode.as_str(),
            ruleset::render_raw(&plan.v4, &clean),
            ruleset::render_raw(&plan.v6, &clean)
        );
        check(&path, "raw", &text);
    }
}

/// The nftables backend's one transaction for the same configs.
#[test]
fn example_configs_render_as_pinned_for_nftables() {
    for path in example_configs() {
        let cfg = configfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let text = ruleset::nft::render_install(&ruleset::build(&cfg), &Current::default());
        check(&path, "nft", &text);
    }
}
