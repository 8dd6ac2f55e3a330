//! Connection floods (pure): plain SYNs to the config's TCP services, which
//! the scan detector counts apart, watched here. One source opening
//! connections to one service faster than `[capture.flood] syn_rate`,
//! sustained over `over`, is a connection flood, banned into the flood set
//! for the profile's durations. Many sources together over `syn_flood_rate`
//! on one service is a SYN flood: reported, never banned, since such sources
//! are forged (each sends a SYN or two; none crosses the per-source rate).
//!
//! Counting is a sliding estimate over two buckets of `over` each (the
//! previous bucket weighted by how much of it still lies in the window), so
//! memory is a few words per (source, port) and per port. Sources live in
//! the scan detector's segmented-LRU table: a forged one-SYN source stays
//! in probation and is the first to go when the table is full, while a
//! source that keeps sending SYNs is promoted and survives the flood.

use super::detect::Micros;
use super::table::{Sightings, Table};
use std::collections::HashMap;

/// Service ports counted per source; a source on more of them replaces its
/// least recently used one.
const PORTS: usize = 4;

#[derive(Clone, Copy, Default)]
struct Ports {
    ports: [(u16, Counter, Micros); PORTS],
    len: u8,
}

impl Ports {
    fn find(&mut self, port: u16) -> Option<&mut Counter> {
        self.ports[..usize::from(self.len)]
            .iter_mut()
            .find(|p| p.0 == port)
            .map(|p| &mut p.1)
    }

    /// The counter of `port`, made (or taking the stalest slot) if new.
    fn get(&mut self, port: u16, now: Micros) -> &mut Counter {
        let n = usize::from(self.len);
        let i = match self.ports[..n].iter().position(|p| p.0 == port) {
            Some(i) => i,
            None if n < PORTS => {
                self.len += 1;
                self.ports[n] = (port, Counter::default(), now);
                n
            }
            None => {
                let i = (0..PORTS).min_by_key(|&i| self.ports[i].2).unwrap_or(0);
                self.ports[i] = (port, Counter::default(), now);
                i
            }
        };
        self.ports[i].2 = now;
        &mut self.ports[i].1
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FloodSettings {
    /// SYNs a second from one source to one service port.
    pub per_source: f64,
    /// SYNs a second to one service port from all sources together.
    pub per_port: f64,
    pub over: Micros,
    /// Most sources tracked at once.
    pub capacity: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Flood {
    /// One source (its tracking key) over the per-source rate.
    Source {
        key: u128,
        port: u16,
        time: Micros,
        /// SYNs counted within `over` (estimated).
        syns: u32,
    },
    /// All sources together over the per-port rate.
    Port { port: u16, time: Micros, syns: u32 },
}

#[derive(Clone, Copy, Debug, Default)]
struct Counter {
    start: Micros,
    cur: u32,
    prev: u32,
    quiet_until: Micros,
}

impl Counter {
    /// Count one SYN at `now`; the estimate of SYNs within the last `over`.
    fn add(&mut self, now: Micros, over: Micros) -> f64 {
        let over = over.max(1);
        if now >= self.start.saturating_add(2 * over) || now < self.start {
            *self = Counter {
                start: now,
                quiet_until: self.quiet_until,
                ..Counter::default()
            };
        } else if now >= self.start + over {
            self.prev = self.cur;
            self.cur = 0;
            self.start += over;
        }
        self.cur = self.cur.saturating_add(1);
        let frac = (now - self.start) as f64 / over as f64;
        f64::from(self.prev) * (1.0 - frac) + f64::from(self.cur)
    }
}

pub struct FloodTracker {
    settings: FloodSettings,
    sources: Table<Ports>,
    /// A (source, port)'s first SYN, until its second: one SYN is never a
    /// flood (the config allows at least 2 per `over`), and a spoofed flood
    /// to a service then costs no table entry per forged source.
    first: Sightings<Micros>,
    /// Per service port: the config's services, a handful (foldhash: the
    /// default SipHash cost more than the counting).
    ports: HashMap<u16, Counter, foldhash::fast::RandomState>,
}

impl FloodTracker {
    pub fn new(settings: FloodSettings) -> FloodTracker {
        FloodTracker {
            sources: Table::new(settings.capacity),
            first: Sightings::new(settings.capacity),
            settings,
            ports: HashMap::default(),
        }
    }

    pub fn settings(&self) -> &FloodSettings {
        &self.settings
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.len()
    }

    #[cfg(test)]
    fn evicted(&self) -> u64 {
        self.sources.evicted()
    }

    /// A plain SYN from `key` to service `port` at `now`.
    pub fn syn(&mut self, key: u128, port: u16, now: Micros, out: &mut Vec<Flood>) {
        let over = self.settings.over;
        let secs = over as f64 / 1e6;
        let p = self.ports.entry(port).or_default();
        let n = p.add(now, over);
        if n > self.settings.per_port * secs && now >= p.quiet_until {
            // A long flood is told once a minute (or once per `over`).
            p.quiet_until = now.saturating_add(over.max(60 * 1_000_000));
            out.push(Flood::Port {
                port,
                time: now,
                syns: n.round() as u32,
            });
        }
        let (ports, first) = match self.sources.find(key) {
            Some(i) => (self.sources.touch_at(i), None),
            None => match self.first.take_or_record((key, port), || now) {
                None => return,
                Some(t0) => (self.sources.touch(key, Ports::default).0, Some(t0)),
            },
        };
        let c = ports.get(port, now);
        if let Some(t0) = first.filter(|&t0| t0 >= now.saturating_sub(over)) {
            c.add(t0, over);
        }
        let n = c.add(now, over);
        let flood = n > self.settings.per_source * secs && now >= c.quiet_until;
        if flood {
            // Told once; the caller quiets it for the ban's length.
            c.quiet_until = now.saturating_add(over);
        }
        if n >= 2.0 {
            // A second SYN within the window: no longer a one-packet source.
            self.sources.promote(key);
        }
        if flood {
            out.push(Flood::Source {
                key,
                port,
                time: now,
                syns: n.round() as u32,
            });
        }
    }

    /// Say nothing more about (`key`, `port`) until `until` (it is banned).
    pub fn quiet(&mut self, key: u128, port: u16, until: Micros) {
        if let Some(c) = self.sources.get_mut(key).and_then(|p| p.find(port)) {
            c.quiet_until = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::capture::detect::SECOND;

    fn tracker(capacity: usize) -> FloodTracker {
        FloodTracker::new(FloodSettings {
            per_source: 100.0,
            per_port: 1000.0,
            over: 5 * SECOND,
            capacity,
        })
    }

    /// `n` SYNs from `key` to port 80, evenly `gap` µs apart from `t0`.
    fn run(t: &mut FloodTracker, key: u128, t0: Micros, n: u64, gap: Micros) -> Vec<Flood> {
        let mut out = Vec::new();
        for i in 0..n {
            t.syn(key, 80, t0 + i * gap, &mut out);
        }
        out
    }

    #[test]
    fn a_source_over_the_rate_is_told_once_and_one_at_the_rate_never() {
        let mut t = tracker(1000);
        // 200 a second for 10 s: over 500 within 5 s after 2.5 s.
        let out = run(&mut t, 1, 0, 2000, SECOND / 200);
        let sources: Vec<_> = out
            .iter()
            .filter_map(|f| match f {
                Flood::Source { time, syns, .. } => Some((*time, *syns)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sources.len(),
            2,
            "once per `over` until quieted: {sources:?}"
        );
        assert!(
            (2_400_000..=2_600_000).contains(&sources[0].0),
            "{sources:?}"
        );
        assert_eq!(sources[0].1, 501);
        // Just under the rate (99/s) for 60 s: never over it.
        let mut t = tracker(1000);
        assert_eq!(run(&mut t, 2, 0, 6000, SECOND / 99), vec![]);
        // A quieted source stays quiet until the given time.
        let mut t = tracker(1000);
        let first = run(&mut t, 3, 0, 600, SECOND / 200);
        assert_eq!(first.len(), 1);
        t.quiet(3, 80, 3600 * SECOND);
        assert_eq!(run(&mut t, 3, 3 * SECOND, 4000, SECOND / 200), vec![]);
    }

    #[test]
    fn a_burst_at_the_edge_of_a_bucket_still_counts_and_old_buckets_fade() {
        // A SYN opens the bucket at 0; 300 just before it ends, 300 just
        // after: 600 within 0.2 s, across two buckets.
        let mut t = tracker(1000);
        let mut out = run(&mut t, 1, 0, 1, 1);
        out.extend(run(&mut t, 1, 4_800_000, 300, 500));
        out.extend(run(&mut t, 1, 5_000_000, 300, 500));
        assert!(matches!(out.as_slice(), [Flood::Source { .. }]), "{out:?}");
        // 400 then, 30 s later, 400 more: never 500 within 5 s.
        let mut t = tracker(1000);
        let mut out = run(&mut t, 2, 0, 400, 1000);
        out.extend(run(&mut t, 2, 30 * SECOND, 400, 1000));
        assert_eq!(out, vec![]);
    }

    #[test]
    fn spoofed_sources_make_a_port_flood_and_no_source_flood() {
        let mut t = tracker(10_000);
        let mut out = Vec::new();
        // 100 000 sources, one SYN each, 20 000 a second.
        for i in 0..100_000u64 {
            t.syn(u128::from(i) + 100, 80, i * 50, &mut out);
        }
        assert!(out
            .iter()
            .all(|f| matches!(f, Flood::Port { port: 80, .. })));
        // Once per `over` (5 s) over the 5 s of the flood.
        assert_eq!(out.len(), 1, "{out:?}");
        // One SYN each: the forged sources stayed first sightings, none
        // entered the table.
        assert_eq!((t.tracked(), t.evicted()), (0, 0));
        // A real flooder in the middle of a forged flood is caught: its
        // second SYN protects it from the forged sources' churn.
        let mut t = tracker(10_000);
        let mut out = Vec::new();
        for i in 0..200_000u64 {
            t.syn(u128::from(i) + 1000, 80, i * 50, &mut out);
            if i % 100 == 0 {
                t.syn(7, 80, i * 50, &mut out); // 200 a second
            }
        }
        assert!(
            out.iter()
                .any(|f| matches!(f, Flood::Source { key: 7, .. })),
            "{out:?}"
        );
        assert!(!out
            .iter()
            .any(|f| matches!(f, Flood::Source { key, .. } if *key != 7)));
    }
}
