//! The `warden` command line, built inside the test package so that the
//! end-to-end tests always run the current code (`CARGO_BIN_EXE_...`).

fn main() -> std::process::ExitCode {
    warden::cli::main()
}
