//! `fwctl completions` and `fwctl man`: generated from the clap definitions,
//! the one source of truth for `--help` too.

use anyhow::{Context, Result};
use std::path::Path;

/// A completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> Result<()> {
    clap_complete::generate(shell, &mut cmd, "fwctl", &mut std::io::stdout());
    Ok(())
}

/// fwctl(8) on stdout, or fwctl.8 and one fwctl-SUB.8 per subcommand in `dir`.
pub fn man(dir: Option<&Path>, cmd: clap::Command) -> Result<()> {
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd)
            .section("8")
            .render(&mut std::io::stdout())?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: String, c: clap::Command| -> Result<()> {
        let path = dir.join(format!("{name}.8"));
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        clap_mangen::Man::new(c).section("8").render(&mut f)?;
        Ok(())
    };
    for sub in cmd.get_subcommands() {
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
