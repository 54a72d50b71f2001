//! The `warden` binary; everything it does is in [`warden::cli`].

fn main() -> std::process::ExitCode {
    warden::cli::main()
}
