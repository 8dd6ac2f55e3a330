//! The syslog header of a line: where its time is, which program wrote it
//! and where its message starts, in the forms syslog daemons write
//! (fail2ban's test suite shows them all): RFC 3339 or `Nov 21 10:00:01`
//! (rsyslog), an unpadded day (`Jun 7 01:10:56`), no host name, `[sshd]` as
//! the tag, Solaris' `[ID 800047 auth.info]` message ID, and RFC 5424
//! (`<38>1 TIME HOST APP PID - [SD] MSG`).
//!
//! The program is read only where the header puts it, never anywhere in the
//! line, so that no other program's message can pass for the one a source
//! reads (sshd, postfix/smtpd, ...). (Any local user can still write such a
//! line with logger(1): the threat model's.)

use crate::core::logline::Stamps;

/// Where a line's time is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// At this byte: RFC 3339 or `Nov 21 10:00:01` as `Stamps::syslog` reads.
    At(usize),
    /// `Jun 7 01:10:56` at the start: one digit, no padding.
    Unpadded,
    /// daemontools' TAI64N label (`@400000004c91b044077a9e94`): this UTC
    /// second (TAI less the 10 s of 1970; later leap seconds are not
    /// subtracted, at most 27 s).
    Tai64(i64),
}

/// A line's header: its time, its program (the tag without `[PID]`) and its
/// message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head<'a> {
    pub stamp: Stamp,
    pub program: &'a [u8],
    pub msg: &'a [u8],
}

/// The time and the message of a line whose program starts with `prefix`
/// and is one `is_program` accepts. The prefix makes the common case fast
/// (a host name or another program is passed over at its first byte) and,
/// as sshd's reader always did, a first word without it is taken for the
/// host.
#[inline]
pub fn head<'a, const N: usize>(
    line: &'a [u8],
    prefix: &[u8; N],
    is_program: impl Fn(&[u8]) -> bool,
) -> Option<(Stamp, &'a [u8])> {
    let h = split_with(line, prefix)?;
    is_program(h.program).then_some((h.stamp, h.msg))
}

/// The time a header's stamp gives.
pub fn time(stamps: &mut Stamps, line: &[u8], stamp: Stamp) -> Option<i64> {
    match stamp {
        Stamp::At(i) => stamps.syslog(&line[i..]),
        Stamp::Unpadded => {
            // "Jun 7 01:10:56 " read as "Jun  7 01:10:56 ".
            let mut padded = [b' '; 16];
            padded[..4].copy_from_slice(&line[..4]);
            padded[5..15].copy_from_slice(line.get(4..14)?);
            stamps.syslog(&padded)
        }
        Stamp::Tai64(t) => Some(t),
    }
}

/// [`split`], and also multilog's `@TAI64N TAG: MSG` (dovecot or any
/// daemon under daemontools or runit).
pub fn split_any(line: &[u8]) -> Option<Head<'_>> {
    if line.first() != Some(&b'@') {
        return split(line);
    }
    let label = line.get(1..25)?;
    if line.get(25) != Some(&b' ') || !label.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let secs = u64::from_str_radix(std::str::from_utf8(&label[..16]).ok()?, 16).ok()?;
    let t = i64::try_from(secs.checked_sub((1 << 62) + 10)?).ok()?;
    let (program, msg) = tag(&line[26..], b"")?;
    Some(Head {
        stamp: Stamp::Tai64(t),
        program,
        msg: kernel_stamp(solaris(msg)),
    })
}

/// The header of any syslog line: the first word after the time (or after
/// the host) that is a tag, `NAME: `, `NAME[PID]: `, `[NAME]: ` or `[NAME] `.
pub fn split(line: &[u8]) -> Option<Head<'_>> {
    split_with(line, b"")
}

#[inline]
fn split_with<'a, const N: usize>(line: &'a [u8], prefix: &[u8; N]) -> Option<Head<'a>> {
    if line.first() == Some(&b'<') {
        return rfc5424(line).filter(|h| h.program.get(..N) == Some(&prefix[..]));
    }
    let (stamp, end) = if line.len() >= 20 && line[4] == b'-' && line[10] == b'T' {
        // RFC 3339, or journalctl's short-iso-precise: one word.
        (Stamp::At(0), memchr::memchr(b' ', line)?)
    } else if line.len() >= 16 && line[3] == b' ' && line[6] == b' ' && line[15] == b' ' {
        // "Nov 21 10:00:01", "Nov  1 10:00:01".
        (Stamp::At(0), 15)
    } else if line.len() >= 15
        && line[3] == b' '
        && line[4].is_ascii_digit()
        && line[5] == b' '
        && line[14] == b' '
    {
        (Stamp::Unpadded, 14)
    } else {
        return None;
    };
    let rest = &line[end + 1..];
    // The host, unless the daemon left it out: then the first word is the
    // tag (a host name has neither brackets nor a colon). Never both
    // readings: a host-less line of another program must not have its
    // message's first word taken for the tag.
    let sp = memchr::memchr(b' ', rest)?;
    let first = &rest[..sp];
    if first.is_empty() {
        return None;
    }
    let (program, msg) = if first.contains(&b'[') || first.ends_with(b":") {
        tag(rest, prefix)?
    } else {
        tag(&rest[sp + 1..], prefix)?
    };
    Some(Head {
        stamp,
        program,
        msg: kernel_stamp(solaris(msg)),
    })
}

/// Some relays put the kernel's clock first: `kernel: [  970.699397] ` or
/// `kernel:[970.699397]: ` (fail2ban's suite has both).
fn kernel_stamp(msg: &[u8]) -> &[u8] {
    let Some(r) = msg.strip_prefix(b"kernel:") else {
        return msg;
    };
    let r = r.strip_prefix(b" ").unwrap_or(r);
    let Some(r) = r.strip_prefix(b"[") else {
        return msg;
    };
    let Some(close) = memchr::memchr(b']', r) else {
        return msg;
    };
    let clock = r[..close].trim_ascii_start();
    let ok = !clock.is_empty() && clock.iter().all(|&b| b.is_ascii_digit() || b == b'.');
    let r = &r[close + 1..];
    let r = r.strip_prefix(b":").unwrap_or(r);
    match (ok, r.strip_prefix(b" ")) {
        (true, Some(m)) => m,
        _ => msg,
    }
}

/// The program and the message after a tag at the start of `s`: `NAME: `,
/// `NAME[PID]: `, `[NAME]: ` or `[NAME] ` (a name has no space, bracket or
/// colon).
#[inline]
fn tag<'a, const N: usize>(s: &'a [u8], prefix: &[u8; N]) -> Option<(&'a [u8], &'a [u8])> {
    // Past the prefix (checked first: most words are not the program; a
    // constant length, so the compare is inlined).
    let name_end = |s: &[u8]| {
        s[N..]
            .iter()
            .position(|&b| matches!(b, b' ' | b'[' | b']' | b':'))
            .map(|n| n + N)
    };
    if let Some(r) = s.strip_prefix(b"[") {
        if r.get(..N) != Some(&prefix[..]) {
            return None;
        }
        let n = name_end(r).filter(|&n| n > 0 && r[n] == b']')?;
        let rest = &r[n + 1..];
        return rest
            .strip_prefix(b": ")
            .or_else(|| rest.strip_prefix(b" "))
            .map(|m| (&r[..n], m));
    }
    if s.get(..N) != Some(&prefix[..]) {
        return None;
    }
    let n = name_end(s).filter(|&n| n > 0)?;
    let (name, t) = (&s[..n], &s[n..]);
    let t = match t.strip_prefix(b"[") {
        Some(r) => {
            let close = memchr::memchr(b']', r)?;
            if close == 0 || !r[..close].iter().all(u8::is_ascii_digit) {
                return None;
            }
            &r[close + 1..]
        }
        None => t,
    };
    t.strip_prefix(b": ").map(|m| (name, m))
}

/// Solaris' syslog puts a message ID first: `[ID 800047 auth.info] `.
fn solaris(msg: &[u8]) -> &[u8] {
    let Some(r) = msg.strip_prefix(b"[ID ") else {
        return msg;
    };
    let Some(close) = memchr::memchr(b']', r) else {
        return msg;
    };
    let inner = &r[..close];
    let ok = inner.split(|&b| b == b' ').count() == 2
        && inner
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b' ' || b == b'.');
    match (ok, r[close + 1..].strip_prefix(b" ")) {
        (true, Some(m)) => m,
        _ => msg,
    }
}

/// `<PRI>1 TIME HOST APP PROCID MSGID SD MSG` (RFC 5424): APP is the
/// program; SD is `-` or `[...]` elements, whose quoted values may hold
/// `]` escaped as `\]`.
fn rfc5424(line: &[u8]) -> Option<Head<'_>> {
    let r = &line[1..];
    let gt = memchr::memchr(b'>', r)?;
    if gt == 0 || gt > 3 || !r[..gt].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let r = r[gt + 1..].strip_prefix(b"1 ")?;
    let at = line.len() - r.len();
    let mut words = r.splitn(6, |&b| b == b' ');
    let (_time, _host, app, _pid, _msgid) = (
        words.next()?,
        words.next()?,
        words.next()?,
        words.next()?,
        words.next()?,
    );
    let sd = words.next()?;
    let msg = match sd.strip_prefix(b"- ") {
        Some(m) => m,
        None => &sd[structured(sd)?..],
    };
    // A UTF-8 byte order mark may open the message.
    Some(Head {
        stamp: Stamp::At(at),
        program: app,
        msg: msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg),
    })
}

/// The length of the SD-ELEMENTs at the start of `s` and the space after.
fn structured(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        let mut quoted = false;
        i += 1;
        loop {
            match *s.get(i)? {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    (i > 0 && s.get(i) == Some(&b' ')).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sshd(p: &[u8]) -> bool {
        p == b"sshd" || p == b"sshd-session"
    }

    fn head(line: &[u8]) -> Option<(Stamp, &[u8])> {
        super::head(line, b"sshd", sshd)
    }

    fn msg(line: &str) -> Option<&str> {
        head(line.as_bytes()).map(|(_, m)| std::str::from_utf8(m).unwrap())
    }

    #[test]
    fn every_header_form_gives_the_message() {
        for (line, stamp) in [
            ("Nov 21 10:00:01 host sshd[1]: x", Stamp::At(0)),
            ("Nov  1 10:00:01 host sshd: x", Stamp::At(0)),
            ("Jun 7 01:10:56 host sshd[5937]: x", Stamp::Unpadded),
            ("2026-11-21T10:00:01Z host sshd-session[2]: x", Stamp::At(0)),
            ("Nov 23 21:50:37 sshd[8148]: x", Stamp::At(0)),
            ("Mar  3 00:17:22 [sshd]: x", Stamp::At(0)),
            ("Jun 25 23:53:34 [sshd] x", Stamp::At(0)),
            ("Mar 29 05:59:23 dusky sshd[20878]: [ID 800047 auth.info] x", Stamp::At(0)),
            ("Mar 29 05:59:23 dusky sshd[20878]: kernel: [  970.699397] x", Stamp::At(0)),
            ("Mar 29 05:59:23 dusky sshd[20878]: kernel:[970.699397]: x", Stamp::At(0)),
            ("<38>1 2019-07-08T17:40:16.954167-04:00 h.example sshd 57915 - - x", Stamp::At(6)),
            (
                "<38>1 2019-07-08T17:40:17Z h sshd 5 - [timeQuality tzKnown=\"1\"][x@1 t=\"[a\\]\"] x",
                Stamp::At(6),
            ),
        ] {
            assert_eq!(head(line.as_bytes()), Some((stamp, &b"x"[..])), "{line}");
        }
    }

    #[test]
    fn another_programs_line_is_not_sshds() {
        for line in [
            "Nov 21 10:00:01 host myapp[7]: sshd[1]: x",
            "Nov 21 10:00:01  sshd[1]: x",
            "Nov 21 10:00:01 host sshdx: x",
            "Nov 21 10:00:01 host [sshd]x",
            // No host: the first word is the program's, never the message's.
            "Nov 21 10:00:01 myapp[7]: sshd[1]: x",
            "Nov 21 10:00:01 myapp: sshd: x",
            "<38>1 2019-07-08T17:40:16Z h cron 5 - - sshd: x",
            "<38>1 2019-07-08T17:40:16Z h sshd 5 - [unclosed x",
            "<38>1 2019-07-08T17:40:16Z h sshd 5 - [a]x",
            "<9999>1 2019-07-08T17:40:16Z h sshd 5 - - x",
            "sshd[1]: x",
        ] {
            assert_eq!(msg(line), None, "{line}");
        }
        // A message ID that is not Solaris' stays part of the message.
        assert_eq!(msg("Nov 21 10:00:01 h sshd[1]: [ID x] y"), Some("[ID x] y"));
    }

    #[test]
    fn any_program_is_read_from_the_tag_only() {
        for (line, program) in [
            (
                "Nov 21 10:00:01 h postfix/submission/smtpd[7]: x",
                "postfix/submission/smtpd",
            ),
            (
                "Jan 29 13:54:06 auth-worker(22401): x",
                "auth-worker(22401)",
            ),
            ("Oct 11 01:06:47 ServerJV vsftpd: x", "vsftpd"),
            ("<38>1 2019-07-08T17:40:16Z h mysqld 5 - - x", "mysqld"),
        ] {
            let h = split(line.as_bytes()).unwrap();
            assert_eq!(
                (h.program, h.msg),
                (program.as_bytes(), &b"x"[..]),
                "{line}"
            );
        }
        // The first tag-like word is the program: a message naming another
        // program is that program's message.
        let h = split(b"Nov 21 10:00:01 myapp[7]: sshd[1]: x").unwrap();
        assert_eq!(h.program, b"myapp");
        let h = split_any(b"@400000004c91b044077a9e94 imap-login: x").unwrap();
        assert_eq!(
            (h.stamp, h.program, h.msg),
            (Stamp::Tai64(1_284_616_250), &b"imap-login"[..], &b"x"[..])
        );
        assert!(split(b"@400000004c91b044077a9e94 imap-login: x").is_none());
    }
}
