//! `warden new`: a new plugin project.

use std::path::PathBuf;

use super::scaffold;

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits, `-` and `_`. The
    /// project is created in a new directory of that name.
    name: String,
    /// Write it in Python instead of Rust.
    #[arg(long)]
    python: bool,
    /// Create the directory here instead of the current directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    r#in: PathBuf,
    /// The guest-sdk directory of a Warden checkout to depend on (default:
    /// the one this `warden` was built from).
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

/// `warden new`.
pub fn new_plugin(args: &NewArgs) -> anyhow::Result<()> {
    let language = if args.python {
        scaffold::Language::Python
    } else {
        scaffold::Language::Rust
    };
    let made = scaffold::create(&args.r#in, &args.name, language, args.sdk.as_deref())?;
    println!(
        "created plugin {} in {}
build it:  cd {} && {}
then copy {} into the plugins directory",
        made.id,
        made.dir.display(),
        made.dir.display(),
        made.build,
        made.component.display()
    );
    Ok(())
}
