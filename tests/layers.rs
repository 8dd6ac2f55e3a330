//! The architecture, checked: every module of `src/` imports only its own
//! layer and the ones below it, the module graph has no cycle, every process
//! spawn and every `unsafe` block lives under `src/sys/`, and nothing outside
//! test code reaches the test doubles. Layers, bottom up: units, core, ports,
//! sys, cmd, cli (and main, which sees the crate from outside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every .rs file under src, as a module path (`core::ruleset::save`).
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(src()).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if parts.last().map(String::as_str) == Some("mod") {
                parts.pop();
            }
            let name = parts.join("::");
            (name != "lib").then_some((name, p))
        })
        .collect()
}

fn layer(module: &str) -> Option<usize> {
    let top = module.split("::").next().unwrap();
    ["units", "core", "ports", "sys", "cmd", "cli", "main"]
        .iter()
        .position(|l| *l == top)
}

/// The file's code without comments and without its `#[cfg(test)]` module
/// (test code may use anything, the test doubles included).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        let t = l.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod "))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        // Trailing comments; string contents are harmless here.
        let l = match l.find(" // ") {
            Some(i) => &l[..i],
            None => l,
        };
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Paths named in `code`: `crate::a::b`, `super::a`, `fwctl::a` (main), and
/// `child::...` for the file's own `mod child;` declarations; brace groups
/// expanded one level.
fn references(module: &str, code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let here: Vec<&str> = module.split("::").collect();
    let children: Vec<String> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    let bytes = code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b':') {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let (base, after): (Vec<String>, &str) = if let Some(r) = rest.strip_prefix("crate::") {
            (vec![], r)
        } else if let Some(r) = rest.strip_prefix("fwctl::").filter(|_| module == "main") {
            (vec![], r)
        } else if rest.starts_with("super::") {
            let mut r = rest;
            let mut up = here.clone();
            while let Some(x) = r.strip_prefix("super::") {
                up.pop();
                r = x;
            }
            (up.iter().map(|s| s.to_string()).collect(), r)
        } else if let Some(c) = children
            .iter()
            .find(|c| rest.starts_with(&format!("{c}::")))
        {
            let mut v: Vec<String> = here.iter().map(|s| s.to_string()).collect();
            v.push(c.clone());
            (v, &rest[c.len() + 2..])
        } else {
            i += 1;
            continue;
        };
        // The path up to a brace group, then each item of the group.
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        let path = &after[..end];
        let mut names: Vec<String> = vec![];
        let prefix: Vec<String> = base
            .iter()
            .cloned()
            .chain(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            )
            .collect();
        if after[end..].starts_with('{') {
            let close = after[end..].find('}').map_or(after.len(), |j| end + j);
            for item in after[end + 1..close].split(',') {
                let item = item.split_whitespace().next().unwrap_or("");
                let mut v = prefix.clone();
                if item != "self" && !item.is_empty() {
                    v.extend(item.split("::").map(str::to_string));
                }
                names.push(v.join("::"));
            }
        } else {
            names.push(prefix.join("::"));
        }
        out.extend(names);
        i += 1;
    }
    out
}

/// The module a path lands in: its longest prefix that is a file of src.
fn resolve(path: &str, mods: &BTreeMap<String, PathBuf>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| mods.contains_key(m))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let mut g = BTreeMap::new();
    for (m, p) in &mods {
        let deps: BTreeSet<String> = references(m, &code(p))
            .iter()
            .filter_map(|r| resolve(r, &mods))
            .filter(|d| d != m)
            .collect();
        g.insert(m.clone(), deps);
    }
    g
}

#[test]
fn every_module_imports_only_its_layer_and_those_below() {
    let mut bad = Vec::new();
    for (m, deps) in graph() {
        if m.starts_with("testing") {
            continue;
        }
        let Some(l) = layer(&m) else {
            bad.push(format!("{m} is in no layer"));
            continue;
        };
        for d in deps {
            if d.starts_with("testing") {
                bad.push(format!("{m} uses the test support {d} outside its tests"));
            } else if layer(&d).is_none_or(|dl| dl > l) {
                bad.push(format!("{m} imports {d}, a layer above it"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A cycle in `g`, if it has one (depth-first search; a back edge is a cycle).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for d in &g[m] {
            match state.get(d.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|s| s == d).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if !state.contains_key(m) {
            if let Some(c) = visit(m, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The graph between the top modules of each layer (`core::config` with all
/// its submodules is one node), without the edges inside one node.
fn top_graph(g: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").take(2).collect::<Vec<_>>().join("::");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in g {
        let t = top(m);
        let e = out.entry(t.clone()).or_default();
        e.extend(deps.iter().map(|d| top(d)).filter(|d| *d != t));
    }
    out
}

#[test]
fn the_module_graph_has_no_cycle() {
    if let Some(c) = find_cycle(&graph()) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

/// Between whole modules too: e.g. the config imports nothing that uses the
/// config (`core::config` and `core::capture` once imported each other through
/// different files, which the file graph does not see).
#[test]
fn the_top_modules_import_each_other_without_cycle() {
    if let Some(c) = find_cycle(&top_graph(&graph())) {
        panic!("import cycle between modules: {}", c.join(" -> "));
    }
}

#[test]
fn processes_and_unsafe_code_live_only_in_the_system_layer() {
    let mut bad = Vec::new();
    for (m, p) in modules() {
        if m.starts_with("sys") {
            continue;
        }
        let c = code(&p);
        for needle in [
            "Command::new",
            "unsafe {",
            "unsafe fn",
            "unsafe impl",
            "libc::",
        ] {
            if c.contains(needle) {
                bad.push(format!("{} contains {needle}", p.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The error types `-> Result<T, E>` returns in `code`, as written (`E`
/// trimmed); `io::Result<T>` and other one-argument aliases are not listed.
fn returned_errors(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("-> ") {
        let rest = code[at + 3..].trim_start();
        let Some(args) = rest.strip_prefix("Result<") else {
            continue;
        };
        // The top-level comma of the generic arguments, then their end.
        let (mut depth, mut comma) = (0usize, None);
        for (i, c) in args.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                ')' | ']' => depth = depth.saturating_sub(1),
                '>' if depth == 0 => {
                    if let Some(k) = comma {
                        out.push(args[k + 1..i].trim().to_string());
                    }
                    break;
                }
                '>' => depth -= 1,
                ',' if depth == 0 => comma = Some(i),
                _ => {}
            }
        }
    }
    out
}

/// Functions that still return `Result<_, String>`, in files another change
/// is rewriting; each must still be there (then the list only shrinks).
const STRING_ERRORS_LEFT: &[&str] = &["sys::netlink"];

/// The library's errors are typed (thiserror): no function outside the
/// commands (anyhow at the edge) and the test doubles returns a bare String.
#[test]
fn the_library_returns_no_string_errors() {
    let mut bad = Vec::new();
    let mut left = Vec::new();
    for (m, p) in modules() {
        if m.starts_with("cmd") || m.starts_with("testing") || m == "main" {
            continue;
        }
        let n = returned_errors(&code(&p))
            .iter()
            .filter(|e| *e == "String")
            .count();
        if n == 0 {
            continue;
        }
        if STRING_ERRORS_LEFT.contains(&m.as_str()) {
            left.push(m);
        } else {
            bad.push(format!(
                "{}: {n} function(s) return Result<_, String>; fix: a thiserror type",
                p.display()
            ));
        }
    }
    for m in STRING_ERRORS_LEFT {
        if !left.iter().any(|l| l == m) {
            bad.push(format!(
                "{m} returns no String error now; fix: remove it from STRING_ERRORS_LEFT"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The checks above must see what they claim to: a known edge, a planted
/// cycle and a planted upward import are each found.
#[test]
fn the_checker_finds_what_it_looks_for() {
    let g = graph();
    assert!(
        g["cmd::scan"].contains("core::scan::decide"),
        "{:?}",
        g["cmd::scan"]
    );
    assert!(g["sys::statefile"].contains("sys::lock"));
    assert!(g["core::ruleset::drift"].contains("core::ruleset"));
    assert!(g["sys::iptables"].contains("sys::iptables::save"));
    let r = references(
        "core::x",
        "use super::y::{self, Z};\nlet a = crate::cmd::apply::run();\n",
    );
    assert!(
        r.contains("core::y") && r.contains("core::y::Z") && r.contains("cmd::apply::run"),
        "{r:?}"
    );
    let r = references("core::x", "mod kid;\nfn f() { kid::go() }\n");
    assert!(r.contains("core::x::kid::go"), "{r:?}");
    assert!(!code(&src().join("sys/lock.rs")).contains("mod tests"));
    let planted: BTreeMap<String, BTreeSet<String>> = [
        ("core::a::x", vec!["core::b"]),
        ("core::b", vec!["core::a::y"]),
        ("core::a::y", vec![]),
    ]
    .into_iter()
    .map(|(m, d)| (m.to_string(), d.into_iter().map(str::to_string).collect()))
    .collect();
    assert!(find_cycle(&planted).is_none());
    assert!(find_cycle(&top_graph(&planted)).is_some());
    let e = returned_errors(
        "fn a() -> Result<Vec<(u8, u16)>, String> {}\nfn b(x: u8)\n    -> Result<(), Invalid>;\nlet c = |k| -> Result<i64, String> { 1 };\nfn d() -> io::Result<String> {}\nfn e() -> StepResult<String> {}\n",
    );
    assert_eq!(e, ["String", "Invalid", "String"]);
}

/// Signs of a tool's text in `code`: the parsers of what the tools print
/// (ipset's `parse_headers`, iptables-save's `parse_save`, `from_save` and
/// its `Saved` snapshot), a process's raw output (an `Output`'s `.stdout` or
/// `.stderr`; `io::stdout()` is written `::`), text cut into columns
/// (`split_whitespace`) or into lines (`.lines()`), and string literals that
/// begin a line of a tool's script (ipset's `add`/`del`/`create`/`flush`/
/// `swap`/`destroy`, an iptables rule's `-A`/`-I`).
fn tool_text(code: &str) -> Vec<&'static str> {
    [
        "parse_headers",
        "parse_save",
        "from_save",
        "Saved::",
        ".stdout",
        ".stderr",
        "split_whitespace",
        ".lines()",
        "\"add ",
        "\"del ",
        "\"create ",
        "\"flush ",
        "\"swap ",
        "\"destroy ",
        "\"-A ",
        "\"-I ",
    ]
    .into_iter()
    .filter(|n| code.contains(n))
    .collect()
}

/// Text of fwctl's own that a command may cut up, with why: each entry
/// must still match (then the list only shrinks).
const OWN_TEXT: &[(&str, &str)] = &[
    // The examples of clap's help, turned into a man page's EXAMPLES.
    ("cmd::man", ".lines()"),
];

/// Commands speak data to the ports: a tool's text (what it prints, the
/// scripts it reads) is parsed and written in `sys`, next to the tool
/// (issue 29). Commands get their own input through clap (the CLI), `core`
/// (the config) and serde, so a sign of text handling in `src/cmd/` outside
/// test code is a parser that belongs in `sys`; OWN_TEXT lists the few
/// places that walk fwctl's own text.
#[test]
fn commands_never_parse_tool_output_nor_build_tool_scripts() {
    let mut bad = Vec::new();
    let mut used = BTreeSet::new();
    for (m, p) in modules() {
        if !m.starts_with("cmd") {
            continue;
        }
        for needle in tool_text(&code(&p)) {
            if OWN_TEXT.contains(&(m.as_str(), needle)) {
                used.insert((m.clone(), needle));
            } else {
                bad.push(format!("{} contains {needle}; fix: parse it in src/sys/, next to the tool, and hand the command data", p.display()));
            }
        }
    }
    for (m, needle) in OWN_TEXT {
        if !used.contains(&(m.to_string(), *needle)) {
            bad.push(format!(
                "{m} has no {needle} now; fix: remove it from OWN_TEXT"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The check sees what it looks for, and not `io::stdout()`.
    assert_eq!(
        tool_text("let h = ipset::parse_headers(&t);\nlet s = format!(\"del {set} {a}\\n\");\n"),
        ["parse_headers", "\"del "]
    );
    assert_eq!(
        tool_text("for l in String::from_utf8_lossy(&out.stdout).lines() {\n let f: Vec<_> = l.split_whitespace().collect();\n"),
        [".stdout", "split_whitespace", ".lines()"]
    );
    assert!(tool_text("std::io::stdout().lock(); std::io::stderr();").is_empty());
}

/// One lock, one wait: a command takes the run lock through `cmd::run`
/// (whose `LOCK_WAIT` says why it is what it is), never with a wait of
/// its own (scan once waited 10 s and apply 30 s).
#[test]
fn commands_take_the_run_lock_only_through_the_run_context() {
    let bad: Vec<String> = modules()
        .into_iter()
        .filter(|(m, _)| m.starts_with("cmd") && m != "cmd::run")
        .filter(|(_, p)| {
            let c = code(p);
            c.contains("lock::acquire(") || c.contains("LOCK_WAIT")
        })
        .map(|(_, p)| format!("{} takes the run lock itself; fix: Run::start with Needs::LOCK (or run::take_lock)", p.display()))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
