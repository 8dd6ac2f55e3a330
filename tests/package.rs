//! The Debian package: `packaging/build-deb` builds it, lintian finds no error
//! (and docs/operations.md explains every warning), and it installs, upgrades from a lower
//! version, is removed and purged in a throwaway Debian root that mmdebstrap
//! makes in a temporary directory. Every package command runs inside it through
//! chroot; this machine's own `/` is never written and nothing is mounted.
//! Needs root, cargo-deb, mmdebstrap, lintian and Debian's mirror (.ci/run
//! installs the tools), hence ignored under a plain `cargo test`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// stdout of a command that must succeed.
fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The throwaway root. Dropping it deletes the directory, unless something is
/// mounted below it (then it is left for a human: deleting through a mount
/// could reach files outside).
struct Root {
    dir: Option<tempfile::TempDir>,
}

impl Root {
    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// `args` run inside the root, with a clean environment.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("chroot")
            .arg(self.path())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .output()
            .unwrap()
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn mounts_below(&self) -> Vec<String> {
        let me = self.path().to_str().unwrap().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&me))
            .collect()
    }

    /// Every path in the root (relative), symlinks not followed.
    fn tree(&self) -> BTreeSet<PathBuf> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.insert(p.strip_prefix(base).unwrap().to_path_buf());
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    walk(base, &p, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(self.path(), self.path(), &mut out);
        out
    }

    /// The calls the fake systemctl saw since the last call, one a line.
    fn systemctl_calls(&self) -> String {
        let log = self.file("tmp/systemctl.log");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::write(&log, "").unwrap();
        calls
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let mounts = self.mounts_below();
        if !mounts.is_empty() {
            let dir = self.dir.take().unwrap().keep();
            eprintln!(
                "{} still has mounts {mounts:?}: left in place",
                dir.display()
            );
        }
    }
}

/// A throwaway root of this machine's Debian suite, with the package's
/// dependencies (iptables, ipset) installed, so dpkg needs no network later.
/// `.ci/run` makes the same root as a tarball while the tests compile
/// (mmdebstrap waits on the mirror, not the CPU) and names it in
/// `FWCTL_TEST_DEBIAN_ROOT`; without it, mmdebstrap runs here.
fn debian_root() -> Root {
    let release = std::fs::read_to_string("/etc/os-release").unwrap();
    let suite = release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .expect("VERSION_CODENAME in /etc/os-release: a Debian machine");
    let root = Root {
        dir: Some(tempfile::tempdir().unwrap()),
    };
    if let Some(tar) = std::env::var_os("FWCTL_TEST_DEBIAN_ROOT") {
        ok(
            Command::new("tar")
                .arg("-C")
                .arg(root.path())
                .arg("-xf")
                .arg(&tar)
                .output()
                .unwrap(),
            "tar -xf $FWCTL_TEST_DEBIAN_ROOT",
        );
    } else {
        ok(
            Command::new("mmdebstrap")
                .args(mmdebstrap_args(suite))
                .arg(root.path())
                .output()
                .expect("mmdebstrap (apt-get install mmdebstrap)"),
            "mmdebstrap",
        );
    }
    assert!(root.mounts_below().is_empty(), "mmdebstrap left mounts");
    root
}

/// What the root is made with (.ci/run makes the same, see there).
fn mmdebstrap_args(suite: &str) -> [&str; 4] {
    [
        "--quiet",
        "--variant=apt",
        "--include=iptables,ipset",
        suite,
    ]
}

/// The package, built with `packaging/build-deb` (with `--deb-version`, when given).
fn build(out: &Path, version: Option<&str>) {
    let mut c = Command::new(repo().join("packaging/build-deb"));
    if let Some(v) = version {
        c.args(["--deb-version", v]);
    }
    ok(
        c.arg("--output").arg(out).output().unwrap(),
        "packaging/build-deb",
    );
}

/// The repo's cron file as the package ships it: every entry commented out.
fn packaged_cron(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '@') {
                format!("# {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// Files copied as they are: (repo path, installed path).
fn copied() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("rsyslog/10-iptables.conf", "etc/rsyslog.d/10-iptables.conf"),
        ("logrotate/iptables", "etc/logrotate.d/iptables"),
        ("rules/fwctl.toml", "etc/fwctl/fwctl.toml"),
        ("rules/blacklist.txt", "etc/fwctl/blacklist.txt"),
        (
            "prometheus/fwctl.yml",
            "usr/share/fwctl/prometheus/fwctl.yml",
        ),
        (
            "prometheus/fwctl-alerts.yml",
            "usr/share/fwctl/prometheus/fwctl-alerts.yml",
        ),
        ("grafana/fwctl.json", "usr/share/fwctl/grafana/fwctl.json"),
        ("tmpfs/fstab", "usr/share/fwctl/tmpfs/fstab"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    for e in std::fs::read_dir(repo().join("systemd")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        v.push((
            format!("systemd/{name}"),
            format!("usr/lib/systemd/system/{name}"),
        ));
    }
    v
}

/// What a fresh install (and an upgrade) must have put in place; `edited`:
/// the admin's edit of the config, which the upgrade keeps.
fn check_installed_files(root: &Root, edited: Option<&str>) {
    for (src, dest) in copied() {
        if let (Some(text), "etc/fwctl/fwctl.toml") = (edited, dest.as_str()) {
            assert_eq!(root.read(&dest), text, "the edit is kept");
            continue;
        }
        assert_eq!(
            root.read(&dest),
            std::fs::read_to_string(repo().join(&src)).unwrap(),
            "{dest} is not {src}"
        );
    }
    // Every unit runs a binary the package installed.
    for (src, dest) in copied() {
        if !src.starts_with("systemd/") {
            continue;
        }
        for l in root.read(&dest).lines() {
            if let Some(cmd) = l.strip_prefix("ExecStart=") {
                let bin = cmd.split_whitespace().next().unwrap();
                assert_eq!(bin, "/usr/sbin/fwctl", "{dest}: {l}");
            }
        }
    }
    let repo_cron = std::fs::read_to_string(repo().join("cron/fwctl")).unwrap();
    let cron = root.read("etc/cron.d/fwctl");
    assert_eq!(cron, packaged_cron(&repo_cron));
    assert_ne!(cron, repo_cron, "cron/fwctl has entries to comment out");
    let active: Vec<&str> = cron
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    assert!(active.is_empty(), "packaged cron runs {active:?}");
    for shell in ["bash", "zsh", "fish"] {
        let want = ok(
            Command::new(env!("CARGO_BIN_EXE_fwctl"))
                .args(["completions", shell])
                .output()
                .unwrap(),
            "completions",
        );
        let path = match shell {
            "bash" => "usr/share/bash-completion/completions/fwctl",
            "zsh" => "usr/share/zsh/vendor-completions/_fwctl",
            _ => "usr/share/fish/vendor_completions.d/fwctl.fish",
        };
        assert_eq!(root.read(path), want, "{path}");
    }
    for page in ["fwctl", "fwctl-apply", "fwctl-scan", "fwctl-capture"] {
        assert!(root
            .file(&format!("usr/share/man/man8/{page}.8.gz"))
            .is_file());
    }
    use std::os::unix::fs::PermissionsExt;
    let state = std::fs::metadata(root.file("var/lib/fwctl")).unwrap();
    assert!(state.is_dir());
    assert_eq!(state.permissions().mode() & 0o7777, 0o700);
    // The binary runs there, and renders the shipped config's ruleset.
    let v = ok(root.run(&["fwctl", "--version"]), "fwctl --version");
    assert_eq!(v.trim(), format!("fwctl {}", env!("CARGO_PKG_VERSION")));
    let plan = ok(
        root.run(&[
            "fwctl",
            "apply",
            "--dry-run",
            "--config",
            "/etc/fwctl/fwctl.toml",
        ]),
        "fwctl apply --dry-run in the root",
    );
    assert!(plan.contains("FWCTL"), "{plan}");
    // Upgrades keep the admin's edits of every file under /etc.
    let conffiles = ok(
        root.run(&["dpkg-query", "-W", "-f=${Conffiles}", "fwctl"]),
        "dpkg-query",
    );
    for f in [
        "/etc/fwctl/fwctl.toml",
        "/etc/fwctl/blacklist.txt",
        "/etc/cron.d/fwctl",
        "/etc/rsyslog.d/10-iptables.conf",
        "/etc/logrotate.d/iptables",
    ] {
        assert!(conffiles.contains(&format!(" {f} ")), "{f}: {conffiles}");
    }
}

/// Units the admin enabled by hand (`systemctl enable` makes these links).
const ENABLED: [(&str, &str); 4] = [
    ("sysinit.target.wants", "fwctl-apply.service"),
    ("multi-user.target.wants", "fwctl-capture.service"),
    ("timers.target.wants", "fwctl-scan.timer"),
    ("local-fs.target.wants", "ram.mount"),
];

fn link(root: &Root, (dir, unit): (&str, &str)) -> PathBuf {
    root.file(&format!("etc/systemd/system/{dir}/{unit}"))
}

fn version(root: &Root) -> String {
    ok(
        root.run(&["dpkg-query", "-W", "-f=${Version}", "fwctl"]),
        "dpkg-query",
    )
}

#[test]
#[ignore = "needs root: kernel test"]
fn the_deb_installs_upgrades_removes_and_purges_in_a_throwaway_root() {
    let dir = tempfile::tempdir().unwrap();
    let new_deb = dir.path().join("fwctl_new.deb");
    let old_deb = dir.path().join("fwctl_old.deb");
    let new_version = format!("{}-1", env!("CARGO_PKG_VERSION"));
    let old_version = format!("{}~old-1", env!("CARGO_PKG_VERSION"));
    build(&new_deb, None);
    build(&old_deb, Some(&old_version));

    // lintian: no error; each warning is explained in docs/operations.md.
    let out = Command::new("lintian")
        .arg(&new_deb)
        .output()
        .expect("lintian (apt-get install lintian)");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !report.lines().any(|l| l.starts_with("E:")),
        "lintian errors:\n{report}"
    );
    let readme = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    for l in report.lines().filter(|l| l.starts_with("W:")) {
        let tag = l.split_whitespace().nth(2).unwrap();
        assert!(
            readme.contains(&format!("`{tag}`")),
            "lintian warning {tag} is not explained in docs/operations.md: {l}"
        );
    }

    let root = debian_root();
    for (deb, name) in [(&new_deb, "new.deb"), (&old_deb, "old.deb")] {
        std::fs::copy(deb, root.file(&format!("tmp/{name}"))).unwrap();
    }
    let before = root.tree();
    // A systemd that records what the maintainer scripts ask of it.
    assert!(!root.file("usr/bin/systemctl").exists());
    std::fs::create_dir_all(root.file("run/systemd/system")).unwrap();
    std::fs::write(
        root.file("usr/bin/systemctl"),
        "#!/bin/sh\necho \"$*\" >> /tmp/systemctl.log\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.file("usr/bin/systemctl"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    // Install (the lower version): files in place, next steps printed,
    // nothing enabled or started.
    let said = ok(root.run(&["dpkg", "-i", "/tmp/old.deb"]), "install");
    assert_eq!(version(&root), old_version);
    for step in [
        "/etc/fwctl/fwctl.toml",
        "fwctl apply --confirm 2m",
        "systemctl enable",
        "fwctl doctor",
        "fwctl selftest",
    ] {
        assert!(said.contains(step), "next steps lack {step}: {said}");
    }
    assert_eq!(root.systemctl_calls(), "--system daemon-reload\n");
    for l in ENABLED {
        assert!(!link(&root, l).exists(), "{l:?} enabled by the install");
    }
    check_installed_files(&root, None);

    // The admin edits the config and enables units; then the upgrade.
    let mut config = root.read("etc/fwctl/fwctl.toml");
    config.push_str("# edited by the admin\n");
    std::fs::write(root.file("etc/fwctl/fwctl.toml"), &config).unwrap();
    for l in ENABLED {
        let p = link(&root, l);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(format!("/usr/lib/systemd/system/{}", l.1), &p).unwrap();
    }
    let said = ok(root.run(&["dpkg", "-i", "/tmp/new.deb"]), "upgrade");
    assert!(
        said.contains(&format!("over ({old_version})")),
        "not an upgrade: {said}"
    );
    assert!(!said.contains("Next steps"), "{said}");
    assert_eq!(version(&root), new_version);
    // Only capture, watch and sync restart, and only if running (try-restart).
    assert_eq!(
        root.systemctl_calls(),
        "--system daemon-reload\ntry-restart fwctl-capture.service fwctl-watch.service fwctl-sync.service\n"
    );
    for l in ENABLED {
        assert!(link(&root, l).is_symlink(), "{l:?} disabled by the upgrade");
    }
    check_installed_files(&root, Some(&config));

    // Remove: services and timers stopped, every unit disabled, the ruleset
    // left (and said so), config and state kept.
    let said = ok(root.run(&["dpkg", "-r", "fwctl"]), "remove");
    assert!(said.contains("stays in the"), "{said}");
    assert!(said.contains("fwctl remove --sets"), "{said}");
    let calls = root.systemctl_calls();
    assert!(
        calls.contains(
            "stop fwctl-capture.service fwctl-watch.service fwctl-sync.service fwctl-scan.timer fwctl-feeds.timer\n"
        ),
        "{calls}"
    );
    assert!(!calls.contains("start"), "{calls}");
    for l in ENABLED {
        assert!(!link(&root, l).is_symlink(), "{l:?} still enabled");
    }
    assert!(!root.file("usr/sbin/fwctl").exists());
    assert!(!root
        .file("usr/lib/systemd/system/fwctl-apply.service")
        .exists());
    assert_eq!(root.read("etc/fwctl/fwctl.toml"), config);
    assert!(root.file("var/lib/fwctl").is_dir());

    // Purge, on a root without systemd (the scripts must not need it), after
    // fwctl wrote state, a secret and its cron log: nothing of fwctl is left.
    std::fs::remove_dir_all(root.file("run/systemd")).unwrap();
    std::fs::remove_file(root.file("usr/bin/systemctl")).unwrap();
    std::fs::write(root.file("var/lib/fwctl/state.json"), "{}").unwrap();
    std::fs::write(root.file("etc/fwctl/redis.secret"), "x").unwrap();
    std::fs::write(root.file("var/log/fwctl.log"), "x").unwrap();
    ok(root.run(&["dpkg", "--purge", "fwctl"]), "purge");
    let after = root.tree();
    // dpkg's own records and logs, and the test's files, may differ.
    let bookkeeping = |p: &&PathBuf| {
        ![
            "var/lib/dpkg",
            "var/log/dpkg.log",
            "var/cache/debconf",
            "tmp",
            "run",
        ]
        .iter()
        .any(|b| p.starts_with(b))
    };
    let added: Vec<_> = after.difference(&before).filter(bookkeeping).collect();
    let removed: Vec<_> = before.difference(&after).filter(bookkeeping).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "purge left {added:?}, took {removed:?}"
    );
    let named: Vec<_> = after
        .iter()
        .filter(|p| p.to_string_lossy().contains("fwctl") && !p.starts_with("tmp"))
        .collect();
    assert!(named.is_empty(), "left after purge: {named:?}");
}
