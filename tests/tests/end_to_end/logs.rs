//! Logs: text or JSON, a span per handler call, and never a key or value.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

use serde_json::Value;
use warden_tests::*;

/// `warden [global] run --plugins DIR --data DIR` with `stdin`, with the
/// extra environment `envs`.
fn run_with(
    global: &[&str],
    plugins: &Path,
    data: &Path,
    envs: &[(&str, &str)],
    stdin: &str,
) -> Output {
    let mut args: Vec<&OsStr> = global.iter().map(OsStr::new).collect();
    args.extend(run_args(plugins, data, &[]));
    let out = run_warden_with(warden_bin!(), args, envs, stdin.as_bytes());
    assert!(out.status.success(), "{}", stderr_text(&out));
    out
}

/// Every stderr line as JSON.
fn json_lines(out: &Output) -> Vec<Value> {
    stderr_text(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn assert_in_handler_span(lines: &[Value], message: &str) {
    let line = lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} in {lines:#?}"));
    assert_eq!(line["span"]["name"], "handler", "{line:#}");
    assert_eq!(line["span"]["plugin"], "warden.tests.Probe", "{line:#}");
    assert_eq!(line["span"]["handler"], "log", "{line:#}");
    assert_eq!(line["level"], "INFO", "{line:#}");
}

#[test]
fn json_logs_carry_the_handler_span() {
    let plugins = plugins_dir(&[PROBE]);
    let data = tempfile::tempdir().unwrap();
    let out = run_with(
        &["--log-format", "json"],
        plugins.path(),
        data.path(),
        &[],
        "log from the flag\n",
    );
    assert_eq!(stdout_lines(&out), ["logged"]);
    assert_in_handler_span(&json_lines(&out), "from the flag");

    let out = run_with(
        &[],
        plugins.path(),
        data.path(),
        &[("WARDEN_LOG_FORMAT", "json")],
        "log from the environment\n",
    );
    assert_in_handler_span(&json_lines(&out), "from the environment");
}

#[test]
fn text_logs_name_the_handler_span() {
    let plugins = plugins_dir(&[PROBE]);
    let data = tempfile::tempdir().unwrap();
    let out = run_with(&[], plugins.path(), data.path(), &[], "log a log record\n");
    let log = stderr_text(&out);
    assert!(
        log.lines().any(|l| l.contains("a log record")
            && l.contains("handler{plugin=warden.tests.Probe handler=log}")),
        "{log}"
    );
}

#[test]
fn an_unknown_log_format_is_refused() {
    let out = run_warden(
        warden_bin!(),
        ["--log-format", "xml", "plugins", "check", "x.wasm"].map(OsStr::new),
        "",
    );
    assert!(!out.status.success());
    assert!(stderr_text(&out).contains("xml"), "{}", stderr_text(&out));
}

#[test]
fn keys_and_values_stay_out_of_the_logs() {
    let plugins = plugins_dir(&[STORAGE, NOTES]);
    let data = tempfile::tempdir().unwrap();
    let out = run_with(
        &[],
        plugins.path(),
        data.path(),
        // Everything the host and its store log, short of the compiler's
        // own tracing.
        &[(
            "WARDEN_LOG",
            "trace,cranelift_codegen=info,cranelift_frontend=info,wasmtime_cranelift=info",
        )],
        "store s3cretvalue under s3cretkey\n\
         retrieve s3cretkey\n\
         does s3cretkey exist?\n\
         no route for s3cretunmatched\n\
         publish s3cretnote as s3cretshared\n\
         remember s3cretnote as s3cretprivate\n\
         delete s3cretkey\n",
    );
    assert_eq!(stdout_lines(&out).len(), 6, "{}", stderr_text(&out));
    let log = stderr_text(&out);
    assert!(log.contains("handler{"), "the log is not empty");
    assert!(
        !log.contains("s3cret"),
        "{}",
        log.lines()
            .filter(|l| l.contains("s3cret"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
