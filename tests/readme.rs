//! The front door stays small and the reference stays true: README.md is
//! under 15 KB, starts with its title and the two commands a newcomer runs,
//! and links every file of docs/; every fwctl command line in the shell
//! blocks of README.md and docs/*.md parses with the current command-line
//! definition, and every relative link in them names a file that exists, so
//! the docs cannot drift from the CLI or from each other.

use clap::Parser;
use fwctl::cli::Cli;
use std::path::{Path, PathBuf};

/// README's size bound (issue 31): a newcomer reads it in five minutes.
const README_MAX_BYTES: usize = 15_000;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// docs/*.md, by path relative to the repository, sorted.
fn docs() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| {
            let name = format!("docs/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// README.md and every docs/*.md, by path relative to the repository.
fn all_pages() -> Vec<(String, String)> {
    let mut out = vec![("README.md".to_string(), readme())];
    out.extend(docs());
    out
}

/// The shell code blocks (```sh, ```bash, ```console): their lines.
fn shell_blocks(text: &str) -> Vec<Vec<String>> {
    enum In {
        Text,
        Shell(Vec<String>),
        Other,
    }
    let mut blocks = Vec::new();
    let mut state = In::Text;
    for line in text.lines() {
        let fence = line.trim_start().strip_prefix("```");
        state = match (state, fence) {
            (In::Text, Some(info)) if ["sh", "bash", "console", "shell"].contains(&info.trim()) => {
                In::Shell(Vec::new())
            }
            (In::Text, Some(_)) => In::Other,
            (In::Shell(b), Some(_)) => {
                blocks.push(b);
                In::Text
            }
            (In::Other, Some(_)) => In::Text,
            (In::Shell(mut b), None) => {
                b.push(line.to_string());
                In::Shell(b)
            }
            (s, None) => s,
        };
    }
    blocks
}

/// Words of one shell line (quotes honoured), with comments dropped.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    has = true;
                }
                '#' if !has => break,
                c if c.is_whitespace() => {
                    if has {
                        out.push(std::mem::take(&mut cur));
                        has = false;
                    }
                }
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                        has = true;
                    }
                }
                c => {
                    cur.push(c);
                    has = true;
                }
            },
        }
    }
    if has {
        out.push(cur);
    }
    out
}

/// The fwctl command lines of a block, as argument vectors (`fwctl ...`,
/// `cargo run --release -- ...`, after `sudo` and VAR=value, without
/// redirections), split at `&&`, `||`, `;` and `|`.
fn commands(block: &[String]) -> Vec<Vec<String>> {
    let mut joined = Vec::new();
    let mut acc = String::new();
    for l in block {
        if let Some(part) = l.strip_suffix('\\') {
            acc += part;
            acc.push(' ');
        } else {
            acc += l;
            joined.push(std::mem::take(&mut acc));
        }
    }
    let mut out = Vec::new();
    for line in joined {
        let mut cmd: Vec<String> = Vec::new();
        let mut all = Vec::new();
        for w in words(&line) {
            if ["&&", "||", ";", "|"].contains(&w.as_str()) {
                all.push(std::mem::take(&mut cmd));
            } else {
                cmd.push(w);
            }
        }
        all.push(cmd);
        for mut c in all {
            // Redirections and what they name.
            let mut i = 0;
            while i < c.len() {
                let w = c[i].trim_start_matches(|ch: char| ch.is_ascii_digit());
                if [">", ">>", "<"].contains(&w) {
                    c.drain(i..(i + 2).min(c.len()));
                } else if w.starts_with('>') || w.starts_with('<') {
                    c.remove(i);
                } else {
                    i += 1;
                }
            }
            while c
                .first()
                .is_some_and(|w| w == "sudo" || (w.contains('=') && !w.starts_with('-')))
            {
                c.remove(0);
            }
            if c.first().is_some_and(|w| w == "fwctl") {
                out.push(c);
            } else if c.starts_with(&[
                "cargo".into(),
                "run".into(),
                "--release".into(),
                "--".into(),
            ]) {
                let mut v = vec!["fwctl".to_string()];
                v.extend(c[4..].iter().cloned());
                out.push(v);
            }
        }
    }
    out
}

#[test]
fn the_readme_is_intact_and_short() {
    let text = readme();
    assert!(
        text.len() < README_MAX_BYTES,
        "README.md is {} bytes, the bound is {README_MAX_BYTES}: the reference goes into docs/",
        text.len()
    );
    assert!(
        text.starts_with("# fwctl\n"),
        "{}",
        &text[..text.len().min(200)]
    );
}

#[test]
fn the_readme_starts_with_the_two_commands_a_newcomer_runs() {
    let text = readme();
    let blocks = shell_blocks(&text);
    let first = &blocks[0];
    let cmds = commands(first);
    assert_eq!(cmds.len(), 1, "one fwctl command first: {cmds:?}");
    let c = &cmds[0];
    assert_eq!(c[1], "scan", "the main job: {c:?}");
    assert!(c.iter().any(|w| w == "--dryrun"), "needs no root: {c:?}");
    let log = c
        .iter()
        .position(|w| w == "--log")
        .map(|i| &c[i + 1])
        .unwrap();
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(log).is_file(),
        "the shipped sample {log}"
    );
    let rest: Vec<&str> = first
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rest.last(),
        Some(&"sudo .ci/run"),
        "the whole suite second: {first:?}"
    );
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".ci/run")
        .is_file());
}

/// The fwctl command lines of one page that do not parse, and how many it has.
fn bad_command_lines(name: &str, text: &str) -> (Vec<String>, usize) {
    let mut checked = 0;
    let mut bad = Vec::new();
    for block in shell_blocks(text) {
        for cmd in commands(&block) {
            checked += 1;
            match Cli::try_parse_from(&cmd) {
                Ok(_) => {}
                Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {}
                Err(e) => bad.push(format!("{name}: {}: {}", cmd.join(" "), e.kind())),
            }
            // Files the commands name under rules/ are shipped.
            for w in &cmd {
                if w.starts_with("rules/") && !repo().join(w).exists() {
                    bad.push(format!("{name}: {w} does not exist: {}", cmd.join(" ")));
                }
            }
        }
    }
    (bad, checked)
}

#[test]
fn every_command_line_in_the_readme_and_the_docs_parses() {
    let mut bad = Vec::new();
    let mut total = 0;
    for (name, text) in all_pages() {
        let (b, checked) = bad_command_lines(&name, &text);
        bad.extend(b);
        total += checked;
        if name == "README.md" {
            assert!(
                checked >= 5,
                "only {checked} command lines found in README.md: is its shell block format still ```sh?"
            );
        }
    }
    assert!(
        bad.is_empty(),
        "command lines that do not parse:\n{}",
        bad.join("\n")
    );
    assert!(
        total >= 30,
        "only {total} command lines found in README.md and docs/: is the shell block format still ```sh?"
    );
}

/// The targets of the markdown links of a page (`[text](target)`), outside
/// code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans: a `[x](y)` inside backticks is not a link.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            } else {
                plain.push_str("code");
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let tail = &rest[at + 2..];
            let Some(end) = tail.find(')') else { break };
            out.push(tail[..end].trim().to_string());
            rest = &tail[end..];
        }
    }
    out
}

/// What is wrong with each relative link of a page: a target that does not
/// exist, or an anchor (`#section`), which breaks silently when a section
/// moves to another file, as README's did.
fn bad_links(name: &str, text: &str) -> Vec<String> {
    let dir = repo().join(name);
    let dir = dir.parent().unwrap();
    let mut bad = Vec::new();
    for target in links(text) {
        if target.starts_with("https://") || target.starts_with("http://") {
            continue;
        }
        if target.is_empty() {
            bad.push(format!("{name}: an empty link"));
        } else if target.contains('#') {
            bad.push(format!(
                "{name}: ({target}): link a file, not an anchor (sections move between files)"
            ));
        } else if target.starts_with('/') || !dir.join(&target).exists() {
            bad.push(format!(
                "{name}: ({target}) does not exist (relative to {})",
                dir.strip_prefix(repo()).unwrap().display()
            ));
        }
    }
    bad
}

#[test]
fn every_link_in_the_readme_and_the_docs_resolves() {
    let mut bad = Vec::new();
    let mut total = 0;
    for (name, text) in all_pages() {
        total += links(&text).len();
        bad.extend(bad_links(&name, &text));
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
    assert!(
        total >= 15,
        "only {total} links found: is the link parser still right?"
    );
}

#[test]
fn the_readme_links_every_file_of_the_docs_and_each_says_what_it_is() {
    let targets: Vec<PathBuf> = links(&readme())
        .iter()
        .map(|t| PathBuf::from(t.as_str()))
        .collect();
    let docs = docs();
    assert!(
        docs.len() >= 8,
        "docs/: {:?}",
        docs.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    for (name, text) in &docs {
        assert!(
            targets.contains(&PathBuf::from(name)),
            "{name} is not linked from README.md's Reference list"
        );
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let title = lines.next().unwrap_or("");
        let purpose = lines.next().unwrap_or("");
        assert!(
            title.starts_with("# "),
            "{name} starts with a # Title: {title:?}"
        );
        assert!(
            !purpose.starts_with('#') && !purpose.starts_with("```"),
            "{name}: a one-line purpose under its title, not {purpose:?}"
        );
    }
}

/// README's example config (the first TOML block) is a ten-line config
/// fwctl accepts, and so is every other TOML block (the `[[source]]`).
#[test]
fn the_readme_config_example_parses() {
    let text = readme();
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match (&mut cur, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) if info.trim() == "toml" => cur = Some(String::new()),
            (Some(_), Some(_)) => blocks.push(cur.take().unwrap()),
            (Some(b), None) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    assert!(!blocks.is_empty(), "a config example in README.md");
    let lines = blocks[0].lines().filter(|l| !l.trim().is_empty()).count();
    assert!(lines <= 12, "a ten-line config, not {lines} lines");
    let no_feed = |p: &Path| -> std::io::Result<String> {
        Err(std::io::Error::other(format!("no feed {}", p.display())))
    };
    for block in &blocks {
        let config = fwctl::core::config::Config::parse(block, Path::new("README.md"), &no_feed);
        assert!(config.is_ok(), "{:?}\n{block}", config.err());
    }
}

/// The link checker itself: a missing file, an anchor and an absolute path
/// are caught; code spans, code blocks and web links are left alone.
#[test]
fn the_link_checker_sees_what_it_must() {
    let page = "See [ok](docs/usage.md), [`rules`](rules/fwctl.toml) and [web](https://example.net/x#y).\n\
                [gone](docs/nosuch.md) [anchor](#threat-model) [abs](/etc/passwd)\n\
                `[code](nosuch.md)`\n```sh\n[block](nosuch.md)\n```\n";
    assert_eq!(
        links(page),
        [
            "docs/usage.md",
            "rules/fwctl.toml",
            "https://example.net/x#y",
            "docs/nosuch.md",
            "#threat-model",
            "/etc/passwd"
        ]
    );
    let bad = bad_links("README.md", page);
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad[0].contains("docs/nosuch.md"), "{bad:?}");
    assert!(bad[1].contains("anchor"), "{bad:?}");
    assert!(bad[2].contains("/etc/passwd"), "{bad:?}");
    // From docs/, links are relative to docs/.
    assert!(bad_links("docs/x.md", "[r](../rules/fwctl.toml) [u](usage.md)").is_empty());
    assert_eq!(bad_links("docs/x.md", "[r](rules/fwctl.toml)").len(), 1);
}

/// The checker itself: a wrong flag is caught, continuations, comments,
/// sudo, redirections and chains are understood.
#[test]
fn the_command_line_checker_sees_what_it_must() {
    let block: Vec<String> = [
        "# a comment with fwctl scan --nosuch",
        "cargo run --release -- scan --dryrun --log 'rules/sample-iptables.log' \\",
        "  --howmany 5 --within 30m --ipset blacklist --removeafter 1h",
        "sudo fwctl man --dir /tmp/m && fwctl completions bash > /etc/x  # done",
        "FWCTL_X=1 fwctl --nosuch | head",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cmds = commands(&block);
    assert_eq!(cmds.len(), 4, "{cmds:?}");
    assert_eq!(cmds[0][..3], ["fwctl", "scan", "--dryrun"]);
    assert_eq!(cmds[0][4], "rules/sample-iptables.log");
    assert_eq!(cmds[2], ["fwctl", "completions", "bash"]);
    assert!(Cli::try_parse_from(&cmds[0]).is_ok());
    assert!(Cli::try_parse_from(&cmds[1]).is_ok());
    assert!(Cli::try_parse_from(&cmds[3]).is_err(), "--nosuch must fail");
    let blocks = shell_blocks("```text\nfwctl --nosuch\n```\n```sh\nfwctl list\n```\n");
    assert_eq!(blocks, vec![vec!["fwctl list".to_string()]]);
}
