//! Reading a log for one time window (the file-system edge of `scan`).
//!
//! A cron run wants the last 30 minutes of a log that may hold a day, so the
//! window's start is found by a binary search over byte offsets (rsyslog
//! writes lines nearly in time order), widened by [`MARGIN`] for lines that
//! arrive slightly out of order; the same is done for the window's end when
//! `--now` points into the past. The part between is read with `pread` into a
//! fixed buffer per thread (never the whole file, never `mmap`: a log
//! truncated by logrotate's copytruncate under an mmap would kill us with
//! SIGBUS) and split over the CPUs when it is large.

use crate::core::logline::Parser;
use crate::core::scan::count::{Tally, TypeFilter};
use crate::core::scan::FileRead;
use memchr::memmem::Finder;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Slack around the window for lines written out of time order (seconds).
pub const MARGIN: i64 = 300;
/// Read size per thread.
const BUF: usize = 1 << 20;
/// Ranges smaller than this are not worth a second thread.
const SPLIT_MIN: u64 = 4 << 20;

/// Read `path` for the parser's window, and `path.1` too when the window
/// starts before `path`'s first line (just after a rotation).
pub fn read_log(
    path: &Path,
    parser: &Parser,
    filter: TypeFilter,
) -> io::Result<(Tally, Vec<FileRead>)> {
    let file = open(path)?;
    let (mut tally, read) = read_file(&file, path, parser, filter)?;
    // Reading from the first byte means the window starts at or before the
    // file's first line: the lines before that are in the rotated copy.
    let starts_late = read.from == 0;
    let mut reads = vec![read];
    let rotated = rotated_name(path);
    if starts_late && rotated.is_file() {
        let old = open(&rotated)?;
        let mut magic = [0u8; 2];
        if old.read_at(&mut magic, 0)? == 2 && magic == [0x1f, 0x8b] {
            return Err(io::Error::other(format!(
                "{} is compressed and the window reaches into it; fix: drop `compress` from the logrotate config or add `delaycompress` (the shipped logrotate/iptables does not compress)",
                rotated.display()
            )));
        }
        let (t, r) = read_file(&old, &rotated, parser, filter)?;
        tally.merge(t);
        reads.insert(0, r);
    }
    Ok((tally, reads))
}

fn rotated_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

fn open(path: &Path) -> io::Result<File> {
    let f = File::open(path)?;
    if f.metadata()?.is_dir() {
        return Err(io::Error::other("is a directory"));
    }
    Ok(f)
}

/// The tally of one file's window, and what was read.
fn read_file(
    file: &File,
    path: &Path,
    parser: &Parser,
    filter: TypeFilter,
) -> io::Result<(Tally, FileRead)> {
    let size = file.metadata()?.len();
    let mut p = parser.clone();
    let (start, end) = p.window();
    let from = search(file, size, &mut p, |t| t >= start.saturating_sub(MARGIN))?;
    let to = search(file, size, &mut p, |t| t > end.saturating_add(MARGIN))?;
    let to = to.max(from);
    let cuts = split(file, from, to)?;
    let parts: Vec<io::Result<(Tally, bool)>> = std::thread::scope(|s| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0], w[1]);
                s.spawn(move || read_range(file, a, b, parser, filter))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .collect()
    });
    let mut tally = Tally::new(filter);
    let mut shrank = false;
    for part in parts {
        let (t, s) = part?;
        tally.merge(t);
        shrank |= s;
    }
    Ok((
        tally,
        FileRead {
            path: path.to_owned(),
            size,
            from,
            to,
            shrank,
        },
    ))
}

/// The first line starting at or after `at` that has a readable timestamp:
/// (where it starts, its time). Looks at most 1 MiB ahead.
fn probe(file: &File, at: u64, p: &mut Parser) -> io::Result<Option<(u64, i64)>> {
    // Start one byte early: if that byte ends a line, a line starts at `at`.
    let base = at.saturating_sub(1);
    let mut want = 4096;
    loop {
        let mut buf = vec![0u8; want];
        let n = read_full(file, &mut buf, base)?;
        let data = &buf[..n];
        let mut i = 0;
        if at > 0 {
            match memchr::memchr(b'\n', data) {
                Some(j) => i = j + 1,
                None if n < want => return Ok(None),
                None => {
                    if want >= BUF {
                        return Ok(None);
                    }
                    want *= 4;
                    continue;
                }
            }
        }
        while let Some(j) = memchr::memchr(b'\n', &data[i..]) {
            if let Some(t) = p.timestamp(&data[i..i + j]) {
                return Ok(Some((base + i as u64, t)));
            }
            i += j + 1;
        }
        if n < want {
            // The last line has no newline yet (being written): still a line.
            return Ok(p.timestamp(&data[i..]).map(|t| (base + i as u64, t)));
        }
        if want >= BUF {
            return Ok(None);
        }
        want *= 4;
    }
}

/// The start of the first line whose time satisfies `after` (lines assumed
/// in order), or the file size if none does.
fn search(file: &File, size: u64, p: &mut Parser, after: impl Fn(i64) -> bool) -> io::Result<u64> {
    let (mut lo, mut hi) = (0u64, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match probe(file, mid, p)? {
            Some((line, t)) if line < hi && !after(t) => lo = line + 1,
            _ => hi = mid,
        }
    }
    line_start(file, lo, size)
}

/// The start of the first line at or after `at`.
fn line_start(file: &File, at: u64, size: u64) -> io::Result<u64> {
    if at == 0 || at >= size {
        return Ok(at.min(size));
    }
    let mut pos = at - 1;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(file, &mut buf, pos)?;
        if let Some(j) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(pos + j as u64 + 1);
        }
        if n < buf.len() {
            return Ok(size);
        }
        pos += n as u64;
    }
}

/// Cut points at line starts splitting [from, to) into one range per CPU.
fn split(file: &File, from: u64, to: u64) -> io::Result<Vec<u64>> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u64;
    let parts = ((to - from) / SPLIT_MIN).clamp(1, cpus);
    let mut cuts = vec![from];
    for k in 1..parts {
        let c = line_start(file, from + k * (to - from) / parts, to)?;
        if c > *cuts.last().expect("non-empty") && c < to {
            cuts.push(c);
        }
    }
    cuts.push(to);
    Ok(cuts)
}

fn read_full(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Tally [from, to) of a file; true when the file shrank under us.
fn read_range(
    file: &File,
    from: u64,
    to: u64,
    parser: &Parser,
    filter: TypeFilter,
) -> io::Result<(Tally, bool)> {
    let mut off = from;
    let mut shrank = false;
    let tally = feed(parser, filter, |buf| {
        let want = (buf.len() as u64).min(to - off) as usize;
        if want == 0 {
            return Ok(Fill::End);
        }
        let n = read_full(file, &mut buf[..want], off)?;
        off += n as u64;
        // Truncated (copytruncate) while we read: what follows may be new
        // lines at old offsets; stop rather than splice two files' bytes.
        if n < want || file.metadata()?.len() < off {
            shrank = true;
            return Ok(Fill::Shrank(n));
        }
        Ok(Fill::Data(n))
    })?;
    Ok((tally, shrank))
}

/// Tally a stream (stdin): the window filter applies, nothing is skipped.
pub fn read_stream(mut r: impl Read, parser: &Parser, filter: TypeFilter) -> io::Result<Tally> {
    feed(parser, filter, |buf| loop {
        match r.read(buf) {
            Ok(0) => return Ok(Fill::End),
            Ok(n) => return Ok(Fill::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    })
}

enum Fill {
    Data(usize),
    /// The end: a last line without a newline still counts.
    End,
    /// The last data: its whole lines count, a partial line at its end is
    /// dropped (the rest of that line is gone).
    Shrank(usize),
}

/// Fill a buffer from `fill`, hand the whole lines to the tally,
/// carry the partial last line over. A line longer than the buffer is counted
/// and skipped (no LOG line comes near that size).
fn feed(
    parser: &Parser,
    filter: TypeFilter,
    mut fill: impl FnMut(&mut [u8]) -> io::Result<Fill>,
) -> io::Result<Tally> {
    let mut p = parser.clone();
    let finder = Finder::new(p.needle()).into_owned();
    let mut tally = Tally::new(filter);
    let mut buf = vec![0u8; BUF];
    let mut carry = 0;
    let mut skipping = false;
    loop {
        let (n, last) = match fill(&mut buf[carry..])? {
            Fill::Data(n) => (n, false),
            Fill::End => break,
            Fill::Shrank(n) => (n, true),
        };
        let end = carry + n;
        let mut start = 0;
        if skipping {
            match memchr::memchr(b'\n', &buf[..end]) {
                Some(j) => {
                    skipping = false;
                    start = j + 1;
                }
                None => {
                    carry = 0;
                    if last {
                        return Ok(tally);
                    }
                    continue;
                }
            }
        }
        match memchr::memrchr(b'\n', &buf[start..end]) {
            Some(j) => {
                let last = start + j;
                tally.feed_buffer(&mut p, &finder, &buf[start..=last]);
                buf.copy_within(last + 1..end, 0);
                carry = end - last - 1;
            }
            None if end - start == buf.len() => {
                tally.lines += 1;
                skipping = true;
                carry = 0;
            }
            None => {
                buf.copy_within(start..end, 0);
                carry = end - start;
            }
        }
        if last {
            return Ok(tally);
        }
    }
    if carry > 0 && !skipping {
        tally.feed_buffer(&mut p, &finder, &buf[..carry]);
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::loggen::{self, Format, Manifest, Spec};
    use crate::units::time::Zone;
    use std::collections::BTreeSet;
    use std::io::Write;
    use std::net::IpAddr;

    const BLOCKED: [&[u8]; 2] = [b"IPTABLES-BLOCKED: ", b"IP6TABLES-BLOCKED: "];

    fn parser(spec: &Spec, zone: Zone, within: i64) -> Parser {
        Parser::new(&BLOCKED, zone, spec.end, (spec.end - within, spec.end))
    }

    fn generated(spec: &Spec) -> (Vec<u8>, Manifest) {
        let mut log = Vec::new();
        let m = loggen::generate(spec, &mut log).unwrap();
        (log, m)
    }

    fn offenders(t: &Tally, n: u64) -> BTreeSet<(IpAddr, u64)> {
        t.offenders(n)
            .into_iter()
            .map(|(a, s)| (a, s.hits))
            .collect()
    }

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn generated_offenders_are_found_exactly_from_a_file_and_a_stream() {
        let spec = Spec {
            bytes: 3 << 20,
            offenders: 7,
            ..Spec::default()
        };
        let (log, m) = generated(&spec);
        assert!(log.len() as u64 > spec.bytes / 2 && m.lines > 5000);
        let p = parser(&spec, Zone::fixed(0), spec.within);
        let want: BTreeSet<_> = m.offenders.iter().copied().collect();

        let f = file_with(&log);
        let (t, reads) = read_log(f.path(), &p, TypeFilter::Tcp).unwrap();
        assert_eq!(offenders(&t, spec.howmany), want);
        for near in &m.near_misses {
            assert!(
                t.get(near).is_some_and(|s| s.hits == spec.howmany),
                "{near}"
            );
        }
        assert!(t.malformed_total() > 0, "the generator plants cut lines");
        // Only the window (plus the margin) was read.
        assert_eq!(reads.len(), 1);
        let r = &reads[0];
        assert!(r.from > r.size / 2 && r.to == r.size && !r.shrank, "{r:?}");

        let s = read_stream(&log[..], &p, TypeFilter::Tcp).unwrap();
        assert_eq!(offenders(&s, spec.howmany), want);
        assert_eq!((s.matched, s.malformed), (t.matched, t.malformed));
        assert_eq!(s.lines, m.lines);
    }

    #[test]
    fn a_big_range_split_over_threads_gives_the_same_tally() {
        let spec = Spec {
            bytes: 12 << 20,
            span: 3600,
            within: 3600,
            howmany: 200,
            ..Spec::default()
        };
        let (log, m) = generated(&spec);
        let p = parser(&spec, Zone::fixed(0), spec.within + 10);
        let f = file_with(&log);
        let (t, reads) = read_log(f.path(), &p, TypeFilter::Tcp).unwrap();
        assert_eq!(reads[0].from, 0);
        let s = read_stream(&log[..], &p, TypeFilter::Tcp).unwrap();
        assert_eq!(
            (t.lines, t.matched, t.outside),
            (s.lines, s.matched, s.outside)
        );
        assert_eq!(t.lines, m.lines);
        assert_eq!(offenders(&t, 0), offenders(&s, 0));
        assert_eq!(
            offenders(&t, spec.howmany),
            m.offenders.iter().copied().collect()
        );
    }

    #[test]
    fn traditional_timestamps_in_local_time() {
        let spec = Spec {
            format: Format::Bsd(-5 * 3600),
            ..Spec::default()
        };
        let (log, m) = generated(&spec);
        let p = parser(&spec, Zone::fixed(-5 * 3600), spec.within);
        let f = file_with(&log);
        let (t, _) = read_log(f.path(), &p, TypeFilter::Tcp).unwrap();
        assert_eq!(
            offenders(&t, spec.howmany),
            m.offenders.iter().copied().collect()
        );
    }

    #[test]
    fn a_past_window_reads_only_its_part() {
        // "now" two hours before the log's end: the window lies inside.
        let spec = Spec {
            bytes: 2 << 20,
            ..Spec::default()
        };
        let (log, _) = generated(&spec);
        let now = spec.end - 7200;
        let p = Parser::new(&BLOCKED, Zone::fixed(0), now, (now - 1800, now));
        let f = file_with(&log);
        let (t, reads) = read_log(f.path(), &p, TypeFilter::Tcp).unwrap();
        let r = &reads[0];
        assert!(r.from > 0 && r.to < r.size, "{r:?}");
        let s = read_stream(&log[..], &p, TypeFilter::Tcp).unwrap();
        assert_eq!(t.matched, s.matched);
        assert!(t.matched > 0);
        assert_eq!(offenders(&t, 0), offenders(&s, 0));
    }

    #[test]
    fn the_rotated_file_is_read_when_the_window_reaches_into_it() {
        let spec = Spec {
            bytes: 2 << 20,
            span: 3600,
            ..Spec::default()
        };
        let (log, m) = generated(&spec);
        // Rotate in the middle of the window.
        let cut = log.len() - log.len() / 4;
        let cut = cut + memchr::memchr(b'\n', &log[cut..]).unwrap() + 1;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iptables.log");
        std::fs::write(dir.path().join("iptables.log.1"), &log[..cut]).unwrap();
        std::fs::write(&path, &log[cut..]).unwrap();
        let p = parser(&spec, Zone::fixed(0), spec.within);
        let (t, reads) = read_log(&path, &p, TypeFilter::Tcp).unwrap();
        assert_eq!(reads.len(), 2);
        assert!(reads[0].path.ends_with("iptables.log.1") && reads[0].from > 0);
        assert_eq!(
            offenders(&t, spec.howmany),
            m.offenders.iter().copied().collect()
        );

        // Compressed right away (no delaycompress): said, not misread.
        std::fs::write(dir.path().join("iptables.log.1"), [0x1f, 0x8b, 8, 0]).unwrap();
        let err = read_log(&path, &p, TypeFilter::Tcp)
            .unwrap_err()
            .to_string();
        assert!(err.contains("delaycompress"), "{err}");
    }

    #[test]
    fn a_file_that_shrank_is_reported_not_spliced() {
        let spec = Spec::default();
        let (log, _) = generated(&spec);
        let f = file_with(&log[..log.len() / 2 + 7]);
        let p = parser(&spec, Zone::fixed(0), spec.span);
        let (t, shrank) =
            read_range(f.as_file(), 0, log.len() as u64, &p, TypeFilter::Tcp).unwrap();
        assert!(shrank);
        assert!(t.lines > 0);
    }

    #[test]
    fn overlong_lines_and_an_unterminated_last_line() {
        let spec = Spec::default();
        let mut log = vec![b'x'; 3 * BUF + 10];
        log.push(b'\n');
        let (gen, m) = generated(&spec);
        log.extend_from_slice(&gen[..gen.len() - 1]); // drop the last newline
        let p = parser(&spec, Zone::fixed(0), spec.within);
        let t = read_stream(&log[..], &p, TypeFilter::Tcp).unwrap();
        assert_eq!(t.lines, m.lines + 1);
        assert_eq!(
            offenders(&t, spec.howmany),
            m.offenders.iter().copied().collect()
        );
    }

    #[test]
    fn empty_and_timeless_files() {
        let spec = Spec::default();
        let p = parser(&spec, Zone::fixed(0), spec.within);
        for content in [&b""[..], b"no time here\nnor here\n"] {
            let f = file_with(content);
            let (t, reads) = read_log(f.path(), &p, TypeFilter::Tcp).unwrap();
            assert_eq!(t.matched, 0);
            assert_eq!(reads[0].from, 0);
        }
    }
}
