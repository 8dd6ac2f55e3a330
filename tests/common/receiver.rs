//! A real HTTP receiver for notification tests: it listens inside a test's
//! namespace, answers with the statuses a test scripts (then 200), and
//! keeps every request it got, so a test can check signatures, shapes,
//! retries and what arrived exactly once.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
}

impl Request {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// Whether the signature headers match HMAC-SHA256(secret, ts "." body),
    /// as the verifier of docs/events-and-metrics.md checks them.
    pub fn signed_with(&self, secret: &[u8]) -> bool {
        let (Some(ts), Some(sig)) = (
            self.headers.get("x-fwctl-timestamp"),
            self.headers.get("x-fwctl-signature"),
        ) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sig == &format!("sha256={want}")
    }

    /// The events a fwctl JSON body carries: one, or a summary's list.
    pub fn events(&self) -> Vec<Value> {
        let v = self.json();
        match v.get("events") {
            Some(Value::Array(a)) => a.clone(),
            _ => vec![v],
        }
    }
}

/// An answer made from the request: status, headers, body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);
type Respond = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;

#[derive(Default)]
struct Inner {
    got: Vec<Request>,
    script: VecDeque<u16>,
    respond: Option<Respond>,
}

pub struct Receiver {
    pub port: u16,
    inner: Arc<(Mutex<Inner>, Condvar)>,
}

impl Receiver {
    /// Listen on 127.0.0.1 inside namespace `ns` (port 0: any free one).
    pub fn start_in(ns: &str, port: u16) -> Receiver {
        Receiver::start(ns, port, None)
    }

    /// The same over HTTPS, with a fresh self-signed certificate for
    /// 127.0.0.1; returns the certificate (PEM) a client must trust.
    pub fn start_tls_in(ns: &str) -> (Receiver, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key.into())
        .unwrap();
        (Receiver::start(ns, 0, Some(Arc::new(cfg))), ck.cert.pem())
    }

    fn start(ns: &str, port: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = super::in_ns(ns, || TcpListener::bind(("127.0.0.1", port)).unwrap());
        let port = listener.local_addr().unwrap().port();
        let inner: Arc<(Mutex<Inner>, Condvar)> = Arc::default();
        let shared = Arc::clone(&inner);
        std::thread::spawn(move || {
            for s in listener.incoming().map_while(Result::ok) {
                let shared = Arc::clone(&shared);
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    Some(cfg) => {
                        let conn = rustls::ServerConnection::new(cfg).unwrap();
                        serve(rustls::StreamOwned::new(conn, s), &shared)
                    }
                    None => serve(s, &shared),
                });
            }
        });
        Receiver { port, inner }
    }

    /// Answer every request with what `f` makes of it (a feed server, a
    /// stand-in for an API).
    pub fn start_fn(ns: &str, f: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Receiver {
        let r = Receiver::start(ns, 0, None);
        r.inner.0.lock().unwrap().respond = Some(Arc::new(f));
        r
    }

    /// Answer the next requests with these statuses, then 200 again.
    pub fn script(&self, statuses: &[u16]) {
        self.inner.0.lock().unwrap().script.extend(statuses);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}/hook", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.0.lock().unwrap().got.clone()
    }

    /// Wait until `done` holds for the requests so far (or `limit` passes).
    pub fn wait_for(&self, limit: Duration, done: impl Fn(&[Request]) -> bool) -> bool {
        let end = Instant::now() + limit;
        let (lock, cv) = &*self.inner;
        let mut g = lock.lock().unwrap();
        loop {
            if done(&g.got) {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }
}

/// One connection: requests until the client closes (ureq keeps them alive).
fn serve(s: impl Read + Write, shared: &(Mutex<Inner>, Condvar)) {
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (lock, cv) = shared;
        let mut req = Request {
            path,
            headers,
            body,
            status: 0,
        };
        let (status, extra, reply) = {
            let mut g = lock.lock().unwrap();
            let answer = match &g.respond {
                Some(f) => f(&req),
                None => (g.script.pop_front().unwrap_or(200), vec![], vec![]),
            };
            req.status = answer.0;
            g.got.push(req);
            answer
        };
        cv.notify_all();
        let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", reply.len());
        for (k, v) in extra {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        let w = r.get_mut();
        if w.write_all(head.as_bytes())
            .and_then(|()| w.write_all(&reply))
            .and_then(|()| w.flush())
            .is_err()
        {
            return;
        }
    }
}
