//! A realistic combined-format access log for scan benchmarks (nginx's
//! `$remote_addr - $remote_user [$time_local] "$request" $status
//! $body_bytes_sent "$http_referer" "$http_user_agent"`, optionally followed
//! by `"$http_x_forwarded_for"`): real user agents, paths and statuses,
//! lines of varied length, a chosen number of clients (some much busier than
//! others), IPv4 and IPv6. Unlike examples/loggen.rs it plants no offenders:
//! it is for measuring speed on the shapes real logs have.
//!
//!   cargo run --release --example weblog -- --out /dev/shm/access.log --size 240M \
//!       --clients 100000 --v6 30 --lines long [--xff] [--end 1795262400] [--span 3600]
//!
//! --lines short: 110-200 bytes (bots and curl, short paths, no referer);
//! long: 300-450 (browsers, query strings, referers); mixed: 150-400.
//! --xff: an X-Forwarded-For field, and 80 % of the lines arrive through the
//! proxies 10.0.0.1-10.0.0.4 (scan them with --client forwarded
//! --trusted-proxy 10.0.0.0/24).

use std::io::{BufWriter, Write};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const BROWSERS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
];
const BOTS: [&str; 8] = [
    "curl/8.5.0",
    "Go-http-client/1.1",
    "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Wget/1.21.4",
    "-",
    "Mozilla/5.0 zgrab/0.x",
];
const SHORT_PATHS: [&str; 10] = [
    "/",
    "/favicon.ico",
    "/robots.txt",
    "/index.html",
    "/login",
    "/api/health",
    "/feed.xml",
    "/static/app.css",
    "/sitemap.xml",
    "/about",
];
const LONG_PATHS: [&str; 10] = [
    "/static/js/main.4f9c2a1b.chunk.js",
    "/blog/2026/11/how-we-cut-our-p99-latency-in-half-with-three-small-changes",
    "/api/v2/catalog/items?category=outdoor&sort=price_asc&page=3&per_page=48",
    "/search?q=selected+works+union+station&lang=en&utm_source=newsletter&utm_medium=email",
    "/images/products/2026/hiking-boots-waterproof-leather-brown-1200x800.webp",
    "/docs/v1.2/reference/configuration.html#section-logging-and-rotation",
    "/wp-content/themes/twentytwentyfour/assets/fonts/inter/Inter-VariableFont_slnt,wght.woff2",
    "/account/orders/84512/invoice.pdf?download=1&token=9b1d3c0e7f",
    "/api/v1/events?since=2026-11-21T10%3A00%3A00Z&limit=500&fields=id,type,actor",
    "/checkout/cart?coupon=WINTER26&ref=sidebar",
];
// What --match all's built-in patterns are about: ~2 % of the requests.
const ATTACKS: [&str; 8] = [
    "/static/..%2f..%2f..%2fetc/passwd",
    "/item?id=1%20UNION%20SELECT%20user,password%20FROM%20users",
    "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
    "/.env",
    "/wp-login.php",
    "/cgi-bin/luci;stok=/locale",
    "/.git/config",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
];
const REFERERS: [&str; 5] = [
    "https://www.example.com/",
    "https://www.example.com/blog/2026/11/",
    "https://www.google.com/",
    "https://shop.example.com/catalog/outdoor?page=2",
    "https://news.example.org/item?id=41234567",
];

/// Client `i`: IPv4 in the documentation ranges, then 100.64.0.0/10; IPv6
/// (`v6` percent of them) in 2001:db8::/32, with interface ids of full
/// length like privacy addresses.
fn client(i: u64, v6: u64) -> String {
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    if h % 100 < v6 {
        return format!(
            "2001:db8:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}",
            (h >> 8) & 0xfff,
            (i >> 16) & 0xffff,
            (h >> 16) & 0xffff | 0x1000,
            (h >> 32) & 0xffff,
            (h >> 48) | 0x100,
            i & 0xffff
        );
    }
    if i < 762 {
        let nets = [[198, 51, 100], [203, 0, 113], [192, 0, 2]];
        let n = nets[(i / 254) as usize];
        return format!("{}.{}.{}.{}", n[0], n[1], n[2], i % 254 + 1);
    }
    let k = i - 762;
    format!(
        "100.{}.{}.{}",
        64 + (k >> 16) % 64,
        (k >> 8) & 0xff,
        k & 0xff
    )
}

fn days_to_civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn stamp(t: i64) -> String {
    let (y, m, d) = days_to_civil(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "[{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000]",
        MONTHS[(m - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn size(s: &str) -> u64 {
    let (n, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>().expect("--size: a number with K, M or G") * mult
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let out = get("--out").expect("--out PATH");
    let total = size(&get("--size").unwrap_or_else(|| "100M".into()));
    let clients: u64 = get("--clients").map_or(10_000, |s| s.parse().expect("--clients"));
    let v6: u64 = get("--v6").map_or(20, |s| s.parse().expect("--v6"));
    let shape = get("--lines").unwrap_or_else(|| "mixed".into());
    let xff = args.iter().any(|a| a == "--xff");
    let end: i64 = get("--end").map_or(1_795_262_400, |s| s.parse().expect("--end"));
    let span: i64 = get("--span").map_or(3600, |s| s.parse().expect("--span"));
    let mut rng = Rng(get("--seed").map_or(7, |s| s.parse().expect("--seed")) | 1);

    let names: Vec<String> = (0..clients).map(|i| client(i, v6)).collect();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    // Estimated line count, to spread the lines over the span.
    let avg = match shape.as_str() {
        "short" => 150,
        "long" => 370,
        _ => 260,
    };
    let lines = (total / avg).max(1);
    let (mut written, mut n) = (0u64, 0u64);
    let mut line = Vec::with_capacity(1024);
    while written < total {
        let t = end - span + (n.min(lines) as i64 * span) / lines as i64;
        // nginx writes a line when the request ends: a second or two late.
        let t = if rng.below(10) == 0 {
            t - rng.below(3) as i64
        } else {
            t
        };
        // A few clients are much busier than the rest.
        let c = if rng.below(4) == 0 {
            rng.below((clients / 100).max(1))
        } else {
            rng.below(clients)
        };
        let long = match shape.as_str() {
            "short" => false,
            "long" => true,
            _ => rng.below(2) == 0,
        };
        let path = if rng.below(50) == 0 {
            rng.pick(&ATTACKS)
        } else if long {
            rng.pick(&LONG_PATHS)
        } else {
            rng.pick(&SHORT_PATHS)
        };
        let method = ["GET", "GET", "GET", "GET", "POST", "HEAD"][rng.below(6) as usize];
        let proto = ["HTTP/1.1", "HTTP/1.1", "HTTP/2.0"][rng.below(3) as usize];
        let status = [
            200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 304, 304, 301,
            302, 404, 404, 403, 400, 401, 499, 500, 502,
        ][rng.below(26) as usize];
        let bytes = if status == 304 { 0 } else { rng.below(90_000) };
        let (referer, ua) = if long {
            (rng.pick(&REFERERS), rng.pick(&BROWSERS))
        } else {
            ("-", rng.pick(&BOTS))
        };
        let peer: &str = if xff && rng.below(5) != 0 {
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"][rng.below(4) as usize]
        } else {
            &names[c as usize]
        };
        line.clear();
        write!(
            line,
            "{peer} - - {} \"{method} {path} {proto}\" {status} {bytes} \"{referer}\" \"{ua}\"",
            stamp(t)
        )?;
        if xff {
            if peer.starts_with("10.0.0.") {
                write!(line, " \"{}\"", names[c as usize])?;
            } else {
                line.extend_from_slice(b" \"-\"");
            }
        }
        line.push(b'\n');
        w.write_all(&line)?;
        written += line.len() as u64;
        n += 1;
    }
    w.flush()
}
