//! A write a plugin was told had succeeded survives a crash of the host.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use warden_tests::*;

/// Writes sent before the kill; more than are acknowledged by then, so
/// the kill lands while writes are in flight (the console answers piped
/// input in large chunks, so this is many).
const SENT: usize = 100_000;
/// Acknowledgements read before the kill.
const ACKED_BEFORE_KILL: usize = 300;

#[test]
fn acknowledged_writes_survive_sigkill() {
    let plugins = plugins_dir(&[PROBE]);
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(warden_bin!())
        .arg("run")
        .arg("--plugins")
        .arg(plugins.path())
        .arg("--data")
        .arg(data.path())
        .env("WARDEN_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start warden");

    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..SENT {
            // The host dies under us: a broken pipe ends the writes.
            if writeln!(stdin, "set key{i} = value{i}").is_err() {
                break;
            }
        }
    });

    let mut acked = 0;
    let mut replies = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked < ACKED_BEFORE_KILL {
        let line = replies.next().expect("a reply before the kill").unwrap();
        assert_eq!(line, "ok", "write {acked} failed");
        acked += 1;
    }
    child.kill().expect("SIGKILL the host");
    child.wait().unwrap();
    // Replies already in the pipe were acknowledged too.
    acked += replies.map_while(Result::ok).filter(|l| l == "ok").count();
    writer.join().unwrap();
    assert!(
        acked < SENT,
        "the kill must land while writes are in flight"
    );

    let reads: String = (0..acked).map(|i| format!("get key{i}\n")).collect();
    let out = run_warden(
        warden_bin!(),
        run_args(plugins.path(), data.path(), &[]),
        &reads,
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), acked);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            line,
            &format!("value: value{i}"),
            "acknowledged write {i} of {acked} was lost"
        );
    }
}
