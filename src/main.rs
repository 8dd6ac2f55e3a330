//! fwctl: argument parsing and dispatch only; the work is in the library.

use clap::{CommandFactory, Parser};
use fwctl::cli::{Cli, Command};
use fwctl::cmd::{self, Invocation};
use std::process::ExitCode;

// Big blocks on huge pages: why in sys::mem.
#[global_allocator]
static ALLOC: fwctl::sys::mem::HugeAlloc = fwctl::sys::mem::HugeAlloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let inv = Invocation {
        config: cli.config,
        state: cli.state,
    };
    // selftest's exit status has three values of its own (see its help).
    if let Command::Selftest(opts) = &cli.command {
        return cmd::selftest::run(opts, &inv);
    }
    // Ok(false): the command ran and found something that needs attention.
    let result = match cli.command {
        Command::Apply {
            dry_run,
            confirm,
            force,
        } => cmd::apply::apply(&inv, dry_run, confirm, force),
        Command::Scan(opts) => cmd::scan::run(&opts, &inv).map(|()| true),
        Command::TestSource(opts) => cmd::test_source::run(&opts, &inv),
        Command::Watch(opts) => cmd::watch::run(&opts, &inv).map(|()| true),
        Command::Why(opts) => cmd::why::run(&opts, &inv).map(|()| true),
        Command::Capture(opts) => cmd::capture::run(&opts, &inv).map(|()| true),
        Command::Status(opts) => cmd::status::run(&opts, &inv),
        Command::Ban(opts) => cmd::ban::ban(&opts, &inv).map(|()| true),
        Command::Unban(opts) => cmd::unban::unban(&opts, &inv).map(|()| true),
        Command::List(opts) => cmd::list::list(&opts, &inv).map(|()| true),
        Command::Doctor(opts) => cmd::doctor::run(&opts, &inv),
        Command::Completions { shell } => {
            cmd::man::completions(shell, Cli::command()).map(|()| true)
        }
        Command::Man { dir } => cmd::man::man(dir.as_deref(), Cli::command()).map(|()| true),
        Command::Notify {
            command: cmd::notify::NotifyCommand::Test(opts),
        } => cmd::notify::test(&opts, &inv).map(|()| true),
        Command::Feeds {
            command: cmd::feeds::FeedsCommand::Update(opts),
        } => cmd::feeds::update(&opts, &inv),
        Command::Sync(opts) => cmd::sync::run(&opts, &inv).map(|()| true),
        Command::Fleet {
            command: cmd::fleet_admin::FleetCommand::Keygen(opts),
        } => cmd::fleet_admin::keygen(&opts, &inv).map(|()| true),
        Command::Fleet {
            command: cmd::fleet_admin::FleetCommand::Purge(opts),
        } => cmd::fleet_admin::purge(&opts, &inv).map(|()| true),
        Command::Selftest(_) => unreachable!("dispatched above"),
        Command::SelftestListen(opts) => cmd::selftest::listen(&opts).map(|()| true),
        Command::Confirm => cmd::apply::confirm().map(|()| true),
        Command::Remove { sets } => cmd::apply::remove(&inv, sets).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        // `fwctl man | head`: the reader had enough; nothing to report.
        Err(e) if cmd::closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: anyhow's alternate form joins the context chain with ": ".
            eprintln!("fwctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
