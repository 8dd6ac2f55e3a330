//! Classic (libpcap) capture files read in place: records are parsed
//! straight out of a read buffer and handed over as slices of it,
//! a buffer's worth per call. Through pcap-parser each frame was lent one
//! at a time and copied into a batch so that it could be handed over with
//! the one AHEAD of it: perf put the reader, the copy and the batch at 18 %
//! of a replay. pcapng files still go through pcap-parser (`sys::pcap`).

use crate::core::capture::packet::Link;
use crate::ports::{Frame, AHEAD};
use std::fs::File;
use std::io::{self, Read};

/// The read buffer: room for any record (a snap length is at most 256 KiB
/// in practice), and small enough to stay in L2, so that the scan for
/// whole records brings in the lines the frames are then parsed from (a
/// 4 MiB buffer and two passes over it cost 13 % more).
const BUFFER: usize = 1 << 20;
const FILE_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;
/// libpcap's largest snap length: a record longer than this (and than the
/// file's own snap length) is a damaged length field, not a frame.
const MAX_SNAP: usize = 262_144;

/// What the file header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Written on a machine of the other byte order.
    pub swapped: bool,
    /// Fractions are nanoseconds (magic a1b23c4d), not microseconds.
    pub nanos: bool,
    pub linktype: i32,
    /// The longest record the file may hold: its snap length, at least
    /// libpcap's 256 KiB (some writers put 65535 there and more in it).
    pub max_record: usize,
}

impl Header {
    /// The header of a classic pcap file, or None (pcapng, or not a capture).
    pub fn parse(b: &[u8]) -> Option<Header> {
        let magic = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
        let (swapped, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            _ => return None,
        };
        let h = Header {
            swapped,
            nanos,
            linktype: 0,
            max_record: 0,
        };
        let linktype = h.u32(b.get(20..24)?) as i32;
        let snaplen = h.u32(b.get(16..20)?) as usize;
        let max_record = snaplen.clamp(MAX_SNAP, BUFFER - RECORD_HEADER);
        Some(Header {
            linktype,
            max_record,
            ..h
        })
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a: [u8; 4] = b[..4].try_into().expect("four bytes");
        if self.swapped {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
}

/// Why a read stopped short.
#[derive(Debug)]
pub enum Stop {
    Io(io::Error),
    /// A record that cannot be one, at this byte of the file.
    Damaged {
        at: u64,
        why: String,
    },
}

pub struct Legacy {
    file: File,
    pub header: Header,
    link: Option<Link>,
    buf: Vec<u8>,
    /// Unread bytes are buf[start..end]; buf[0] is at file offset `base`.
    start: usize,
    end: usize,
    base: u64,
    eof: bool,
    /// (offset in buf, length, time) of the records of the current call.
    records: Vec<(usize, usize, u64)>,
    /// The file ended inside a record that starts at this byte.
    pub cut_at: Option<u64>,
}

impl Legacy {
    /// `file` read from its start; `first` holds its first bytes, already
    /// read, with the file header among them.
    pub fn new(file: File, header: Header, first: &[u8]) -> Legacy {
        let mut buf = vec![0; BUFFER.max(first.len())];
        buf[..first.len()].copy_from_slice(first);
        Legacy {
            file,
            header,
            link: Link::from_linktype(header.linktype),
            buf,
            start: FILE_HEADER.min(first.len()),
            end: first.len(),
            base: 0,
            eof: false,
            records: Vec::new(),
            cut_at: None,
        }
    }

    /// The link the file's frames are on (None: one capture cannot parse).
    pub fn link(&self) -> Option<Link> {
        self.link
    }

    /// Hand over every whole record in the buffer, after one refill when it
    /// holds none. Ok(n, false) at the end of the file. A record cut short
    /// by the end (tcpdump killed mid-write) is left out and its offset kept
    /// in `cut_at`, for a warning; tcpdump -r likewise keeps the records
    /// before it. A record longer than the file's snap length is damage.
    /// Frames of a link capture cannot parse are counted, not handed over.
    pub fn recv(&mut self, f: &mut dyn FnMut(Frame)) -> Result<(usize, bool), Stop> {
        let mut n = self.scan()?;
        if n == 0 && !self.eof {
            self.refill().map_err(Stop::Io)?;
            n = self.scan()?;
        }
        if n == 0 {
            if self.start < self.end {
                self.cut_at = Some(self.base + self.start as u64);
            }
            self.start = self.end;
            return Ok((0, false));
        }
        let records = &self.records;
        if let Some(link) = self.link {
            let buf = &self.buf;
            for (i, &(o, l, time)) in records.iter().enumerate() {
                let ahead = records
                    .get(i + AHEAD)
                    .map_or(&[][..], |&(a, al, _)| &buf[a..a + al]);
                f(Frame {
                    link,
                    data: &buf[o..o + l],
                    time,
                    ahead,
                });
            }
        }
        self.start = records.last().map_or(self.start, |&(o, l, _)| o + l);
        Ok((n, true))
    }

    /// The whole records that follow `start` (headers and data in the
    /// buffer), into `records`, in one pass; damage when a record's length
    /// cannot be a frame's.
    fn scan(&mut self) -> Result<usize, Stop> {
        self.records.clear();
        let h = self.header;
        let mut at = self.start;
        while self.end - at >= RECORD_HEADER {
            let r = &self.buf[at..at + RECORD_HEADER];
            let len = h.u32(&r[8..]) as usize;
            if len > h.max_record {
                // The records before it go first; the error comes when it
                // is the next one.
                if !self.records.is_empty() {
                    break;
                }
                return Err(Stop::Damaged {
                    at: self.base + at as u64,
                    why: format!(
                        "a record of {len} bytes, longer than the file's snap length ({})",
                        h.max_record
                    ),
                });
            }
            let end = at + RECORD_HEADER + len;
            if end > self.end {
                break;
            }
            let secs = u64::from(h.u32(&r[0..]));
            let frac = u64::from(h.u32(&r[4..]));
            let frac = if h.nanos { frac / 1000 } else { frac };
            self.records
                .push((at + RECORD_HEADER, len, secs * 1_000_000 + frac));
            at = end;
        }
        Ok(self.records.len())
    }

    /// Move the unread tail to the front and read until the buffer is full
    /// or the file ends.
    fn refill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.base += self.start as u64;
        self.end -= self.start;
        self.start = 0;
        while self.end < self.buf.len() {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A classic pcap file of these (time µs, bytes) records.
    fn file(swapped: bool, nanos: bool, linktype: u32, recs: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let w32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if swapped {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        let mut v = Vec::new();
        w32(&mut v, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        v.extend_from_slice(&if swapped { [0, 2, 0, 4] } else { [2, 0, 4, 0] });
        w32(&mut v, 0);
        w32(&mut v, 0);
        w32(&mut v, 65535);
        w32(&mut v, linktype);
        for (t, data) in recs {
            w32(&mut v, (t / 1_000_000) as u32);
            w32(
                &mut v,
                (if nanos {
                    t % 1_000_000 * 1000
                } else {
                    t % 1_000_000
                }) as u32,
            );
            w32(&mut v, data.len() as u32);
            w32(&mut v, data.len() as u32);
            v.extend_from_slice(data);
        }
        v
    }

    /// A frame as (time, data, ahead).
    type Got = (u64, Vec<u8>, Vec<u8>);

    /// Every frame of `bytes`, and how the reading ended.
    fn read(bytes: &[u8]) -> (Vec<Got>, Result<(), String>) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(24)).unwrap();
        let h = Header::parse(bytes).expect("a classic header");
        let mut l = Legacy::new(f, h, &bytes[..24]);
        let mut got = Vec::new();
        loop {
            match l.recv(&mut |fr| got.push((fr.time, fr.data.to_vec(), fr.ahead.to_vec()))) {
                Ok((_, true)) => {}
                Ok((_, false)) => {
                    let end = l.cut_at.map_or(Ok(()), |at| Err(format!("cut at {at}")));
                    return (got, end);
                }
                Err(Stop::Damaged { at, why }) => return (got, Err(format!("{at}: {why}"))),
                Err(Stop::Io(e)) => return (got, Err(e.to_string())),
            }
        }
    }

    fn records(n: usize) -> Vec<(u64, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    1_700_000_000_000_000 + i as u64 * 7,
                    vec![i as u8; 40 + i % 90],
                )
            })
            .collect()
    }

    #[test]
    fn every_byte_order_and_resolution_reads_the_same_frames() {
        let recs = records(10);
        for (swapped, nanos) in [(false, false), (false, true), (true, false), (true, true)] {
            let bytes = file(swapped, nanos, 1, &recs);
            let h = Header::parse(&bytes).unwrap();
            assert_eq!((h.swapped, h.nanos, h.linktype), (swapped, nanos, 1));
            let (got, end) = read(&bytes);
            assert_eq!(end, Ok(()));
            assert_eq!(got.len(), 10);
            for (i, (t, d, a)) in got.iter().enumerate() {
                assert_eq!((*t, d), (recs[i].0, &recs[i].1), "frame {i}");
                let ahead = recs.get(i + AHEAD).map_or(&[][..], |r| &r.1[..]);
                assert_eq!(&a[..], ahead, "ahead of frame {i}");
            }
        }
        assert_eq!(Header::parse(b"\x0a\x0d\x0d\x0a not a classic file"), None);
    }

    /// Far more than one buffer: records cut by every refill come whole.
    #[test]
    fn records_across_refills_come_whole_and_in_order() {
        let recs = records(120_000);
        let bytes = file(false, false, 1, &recs);
        assert!(bytes.len() > 2 * BUFFER);
        let (got, end) = read(&bytes);
        assert_eq!(end, Ok(()));
        assert_eq!(got.len(), recs.len());
        assert!(got.iter().zip(&recs).all(|(g, r)| g.0 == r.0 && g.1 == r.1));
    }

    #[test]
    fn a_file_cut_short_keeps_its_whole_records_and_says_where() {
        let recs = records(5);
        let bytes = file(false, false, 1, &recs);
        let last = bytes.len() - 16 - recs[4].1.len();
        // Inside the last record's data, then inside its header.
        for cut in [bytes.len() - 3, last + 6] {
            let (got, end) = read(&bytes[..cut]);
            assert_eq!(end, Err(format!("cut at {last}")));
            assert_eq!(got.len(), 4, "cut at {cut}");
        }
    }

    /// A length field no frame can have, with the rest of the file behind
    /// it (small, or more than a buffer): damage, with where, never the
    /// rest of the file dropped in silence.
    #[test]
    fn a_record_longer_than_the_snap_length_is_damage() {
        for (len, tail) in [(0x00ff_ffffu32, 1000), (100_000_000, BUFFER + 100)] {
            let mut bytes = file(false, false, 1, &records(3));
            let at = bytes.len();
            bytes.extend_from_slice(&file(false, false, 1, &[(1, vec![0; 10])])[24..40]);
            bytes[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
            bytes.resize(bytes.len() + tail, 0);
            let (got, end) = read(&bytes);
            assert_eq!(got.len(), 3);
            assert_eq!(
                end,
                Err(format!(
                    "{at}: a record of {len} bytes, longer than the file's snap length (262144)"
                ))
            );
        }
    }
}
