//! The fleet's Redis, through the `redis` crate's blocking client (TLS with
//! rustls for rediss://). Layout, for any tool that reads it:
//! - `STREAM` (default `fwctl:bans`): one entry per ban or unban, the fields
//!   of [`Entry::fields`], trimmed to about [`STREAM_MAXLEN`] entries;
//! - `STREAM:active`: a sorted set of the running bans, member
//!   "role address", score its end time (a longer ban wins);
//! - `STREAM:info`: a hash from the same member to the entry's field values,
//!   tab-separated in the stream's field order (`Entry::write_line`), of the
//!   longest ban published, so a host that was away reads every running ban
//!   without the stream.
//!
//! Anyone who can write to Redis can put anything there, and the `redis`
//! crate reads a whole reply whatever its size: so every read asks for a
//! bounded reply. Small Lua scripts read the stream and the index on the
//! server and hand back entries within [`MAX_ENTRY`], and only the size of a
//! bigger one ([`OVERSIZED`]); ids and counts otherwise. The stream is polled
//! (every [`POLL`]): a blocking XREAD would hand over the next entry whatever
//! its size. Each publish is one MULTI/EXEC. Needs Redis 6.2 or newer, and
//! EVALSHA and SCRIPT LOAD for fwctl's Redis user.

use crate::core::config::fleet::Fleet;
use crate::core::fleet::{Entry, Op, MAX_ENTRY, OVERSIZED, STREAM_MAXLEN};
use crate::ports::{FleetError, FleetLink, StreamEntry};
use redis::{IntoConnectionInfo, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often a follower asks for new entries while there are none.
pub const POLL: Duration = Duration::from_millis(10);
/// Index entries read at a time at catch-up (ZSCAN's COUNT: a page is
/// about this many times [`MAX_ENTRY`] bytes at most).
const PAGE: usize = 10_000;
/// The longest member of the index ("role address").
const MAX_MEMBER: usize = 128;

/// The scripts, run by their SHA1 (loaded once per connection, and again
/// if the server forgot them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Lua {
    /// Entries after an id; an oversized one as its id and size only.
    Read,
    /// The stream's first and last ids.
    Ids,
    /// A page of the index (a ZSCAN step: every ban there from start to
    /// end is seen, some twice): running bans' lines; an oversized one or a
    /// missing line as its size (0: missing).
    Active,
    /// Bans into the index (until, member, line; ...): a line is kept only
    /// if its ban is the longest.
    Publish,
    /// Ended bans out of the index.
    Sweep,
    /// One step of taking a host's bans out of the index.
    Purge,
}

impl Lua {
    fn code(self) -> &'static str {
        match self {
            Lua::Read => {
                "local r = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local max = tonumber(ARGV[3])
for i = 1, #r do
  local f, n = r[i][2], 0
  for j = 1, #f do n = n + #f[j] end
  if n > max then r[i] = {r[i][1], {ARGV[4], tostring(n)}} end
end
return r"
            }
            Lua::Ids => {
                "local a = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local b = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #a == 0 or #b == 0 then return {'0-0', '0-0'} end
return {a[1][1], b[1][1]}"
            }
            Lua::Active => {
                "local r = redis.call('ZSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[3])
local now, maxm, maxd = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local kv, out, want = r[2], {}, {}
for i = 1, #kv, 2 do
  if tonumber(kv[i + 1]) > now then
    if #kv[i] > maxm then out[#out + 1] = #kv[i] else want[#want + 1] = kv[i] end
  end
end
for i = 1, #want, 500 do
  local docs = redis.call('HMGET', KEYS[2], unpack(want, i, math.min(i + 499, #want)))
  for j = 1, #docs do
    local d = docs[j]
    if not d then out[#out + 1] = 0
    elseif #d > maxd then out[#out + 1] = #d
    else out[#out + 1] = d end
  end
end
return {r[1], out}"
            }
            Lua::Publish => {
                "for i = 1, #ARGV, 3 do
  local cur = redis.call('ZSCORE', KEYS[1], ARGV[i + 1])
  if (not cur) or tonumber(cur) <= tonumber(ARGV[i]) then
    redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  end
end
return 0"
            }
            Lua::Sweep => {
                "local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
if #m > 0 then
  redis.call('ZREM', KEYS[1], unpack(m))
  redis.call('HDEL', KEYS[2], unpack(m))
end
return #m"
            }
            Lua::Purge => {
                "local r = redis.call('HSCAN', KEYS[2], ARGV[1], 'COUNT', 500)
local kv, n, want = r[2], 0, tonumber(ARGV[3])
for i = 1, #kv, 2 do
  local doc, pos, k = kv[i + 1], 1, 1
  while k < want do
    local t = string.find(doc, '\t', pos, true)
    if not t then break end
    pos, k = t + 1, k + 1
  end
  if k == want then
    local e = string.find(doc, '\t', pos, true)
    if string.sub(doc, pos, (e or 0) - 1) == ARGV[2] then
      redis.call('HDEL', KEYS[2], kv[i])
      redis.call('ZREM', KEYS[1], kv[i])
      n = n + 1
    end
  end
end
return {r[1], n}"
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lua::Read => "read",
            Lua::Ids => "stream ids",
            Lua::Active => "index",
            Lua::Publish => "publish",
            Lua::Sweep => "sweep",
            Lua::Purge => "purge",
        }
    }
}

pub struct Redis {
    con: redis::Connection,
    stream: String,
    active: String,
    info: String,
    /// Publishes since the index was last swept of ended bans.
    since_sweep: usize,
    timeout: Duration,
    /// The SHA1 of each script loaded on this connection.
    shas: HashMap<Lua, String>,
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
        } else if lower.contains("noperm") || lower.contains("no permissions") {
            "; fix: let fwctl's Redis user run EVALSHA and SCRIPT LOAD (and the stream's commands)"
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
            shas: HashMap::new(),
        })
    }

    /// The SHA1 of a script, loading it if this connection has not.
    fn sha(&mut self, s: Lua) -> Result<String, FleetError> {
        if let Some(h) = self.shas.get(&s) {
            return Ok(h.clone());
        }
        let h: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(s.code())
            .query(&mut self.con)
            .map_err(err("SCRIPT LOAD"))?;
        self.shas.insert(s, h.clone());
        Ok(h)
    }

    /// Load every script now (doctor: the Redis user may run them).
    pub fn load_scripts(&mut self) -> Result<(), FleetError> {
        for s in [
            Lua::Read,
            Lua::Ids,
            Lua::Active,
            Lua::Publish,
            Lua::Sweep,
            Lua::Purge,
        ] {
            self.sha(s)?;
        }
        Ok(())
    }

    /// Run a script; loaded again once if the server forgot it.
    fn run(&mut self, s: Lua, keys: &[&str], args: &[String]) -> Result<Value, FleetError> {
        for again in [false, true] {
            let sha = self.sha(s)?;
            let r = redis::cmd("EVALSHA")
                .arg(&sha)
                .arg(keys.len())
                .arg(keys)
                .arg(args)
                .query::<Value>(&mut self.con);
            match r {
                Err(e) if e.code() == Some("NOSCRIPT") && !again => {
                    self.shas.remove(&s);
                }
                r => return r.map_err(err(s.name())),
            }
        }
        unreachable!("the second try returns")
    }

    /// The stream's first and last entry ids ("0-0" when empty).
    fn ids(&mut self) -> Result<(String, String), FleetError> {
        let stream = self.stream.clone();
        match self.run(Lua::Ids, &[&stream], &[])? {
            Value::Array(a) if a.len() == 2 => match (text(&a[0]), text(&a[1])) {
                (Some(f), Some(l)) => Ok((f, l)),
                _ => Err(bad("stream ids")),
            },
            _ => Err(bad("stream ids")),
        }
    }

    /// Drop ended bans from the index (and their lines), a batch at a time.
    fn sweep(&mut self, now: i64) -> Result<(), FleetError> {
        let (a, i) = (self.active.clone(), self.info.clone());
        self.run(Lua::Sweep, &[&a, &i], &[now.to_string()])?;
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
        // Loaded before the transaction: EVALSHA inside it cannot load.
        let sha = self.sha(Lua::Publish)?;
        let mut p = redis::pipe();
        p.atomic();
        let mut line = String::with_capacity(300);
        // Runs of bans go to the index in one script call each (a call per
        // ban costs a third of the publishing rate); an unban ends a run,
        // so the index sees them in order.
        let mut run: Vec<String> = Vec::new();
        let flush = |p: &mut redis::Pipeline, run: &mut Vec<String>| {
            if !run.is_empty() {
                p.cmd("EVALSHA")
                    .arg(&sha)
                    .arg(2)
                    .arg(&self.active)
                    .arg(&self.info)
                    .arg(&*run)
                    .ignore();
                run.clear();
            }
        };
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
                    run.push(e.until.to_string());
                    run.push(key);
                    run.push(line.trim_end().to_string());
                }
                Op::Unban => {
                    flush(&mut p, &mut run);
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
        flush(&mut p, &mut run);
        // A big batch may take longer than one reply's timeout.
        let long = self.timeout + Duration::from_millis(entries.len() as u64 / 10);
        self.con
            .set_read_timeout(Some(long))
            .map_err(err("socket"))?;
        let r = p.query::<()>(&mut self.con).map_err(err("publish"));
        if r.is_err() {
            // NOSCRIPT inside the transaction, say: load it again next time.
            self.shas.clear();
        }
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
        Ok(self.ids()?.1)
    }

    fn reaches(&mut self, id: &str) -> Result<bool, FleetError> {
        let (first, last) = self.ids()?;
        if first == "0-0" {
            // Empty: only a cursor at the very start still fits.
            return Ok(id == "0-0");
        }
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
        let end = Instant::now() + block;
        let stream = self.stream.clone();
        let args = [
            id.to_string(),
            count.to_string(),
            MAX_ENTRY.to_string(),
            OVERSIZED.to_string(),
        ];
        loop {
            let v = self.run(Lua::Read, &[&stream], &args)?;
            let Value::Array(entries) = v else {
                return Err(bad("the stream read"));
            };
            let mut out = Vec::with_capacity(entries.len());
            for e in &entries {
                out.push(stream_entry(e).ok_or_else(|| bad("the stream read"))?);
            }
            if !out.is_empty() || Instant::now() >= end {
                return Ok(out);
            }
            std::thread::sleep(POLL);
        }
    }

    fn active(
        &mut self,
        now: i64,
        page: &mut dyn FnMut(Vec<Vec<(String, String)>>),
    ) -> Result<(), FleetError> {
        let (a, i) = (self.active.clone(), self.info.clone());
        let mut cursor = "0".to_string();
        loop {
            let v = self.run(
                Lua::Active,
                &[&a, &i],
                &[
                    cursor.clone(),
                    now.to_string(),
                    PAGE.to_string(),
                    MAX_MEMBER.to_string(),
                    MAX_ENTRY.to_string(),
                ],
            )?;
            let Value::Array(r) = v else {
                return Err(bad("the index read"));
            };
            let (Some(next), Some(Value::Array(items))) = (r.first().and_then(text), r.get(1))
            else {
                return Err(bad("the index read"));
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    // A member without a line (unbanned meanwhile): nothing to read.
                    Value::Int(0) => {}
                    Value::Int(size) => {
                        out.push(vec![(OVERSIZED.to_string(), size.to_string())]);
                    }
                    // What is not a line of ours reads as an entry the
                    // caller skips (with its reason).
                    doc => {
                        let doc = text(doc).unwrap_or_default();
                        out.push(
                            Entry::NAMES
                                .iter()
                                .zip(doc.split('\t'))
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect(),
                        );
                    }
                }
            }
            page(out);
            if next == "0" {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn purge_host(&mut self, host: &str) -> Result<u64, FleetError> {
        let (a, i) = (self.active.clone(), self.info.clone());
        let host_field = Entry::NAMES
            .iter()
            .position(|n| *n == "host")
            .expect("a host field")
            + 1;
        let mut cursor = "0".to_string();
        let mut gone = 0;
        loop {
            let v = self.run(
                Lua::Purge,
                &[&a, &i],
                &[cursor.clone(), host.to_string(), host_field.to_string()],
            )?;
            let Value::Array(r) = v else {
                return Err(bad("the purge"));
            };
            let (Some(next), Some(Value::Int(n))) = (r.first().and_then(text), r.get(1)) else {
                return Err(bad("the purge"));
            };
            gone += *n as u64;
            if next == "0" {
                return Ok(gone);
            }
            cursor = next;
        }
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
