//! `binproxy`: the node agent's command line. Everything lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    binproxy::logging::init();
    let code = match binproxy::cli::parse(std::env::args_os().skip(1).collect()) {
        Ok(cmd) => binproxy::cli::execute(cmd) as u8,
        Err(e) => {
            eprintln!("binproxy: {e}\n\n{}", binproxy::cli::USAGE);
            2
        }
    };
    ExitCode::from(code)
}
