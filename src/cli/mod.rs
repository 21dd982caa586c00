//! The `firedrill` command line: argument parsing (clap), dispatch, and exit codes.
//!
//! Exit codes: 0 ok; 1 thresholds or SLOs failed (later issues); 2 bad input (arguments,
//! scenario, mock); 3 an invariant was violated (a found bug).

mod chaos;
mod queue;
mod run;

pub use run::EXIT_SLO_FAILED;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code for a run that met its checks.
pub const EXIT_OK: u8 = 0;
/// Exit code for bad input: arguments, scenario or mock files.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for a broken invariant (a found bug) or a run that hit a safety bound.
pub const EXIT_INVARIANT: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "firedrill",
    version,
    about = "Deterministic simulator and chaos testbed for cloud control planes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capacity calculator: simulate an open-loop c-server station and print the exact
    /// queueing-theory answer beside it.
    Queue(queue::QueueArgs),
    /// Run a scenario file: prints the seed, a progress bar on a terminal, a summary table, and
    /// writes summary.json (exit 0 ok, 1 SLOs failed, 2 bad input, 3 a broken invariant).
    Run(run::RunArgs),
    /// Check scenario and mock files without running them (exit 0 or 2).
    Validate(run::ValidateArgs),
    /// Show the shipped scenarios, distributions and dependency mocks.
    List(run::ListArgs),
    /// Print the JSON Schema of scenario files (for editors).
    Schema,
    /// Swarm: run seeds A..B, each with a random fault plan from the scenario's [chaos] set,
    /// check the invariants, shrink failures to minimal reproductions (exit 0 none failed, 3
    /// some did).
    Chaos(chaos::ChaosArgs),
    /// Run a reproduction file and check it reproduces its expected trace bit for bit (exit 0
    /// reproduced, 1 diverged).
    Replay(chaos::ReplayArgs),
}

/// Bad input found after parsing; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    BadInput(String),
}

/// Parses `args` (including the program name) and runs the command; prints to stdout/stderr.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints usage errors to stderr and --help/--version to stdout.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                EXIT_BAD_INPUT
            } else {
                EXIT_OK
            });
        }
    };
    let result = match cli.command {
        Command::Queue(args) => queue::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Validate(args) => run::validate(&args),
        Command::List(args) => run::list(&args),
        Command::Chaos(args) => chaos::chaos(&args),
        Command::Replay(args) => chaos::replay(&args),
        Command::Schema => {
            println!("{}", crate::scenario::scenario_schema().to_pretty());
            Ok(EXIT_OK)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError::BadInput(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
