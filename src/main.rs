//! fwctl: argument parsing and dispatch only; the work is in the library.

use clap::{CommandFactory, Parser};
use fwctl::cli::{Cli, Command};
use fwctl::cmd;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, state) = (&cli.config, cli.state.as_deref());
    // Ok(false): the command ran and found something that needs attention.
    let result = match cli.command {
        Command::Apply { dry_run, confirm } => {
            cmd::apply::apply(config, dry_run, confirm, state).map(|()| true)
        }
        Command::Scan(opts) => cmd::scan::run(&opts, config, state).map(|()| true),
        Command::Capture(opts) => cmd::capture::run(&opts, config, state).map(|()| true),
        Command::Status(opts) => cmd::status::run(&opts, config, state),
        Command::Ban(opts) => cmd::ban::ban(&opts, config, state).map(|()| true),
        Command::Unban(opts) => cmd::unban::unban(&opts, config, state).map(|()| true),
        Command::List(opts) => cmd::list::list(&opts, config, state).map(|()| true),
        Command::Doctor(opts) => cmd::doctor::run(&opts, config, state),
        Command::Completions { shell } => {
            cmd::man::completions(shell, Cli::command()).map(|()| true)
        }
        Command::Man { dir } => cmd::man::man(dir.as_deref(), Cli::command()).map(|()| true),
        Command::Confirm => cmd::apply::confirm().map(|()| true),
        Command::Remove { sets } => cmd::apply::remove(config, sets).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            // One line: anyhow's alternate form joins the context chain with ": ".
            eprintln!("fwctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
