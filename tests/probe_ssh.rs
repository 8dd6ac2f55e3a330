//! An attacker's sshd lines: client text crafted so that fwctl reads an
//! address the attacker chose (192.0.2.99) instead of its own (203.0.113.5).
//!
//! sshd escapes a non-printable byte as `\ooo` (4 bytes) and cuts the
//! message at 500 bytes; journald strips trailing whitespace from every
//! syslog message (journald-syslog.c), rsyslog keeps it. A client that
//! pads its text with spaces up to the cut so gets a message shorter than
//! 500 bytes that ends in its own text.

use fwctl::core::logline::Line;
use fwctl::core::ssh_log::SshParser;
use fwctl::units::time::Zone;
use std::net::IpAddr;

const T: i64 = 1_795_255_201; // 2026-11-21T10:00:01Z

fn parse(msg: &str) -> Line {
    let mut p = SshParser::new(Zone::fixed(0), T + 60, (T - 600, T + 600));
    p.parse(format!("Nov 21 10:00:01 host sshd[1]: {msg}").as_bytes())
}

fn assert_not_planted(msg: &str) {
    let l = parse(msg);
    let planted = "192.0.2.99".parse::<IpAddr>().unwrap();
    assert!(
        !matches!(&l, Line::Hit(h) if h.src == planted),
        "{l:?}: {msg:?}"
    );
}

/// What sshd writes: the first 500 bytes; what the journal keeps: those
/// without their trailing spaces.
fn cut(msg: &str) -> (String, String) {
    assert!(msg.len() > 500, "{}", msg.len());
    let syslog = msg[..500].to_string();
    let journal = syslog.trim_end_matches(' ').to_string();
    assert!(journal.len() < 500);
    (syslog, journal)
}

/// The preamble ("invalid user USER", at most 200 bytes before escaping)
/// holds the planted address; escapes push sshd's real one past the cut.
#[test]
fn preauth_closed_cut_inside_the_user_name() {
    let user = format!(
        "{} 192.0.2.99 port 22 [preauth]{}",
        "\\001".repeat(105),
        " ".repeat(40)
    );
    let (syslog, journal) = cut(&format!(
        "Connection closed by invalid user {user} 203.0.113.5 port 4444 [preauth]"
    ));
    assert_not_planted(&syslog);
    assert_not_planted(&journal);
}

#[test]
fn disconnecting_cut_inside_the_user_name() {
    let user = format!(
        "{} 192.0.2.99 port 22: x{}",
        "\\001".repeat(100),
        " ".repeat(60)
    );
    let (syslog, journal) = cut(&format!(
        "Disconnecting invalid user {user} 203.0.113.5 port 4444: Too many authentication failures [preauth]"
    ));
    assert_not_planted(&syslog);
    assert_not_planted(&journal);
}

/// A certificate's key ID has no length limit and needs no escapes.
#[test]
fn failed_publickey_cut_inside_a_certificate_id() {
    let id = format!(
        "x from 192.0.2.99 port 22 ssh2: RSA SHA256:{}{}",
        "a".repeat(43),
        " ".repeat(500)
    );
    let (syslog, journal) = cut(&format!(
        "Failed publickey for invalid user x from 203.0.113.5 port 4444 ssh2: RSA-CERT SHA256:{} ID {id} (serial 1) CA ED25519 SHA256:{}",
        "b".repeat(43),
        "c".repeat(43)
    ));
    assert_not_planted(&syslog);
    assert_not_planted(&journal);
}

/// hostbased's client user and host ("%.100s" each, escaped up to 400
/// bytes): the user's escapes push the cut into the host.
#[test]
fn failed_hostbased_cut_inside_the_client_host() {
    let chost = format!(
        " from 192.0.2.99 port 22 ssh2: RSA SHA256:abc{}",
        " ".repeat(40)
    );
    let (syslog, journal) = cut(&format!(
        "Failed hostbased for invalid user x from 203.0.113.5 port 4444 ssh2: RSA SHA256:{}, client user \"{}\", client host \"{chost}\"",
        "b".repeat(43),
        "\\001".repeat(74)
    ));
    assert_not_planted(&syslog);
    assert_not_planted(&journal);
}

/// A GSSAPI name after sshd's address: the client's (its principal's) text.
#[test]
fn failed_gssapi_name_ending_in_a_planted_key() {
    assert_not_planted(
        "Failed gssapi-with-mic for x from 203.0.113.5 port 1 ssh2: y from 192.0.2.99 port 22 ssh2: RSA SHA256:abc",
    );
}

/// Honest lines stay counted: the planted address in the user name, sshd's
/// at the end.
#[test]
fn honest_lines_still_give_sshds_address() {
    let real = "203.0.113.5".parse::<IpAddr>().unwrap();
    for msg in [
        "Failed publickey for invalid user a from 192.0.2.99 port 1 ssh2: RSA SHA256:x from 203.0.113.5 port 4444 ssh2: ED25519 SHA256:q1w2/e+3=".to_string(),
        format!("Connection closed by invalid user {} 203.0.113.5 port 1 [preauth]", "x".repeat(187)),
        format!("Disconnecting invalid user {} 203.0.113.5 port 1: Too many authentication failures [preauth]", "x".repeat(187)),
        format!("Connection closed by invalid user {} 203.0.113.5 port 1 [preauth]", "\\321\\217".repeat(20)),
    ] {
        match parse(&msg) {
            Line::Hit(h) => assert_eq!(h.src, real, "{msg}"),
            other => panic!("{other:?}: {msg}"),
        }
    }
}

/// rsyslog keeps the padding: a message of 500 bytes is a cut one also
/// when its last bytes are spaces.
#[test]
fn a_message_cut_in_its_padding_reads_no_address() {
    let msg = format!("Invalid user x from 192.0.2.99 port 22{}", " ".repeat(470));
    assert_eq!(msg.len(), 508);
    assert_not_planted(&msg[..500]);
}

/// rsyslog's "message repeated N times: [ MSG]" is longer than MSG: an
/// honest MSG under 500 bytes still counts.
#[test]
fn a_long_repeated_message_still_counts() {
    let msg = format!(
        "Failed keyboard-interactive/pam for invalid user {} from 203.0.113.5 port 65000 ssh2",
        "\\001".repeat(100)
    );
    let line = format!("message repeated 2 times: [ {msg}]");
    assert!(line.len() >= 500 && msg.len() < 500);
    match parse(&line) {
        Line::Hit(h) => assert_eq!((h.src, h.n), ("203.0.113.5".parse::<IpAddr>().unwrap(), 2)),
        other => panic!("{other:?}"),
    }
}
