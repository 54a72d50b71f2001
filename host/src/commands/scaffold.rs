//! `warden new`: a new plugin project that builds as it is, outside this
//! repository, with the seed's storage plugin as its starting code.
//!
//! A Rust plugin is a crate of its own (its own workspace), with a
//! `rust-toolchain.toml` that brings the `wasm32-wasip2` target, a
//! `.cargo/config.toml` that builds for it by default, and a path
//! dependency on the `warden-sdk` of the Warden checkout the command was
//! built from (or the one `--sdk` names). A Python plugin is a module and a
//! `build.sh` that runs the Python SDK's build.

use std::path::{Path, PathBuf};

/// The Rust SDK's directory in the checkout this binary was built from.
fn built_sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("guest-sdk"), |root| root.join("guest-sdk"))
}

/// The seed's storage plugin, the starting code of a Rust plugin.
const RUST_EXAMPLE: &str = include_str!("../../../example-plugins/storage/src/lib.rs");
/// The seed's storage plugin in Python.
const PYTHON_EXAMPLE: &str =
    include_str!("../../../example-plugins/python-storage/python_storage.py");
/// The identity the examples declare, replaced by the new plugin's.
const EXAMPLE_RUST_ID: &str = "example.storage.StoragePlugin";

/// Which language a new plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A Rust crate built with cargo.
    Rust,
    /// A Python module built with componentize-py.
    Python,
}

/// Why a new plugin could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewError {
    /// The name cannot name a crate, module and identity.
    #[error(
        "{0:?} cannot name a plugin: use lower-case letters, digits, `-` and `_`, starting \
         with a letter"
    )]
    BadName(String),
    /// The directory is there already.
    #[error("{0} already exists; choose another name or remove it")]
    Exists(PathBuf),
    /// The SDK is not where it was expected.
    #[error(
        "cannot find Warden's SDK at {0}; pass --sdk DIR, the guest-sdk directory of a \
         Warden checkout"
    )]
    NoSdk(PathBuf),
    /// Writing the files failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What [`create`] made.
#[derive(Debug)]
pub struct Created {
    /// The new project's directory.
    pub dir: PathBuf,
    /// The plugin's identity.
    pub id: String,
    /// The command that builds it, run in `dir`.
    pub build: String,
    /// Where the built component lands, relative to `dir`.
    pub component: PathBuf,
}

/// Creates plugin `name` in a new directory `name` under `parent`, written
/// in `language`, depending on the SDK in `sdk` (default: the checkout
/// this binary was built from).
pub fn create(
    parent: &Path,
    name: &str,
    language: Language,
    sdk: Option<&Path>,
) -> Result<Created, NewError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(NewError::BadName(name.to_owned()));
    }
    let module = name.replace('-', "_");
    let sdk = match sdk {
        Some(dir) => dir.to_path_buf(),
        None => built_sdk_dir(),
    };
    let sdk = std::fs::canonicalize(&sdk).map_err(|_| NewError::NoSdk(sdk.clone()))?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(NewError::Exists(dir));
    }
    let write = |path: &Path, text: &str| {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| NewError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| NewError::Write { path, source })
    };
    match language {
        Language::Rust => {
            if !sdk.join("Cargo.toml").is_file() {
                return Err(NewError::NoSdk(sdk));
            }
            let id = format!("{module}.StoragePlugin");
            write(Path::new("Cargo.toml"), &rust_manifest(name, &sdk))?;
            write(Path::new("rust-toolchain.toml"), RUST_TOOLCHAIN)?;
            write(Path::new(".cargo/config.toml"), CARGO_CONFIG)?;
            write(Path::new(".gitignore"), "/target\n")?;
            write(
                Path::new("src/lib.rs"),
                &RUST_EXAMPLE.replace(EXAMPLE_RUST_ID, &id),
            )?;
            Ok(Created {
                dir,
                id,
                build: "cargo build --release".into(),
                component: Path::new("target/wasm32-wasip2/release").join(format!("{module}.wasm")),
            })
        }
        Language::Python => {
            let build_py = sdk.join("python").join("build.py");
            if !build_py.is_file() {
                return Err(NewError::NoSdk(sdk));
            }
            let file = format!("{module}.py");
            write(Path::new(&file), PYTHON_EXAMPLE)?;
            let build = format!(
                "#!/bin/sh\n# Builds {file} into {module}.wasm, a Warden plugin.\nset -e\ncd \"$(dirname \"$0\")\"\nexec python3 '{}' {file} -o {module}.wasm \"$@\"\n",
                build_py.display()
            );
            write(Path::new("build.sh"), &build)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let path = dir.join("build.sh");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|source| NewError::Write { path, source })?;
            }
            Ok(Created {
                dir,
                id: format!("{module}.StoragePlugin"),
                build: "./build.sh".into(),
                component: PathBuf::from(format!("{module}.wasm")),
            })
        }
    }
}

/// The toolchain of a new Rust plugin: the one Warden is built with, and
/// the target plugins are built for.
const RUST_TOOLCHAIN: &str = "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"wasm32-wasip2\"]\n";

/// Builds for `wasm32-wasip2` unless told otherwise.
const CARGO_CONFIG: &str = "[build]\ntarget = \"wasm32-wasip2\"\n";

fn rust_manifest(name: &str, sdk: &Path) -> String {
    // TOML basic strings escape backslashes and quotes.
    let sdk = sdk
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
warden-sdk = {{ path = "{sdk}" }}

# Small components: they are loaded, and kept, by every host.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true

# A workspace of its own, so that the plugin builds alone wherever it is.
[workspace]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_places_are_checked() {
        let parent = tempfile::tempdir().unwrap();
        for bad in ["", "Plugin", "1st", "a b", "a.b", "a/b"] {
            assert!(
                matches!(
                    create(parent.path(), bad, Language::Rust, None),
                    Err(NewError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        let missing = parent.path().join("nowhere");
        let e = create(parent.path(), "p", Language::Rust, Some(&missing)).unwrap_err();
        assert!(e.to_string().contains("--sdk DIR"), "{e}");
        let made = create(parent.path(), "my-plugin", Language::Rust, None).unwrap();
        assert_eq!(made.id, "my_plugin.StoragePlugin");
        let lib = std::fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("id = \"my_plugin.StoragePlugin\""), "{lib}");
        let e = create(parent.path(), "my-plugin", Language::Rust, None).unwrap_err();
        assert!(matches!(e, NewError::Exists(_)), "{e}");
    }
}
