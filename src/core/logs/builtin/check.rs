//! The built-ins' tests: lines in the shapes a program writes give their
//! address, kind and time, planted addresses never move it, and other
//! lines give none.

use super::rule::Builtin;
use crate::core::logline::Line;
use crate::core::logs::explain::plant_in;
use crate::core::logs::regex_source::RegexSource;
use crate::units::time::Zone;
use std::net::IpAddr;

pub fn source(b: &Builtin) -> RegexSource {
    let def = b.def();
    // 2026-11-21T10:00:01Z is now; the window is every time.
    RegexSource::new(&def, Zone::fixed(0), 1_795_255_201, (i64::MIN, i64::MAX)).unwrap()
}

/// Each line gives its address and kind, at its time, and no address
/// planted in its text moves the pattern off it; the others give none.
pub fn lines(b: &Builtin, hits: &[(&str, &str, &str, i64)], others: &[&str]) {
    lines_planted(b, hits, others, false)
}

/// [`lines`], planting only before the address when `tail_is_programs`.
pub fn lines_planted(
    b: &Builtin,
    hits: &[(&str, &str, &str, i64)],
    others: &[&str],
    tail_is_programs: bool,
) {
    let mut s = source(b);
    for (line, addr, kind, time) in hits {
        match s.parse(line.as_bytes()) {
            Line::Hit(h) => {
                assert_eq!(h.src, addr.parse::<IpAddr>().unwrap(), "{line}");
                assert_eq!(s.kinds[usize::from(h.dport.unwrap())], *kind, "{line}");
                assert_eq!(h.time, *time, "{line}");
            }
            other => panic!("{other:?}: {line}"),
        }
        let moved = plant_in(&mut s, line.as_bytes(), tail_is_programs);
        assert!(moved.is_empty(), "{line}: {moved:?}");
    }
    for line in others {
        assert!(!matches!(s.parse(line.as_bytes()), Line::Hit(_)), "{line}");
    }
}
