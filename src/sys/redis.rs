//! The fleet's Redis, through the `redis` crate's blocking client (TLS with
//! rustls for rediss://). Layout, for any tool that reads it:
//! - `STREAM` (default `fwctl:bans`): one entry per ban or unban, the fields
//!   of [`Entry::fields`], trimmed to about [`STREAM_MAXLEN`] entries;
//! - `STREAM:active`: a sorted set of the running bans, member
//!   "role address", score its end time (a longer ban wins: `ZADD GT`);
//! - `STREAM:info`: a hash from the same member to the entry's field values,
//!   tab-separated in the stream's field order (`Entry::write_line`), so a
//!   host that was away reads every running ban without the stream.
//!
//! Each publish is one MULTI/EXEC. Needs Redis 6.2 or newer (`ZADD GT`).

use crate::core::config::fleet::Fleet;
use crate::core::fleet::{Entry, Op, STREAM_MAXLEN};
use crate::ports::{FleetError, FleetLink, StreamEntry};
use redis::{IntoConnectionInfo, Value};
use std::time::Duration;

pub struct Redis {
    con: redis::Connection,
    stream: String,
    active: String,
    info: String,
    /// Publishes since the index was last swept of ended bans.
    since_sweep: usize,
    timeout: Duration,
}

fn err(what: &str) -> impl Fn(redis::RedisError) -> FleetError + '_ {
    move |e| {
        let text = e.to_string();
        let lower = text.to_lowercase();
        let hint = if lower.contains("auth")
            || lower.contains("wrongpass")
            || lower.contains("password")
        {
            "; fix: check [fleet] password_file (and the user name in the URL)"
        } else if e.is_connection_refusal() || e.is_timeout() || e.is_io_error() {
            "; fix: is Redis running and reachable from here?"
        } else {
            ""
        };
        FleetError(format!("redis {what}: {text}{hint}"))
    }
}

impl Redis {
    /// Connect, authenticate and check the server answers, each step within
    /// `timeout`.
    pub fn connect(
        fleet: &Fleet,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Redis, FleetError> {
        let info = fleet
            .redis
            .as_str()
            .into_connection_info()
            .map_err(err("url"))?;
        let mut settings = info.redis_settings().clone();
        if let Some(p) = password {
            settings = settings.set_password(p);
        }
        let info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(err("client"))?;
        // A signal can cut a wait short (EINTR, seen here on a first
        // connection now and then): a reason to try again, not an outage.
        let interrupted =
            |e: &redis::RedisError| e.is_io_error() && e.to_string().contains("os error 4");
        let mut tries = 0;
        let con = loop {
            tries += 1;
            let attempt = (|| {
                let mut con = client
                    .get_connection_with_timeout(timeout)
                    .map_err(|e| (e, "connect"))?;
                con.set_read_timeout(Some(timeout))
                    .map_err(|e| (e, "socket"))?;
                con.set_write_timeout(Some(timeout))
                    .map_err(|e| (e, "socket"))?;
                redis::cmd("PING")
                    .query::<String>(&mut con)
                    .map_err(|e| (e, "ping"))?;
                Ok::<_, (redis::RedisError, &str)>(con)
            })();
            match attempt {
                Ok(c) => break c,
                Err((e, _)) if tries < 4 && interrupted(&e) => continue,
                Err((e, "connect")) => {
                    return Err(err(&format!("connect to {}", shown(&fleet.redis)))(e))
                }
                Err((e, what)) => return Err(err(what)(e)),
            }
        };
        Ok(Redis {
            con,
            stream: fleet.stream.clone(),
            active: fleet.active_key(),
            info: fleet.info_key(),
            since_sweep: 0,
            timeout,
        })
    }

    /// Drop ended bans from the index (and their entries), a batch at a time.
    fn sweep(&mut self, now: i64) -> Result<(), FleetError> {
        let ended: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.active)
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(1000)
            .query(&mut self.con)
            .map_err(err("sweep"))?;
        if !ended.is_empty() {
            redis::pipe()
                .atomic()
                .cmd("ZREM")
                .arg(&self.active)
                .arg(&ended)
                .ignore()
                .cmd("HDEL")
                .arg(&self.info)
                .arg(&ended)
                .ignore()
                .query::<()>(&mut self.con)
                .map_err(err("sweep"))?;
        }
        Ok(())
    }
}

/// A URL as shown in messages (it holds no password: the config refuses one).
fn shown(url: &str) -> &str {
    url
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn bad(what: &str) -> FleetError {
    FleetError(format!("redis: an unexpected reply to {what}"))
}

/// `[id, [field, value, ...]]`.
fn stream_entry(v: &Value) -> Option<StreamEntry> {
    let Value::Array(pair) = v else { return None };
    let [id, Value::Array(kv)] = pair.as_slice() else {
        return None;
    };
    let mut fields = Vec::with_capacity(kv.len() / 2);
    for c in kv.chunks(2) {
        if let [k, v] = c {
            fields.push((text(k)?, text(v).unwrap_or_default()));
        }
    }
    Some((text(id)?, fields))
}

/// "ms-seq" as numbers, for comparing ids.
fn id_num(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('-').unwrap_or((id, "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

impl FleetLink for Redis {
    fn publish(&mut self, entries: &[Entry]) -> Result<(), FleetError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        p.atomic();
        let mut line = String::with_capacity(200);
        for e in entries {
            let fields = e.fields();
            let x = p
                .cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAXLEN)
                .arg("*");
            for (k, v) in &fields {
                x.arg(*k).arg(v);
            }
            x.ignore();
            let key = e.key();
            match e.op {
                Op::Ban => {
                    line.clear();
                    e.write_line(&mut line);
                    p.cmd("ZADD")
                        .arg(&self.active)
                        .arg("GT")
                        .arg(e.until)
                        .arg(&key)
                        .ignore()
                        .cmd("HSET")
                        .arg(&self.info)
                        .arg(&key)
                        .arg(line.trim_end())
                        .ignore();
                }
                Op::Unban => {
                    p.cmd("ZREM")
                        .arg(&self.active)
                        .arg(&key)
                        .ignore()
                        .cmd("HDEL")
                        .arg(&self.info)
                        .arg(&key)
                        .ignore();
                }
            }
        }
        // A big batch may take longer than one reply's timeout.
        let long = self.timeout + Duration::from_millis(entries.len() as u64 / 10);
        self.con
            .set_read_timeout(Some(long))
            .map_err(err("socket"))?;
        let r = p.query::<()>(&mut self.con).map_err(err("publish"));
        self.con
            .set_read_timeout(Some(self.timeout))
            .map_err(err("socket"))?;
        r?;
        self.since_sweep += entries.len();
        if self.since_sweep >= 1000 {
            self.since_sweep = 0;
            let now = entries.last().map(|e| e.at).unwrap_or(0);
            self.sweep(now)?;
        }
        Ok(())
    }

    fn last_id(&mut self) -> Result<String, FleetError> {
        let v: Value = redis::cmd("XREVRANGE")
            .arg(&self.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut self.con)
            .map_err(err("XREVRANGE"))?;
        match v {
            Value::Array(a) if a.is_empty() => Ok("0-0".into()),
            Value::Array(a) => stream_entry(&a[0])
                .map(|(id, _)| id)
                .ok_or_else(|| bad("XREVRANGE")),
            Value::Nil => Ok("0-0".into()),
            _ => Err(bad("XREVRANGE")),
        }
    }

    fn reaches(&mut self, id: &str) -> Result<bool, FleetError> {
        let v: Value = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query(&mut self.con)
            .map_err(err("XRANGE"))?;
        let first = match v {
            Value::Array(a) if !a.is_empty() => stream_entry(&a[0])
                .map(|(id, _)| id)
                .ok_or_else(|| bad("XRANGE"))?,
            // Empty: only a cursor at the very start still fits.
            _ => return Ok(id == "0-0"),
        };
        let last = self.last_id()?;
        // The stream starts at or before the cursor, and the cursor is not
        // past its end (a stream begun anew after Redis lost its data).
        Ok(id_num(&first) <= id_num(id) && id_num(id) <= id_num(&last))
    }

    fn read_after(
        &mut self,
        id: &str,
        block: Duration,
        count: usize,
    ) -> Result<Vec<StreamEntry>, FleetError> {
        self.con
            .set_read_timeout(Some(block + self.timeout))
            .map_err(err("socket"))?;
        let v: Result<Value, _> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(id)
            .query(&mut self.con);
        self.con
            .set_read_timeout(Some(self.timeout))
            .map_err(err("socket"))?;
        let v = v.map_err(err("XREAD"))?;
        let streams = match v {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(s) => s,
            Value::Map(m) => m
                .into_iter()
                .map(|(k, v)| Value::Array(vec![k, v]))
                .collect(),
            _ => return Err(bad("XREAD")),
        };
        let mut out = Vec::new();
        for s in &streams {
            let Value::Array(kv) = s else {
                return Err(bad("XREAD"));
            };
            if let [_, Value::Array(entries)] = kv.as_slice() {
                for e in entries {
                    out.push(stream_entry(e).ok_or_else(|| bad("XREAD"))?);
                }
            }
        }
        Ok(out)
    }

    fn active(&mut self, now: i64) -> Result<Vec<Vec<(String, String)>>, FleetError> {
        let pairs: Vec<(String, i64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.active)
            .arg(format!("({now}"))
            .arg("+inf")
            .arg("WITHSCORES")
            .query(&mut self.con)
            .map_err(err("ZRANGEBYSCORE"))?;
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(10_000) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let docs: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&self.info)
                .arg(&keys)
                .query(&mut self.con)
                .map_err(err("HMGET"))?;
            for ((_, until), doc) in chunk.iter().zip(docs) {
                let Some(doc) = doc else { continue };
                // What is not a line of ours reads as an entry the caller
                // skips (with its reason).
                let mut fields: Vec<(String, String)> = Entry::NAMES
                    .iter()
                    .zip(doc.split('\t'))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                // The index's score is the longest end any host published.
                let at = fields
                    .iter()
                    .find(|(k, _)| k == "at")
                    .and_then(|(_, v)| v.parse::<i64>().ok())
                    .unwrap_or(0);
                for (k, v) in fields.iter_mut() {
                    match k.as_str() {
                        "until" => *v = until.to_string(),
                        "secs" => *v = (until - at).to_string(),
                        _ => {}
                    }
                }
                out.push(fields);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_replies_are_read_and_ids_compare_as_numbers() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let e = Value::Array(vec![
            b("1796000000000-3"),
            Value::Array(vec![b("v"), b("1"), b("op"), b("ban")]),
        ]);
        assert_eq!(
            stream_entry(&e),
            Some((
                "1796000000000-3".into(),
                vec![("v".into(), "1".into()), ("op".into(), "ban".into())]
            ))
        );
        assert_eq!(stream_entry(&b("x")), None);
        assert!(id_num("1796000000000-10") > id_num("1796000000000-9"));
        assert!(id_num("999-0") < id_num("1000-0"));
    }
}
