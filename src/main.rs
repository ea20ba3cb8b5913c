//! The `canary` binary: parse arguments, set up logging, run a command, map the
//! outcome to an exit code. Errors are printed once, in `main`.

use std::io::Write;
use std::process::ExitCode;

use canary::cli::{Cli, Command, ImportCommand};
use canary::{app, telemetry};
use clap::Parser;

/// Why a command did not succeed: the errors to print (none when there is nothing to
/// add, such as a closed stdout) and the exit code.
struct Failure {
    errors: Vec<anyhow::Error>,
    code: u8,
}

impl Failure {
    /// One error, exit code 1 (an error, never a verdict).
    fn error(error: anyhow::Error) -> Self {
        Self::with_code(error, 1)
    }

    fn with_code(error: anyhow::Error, code: u8) -> Self {
        Self {
            errors: vec![error],
            code,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::error(error)
    }
}

fn main() -> ExitCode {
    // clap exits with 2 on a usage error, but 2 means "hold" to pipelines: usage
    // errors exit 1 like every other error.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    telemetry::init();
    match execute(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            for error in &failure.errors {
                eprintln!("error: {}", app::error_message(error));
            }
            ExitCode::from(failure.code)
        }
    }
}

/// Runs one command; `Ok` holds the exit code of a command that ran (a verdict's code
/// for `analyze`, `run`, `submit --wait` and `wait`).
fn execute(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Analyze(args) => {
            let (judgement, rendered) = app::analyze(&args, app::Terminal::of_stdout())?;
            write_stdout(&rendered)?;
            Ok(judgement.verdict.exit_code())
        }
        Command::Run(args) => {
            let (verdict, rendered) =
                runtime()?.block_on(app::run(&args, app::Terminal::of_stdout()))?;
            write_stdout(&rendered)?;
            Ok(verdict.exit_code())
        }
        Command::Serve(args) => {
            runtime()?.block_on(app::serve(&args, app::shutdown_signal()))?;
            Ok(0)
        }
        Command::Submit(args) => {
            let runtime = runtime()?;
            // 4: the flag has another active analysis (named in the message).
            let id = runtime.block_on(app::submit(&args)).map_err(|error| {
                let code = app::submit_error_exit_code(&error);
                Failure::with_code(error, code)
            })?;
            println!("{id}");
            match args.wait {
                None => Ok(0),
                Some(timeout) => print_wait(runtime.block_on(app::wait_for(
                    &args.server,
                    args.token.as_deref(),
                    id,
                    timeout,
                ))),
            }
        }
        Command::Wait(args) => print_wait(runtime()?.block_on(app::wait(&args))),
        Command::Report(args) => {
            let colour = app::Terminal::of_stdout().colour();
            let summary = runtime()?.block_on(app::fetch_report(&args, colour))?;
            write_stdout(&summary)?;
            Ok(0)
        }
        Command::Simulate(args) => {
            let output = runtime()?.block_on(app::simulate(&args))?;
            write_stdout(&output)?;
            Ok(0)
        }
        Command::Import(ImportCommand::Kayenta(args)) => {
            let outcome = app::import_kayenta(&args).map_err(Failure::error)?;
            for note in &outcome.not_carried {
                eprintln!("not carried over: {note}");
            }
            write_stdout(&outcome.stdout)?;
            Ok(0)
        }
        Command::CheckProfile(args) => {
            let (summary, errors) = app::check_profiles(&args);
            write_stdout(&summary)?;
            if errors.is_empty() {
                Ok(0)
            } else {
                Err(Failure { errors, code: 1 })
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Runtime::new().map_err(|error| {
        Failure::error(anyhow::Error::new(error).context("cannot start the async runtime"))
    })
}

/// Writes `text` to stdout. A closed stdout (a pipeline that stopped reading) exits 1
/// with nothing more to say.
fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|_| Failure {
            errors: Vec::new(),
            code: 1,
        })
}

/// Prints a waited-for verdict and maps it to the exit code.
fn print_wait(outcome: anyhow::Result<(u8, String)>) -> Result<u8, Failure> {
    let (code, rendered) = outcome?;
    write_stdout(&rendered)?;
    Ok(code)
}
