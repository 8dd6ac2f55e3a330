//! Frames built with etherparse, and pcap/pcapng writers, for the capture
//! tests and the pcap generator (examples/pcapgen.rs includes this file).
#![allow(dead_code)]

use etherparse::PacketBuilder;
use std::io::Write;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    pub syn: bool,
    pub fin: bool,
    pub psh: bool,
    pub urg: bool,
    pub ack: bool,
    pub rst: bool,
}

pub const SYN: Flags = Flags {
    syn: true,
    fin: false,
    psh: false,
    urg: false,
    ack: false,
    rst: false,
};
pub const FIN: Flags = Flags {
    fin: true,
    syn: false,
    psh: false,
    urg: false,
    ack: false,
    rst: false,
};
pub const NULL: Flags = Flags {
    fin: false,
    syn: false,
    psh: false,
    urg: false,
    ack: false,
    rst: false,
};
pub const XMAS: Flags = Flags {
    fin: true,
    psh: true,
    urg: true,
    syn: false,
    ack: false,
    rst: false,
};
pub const SYN_ACK: Flags = Flags {
    syn: true,
    ack: true,
    fin: false,
    psh: false,
    urg: false,
    rst: false,
};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn ip_step(
    src: IpAddr,
    dst: IpAddr,
    vlan: Option<u16>,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    match (src, dst, vlan) {
        (IpAddr::V4(s), IpAddr::V4(d), None) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d), None) => eth.ipv6(s.octets(), d.octets(), 64),
        (IpAddr::V4(s), IpAddr::V4(d), Some(v)) => eth
            .single_vlan(etherparse::VlanId::try_new(v).unwrap())
            .ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d), Some(v)) => eth
            .single_vlan(etherparse::VlanId::try_new(v).unwrap())
            .ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
    }
}

/// An Ethernet frame carrying one TCP segment (optionally VLAN-tagged).
pub fn tcp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    f: Flags,
    vlan: Option<u16>,
) -> Vec<u8> {
    tcp_data(src, dst, (sport, dport), f, vlan, (1000, 1), &[])
}

/// A TCP segment with its sequence and acknowledgement numbers and a payload.
#[allow(dead_code)]
pub fn tcp_data(
    src: IpAddr,
    dst: IpAddr,
    (sport, dport): (u16, u16),
    f: Flags,
    vlan: Option<u16>,
    (seq, ack): (u32, u32),
    payload: &[u8],
) -> Vec<u8> {
    let mut b = ip_step(src, dst, vlan).tcp(sport, dport, seq, 1024);
    if f.syn {
        b = b.syn();
    }
    if f.fin {
        b = b.fin();
    }
    if f.psh {
        b = b.psh();
    }
    if f.urg {
        b = b.urg(0);
    }
    if f.ack {
        b = b.ack(ack);
    }
    if f.rst {
        b = b.rst();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// An Ethernet frame carrying one UDP datagram.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let b = ip_step(src, dst, None).udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).unwrap();
    out
}

/// A classic pcap file (microsecond timestamps, Ethernet).
pub struct Pcap<W: Write> {
    out: W,
}

impl<W: Write> Pcap<W> {
    pub fn new(mut out: W) -> Pcap<W> {
        out.write_all(&0xa1b2c3d4u32.to_le_bytes()).unwrap();
        out.write_all(&2u16.to_le_bytes()).unwrap();
        out.write_all(&4u16.to_le_bytes()).unwrap();
        out.write_all(&0i32.to_le_bytes()).unwrap();
        out.write_all(&0u32.to_le_bytes()).unwrap();
        out.write_all(&65535u32.to_le_bytes()).unwrap();
        out.write_all(&1u32.to_le_bytes()).unwrap();
        Pcap { out }
    }

    pub fn packet(&mut self, t_us: u64, frame: &[u8]) {
        let h = [
            (t_us / 1_000_000) as u32,
            (t_us % 1_000_000) as u32,
            frame.len() as u32,
            frame.len() as u32,
        ];
        for v in h {
            self.out.write_all(&v.to_le_bytes()).unwrap();
        }
        self.out.write_all(frame).unwrap();
    }

    pub fn finish(mut self) -> W {
        self.out.flush().unwrap();
        self.out
    }
}

fn ng_block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let len = (12 + body.len()) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&len.to_le_bytes());
}

/// A pcapng file: section header, one Ethernet interface with nanosecond
/// timestamps (if_tsresol = 9), and one enhanced packet block per frame.
pub fn pcapng(frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    ng_block(&mut out, 0x0a0d0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes()); // Ethernet
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&0u32.to_le_bytes()); // snaplen
    idb.extend_from_slice(&9u16.to_le_bytes()); // if_tsresol
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 0, 0]);
    idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    ng_block(&mut out, 1, &idb);
    for (t_us, frame) in frames {
        let ns = t_us * 1000;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ns as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(frame);
        ng_block(&mut out, 6, &epb);
    }
    out
}
