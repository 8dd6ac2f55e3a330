//! The system layer: everything that touches the machine. Every process
//! spawn (`tools`), every system call fwctl makes by hand and every `unsafe`
//! block lives under here: netlink ipset adds, the AF_PACKET socket, the
//! lock files, the confirmation FIFO and its signals, the host's addresses
//! and time zone, the state file, the log and capture files.

pub mod configfile;
pub mod confirm;
pub mod cpu;
pub mod decoy;
pub mod dirs;
pub mod doctor;
pub mod feedstore;
pub mod firewall;
pub mod fleetbox;
pub mod fleetkey;
pub mod follow;
pub mod geodb;
pub mod host;
pub mod http;
pub mod ipset;
pub mod iptables;
pub mod journal;
pub mod lock;
pub mod logfile;
pub mod mapfile;
pub mod mem;
pub mod netlink;
pub mod nflog;
pub mod nft;
pub mod nftdump;
pub mod nftfw;
pub mod nftlink;
pub mod outbox;
pub mod packet;
pub mod pcap;
pub mod pcap_legacy;
pub mod probe;
pub mod redis;
pub mod secret;
pub mod selftest;
pub mod sidefile;
pub mod sockdiag;
pub mod statefile;
pub mod tools;
