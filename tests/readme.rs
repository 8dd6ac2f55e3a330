//! The front door stays intact: README.md is small, starts with its title
//! and the two commands a newcomer runs, and every fwctl command line in its
//! shell blocks parses with the current command-line definition, so the
//! docs cannot drift from the CLI.

use clap::Parser;
use fwctl::cli::Cli;
use std::path::Path;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
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
        text.len() < 100 * 1024,
        "README.md is {} bytes; a scripted edit once multiplied it to 29 MB",
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

#[test]
fn every_command_line_in_the_readme_parses() {
    let text = readme();
    let mut checked = 0;
    let mut bad = Vec::new();
    for block in shell_blocks(&text) {
        for cmd in commands(&block) {
            checked += 1;
            match Cli::try_parse_from(&cmd) {
                Ok(_) => {}
                Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {}
                Err(e) => bad.push(format!("{}: {}", cmd.join(" "), e.kind())),
            }
            // Files the commands name under rules/ are shipped.
            for w in &cmd {
                if w.starts_with("rules/") {
                    assert!(
                        Path::new(env!("CARGO_MANIFEST_DIR")).join(w).exists(),
                        "{w} in {cmd:?}"
                    );
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "README command lines that do not parse:\n{}",
        bad.join("\n")
    );
    assert!(
        checked >= 8,
        "only {checked} command lines found: is the README's shell block format still ```sh?"
    );
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
