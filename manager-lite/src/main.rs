//! `manager-lite`: `serve` runs the control plane; every other command is an
//! admin client of a running server. The command line lives in
//! [`manager_lite::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(manager_lite::cli::main(
        &std::env::args_os().collect::<Vec<_>>(),
    ))
}
