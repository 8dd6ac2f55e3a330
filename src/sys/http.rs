//! HTTP at the edge: notifications posted with ureq (rustls, no C headers;
//! proxies from HTTP_PROXY / HTTPS_PROXY / NO_PROXY; the system's trusted
//! certificates, SSL_CERT_FILE honoured), and capture's small /metrics
//! server.

use crate::core::notify::{scrub, Attempt};
use crate::ports::Transport;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The real transport.
pub struct Http {
    agent: ureq::Agent,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    pub fn new() -> Http {
        Http {
            agent: ureq::AgentBuilder::new()
                .try_proxy_from_env(true)
                .user_agent(concat!("fwctl/", env!("CARGO_PKG_VERSION")))
                .redirects(0)
                .build(),
        }
    }
}

/// A transport error as messages show it: ureq's text starts with the URL
/// it was asked for, whose path or query may hold a secret token.
fn transport_text(t: &ureq::Transport, url: &str) -> String {
    scrub(&t.to_string(), url)
}

fn retry_after(r: &ureq::Response) -> Option<u64> {
    r.header("Retry-After")?.trim().parse().ok()
}

impl Transport for Http {
    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Attempt {
        let mut req = self.agent.post(url).timeout(timeout);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.send_bytes(body) {
            Ok(r) => Attempt::Status {
                code: r.status(),
                retry_after: retry_after(&r),
            },
            Err(ureq::Error::Status(code, r)) => Attempt::Status {
                code,
                retry_after: retry_after(&r),
            },
            Err(ureq::Error::Transport(t)) => {
                let msg = transport_text(&t, url);
                let timed_out = std::error::Error::source(&t)
                    .and_then(|s| s.downcast_ref::<io::Error>())
                    .is_some_and(|e| {
                        matches!(
                            e.kind(),
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                        )
                    })
                    || msg.contains("timed out");
                if timed_out {
                    Attempt::Timeout
                } else {
                    Attempt::Connect(msg)
                }
            }
        }
    }
}

/// AbuseIPDB's v2 `check` endpoint (or a stand-in at [reputation] url).
pub struct AbuseIpdb {
    agent: ureq::Agent,
    url: String,
    key: String,
}

impl AbuseIpdb {
    pub fn new(url: &str, key: String, timeout: Duration) -> AbuseIpdb {
        AbuseIpdb {
            agent: ureq::AgentBuilder::new()
                .try_proxy_from_env(true)
                .user_agent(concat!("fwctl/", env!("CARGO_PKG_VERSION")))
                .timeout(timeout)
                .build(),
            url: url.to_string(),
            key,
        }
    }
}

impl crate::ports::ReputationCheck for AbuseIpdb {
    fn check(&mut self, addr: std::net::IpAddr) -> crate::ports::Verdict {
        let r = self
            .agent
            .get(&self.url)
            .query("ipAddress", &addr.to_string())
            .query("maxAgeInDays", "90")
            .set("Key", &self.key)
            .set("Accept", "application/json")
            .call();
        match r {
            Ok(resp) => {
                let mut body = Vec::new();
                resp.into_reader()
                    .take(1 << 20)
                    .read_to_end(&mut body)
                    .map_err(|e| (format!("reading the answer: {e}"), true))?;
                crate::core::scan::reputation::parse_check(&body)
                    .map_err(|e| (e.to_string(), false))
            }
            Err(ureq::Error::Status(code, _)) => Err((
                format!(
                    "HTTP {code}{}",
                    match code {
                        401 | 403 =>
                            " (the key is refused; fix: check [reputation] abuseipdb_key_file)",
                        429 => " (rate-limited: the daily quota is used up)",
                        _ => "",
                    }
                ),
                matches!(code, 401 | 403 | 429) || code >= 500,
            )),
            Err(ureq::Error::Transport(t)) => Err((transport_text(&t, &self.url), true)),
        }
    }
}

impl AbuseIpdb {
    /// Post one report to AbuseIPDB's v2 `report` endpoint (or a stand-in
    /// at [reputation] report_url): the form fields ip, categories and
    /// comment, the key in the `Key` header. The error says whether to
    /// stop this run's reports (the key refused, the quota used, the
    /// service unreachable).
    pub fn report(
        &mut self,
        url: &str,
        r: &crate::core::scan::abuse::Report,
    ) -> Result<(), (String, bool)> {
        let cats: Vec<String> = r.categories.iter().map(u8::to_string).collect();
        let res = self
            .agent
            .post(url)
            .set("Key", &self.key)
            .set("Accept", "application/json")
            .send_form(&[
                ("ip", &r.ip.to_string()),
                ("categories", &cats.join(",")),
                ("comment", &r.comment),
            ]);
        match res {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(code, _)) => Err((
                format!(
                    "HTTP {code}{}",
                    match code {
                        401 | 403 =>
                            " (the key is refused; fix: check [reputation] abuseipdb_key_file)",
                        429 => " (rate-limited: reported within 15 minutes, or the daily quota is used up)",
                        422 => " (the report was refused as invalid)",
                        _ => "",
                    }
                ),
                // 429 stops too: the rest would use up what is left of
                // the day's quota, or be refused the same way.
                matches!(code, 401 | 403 | 429) || code >= 500,
            )),
            Err(ureq::Error::Transport(t)) => Err((transport_text(&t, url), true)),
        }
    }
}

/// What a feed's server answered.
pub enum Fetched {
    /// 304: the copy we have is current.
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// Any other failure, said for the admin.
    Failed(String),
}

/// GET a feed with its validators, reading at most `cap` + 1 bytes (a body
/// over the cap is refused whole by the caller).
pub fn fetch(
    url: &str,
    etag: Option<&str>,
    modified: Option<&str>,
    cap: u64,
    timeout: Duration,
) -> Fetched {
    let agent = ureq::AgentBuilder::new()
        .try_proxy_from_env(true)
        .user_agent(concat!("fwctl/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .build();
    let mut req = agent.get(url);
    if let Some(e) = etag {
        req = req.set("If-None-Match", e);
    }
    if let Some(m) = modified {
        req = req.set("If-Modified-Since", m);
    }
    match req.call() {
        Ok(r) if r.status() == 304 => Fetched::NotModified,
        Ok(r) => {
            let etag = r.header("ETag").map(str::to_string);
            let last_modified = r.header("Last-Modified").map(str::to_string);
            let mut bytes = Vec::new();
            match r.into_reader().take(cap + 1).read_to_end(&mut bytes) {
                Ok(_) => Fetched::Body {
                    bytes,
                    etag,
                    last_modified,
                },
                Err(e) => Fetched::Failed(scrub(&format!("reading the body: {e}"), url)),
            }
        }
        Err(ureq::Error::Status(304, _)) => Fetched::NotModified,
        Err(ureq::Error::Status(code, _)) => Fetched::Failed(format!("HTTP {code}")),
        Err(ureq::Error::Transport(t)) => Fetched::Failed(transport_text(&t, url)),
    }
}

/// Connections /metrics serves at once; one more is closed at once (a
/// scraper tries again at its next interval).
pub const METRICS_CONNECTIONS: usize = 8;
/// How long a client has to send its whole request: a client dripping a
/// byte now and then is cut off here, however often it drips.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Serve `render()` at `http://ADDR/metrics` from threads of their own, up
/// to [`METRICS_CONNECTIONS`] at once, each request within
/// [`REQUEST_DEADLINE`] (nothing here can slow capture's loop, and no
/// client can hold up another's scrape). Returns the address actually bound.
pub fn serve_metrics(
    addr: SocketAddr,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("fwctl-metrics".into())
        .spawn(move || {
            // A failed accept (EMFILE, a reset) is that one scrape's loss.
            for s in listener.incoming().flatten() {
                if busy.load(Ordering::Acquire) >= METRICS_CONNECTIONS {
                    drop(s);
                    continue;
                }
                let slot = Slot::take(&busy);
                let render = Arc::clone(&render);
                // No thread to be had: the connection closes with its slot.
                let _ = std::thread::Builder::new()
                    .name("fwctl-metrics-conn".into())
                    .spawn(move || {
                        let _slot = slot;
                        let _ = answer(s, &*render);
                    });
            }
        })?;
    Ok(bound)
}

/// One of the connections served at once, given back when dropped (also
/// when `render` panics).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(busy: &Arc<AtomicUsize>) -> Slot {
        busy.fetch_add(1, Ordering::AcqRel);
        Slot(Arc::clone(busy))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn answer(mut s: TcpStream, render: &dyn Fn() -> String) -> io::Result<()> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 4096];
    let mut got = 0;
    while got < buf.len() {
        // What is left of the deadline, not a fresh timeout per read.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        let n = s.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, kind, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(),
        ),
        ("GET", "/") => (
            "200 OK",
            "text/html; charset=utf-8",
            "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}
