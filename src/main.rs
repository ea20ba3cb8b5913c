//! The `canary` binary: parse arguments, set up logging, run a command, map the
//! outcome to an exit code. Errors are printed once, here.

use std::io::Write;
use std::process::ExitCode;

use canary::cli::{Cli, Command};
use canary::{app, telemetry};
use clap::Parser;

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
    match cli.command {
        Command::Analyze(args) => match app::analyze(&args, app::Terminal::of_stdout()) {
            Ok((judgement, rendered)) => {
                let mut stdout = std::io::stdout().lock();
                if stdout.write_all(rendered.as_bytes()).is_err() {
                    return ExitCode::from(1);
                }
                ExitCode::from(judgement.verdict.exit_code())
            }
            Err(error) => {
                eprintln!("error: {}", app::error_message(&error));
                ExitCode::from(1)
            }
        },
        Command::Run(args) => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: cannot start the async runtime: {error}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(app::run(&args, app::Terminal::of_stdout())) {
                Ok((verdict, rendered)) => {
                    let mut stdout = std::io::stdout().lock();
                    if stdout.write_all(rendered.as_bytes()).is_err() {
                        return ExitCode::from(1);
                    }
                    ExitCode::from(verdict.exit_code())
                }
                Err(error) => {
                    eprintln!("error: {}", app::error_message(&error));
                    ExitCode::from(1)
                }
            }
        }
        Command::Serve(args) => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            match runtime.block_on(app::serve(&args, app::shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {}", app::error_message(&error));
                    ExitCode::from(1)
                }
            }
        }
        Command::Submit(args) => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            let id = match runtime.block_on(app::submit(&args)) {
                Ok(id) => id,
                Err(error) => {
                    eprintln!("error: {}", app::error_message(&error));
                    // 4: the flag has another active analysis (named in the message).
                    return ExitCode::from(app::submit_error_exit_code(&error));
                }
            };
            println!("{id}");
            match args.wait {
                None => ExitCode::SUCCESS,
                Some(timeout) => print_wait(runtime.block_on(app::wait_for(
                    &args.server,
                    args.token.as_deref(),
                    id,
                    timeout,
                ))),
            }
        }
        Command::Wait(args) => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            print_wait(runtime.block_on(app::wait(&args)))
        }
        Command::Report(args) => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            let colour = app::Terminal::of_stdout().colour();
            match runtime.block_on(app::fetch_report(&args, colour)) {
                Ok(summary) => {
                    print!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {}", app::error_message(&error));
                    ExitCode::from(1)
                }
            }
        }
        Command::Simulate(args) => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            match runtime.block_on(app::simulate(&args)) {
                Ok(output) => {
                    print!("{output}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {}", app::error_message(&error));
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckProfile(args) => {
            let (summary, errors) = app::check_profiles(&args);
            print!("{summary}");
            for error in &errors {
                eprintln!("error: {}", app::error_message(error));
            }
            if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            None
        }
    }
}

/// Prints a waited-for verdict and maps it to the exit code.
fn print_wait(outcome: anyhow::Result<(u8, String)>) -> ExitCode {
    match outcome {
        Ok((code, rendered)) => {
            print!("{rendered}");
            let _ = std::io::stdout().flush();
            ExitCode::from(code)
        }
        Err(error) => {
            eprintln!("error: {}", app::error_message(&error));
            ExitCode::from(1)
        }
    }
}
