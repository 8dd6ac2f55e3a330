//! The offline packet source: pcap and pcapng files (through pcap-parser,
//! which streams both through a fixed buffer), with each packet's own
//! timestamp as the clock.

use super::detect::Micros;
use super::packet::Link;
use anyhow::{bail, Context, Result};
use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError};
use std::fs::File;
use std::path::Path;

const BUFFER: usize = 1 << 20;

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

/// Call `f` with every frame in the file, in file order.
pub fn replay(path: &Path, mut f: impl FnMut(Link, &[u8], Micros)) -> Result<Skipped> {
    let file = File::open(path).with_context(|| {
        format!(
            "cannot open capture file {}; fix: check the path and its permissions",
            path.display()
        )
    })?;
    let mut reader = match pcap_parser::create_reader(BUFFER, file) {
        Ok(r) => r,
        Err(PcapError::Eof) => bail!("capture file {} is empty", path.display()),
        Err(e) => bail!(
            "{} is not a pcap or pcapng file ({e:?}); fix: give a file written by tcpdump -w or Wireshark",
            path.display()
        ),
    };
    let mut skipped = Skipped::default();
    let mut legacy: Option<(Option<Link>, i32, bool)> = None;
    let mut ifaces: Vec<Iface> = Vec::new();
    enum Step {
        Consume(usize),
        Done,
        Refill,
        Fail(String),
    }
    loop {
        // The reader's errors borrow its buffer: turn each answer into an
        // owned step before touching the reader again.
        let step = match reader.next() {
            Ok((used, block)) => match block {
                PcapBlockOwned::LegacyHeader(h) => {
                    legacy = Some((
                        Link::from_linktype(h.network.0),
                        h.network.0,
                        h.is_nanosecond_precision(),
                    ));
                    Step::Consume(used)
                }
                PcapBlockOwned::Legacy(b) => {
                    let (link, lt, nanos) = legacy.unwrap_or((None, -1, false));
                    let frac = if nanos {
                        u64::from(b.ts_usec) / 1000
                    } else {
                        u64::from(b.ts_usec)
                    };
                    let t = u64::from(b.ts_sec) * 1_000_000 + frac;
                    match link {
                        Some(l) => f(l, b.data, t),
                        None => skip(&mut skipped, lt),
                    }
                    Step::Consume(used)
                }
                PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                    ifaces.clear();
                    Step::Consume(used)
                }
                PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                    ifaces.push(Iface {
                        link: Link::from_linktype(idb.linktype.0),
                        linktype: idb.linktype.0,
                        resolution: idb.ts_resolution().unwrap_or(1_000_000),
                        offset: idb.ts_offset(),
                    });
                    Step::Consume(used)
                }
                PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                    match ifaces.get(epb.if_id as usize) {
                        None => Step::Fail(format!(
                            "packet for interface {} that the file never described",
                            epb.if_id
                        )),
                        Some(i) => {
                            let (secs, frac) = epb.decode_ts(i.offset.max(0) as u64, i.resolution);
                            let t = u64::from(secs) * 1_000_000
                                + u64::from(frac) * 1_000_000 / i.resolution.max(1);
                            let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                            match i.link {
                                Some(l) => f(l, data, t),
                                None => skip(&mut skipped, i.linktype),
                            }
                            Step::Consume(used)
                        }
                    }
                }
                _ => Step::Consume(used),
            },
            Err(PcapError::Eof) => Step::Done,
            Err(PcapError::Incomplete(_)) => Step::Refill,
            Err(e) => Step::Fail(format!("{e:?}")),
        };
        match step {
            Step::Consume(used) => reader.consume(used),
            Step::Done => break,
            Step::Refill => {
                if reader.reader_exhausted() {
                    // A capture cut short (tcpdump killed mid-write): keep
                    // what was read, as tcpdump -r does.
                    break;
                }
                if let Err(e) = reader.refill() {
                    let why = format!("{e:?}");
                    bail!("{}: cannot read on ({why})", path.display());
                }
            }
            Step::Fail(why) => bail!(
                "{}: damaged capture file after byte {} ({why})",
                path.display(),
                reader.consumed()
            ),
        }
    }
    Ok(skipped)
}

fn skip(s: &mut Skipped, lt: i32) {
    s.other_link += 1;
    if !s.linktypes.contains(&lt) {
        s.linktypes.push(lt);
    }
}
