//! The `warden` binary; everything it does is in [`warden::cli`].

fn main() -> anyhow::Result<()> {
    warden::cli::main()
}
