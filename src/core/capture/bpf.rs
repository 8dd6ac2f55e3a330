//! The kernel-side filter (classic BPF) for the live socket, built as data so
//! tests can run it. It passes only candidate probes: TCP without ACK or RST
//! and UDP, over IPv4 or IPv6, untagged or with one in-band VLAN tag (a tag
//! the driver stripped into metadata is already gone from the bytes). It
//! drops our own outgoing packets, and passes frames of interfaces without an
//! Ethernet header (tun, ppp) for user space to parse as raw IP. Passed
//! frames are cut to SNAP bytes: the headers are all the detector reads.
//!
//! With payload signatures it also passes, cut to DATA_SNAP bytes, TCP
//! segments that carry data to a signature port and UDP datagrams to one,
//! and (untagged, Ethernet or loopback) the SYN-ACKs this host sends from a
//! signature port (the only outgoing frames it passes; an incoming segment
//! with SYN set never passes as data, so any SYN-ACK that arrives is ours): user space keeps their numbers to know a connection's
//! first data segment and that its sender really took part in the handshake.

pub const SNAP: u32 = 256;
/// What a payload signature can see of a segment, headers included.
pub const DATA_SNAP: u32 = 2048;

/// One classic BPF instruction (struct sock_filter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

pub const LD_W_ABS: u16 = 0x20;
pub const LD_H_ABS: u16 = 0x28;
pub const LD_B_ABS: u16 = 0x30;
pub const LD_B_IND: u16 = 0x50;
pub const LDX_B_MSH: u16 = 0xb1;
pub const JEQ_K: u16 = 0x15;
pub const JSET_K: u16 = 0x45;
pub const RET_K: u16 = 0x06;
pub const LD_H_IND: u16 = 0x48;
pub const LD_MEM: u16 = 0x60;
pub const ST: u16 = 0x02;
pub const TAX: u16 = 0x07;
pub const SUB_X: u16 = 0x1c;
pub const AND_K: u16 = 0x54;
pub const RSH_K: u16 = 0x74;
pub const JGT_K: u16 = 0x25;

/// Ancillary loads (SKF_AD_OFF + n).
pub const AD_PKTTYPE: u32 = 0xffff_f000 + 4;
pub const AD_HATYPE: u32 = 0xffff_f000 + 28;

const PACKET_OUTGOING: u32 = 4;
const ARPHRD_ETHER: u32 = 1;
const ARPHRD_LOOPBACK: u32 = 772;
const ACK_OR_RST: u32 = 0x14;
const SYN_ACK_RST: u32 = 0x16;
const SYN_ACK: u32 = 0x12;
const SYN: u32 = 0x02;

/// A jump target while assembling.
#[derive(Clone, Copy)]
enum To {
    Next,
    Accept,
    Reject,
    Label(&'static str),
}

enum Op {
    Load(u16, u32),
    Jump(u16, u32, To, To),
    Ret(u32),
    Label(&'static str),
}

/// Jump to `hit` when A is one of `ports`, else to `miss`.
fn chain(ports: &[u16], hit: To, miss: To) -> Vec<Op> {
    let mut ops: Vec<Op> = ports
        .iter()
        .map(|&p| Op::Jump(JEQ_K, u32::from(p), hit, To::Next))
        .collect();
    if let Some(Op::Jump(_, _, _, f)) = ops.last_mut() {
        *f = miss;
    }
    ops
}

/// The labels of one link-layer variant (untagged or VLAN-tagged).
struct Names {
    v4: &'static str,
    v6: &'static str,
    data4: &'static str,
    len4: &'static str,
    data6: &'static str,
    len6: &'static str,
    udp4: &'static str,
    udp6: &'static str,
    frag4: &'static str,
    other4: &'static str,
    other6: &'static str,
    sctp4: &'static str,
    sctp6: &'static str,
}

/// What a frame of another protocol than TCP or UDP is, A holding the
/// protocol (and X the IPv4 header length when `sctp_ind`; IPv6's SCTP
/// header is read at `sctp` itself): an SCTP INIT or COOKIE-ECHO passes (-sY, -sZ), a
/// bulk protocol (ICMP, tunnels, IPsec, routing) does not, any other
/// passes (-sO). Off the TCP path, so a flood of SYNs pays nothing for it.
fn other(sctp_label: &'static str, sctp_ind: bool, sctp: u32) -> Vec<Op> {
    use Op::*;
    let mut ops = vec![Jump(JEQ_K, 132, To::Label(sctp_label), To::Next)];
    let bulk = [1u32, 2, 4, 41, 47, 50, 51, 58, 89, 103, 112];
    for (i, &p) in bulk.iter().enumerate() {
        let miss = if i + 1 == bulk.len() {
            To::Accept
        } else {
            To::Next
        };
        ops.push(Jump(JEQ_K, p, To::Reject, miss));
    }
    ops.push(Label(sctp_label));
    ops.push(Load(if sctp_ind { LD_B_IND } else { LD_B_ABS }, sctp));
    ops.push(Jump(JEQ_K, 1, To::Accept, To::Next));
    ops.push(Jump(JEQ_K, 10, To::Accept, To::Reject));
    ops
}

/// The IPv4 and IPv6 tests at `base`, and the signature tests they jump to
/// (placed after every main test, so the common path stays short).
fn l3(
    base: u32,
    n: &Names,
    tcp: &[u16],
    udp: &[u16],
    near: &mut Vec<Op>,
    extra: &mut Vec<Op>,
) -> Vec<Op> {
    use Op::*;
    // Without signature ports of a protocol, its frames go where they
    // always went (TCP with ACK: dropped; UDP: passed).
    let or = |ports: &[u16], label, none| {
        if ports.is_empty() {
            none
        } else {
            To::Label(label)
        }
    };
    let (data4, data6) = (or(tcp, n.data4, To::Reject), or(tcp, n.data6, To::Reject));
    let (udp4, udp6) = (or(udp, n.udp4, To::Accept), or(udp, n.udp6, To::Accept));
    if !tcp.is_empty() {
        // X holds the IPv4 header length here.
        // A segment with SYN set is never a first data segment (and an
        // incoming SYN-ACK must not pass for one of ours).
        extra.push(Label(n.data4));
        extra.push(Load(LD_B_IND, base + 13));
        extra.push(Jump(JSET_K, SYN, To::Reject, To::Next));
        extra.push(Load(LD_H_IND, base + 2));
        extra.extend(chain(tcp, To::Label(n.len4), To::Reject));
        extra.extend([
            Label(n.len4),
            Load(LD_H_ABS, base + 2),
            Load(SUB_X, 0),
            Load(ST, 0),
            Load(LD_B_IND, base + 12),
            Load(AND_K, 0xf0),
            Load(RSH_K, 2),
            Load(TAX, 0),
            Load(LD_MEM, 0),
            Load(SUB_X, 0),
            Jump(JGT_K, 0, To::Label("data"), To::Reject),
            Label(n.data6),
            Load(LD_B_ABS, base + 40 + 13),
            Jump(JSET_K, SYN, To::Reject, To::Next),
            Load(LD_H_ABS, base + 40 + 2),
        ]);
        extra.extend(chain(tcp, To::Label(n.len6), To::Reject));
        extra.extend([
            Label(n.len6),
            Load(LD_B_ABS, base + 40 + 12),
            Load(AND_K, 0xf0),
            Load(RSH_K, 2),
            Load(TAX, 0),
            Load(LD_H_ABS, base + 4),
            Load(SUB_X, 0),
            Jump(JGT_K, 0, To::Label("data"), To::Reject),
        ]);
    }
    if !udp.is_empty() {
        extra.extend([
            Label(n.udp4),
            Load(LDX_B_MSH, base),
            Load(LD_H_IND, base + 2),
        ]);
        extra.extend(chain(udp, To::Label("data"), To::Accept));
        extra.extend([Label(n.udp6), Load(LD_H_ABS, base + 40 + 2)]);
        extra.extend(chain(udp, To::Label("data"), To::Accept));
    }
    // A TCP fragment: the first passes (user space reports one too short
    // to hold the flags, RFC 1858's tiny fragment) and so does the one at
    // byte 8, which holds a tiny first fragment's flags; later ones do not.
    // (Placed before the signature tests, whose port chains would put
    // them out of a jump's reach.)
    near.extend([
        Label(n.frag4),
        Load(AND_K, 0x1fff),
        Jump(JEQ_K, 0, To::Accept, To::Next),
        Jump(JEQ_K, 1, To::Accept, To::Reject),
    ]);
    near.extend([Label(n.other4), Load(LDX_B_MSH, base)]);
    near.extend(other(n.sctp4, true, base + 12));
    near.push(Label(n.other6));
    near.extend(other(n.sctp6, false, base + 40 + 12));
    vec![
        Label(n.v4),
        Load(LD_B_ABS, base + 9),
        Jump(JEQ_K, 17, udp4, To::Next),
        Jump(JEQ_K, 6, To::Next, To::Label(n.other4)),
        Load(LD_H_ABS, base + 6),
        Jump(JSET_K, 0x3fff, To::Label(n.frag4), To::Next),
        Load(LDX_B_MSH, base),
        Load(LD_B_IND, base + 13),
        Jump(JSET_K, ACK_OR_RST, data4, To::Accept),
        Label(n.v6),
        Load(LD_B_ABS, base + 6),
        Jump(JEQ_K, 17, udp6, To::Next),
        // Extension headers: let user space walk them, with the data snap
        // length, so that padding them past SNAP hides no probe (they are
        // rare, so the bigger snap costs nothing).
        Jump(JEQ_K, 0, To::Label("data"), To::Next),
        Jump(JEQ_K, 43, To::Label("data"), To::Next),
        Jump(JEQ_K, 44, To::Label("data"), To::Next),
        Jump(JEQ_K, 60, To::Label("data"), To::Next),
        Jump(JEQ_K, 6, To::Next, To::Label(n.other6)),
        Load(LD_B_ABS, base + 40 + 13),
        Jump(JSET_K, ACK_OR_RST, data6, To::Accept),
    ]
}

/// Our own SYN-ACKs from a TCP signature port (untagged frames).
fn syn_acks(tcp: &[u16]) -> Vec<Op> {
    use Op::*;
    let mut ops = vec![
        Label("out"),
        Load(LD_W_ABS, AD_HATYPE),
        Jump(JEQ_K, ARPHRD_ETHER, To::Label("out_eth"), To::Next),
        Jump(JEQ_K, ARPHRD_LOOPBACK, To::Label("out_eth"), To::Reject),
        Label("out_eth"),
        Load(LD_H_ABS, 12),
        Jump(JEQ_K, 0x0800, To::Next, To::Label("out6")),
        Load(LD_B_ABS, 14 + 9),
        Jump(JEQ_K, 6, To::Next, To::Reject),
        Load(LDX_B_MSH, 14),
        Load(LD_B_IND, 14 + 13),
        Load(AND_K, SYN_ACK_RST),
        Jump(JEQ_K, SYN_ACK, To::Next, To::Reject),
        Load(LD_H_IND, 14),
    ];
    ops.extend(chain(tcp, To::Accept, To::Reject));
    ops.extend([
        Label("out6"),
        Jump(JEQ_K, 0x86dd, To::Next, To::Reject),
        Load(LD_B_ABS, 14 + 6),
        Jump(JEQ_K, 6, To::Next, To::Reject),
        Load(LD_B_ABS, 14 + 40 + 13),
        Load(AND_K, SYN_ACK_RST),
        Jump(JEQ_K, SYN_ACK, To::Next, To::Reject),
        Load(LD_H_ABS, 14 + 40),
    ]);
    ops.extend(chain(tcp, To::Accept, To::Reject));
    ops
}

/// The filter program, for payload signatures on the `tcp` and `udp` ports
/// (none: probes only). At most 8 ports of each keep every jump in range.
pub fn program(tcp: &[u16], udp: &[u16]) -> Vec<Insn> {
    use Op::*;
    let outgoing = if tcp.is_empty() {
        To::Reject
    } else {
        To::Label("out")
    };
    let mut ops = vec![
        Load(LD_W_ABS, AD_PKTTYPE),
        Jump(JEQ_K, PACKET_OUTGOING, outgoing, To::Next),
        Load(LD_W_ABS, AD_HATYPE),
        Jump(JEQ_K, ARPHRD_ETHER, To::Label("eth"), To::Next),
        Jump(JEQ_K, ARPHRD_LOOPBACK, To::Label("eth"), To::Accept),
        Label("eth"),
        Load(LD_H_ABS, 12),
        Jump(JEQ_K, 0x8100, To::Label("vlan"), To::Next),
        Jump(JEQ_K, 0x88a8, To::Label("vlan"), To::Next),
        Jump(JEQ_K, 0x0800, To::Label("v4"), To::Next),
        Jump(JEQ_K, 0x86dd, To::Label("v6"), To::Reject),
        Label("vlan"),
        Load(LD_H_ABS, 16),
        Jump(JEQ_K, 0x0800, To::Label("v4vlan"), To::Next),
        Jump(JEQ_K, 0x86dd, To::Label("v6vlan"), To::Reject),
    ];
    let mut extra = Vec::new();
    let plain = Names {
        v4: "v4",
        v6: "v6",
        data4: "data4",
        len4: "len4",
        data6: "data6",
        len6: "len6",
        udp4: "udp4",
        udp6: "udp6",
        frag4: "frag4",
        other4: "other4",
        other6: "other6",
        sctp4: "sctp4",
        sctp6: "sctp6",
    };
    let tagged = Names {
        v4: "v4vlan",
        v6: "v6vlan",
        data4: "data4vlan",
        len4: "len4vlan",
        data6: "data6vlan",
        len6: "len6vlan",
        udp4: "udp4vlan",
        udp6: "udp6vlan",
        frag4: "frag4vlan",
        other4: "other4vlan",
        other6: "other6vlan",
        sctp4: "sctp4vlan",
        sctp6: "sctp6vlan",
    };
    let mut near = Vec::new();
    ops.extend(l3(14, &plain, tcp, udp, &mut near, &mut extra));
    ops.extend(l3(18, &tagged, tcp, udp, &mut near, &mut extra));
    ops.extend(near);
    // Returns here too, for the tests above: a jump reaches at most 255
    // instructions ahead, and each goes to the first return of its kind
    // after it.
    ops.extend(returns());
    ops.extend(extra);
    if !tcp.is_empty() {
        ops.extend(syn_acks(tcp));
    }
    ops.extend(returns());
    assemble(&ops)
}

fn returns() -> [Op; 6] {
    use Op::*;
    [
        Label("accept"),
        Ret(SNAP),
        Label("data"),
        Ret(DATA_SNAP),
        Label("reject"),
        Ret(0),
    ]
}

fn assemble(ops: &[Op]) -> Vec<Insn> {
    // Index of each real instruction and each label (a label may be
    // placed more than once: a jump goes to the first one after it).
    let mut at: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    let mut n = 0usize;
    for op in ops {
        match op {
            Op::Label(l) => at.entry(*l).or_default().push(n),
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n);
    for op in ops {
        let here = out.len();
        let off = |t: To| -> u8 {
            let after = |l: &str| {
                *at[l]
                    .iter()
                    .find(|&&i| i > here)
                    .expect("a label after the jump")
            };
            let target = match t {
                To::Next => here + 1,
                To::Accept => after("accept"),
                To::Reject => after("reject"),
                To::Label(l) => after(l),
            };
            u8::try_from(target - here - 1).expect("jump fits in a byte")
        };
        match *op {
            Op::Label(_) => {}
            Op::Load(code, k) => out.push(Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Op::Jump(code, k, t, f) => out.push(Insn {
                code,
                jt: off(t),
                jf: off(f),
                k,
            }),
            Op::Ret(k) => out.push(Insn {
                code: RET_K,
                jt: 0,
                jf: 0,
                k,
            }),
        }
    }
    out
}

/// Run the program on a frame, as the kernel would (for tests): returns the
/// number of bytes passed, 0 for dropped.
pub fn run(prog: &[Insn], frame: &[u8], pkttype: u32, hatype: u32) -> u32 {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let mut mem = [0u32; 16];
    let half = |i: usize| {
        Some(u32::from(u16::from_be_bytes([
            *frame.get(i)?,
            *frame.get(i + 1)?,
        ])))
    };
    let byte = |i: usize| frame.get(i).copied();
    loop {
        let ins = prog[pc];
        pc += 1;
        match ins.code {
            LD_W_ABS if ins.k == AD_PKTTYPE => a = pkttype,
            LD_W_ABS if ins.k == AD_HATYPE => a = hatype,
            LD_H_ABS => match (byte(ins.k as usize), byte(ins.k as usize + 1)) {
                (Some(h), Some(l)) => a = u32::from(u16::from_be_bytes([h, l])),
                _ => return 0,
            },
            LD_B_ABS => match byte(ins.k as usize) {
                Some(b) => a = u32::from(b),
                None => return 0,
            },
            LD_B_IND => match byte((x + ins.k) as usize) {
                Some(b) => a = u32::from(b),
                None => return 0,
            },
            LD_H_IND => match half((x + ins.k) as usize) {
                Some(h) => a = h,
                None => return 0,
            },
            ST => mem[ins.k as usize] = a,
            LD_MEM => a = mem[ins.k as usize],
            TAX => x = a,
            SUB_X => a = a.wrapping_sub(x),
            AND_K => a &= ins.k,
            RSH_K => a >>= ins.k,
            JGT_K => pc += usize::from(if a > ins.k { ins.jt } else { ins.jf }),
            LDX_B_MSH => match byte(ins.k as usize) {
                Some(b) => x = u32::from(b & 0xf) * 4,
                None => return 0,
            },
            JEQ_K | JSET_K => {
                let hit = if ins.code == JEQ_K {
                    a == ins.k
                } else {
                    a & ins.k != 0
                };
                pc += usize::from(if hit { ins.jt } else { ins.jf });
            }
            RET_K => return ins.k,
            other => panic!("instruction {other:#x} not modelled"),
        }
    }
}
