//! Identity binding: an identity belongs to the file that first declared it.

use std::path::Path;

use warden_tests::*;

const ID: &str = "example.storage.StoragePlugin";

fn run(plugins: &Path, data: &Path, stdin: &str) -> std::process::Output {
    let args = run_args(plugins, data, &[]);
    let out = run_warden(warden_bin!(), args, stdin);
    assert!(out.status.success(), "{}", stderr_text(&out));
    out
}

/// `component` with a custom section appended: different bytes, same plugin.
fn upgraded(component: &[u8]) -> Vec<u8> {
    let name = b"warden-test-upgrade";
    let payload = b"2";
    let mut out = component.to_vec();
    out.push(0); // custom section
    out.push(u8::try_from(1 + name.len() + payload.len()).unwrap());
    out.push(u8::try_from(name.len()).unwrap());
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

#[test]
fn another_file_cannot_take_over_an_identity_until_rebound() {
    let data = tempfile::tempdir().unwrap();
    let original = plugins_dir(&[STORAGE]);
    run(original.path(), data.path(), "store mine under secret\n");

    // An impostor declaring the same identity from another file is refused.
    let impostor = tempfile::tempdir().unwrap();
    std::fs::copy(wasm(STORAGE), impostor.path().join("impostor.wasm")).unwrap();
    let out = run(impostor.path(), data.path(), "retrieve secret\n");
    assert!(
        stdout_lines(&out).is_empty(),
        "the impostor must not answer"
    );
    let log = stderr_text(&out);
    let refusal = log
        .lines()
        .find(|l| l.contains("impostor.wasm: declares plugin identity"))
        .expect(&log);
    assert!(
        refusal.contains(&format!("{ID}, which is bound to the file storage.wasm")),
        "{refusal}"
    );
    // The hint is a command that works as printed: the flags this host was
    // given name the same plugins directory and store.
    let command = refusal
        .split_once("run `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(command, _)| command)
        .expect(refusal);
    assert_eq!(
        command,
        format!(
            "warden plugins rebind {ID} impostor.wasm --plugins {} --data {}",
            impostor.path().display(),
            data.path().display()
        )
    );

    // Replacing the bound file itself (an upgrade) keeps the data.
    let bytes = std::fs::read(wasm(STORAGE)).unwrap();
    std::fs::write(original.path().join(STORAGE), upgraded(&bytes)).unwrap();
    let out = run(original.path(), data.path(), "retrieve secret\n");
    assert_eq!(stdout_lines(&out), ["'mine' retrieved from <secret>!"]);

    // The operator moves the identity to the new file, with the command the
    // refusal gave.
    let words: Vec<&str> = command.split(' ').collect();
    assert_eq!(words[0], "warden");
    let rebind = run_warden(warden_bin!(), &words[1..], "");
    assert!(rebind.status.success(), "{}", stderr_text(&rebind));
    assert_eq!(
        stdout_lines(&rebind),
        [format!(
            "{ID} is now bound to impostor.wasm (it was bound to storage.wasm)"
        )]
    );
    let out = run(impostor.path(), data.path(), "retrieve secret\n");
    assert_eq!(stdout_lines(&out), ["'mine' retrieved from <secret>!"]);
    let out = run(original.path(), data.path(), "retrieve secret\n");
    assert!(stdout_lines(&out).is_empty(), "the old file is refused now");
}
