//! Kernel tests for `fwctl selftest` (root): it builds its own namespaces,
//! so these tests run it as a user would, and check what it prints, its
//! exit status, that its namespaces are gone afterwards and that the
//! firewall of the namespace it ran from is exactly as before.

mod common;
use common::*;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// The firewall of this process's namespace, nftables included.
fn firewall_here() -> String {
    let mut s = host_firewall();
    if let Ok(out) = Command::new("nft").args(["list", "ruleset"]).output() {
        s.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    s
}

/// `fwctl --config CFG selftest --json` with a temp state file and run
/// directory (selftest uses neither of the host's), timed.
fn selftest(cfg: &std::path::Path) -> (Output, Value) {
    selftest_env(cfg, &[])
}

/// [`selftest`] with `env` set for selftest (and what it runs).
fn selftest_env(cfg: &std::path::Path, env: &[(&str, &str)]) -> (Output, Value) {
    let run = tempfile::tempdir().unwrap();
    let state = run.path().join("state.json");
    let t = Instant::now();
    let child = Command::new(fwctl_bin())
        .args(["--config", cfg.to_str().unwrap(), "--state"])
        .arg(&state)
        .args(["selftest", "--json"])
        .env("FWCTL_RUN_DIR", run.path())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    eprintln!("selftest took {:.2} s", t.elapsed().as_secs_f64());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // Nothing of the run is left: its namespaces are named after its pid
    // (other tests' runs may be going on beside it).
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    let mine = format!("fwst-{pid}-");
    let ours: Vec<&str> = left.lines().filter(|l| l.starts_with(&mine)).collect();
    assert!(ours.is_empty(), "namespaces left behind: {ours:?}");
    assert!(!state.exists(), "selftest wrote the --state file");
    (out, doc)
}

fn rows(doc: &Value) -> Vec<(String, String, String)> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["check"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
                r["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn shipped() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/fwctl.toml")
}

/// The host's own fwctl directories, as far as a run could change them:
/// whether each exists and when it last changed.
fn host_dirs() -> Vec<(bool, Option<std::time::SystemTime>)> {
    ["/var/lib/fwctl", "/run/fwctl"]
        .iter()
        .map(|d| {
            let m = std::fs::metadata(d).ok();
            (m.is_some(), m.and_then(|m| m.modified().ok()))
        })
        .collect()
}

#[test]
#[ignore = "needs root: kernel test"]
fn the_shipped_config_passes_every_check_and_the_host_is_untouched() {
    let before = firewall_here();
    let dirs = host_dirs();
    let (out, doc) = selftest(&shipped());
    let rows = rows(&doc);
    assert_eq!(out.status.code(), Some(0), "{rows:#?}");
    assert_eq!(doc["ok"], true);
    eprintln!("elapsed_ms: {}", doc["elapsed_ms"]);
    let passed: Vec<&str> = rows
        .iter()
        .filter(|r| r.1 == "pass")
        .map(|r| r.0.as_str())
        .collect();
    for want in [
        "ruleset applies in the twin",
        "service ssh (tcp/22)",
        "service http (tcp/80)",
        "service https (tcp/443)",
        "closed port dropped and logged",
        "blacklisted address dropped",
        "throttled service refuses over its rate (ssh)",
        "whitelist gets in",
        "IPv6 neighbour discovery works",
        "LOG line reaches scan and bans",
        "capture bans a SYN scan",
    ] {
        assert!(passed.contains(&want), "{want} did not pass: {rows:#?}");
    }
    // What the shipped config lacks is skipped, with the reason.
    let skipped: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.1 == "skipped")
        .map(|r| (r.0.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("fed address dropped", "no [[feed]] configured"),
            ("capture bans a decoy handshake", "no [capture] decoy_ports"),
            ("forward chain holds", "no [forward] protect"),
        ]
    );
    assert_eq!(
        firewall_here(),
        before,
        "selftest changed this namespace's firewall"
    );
    assert_eq!(
        host_dirs(),
        dirs,
        "selftest wrote /var/lib/fwctl or /run/fwctl"
    );
}

/// Feeds, decoys and a UDP service on the nftables backend: the rows the
/// shipped config skips run too.
#[test]
#[ignore = "needs root: kernel test"]
fn feeds_decoys_and_udp_pass_on_nftables() {
    let before = firewall_here();
    let text = std::fs::read_to_string(shipped())
        .unwrap()
        .replace("[sets]\n", "[firewall]\nbackend = \"nftables\"\n\n[sets]\n")
        .replace(
            "# decoy_ports = [23, 2323, 3389, 5900]",
            "decoy_ports = [2323, 5900]",
        )
        .replace("files = [\"blacklist.txt\"]", "")
        + "\n[[service]]\nname = \"dns\"\nport = 53\nprotocol = \"udp\"\n\n[[feed]]\nname = \"drop\"\nurl = \"https://feeds.example.net/drop.txt\"\n";
    let (_d, cfg) = config(&text);
    let (out, doc) = selftest(&cfg);
    let rows = rows(&doc);
    assert_eq!(out.status.code(), Some(0), "{rows:#?}");
    for want in [
        "service dns (udp/53)",
        "fed address dropped",
        "capture bans a decoy handshake",
    ] {
        let r = rows.iter().find(|r| r.0 == want).unwrap();
        assert_eq!(r.1, "pass", "{r:?}");
    }
    assert!(rows[0].2.contains("nftables"), "{:?}", rows[0]);
    assert_eq!(firewall_here(), before);
}

/// The shipped config with `[forward]` set (and the backend named).
fn forward_config(backend: &str, forward: &str) -> String {
    std::fs::read_to_string(shipped())
        .unwrap()
        .replace(
            "[sets]\n",
            &format!("[firewall]\nbackend = \"{backend}\"\n\n[sets]\n"),
        )
        .replace("files = [\"blacklist.txt\"]", "")
        + &format!("\n[forward]\n{forward}")
}

fn forward_row(rows: &[(String, String, String)]) -> &(String, String, String) {
    let r = rows.last().unwrap();
    assert_eq!(r.0, "forward chain holds", "{rows:#?}");
    r
}

/// `[forward] protect = "docker"`: the twin gets Docker's chains before
/// apply and a container publishing ssh's port and a free one; the client
/// reaches both through DNAT and the forward chain, the banned source does
/// not. Its fourth namespace goes with the others (`selftest` checks).
#[test]
#[ignore = "needs root: kernel test"]
fn the_forward_row_passes_with_protect_docker_on_iptables() {
    let before = firewall_here();
    // Forwarding goes on in the twin only.
    let fwd = ["ipv4/ip_forward", "ipv6/conf/all/forwarding"]
        .map(|f| std::fs::read_to_string(format!("/proc/sys/net/{f}")).unwrap());
    let (_d, cfg) = config(&forward_config("iptables", "protect = \"docker\"\n"));
    let (out, doc) = selftest(&cfg);
    let rows = rows(&doc);
    assert_eq!(out.status.code(), Some(0), "{rows:#?}");
    let r = forward_row(&rows);
    assert_eq!(r.1, "pass", "{r:?}");
    for want in [
        "hook DOCKER-USER, default accept",
        "tcp/22 (service, reached)",
        "tcp/8080 (not a service, reached)",
        "the banned source to tcp/22: dropped",
    ] {
        assert!(r.2.contains(want), "{want}: {r:?}");
    }
    assert_eq!(firewall_here(), before);
    let now = ["ipv4/ip_forward", "ipv6/conf/all/forwarding"]
        .map(|f| std::fs::read_to_string(format!("/proc/sys/net/{f}")).unwrap());
    assert_eq!(now, fwd, "selftest changed this namespace's forwarding");
}

/// `default = "drop"` on nftables (Docker's chains iptables-nft ones): the
/// published port that is no [[service]] is dropped, ssh's still passes.
#[test]
#[ignore = "needs root: kernel test"]
fn the_forward_row_passes_with_default_drop_on_nftables() {
    let before = firewall_here();
    let text = forward_config("nftables", "protect = \"docker\"\ndefault = \"drop\"\n");
    let (_d, cfg) = config(&text);
    let (out, doc) = selftest(&cfg);
    let rows = rows(&doc);
    assert_eq!(out.status.code(), Some(0), "{rows:#?}");
    let r = forward_row(&rows);
    assert_eq!(r.1, "pass", "{r:?}");
    for want in [
        "default drop",
        "tcp/22 (service, reached)",
        "tcp/8080 (not a service, dropped)",
        "the banned source to tcp/22: dropped",
    ] {
        assert!(r.2.contains(want), "{want}: {r:?}");
    }
    assert_eq!(firewall_here(), before);
}

/// The row can fail: Docker's rules never reach the twin (its
/// iptables-restore replaced by `true`), so there is no DNAT and the
/// service port is answered by the twin itself, not the container. The
/// nftables backend does not use iptables-restore, so apply still works.
#[test]
#[ignore = "needs root: kernel test"]
fn the_forward_row_fails_when_the_published_port_does_not_reach_the_container() {
    let before = firewall_here();
    let text = forward_config("nftables", "protect = \"docker\"\ndefault = \"drop\"\n");
    let (_d, cfg) = config(&text);
    let (out, doc) = selftest_env(&cfg, &[("FWCTL_IPTABLES_RESTORE", "/bin/true")]);
    let rows = rows(&doc);
    assert_eq!(out.status.code(), Some(1), "{rows:#?}");
    let failed: Vec<&(String, String, String)> = rows.iter().filter(|r| r.1 == "fail").collect();
    assert_eq!(failed.len(), 1, "{rows:#?}");
    assert_eq!(failed[0].0, "forward chain holds");
    assert!(
        failed[0].2.contains("tcp/22 (service, not reached)"),
        "{:?}",
        failed[0]
    );
    assert_eq!(firewall_here(), before);
}

/// A realistic breakage: sshd moved to tcp/PORT, and the config lists it
/// with the wrong protocol. The twin opens udp/PORT as told, so only the
/// comparison with what this host serves catches it, on that row alone.
#[test]
#[ignore = "needs root: kernel test"]
fn a_service_listed_with_the_wrong_protocol_fails_its_own_row() {
    let before = firewall_here();
    // The "sshd" of this namespace: a TCP listener on a free port.
    let sshd = std::net::TcpListener::bind("[::]:0").unwrap();
    let port = sshd.local_addr().unwrap().port();
    let text = std::fs::read_to_string(shipped())
        .unwrap()
        .replace("files = [\"blacklist.txt\"]", "")
        + &format!("\n[[service]]\nname = \"ssh-alt\"\nport = {port}\nprotocol = \"udp\"\n");
    let (_d, cfg) = config(&text);
    let (out, doc) = selftest(&cfg);
    let rows = rows(&doc);
    assert_eq!(out.status.code(), Some(1), "{rows:#?}");
    assert_eq!(doc["ok"], false);
    let failed: Vec<&(String, String, String)> = rows.iter().filter(|r| r.1 == "fail").collect();
    assert_eq!(failed.len(), 1, "{rows:#?}");
    assert_eq!(failed[0].0, format!("service ssh-alt (udp/{port})"));
    assert!(
        failed[0]
            .2
            .contains(&format!("this host serves tcp/{port}, not udp/{port}")),
        "{:?}",
        failed[0]
    );
    drop(sshd);
    assert_eq!(firewall_here(), before);
}

/// Without root selftest cannot run: exit 2 and one line saying so.
#[test]
#[ignore = "needs root: kernel test"]
fn without_root_it_cannot_run_and_says_so() {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(fwctl_bin())
        .args(["--config", shipped().to_str().unwrap(), "selftest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root; fix: sudo fwctl"), "{err}");
    assert!(out.stdout.is_empty());
}

/// The names of the namespaces of selftest run `pid` that exist now.
fn namespaces_of(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("fwst-{pid}-")))
        .map(str::to_string)
        .collect()
}

/// The processes in namespace `ns`.
fn pids_in(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll (bounded) until `f` holds.
fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn start(cfg: &std::path::Path, run: &std::path::Path) -> std::process::Child {
    Command::new(fwctl_bin())
        .args(["--config", cfg.to_str().unwrap(), "selftest"])
        .env("FWCTL_RUN_DIR", run)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Ctrl-C (and systemd's SIGTERM) in the middle of the checks: the run
/// stops, says so, exits 2 and deletes its namespaces and processes.
#[test]
#[ignore = "needs root: kernel test"]
fn an_interrupted_run_deletes_its_namespaces() {
    let before = firewall_here();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let run = tempfile::tempdir().unwrap();
        let child = start(&shipped(), run.path());
        let pid = child.id();
        let host = format!("fwst-{pid}-host");
        // The twin's service listener runs: the checks are under way.
        until("the twin's listener", || !pids_in(&host).is_empty());
        unsafe { libc::kill(pid as i32, sig) };
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(2), "signal {sig}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("interrupted"), "{err}");
        assert_eq!(namespaces_of(pid), Vec::<String>::new(), "signal {sig}");
        assert_eq!(
            temp_dirs_of(pid),
            Vec::<std::path::PathBuf>::new(),
            "signal {sig}"
        );
    }
    assert_eq!(firewall_here(), before);
}

/// SIGKILL runs no guard: the children die with selftest (the kernel kills
/// them), and the next run deletes the namespaces left behind.
#[test]
#[ignore = "needs root: kernel test"]
fn a_killed_runs_leftovers_go_with_the_next_run() {
    let run = tempfile::tempdir().unwrap();
    // With the forward row's container: four namespaces.
    let (_d, cfg) = config(&forward_config("iptables", "protect = \"docker\"\n"));
    let mut child = start(&cfg, run.path());
    let pid = child.id();
    let host = format!("fwst-{pid}-host");
    // The listener and capture (which, unlike the listener, does not end
    // when selftest's end of its stdin closes).
    until("capture in the twin", || {
        pids_in(&host).split_whitespace().count() >= 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    until("the twin's processes to die with selftest", || {
        pids_in(&host).is_empty()
    });
    let mut left = namespaces_of(pid);
    left.sort();
    let want = ["attacker", "client", "ctr", "host"].map(|r| format!("fwst-{pid}-{r}"));
    assert_eq!(left, want);
    // Its temp directory (a copy of the config, the twin's state) too.
    assert_eq!(temp_dirs_of(pid).len(), 1);
    let (out, _) = selftest(&shipped());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
    assert_eq!(temp_dirs_of(pid), Vec::<std::path::PathBuf>::new());
}

/// The temp directories a selftest run of `pid` made.
fn temp_dirs_of(pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("fwctl-selftest.{pid}.");
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}
