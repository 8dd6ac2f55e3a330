//! The offline packet source: classic pcap files (read in place by
//! `pcap_legacy`) and pcapng files (through pcap-parser, which streams them
//! through a fixed buffer), with each packet's own timestamp as the clock.

use crate::core::capture::packet::Link;
use crate::ports::{Frame, PacketSource, Received, AHEAD};
use crate::sys::pcap_legacy::{self, Legacy, Stop};
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

const BUFFER: usize = 1 << 20;
const PEEK: usize = 4096;
/// Frames handed over per receive call.
const BATCH: usize = 64;

/// Why a capture file cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open capture file {}: {err}; fix: check the path and its permissions", path.display())]
    Open { path: PathBuf, err: io::Error },
    #[error("capture file {} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{} is not a pcap or pcapng file ({why}); fix: give a file written by tcpdump -w or Wireshark", path.display())]
    NotPcap { path: PathBuf, why: String },
    #[error("{}: cannot read on ({why})", path.display())]
    Read { path: PathBuf, why: String },
    #[error("{}: damaged capture file after byte {at} ({why})", path.display())]
    Damaged {
        path: PathBuf,
        at: usize,
        why: String,
    },
}

/// Per pcapng interface: link type and timestamp resolution/offset.
struct Iface {
    link: Option<Link>,
    linktype: i32,
    resolution: u64,
    offset: i64,
}

/// Counters of what a replay skipped.
#[derive(Debug, Default)]
pub struct Skipped {
    /// Frames on links we cannot parse (and their link type).
    pub other_link: u64,
    pub linktypes: Vec<i32>,
}

/// Classic pcap files are read in place (`pcap_legacy`); pcapng ones
/// through pcap-parser's reader.
enum Input {
    Classic(Legacy),
    Ng(Box<dyn PcapReaderIterator>),
}

pub struct Pcap {
    path: PathBuf,
    input: Input,
    /// pcapng only: its interfaces, and the frames copied out of the reader.
    ifaces: Vec<Iface>,
    pub skipped: Skipped,
    /// pcapng only (a classic reader keeps its own): the file ended inside
    /// a block starting at this byte (cut short).
    cut_at: Option<u64>,
    done: bool,
    batch: Batch,
}

impl Pcap {
    pub fn open(path: &Path) -> Result<Pcap, ReplayError> {
        let mut file = File::open(path).map_err(|err| ReplayError::Open {
            path: path.to_path_buf(),
            err,
        })?;
        // The first bytes tell a classic file from pcapng; read, not
        // sought back over, so that a pipe works too. A few KiB of them,
        // because pcap-parser tells pcapng from its first read alone.
        let mut first = Vec::with_capacity(PEEK);
        (&mut file)
            .take(PEEK as u64)
            .read_to_end(&mut first)
            .map_err(|err| ReplayError::Open {
                path: path.to_path_buf(),
                err,
            })?;
        let input = match pcap_legacy::Header::parse(&first) {
            Some(h) => Input::Classic(Legacy::new(file, h, &first)),
            _ => match pcap_parser::create_reader(BUFFER, io::Cursor::new(first).chain(file)) {
                Ok(r) => Input::Ng(r),
                Err(PcapError::Eof) => {
                    return Err(ReplayError::Empty {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) => {
                    return Err(ReplayError::NotPcap {
                        path: path.to_path_buf(),
                        why: format!("{e:?}"),
                    })
                }
            },
        };
        Ok(Pcap {
            path: path.to_path_buf(),
            input,
            ifaces: Vec::new(),
            skipped: Skipped::default(),
            cut_at: None,
            done: false,
            batch: Batch::default(),
        })
    }

    /// Where the file ended inside a record, if it did (read once the
    /// replay is over).
    pub fn cut_at(&self) -> Option<u64> {
        match &self.input {
            Input::Classic(l) => l.cut_at,
            Input::Ng(_) => self.cut_at,
        }
    }

    /// The next frames of a classic file, read in place.
    fn next_fast(&mut self, f: &mut dyn FnMut(Frame)) -> Result<(usize, bool), ReplayError> {
        let Input::Classic(l) = &mut self.input else {
            return Ok((0, false));
        };
        match l.recv(f) {
            Ok((n, more)) if l.link().is_none() => {
                skip(&mut self.skipped, l.header.linktype, n as u64);
                Ok((0, more))
            }
            Ok(got) => Ok(got),
            Err(Stop::Io(e)) => Err(ReplayError::Read {
                path: self.path.clone(),
                why: e.to_string(),
            }),
            Err(Stop::Damaged { at, why }) => Err(ReplayError::Damaged {
                path: self.path.clone(),
                at: at as usize,
                why,
            }),
        }
    }

    /// Up to BATCH frames in file order; Ok(false) at the end. They are
    /// copied out of the reader's buffer first (which lends one at a time),
    /// so that each can be handed over with the one AHEAD of it.
    fn next_batch(&mut self, f: &mut dyn FnMut(Frame)) -> Result<(usize, bool), ReplayError> {
        self.batch.bytes.clear();
        self.batch.frames.clear();
        let r = self.read_batch();
        let b = &self.batch;
        let data = |i: usize| {
            let (_, at, len, _) = b.frames[i];
            &b.bytes[at..at + len]
        };
        for (i, &(link, _, _, time)) in b.frames.iter().enumerate() {
            let ahead = match b.frames.get(i + AHEAD) {
                Some(a) if a.0 == link => data(i + AHEAD),
                _ => &[],
            };
            f(Frame {
                link,
                data: data(i),
                time,
                ahead,
            });
        }
        r
    }

    fn read_batch(&mut self) -> Result<(usize, bool), ReplayError> {
        enum Step {
            Consume(usize),
            Done,
            Cut,
            Refill,
            Fail(String),
        }
        let mut n = 0;
        let Input::Ng(reader) = &mut self.input else {
            return Ok((0, false));
        };
        while n < BATCH {
            // The reader's errors borrow its buffer: turn each answer into an
            // owned step before touching the reader again.
            let step = match reader.next() {
                Ok((used, block)) => match block {
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        self.ifaces.clear();
                        Step::Consume(used)
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        self.ifaces.push(Iface {
                            link: Link::from_linktype(idb.linktype.0),
                            linktype: idb.linktype.0,
                            resolution: idb.ts_resolution().unwrap_or(1_000_000),
                            offset: idb.ts_offset(),
                        });
                        Step::Consume(used)
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        match self.ifaces.get(epb.if_id as usize) {
                            None => Step::Fail(format!(
                                "packet for interface {} that the file never described",
                                epb.if_id
                            )),
                            Some(i) => {
                                let (secs, frac) =
                                    epb.decode_ts(i.offset.max(0) as u64, i.resolution);
                                let time = u64::from(secs) * 1_000_000
                                    + u64::from(frac) * 1_000_000 / i.resolution.max(1);
                                let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                                match i.link {
                                    Some(link) => {
                                        keep(&mut self.batch, link, data, time);
                                        n += 1;
                                    }
                                    None => skip(&mut self.skipped, i.linktype, 1),
                                }
                                Step::Consume(used)
                            }
                        }
                    }
                    _ => Step::Consume(used),
                },
                Err(PcapError::Eof) => Step::Done,
                Err(PcapError::UnexpectedEof) => Step::Cut,
                Err(PcapError::Incomplete(_)) => Step::Refill,
                Err(e) => Step::Fail(format!("{e:?}")),
            };
            match step {
                Step::Consume(used) => reader.consume(used),
                Step::Done => return Ok((n, false)),
                Step::Cut => {
                    // A capture cut short (tcpdump killed mid-write): keep
                    // what was read, as tcpdump -r does, and say where.
                    self.cut_at = Some(reader.consumed() as u64);
                    return Ok((n, false));
                }
                Step::Refill => {
                    if reader.reader_exhausted() {
                        self.cut_at = Some(reader.consumed() as u64);
                        return Ok((n, false));
                    }
                    if let Err(e) = reader.refill() {
                        return Err(ReplayError::Read {
                            path: self.path.clone(),
                            why: format!("{e:?}"),
                        });
                    }
                }
                Step::Fail(why) => {
                    return Err(ReplayError::Damaged {
                        path: self.path.clone(),
                        at: reader.consumed(),
                        why,
                    })
                }
            }
        }
        Ok((n, true))
    }
}

impl PacketSource for Pcap {
    fn recv(&mut self, f: &mut dyn FnMut(Frame)) -> io::Result<Received> {
        if self.done {
            return Ok(Received::End);
        }
        let (n, more) = if matches!(self.input, Input::Classic(_)) {
            self.next_fast(f)
        } else {
            self.next_batch(f)
        }
        .map_err(io::Error::other)?;
        self.done = !more;
        Ok(if n == 0 && !more {
            Received::End
        } else {
            Received::Frames(n)
        })
    }
}

/// Frames copied out of the reader's buffer: (link, start, length, time).
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    frames: Vec<(Link, usize, usize, u64)>,
}

fn keep(b: &mut Batch, link: Link, data: &[u8], time: u64) {
    b.frames.push((link, b.bytes.len(), data.len(), time));
    b.bytes.extend_from_slice(data);
}

/// `n` frames of link type `lt` skipped.
fn skip(s: &mut Skipped, lt: i32, n: u64) {
    s.other_link += n;
    if !s.linktypes.contains(&lt) {
        s.linktypes.push(lt);
    }
}
