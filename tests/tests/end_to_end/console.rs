//! The `warden run` command line, driven through stdin and stdout.

use std::ffi::OsStr;

use warden_tests::*;

fn run(
    plugins: &std::path::Path,
    data: &std::path::Path,
    extra: &[&str],
    stdin: &str,
) -> std::process::Output {
    let extra: Vec<&OsStr> = extra.iter().map(OsStr::new).collect();
    run_warden(warden_bin!(), run_args(plugins, data, &extra), stdin)
}

#[test]
fn seed_transcript_prints_the_seed_replies() {
    let plugins = plugins_dir(&[STORAGE, NOTES, KARMA]);
    let data = tempfile::tempdir().unwrap();
    let out = run(plugins.path(), data.path(), &["--console"], TRANSCRIPT);
    assert!(out.status.success(), "{}", stderr_text(&out));
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 7, "{lines:#?}\n{}", stderr_text(&out));
    assert_eq!(lines[..6], TRANSCRIPT_REPLIES);
    let size = lines[6].strip_prefix("storage size: ").expect("size reply");
    let (number, unit) = size.split_once(' ').expect("a number and a unit");
    assert!(number.parse::<f64>().unwrap() > 0.0, "{size}");
    assert!(["B", "KiB", "MiB", "GiB"].contains(&unit), "{size}");
}

#[test]
fn console_is_the_default_adapter() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let out = run(
        plugins.path(),
        data.path(),
        &[],
        "store x under k\nretrieve k\n",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(
        stdout_lines(&out),
        ["'x' stored under k!", "'x' retrieved from <k>!"]
    );
}

#[test]
fn data_survives_a_restart_on_sled() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let first = run(
        plugins.path(),
        data.path(),
        &[],
        "store kept across restarts under memo\n",
    );
    assert!(first.status.success(), "{}", stderr_text(&first));
    let second = run(plugins.path(), data.path(), &[], "retrieve memo\n");
    assert!(second.status.success(), "{}", stderr_text(&second));
    assert_eq!(
        stdout_lines(&second),
        ["'kept across restarts' retrieved from <memo>!"]
    );
}

#[test]
fn plugin_output_goes_to_the_log_tagged_with_its_identity() {
    let plugins = plugins_dir(&[PROBE]);
    let data = tempfile::tempdir().unwrap();
    let out = run(
        plugins.path(),
        data.path(),
        &[],
        "print a line from the guest\nlog a log record\n",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(stdout_lines(&out), ["printed", "logged"]);
    let log = stderr_text(&out);
    let tagged = |text: &str| {
        log.lines()
            .any(|l| l.contains(text) && l.contains("warden.tests.Probe"))
    };
    assert!(tagged("a line from the guest"), "{log}");
    assert!(tagged("a log record"), "{log}");
}

#[test]
fn bad_files_are_reported_and_the_rest_load() {
    let plugins = plugins_dir(&[STORAGE, BAD_IDENTITY]);
    std::fs::write(plugins.path().join("garbage.wasm"), b"this is not wasm").unwrap();
    std::fs::copy(wasm(STORAGE), plugins.path().join("zz-copy.wasm")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = run(plugins.path(), data.path(), &[], "store v under k\n");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(
        stdout_lines(&out),
        ["'v' stored under k!"],
        "only the first storage plugin answers"
    );
    let log = stderr_text(&out);
    assert!(
        log.contains("garbage.wasm: not a valid WebAssembly component"),
        "{log}"
    );
    assert!(
        log.contains("bad_identity.wasm: invalid plugin identity")
            && log.contains("not a valid id!"),
        "{log}"
    );
    let dup = log
        .lines()
        .find(|l| l.contains("zz-copy.wasm: declares plugin identity"))
        .expect(&log);
    assert!(
        dup.contains("example.storage.StoragePlugin") && dup.contains("storage.wasm"),
        "{dup}"
    );
}

#[test]
fn bad_invocations_fail_with_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-dir");
    let out = run(&missing, data.path(), &[], "");
    assert!(!out.status.success());
    assert!(
        stderr_text(&out).contains("no-such-dir"),
        "{}",
        stderr_text(&out)
    );

    let plugins = plugins_dir(&[STORAGE]);
    let config = data.path().join("warden.toml");
    std::fs::write(
        &config,
        "[grants.\"example.notes.NotesPlugin\"]\nshared = \"everything\"\n",
    )
    .unwrap();
    let out = run(
        plugins.path(),
        data.path(),
        &["--config", config.to_str().unwrap()],
        "",
    );
    assert!(!out.status.success());
    let err = stderr_text(&out);
    assert!(
        err.contains("warden.toml") && err.contains("everything"),
        "{err}"
    );
}

#[test]
fn a_signal_ends_a_console_whose_input_is_still_open() {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    for signal in ["-INT", "-TERM"] {
        let plugins = plugins_dir(&[STORAGE]);
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(warden_bin!())
            .args(["run", "--console", "--plugins"])
            .arg(plugins.path())
            .arg("--data")
            .arg(data.path())
            .env("WARDEN_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Something stored, and the input left open.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"store kept under k\n").unwrap();
        stdin.flush().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "'kept' stored under k!\n");

        let sent = Instant::now();
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if sent.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("warden did not stop within 10 s of kill {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "kill {signal}: {status}");
        drop(stdin);
        let mut log = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
        assert!(log.contains("; shutting down"), "{log}");

        // The store was closed cleanly: the value is there on the next start.
        let out = run_warden(
            warden_bin!(),
            [
                "run".as_ref(),
                "--console".as_ref(),
                "--plugins".as_ref(),
                plugins.path().as_os_str(),
                "--data".as_ref(),
                data.path().as_os_str(),
            ],
            "retrieve k\n",
        );
        assert_eq!(stdout_lines(&out), ["'kept' retrieved from <k>!"]);
    }
}

#[test]
fn an_interactive_reply_comes_before_the_next_line_is_typed() {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(warden_bin!())
        .args(["run", "--console", "--plugins"])
        .arg(plugins.path())
        .arg("--data")
        .arg(data.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // Lines read on a thread of their own, so that a reply that never
    // comes fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    for round in 0..3 {
        // The input stays open: the reply must come without more of it.
        writeln!(stdin, "store v{round} under k{round}").unwrap();
        stdin.flush().unwrap();
        let reply = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no reply to line {round} while the input waits: {e}"));
        assert_eq!(reply, format!("'v{round}' stored under k{round}!"));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
