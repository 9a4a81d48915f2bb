//! The `sesame` binary: parse the command line and hand off.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    sesame::cli::run(sesame::cli::Cli::parse())
}
