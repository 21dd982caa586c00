//! The `firedrill` binary: everything lives in the library; this only hands over the arguments.

fn main() -> std::process::ExitCode {
    firedrill::cli::main_with_args(std::env::args_os())
}
