//! The kernel-side filter (classic BPF) for the live socket, built as data so
//! tests can run it. It passes only candidate probes: TCP without ACK or RST
//! and UDP, over IPv4 or IPv6, untagged or with one in-band VLAN tag (a tag
//! the driver stripped into metadata is already gone from the bytes). It
//! drops our own outgoing packets, and passes frames of interfaces without an
//! Ethernet header (tun, ppp) for user space to parse as raw IP. Passed
//! frames are cut to SNAP bytes: the headers are all the detector reads.

pub const SNAP: u32 = 256;

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

/// Ancillary loads (SKF_AD_OFF + n).
pub const AD_PKTTYPE: u32 = 0xffff_f000 + 4;
pub const AD_HATYPE: u32 = 0xffff_f000 + 28;

const PACKET_OUTGOING: u32 = 4;
const ARPHRD_ETHER: u32 = 1;
const ARPHRD_LOOPBACK: u32 = 772;
const ACK_OR_RST: u32 = 0x14;

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

fn l3(base: u32, v4: &'static str, v6: &'static str) -> Vec<Op> {
    use Op::*;
    vec![
        Label(v4),
        Load(LD_B_ABS, base + 9),
        Jump(JEQ_K, 17, To::Accept, To::Next),
        Jump(JEQ_K, 6, To::Next, To::Reject),
        Load(LDX_B_MSH, base),
        Load(LD_B_IND, base + 13),
        Jump(JSET_K, ACK_OR_RST, To::Reject, To::Accept),
        Label(v6),
        Load(LD_B_ABS, base + 6),
        Jump(JEQ_K, 17, To::Accept, To::Next),
        // Extension headers: let user space walk them.
        Jump(JEQ_K, 0, To::Accept, To::Next),
        Jump(JEQ_K, 43, To::Accept, To::Next),
        Jump(JEQ_K, 44, To::Accept, To::Next),
        Jump(JEQ_K, 60, To::Accept, To::Next),
        Jump(JEQ_K, 6, To::Next, To::Reject),
        Load(LD_B_ABS, base + 40 + 13),
        Jump(JSET_K, ACK_OR_RST, To::Reject, To::Accept),
    ]
}

/// The filter program.
pub fn program() -> Vec<Insn> {
    use Op::*;
    let mut ops = vec![
        Load(LD_W_ABS, AD_PKTTYPE),
        Jump(JEQ_K, PACKET_OUTGOING, To::Reject, To::Next),
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
    ops.extend(l3(14, "v4", "v6"));
    ops.extend(l3(18, "v4vlan", "v6vlan"));
    ops.push(Label("accept"));
    ops.push(Ret(SNAP));
    ops.push(Label("reject"));
    ops.push(Ret(0));
    assemble(&ops)
}

fn assemble(ops: &[Op]) -> Vec<Insn> {
    // Index of each real instruction and each label.
    let mut at = std::collections::HashMap::new();
    let mut n = 0usize;
    for op in ops {
        match op {
            Op::Label(l) => {
                at.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n);
    for op in ops {
        let here = out.len();
        let off = |t: To| -> u8 {
            let target = match t {
                To::Next => here + 1,
                To::Accept => at["accept"],
                To::Reject => at["reject"],
                To::Label(l) => at[l],
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
