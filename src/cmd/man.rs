//! `fwctl completions` and `fwctl man`: generated from the clap definitions,
//! the one source of truth for `--help` too. Both are rendered into memory
//! first, so a reader that stops early (`| head`) ends the run quietly.

use super::out;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// A completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "fwctl", &mut buf);
    out(buf)
}

/// Text for roff: backslashes and dashes escaped, a leading dot or quote
/// kept from being read as a request.
fn roff_text(line: &str) -> String {
    let s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The after-help text (examples, notes) as its own section: lines indented
/// by two spaces are commands and keep their lines (no-fill), the rest is
/// running text.
fn extra(cmd: &clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let Some(text) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) else {
        return Ok(());
    };
    let text = text.to_string();
    writeln!(w, ".SH EXAMPLES")?;
    let mut literal = false;
    for line in text.lines() {
        let is_cmd = line.starts_with("  ");
        if is_cmd != literal {
            writeln!(w, "{}", if is_cmd { ".nf\n.RS" } else { ".RE\n.fi" })?;
            literal = is_cmd;
        }
        if line.trim().is_empty() {
            writeln!(w, ".PP")?;
        } else {
            writeln!(
                w,
                "{}",
                roff_text(if is_cmd { line.trim_start() } else { line })
            )?;
        }
    }
    if literal {
        writeln!(w, ".RE\n.fi")?;
    }
    Ok(())
}

/// One page: clap_mangen's sections, with the examples rendered line by line.
fn page(cmd: clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).section("8");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    extra(&cmd, w)?;
    if cmd.get_version().is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

/// fwctl(8) on stdout, or fwctl.8 and one fwctl-SUB.8 per subcommand in `dir`.
pub fn man(dir: Option<&Path>, mut cmd: clap::Command) -> Result<()> {
    // Building propagates the global options (--config, --state) into every
    // subcommand, so each page's synopsis shows them.
    cmd.build();
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        page(cmd, &mut buf)?;
        return out(buf);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: String, c: clap::Command| -> Result<()> {
        let path = dir.join(format!("{name}.8"));
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        page(c, &mut f).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    };
    for sub in cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
    {
        let name = format!("fwctl-{}", sub.get_name());
        write(
            name.clone(),
            sub.clone()
                .bin_name(format!("fwctl {}", sub.get_name()))
                .display_name(name)
                .version(env!("CARGO_PKG_VERSION")),
        )?;
    }
    write("fwctl".into(), cmd)
}
