//! Golden files: the rendered ipset/iptables-restore/ip6tables-restore input of
//! every example config under rules/, against a clean kernel, is pinned under
//! tests/golden/. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff.

use fwctl::core::apply::dry_run_text;
use fwctl::core::config::Config;
use fwctl::core::ruleset::{self, Current};
use std::path::Path;

#[test]
fn example_configs_render_as_pinned() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(root.join("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let plan = ruleset::build(&cfg);
        let text = dry_run_text(
            &cfg,
            &plan,
            &Current::default(),
            "golden: against a clean kernel",
        );
        let golden = root
            .join("tests/golden")
            .join(path.file_stem().unwrap())
            .with_extension("txt");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &text).unwrap();
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
            path.display(),
            golden.display()
        );
        checked += 1;
    }
    assert!(checked >= 2, "expected the example configs under rules/");
}

/// The nftables backend's `nft -f` input for the same configs, pinned the same way
/// (`tests/golden/NAME.nft`).
#[test]
fn example_configs_render_as_pinned_for_nftables() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for name in ["fwctl", "detection-only"] {
        let cfg = Config::load(&root.join("rules").join(name).with_extension("toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let text = ruleset::nft::render_install(&ruleset::build(&cfg), &Current::default());
        let golden = root.join("tests/golden").join(name).with_extension("nft");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &text).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                golden.display()
            )
        });
        assert!(
            text == want,
            "{name} renders differently from {}; if intended, UPDATE_GOLDEN=1 and review the diff",
            golden.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
}
