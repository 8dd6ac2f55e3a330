//! `[baseline]`: when the last hour's count of a rule is an anomaly (how
//! far over the usual, from how many packets on, after how many days of
//! history). The counting itself is `core::baseline`.

use crate::units::Invalid;
use serde::Deserialize;

/// Days of history kept and averaged over.
pub const DAYS: u32 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Baseline {
    /// `over = "300%"`: the last hour is an anomaly above this share (in
    /// percent) of the mean of the same hour over the past 30 days.
    pub over_percent: u32,
    /// The last hour must count at least this many (lines, bans, scans):
    /// a quiet host's 3 packets instead of 1 are no anomaly.
    pub floor: u64,
    /// Days of history needed before anything is called an anomaly.
    pub min_days: u32,
}

impl Default for Baseline {
    fn default() -> Baseline {
        Baseline {
            over_percent: 300,
            floor: 100,
            min_days: 7,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBaseline {
    over: Option<String>,
    floor: Option<u64>,
    min_days: Option<u32>,
}

impl RawBaseline {
    pub fn validate(self) -> Result<Baseline, Invalid> {
        let d = Baseline::default();
        let over_percent = match &self.over {
            None => d.over_percent,
            Some(s) => s
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u32>().ok())
                .filter(|n| (101..=100_000).contains(n))
                .ok_or_else(|| {
                    Invalid(format!(
                        "[baseline] over = \"{s}\"; fix: a percentage from \"101%\" to \"100000%\", such as \"300%\""
                    ))
                })?,
        };
        let floor = self.floor.unwrap_or(d.floor);
        if floor == 0 || floor > 1_000_000_000 {
            return Err(Invalid(format!(
                "[baseline] floor = {floor}; fix: 1 to 1000000000 (the least count of an hour that can be an anomaly)"
            )));
        }
        let min_days = self.min_days.unwrap_or(d.min_days);
        if !(1..=DAYS).contains(&min_days) {
            return Err(Invalid(format!(
                "[baseline] min_days = {min_days}; fix: 1 to {} (days of history before an hour can be an anomaly)",
                DAYS
            )));
        }
        Ok(Baseline {
            over_percent,
            floor,
            min_days,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Baseline, Invalid> {
        toml::from_str::<RawBaseline>(t).unwrap().validate()
    }

    #[test]
    fn over_is_a_percentage_and_bad_values_name_the_fix() {
        assert_eq!(parse("").unwrap(), Baseline::default());
        let b = parse("over = \"250%\"\nfloor = 20\nmin_days = 3").unwrap();
        assert_eq!((b.over_percent, b.floor, b.min_days), (250, 20, 3));
        for bad in [
            "over = \"3\"",
            "over = \"100%\"",
            "over = \"x%\"",
            "floor = 0",
            "min_days = 31",
        ] {
            let e = parse(bad).unwrap_err().0;
            assert!(e.contains("[baseline]") && e.contains("fix:"), "{bad}: {e}");
        }
        assert!(toml::from_str::<RawBaseline>("overr = \"1%\"").is_err());
    }
}
