//! The second plugin contract, `warden:plugin@0.2.0`, and the first one
//! still served: settings, the help manual, replies with mentions and
//! threads, schedules (once per firing with two hosts on one Redis), and a
//! component built for `0.1.0` that loads and answers as it did.

use std::sync::Arc;
use std::time::Duration;

use warden::runtime::Contract;
use warden::storage::{Backend, MemoryBackend};
use warden::{Config, Host, Incoming, LoadError, Reply};
use warden_tests::redis_server::{RedisServer, unique_prefix};
use warden_tests::*;

const CONTRACT_ID: &str = "warden.tests.Contract";

/// The settings the contract plugin needs, and one more.
const SETTINGS: &str = r#"
[settings."warden.tests.Contract"]
greeting = "hello there"
colour = "teal"

[settings."warden.tests.Probe"]
not_for_contract = "probe's own"

[schedules]
channel = "general"
"#;

/// The one outcome's replies of `msg` on `host`.
async fn replies(host: &Host, msg: &Incoming) -> Vec<Reply> {
    let mut outcomes = host.dispatch(msg).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let outcome = outcomes.remove(0);
    assert_eq!(outcome.error, None, "{outcome:?}");
    outcome.replies
}

#[tokio::test]
async fn a_component_built_for_the_first_contract_loads_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(storage_0_1_0(), dir.path().join("storage.wasm")).unwrap();
    let host = Host::builder()
        .plugins_dir(dir.path())
        .backend(Arc::new(MemoryBackend::new()))
        .build()
        .await
        .unwrap();
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    let plugins = host.plugins();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0].id.as_str(), "example.storage.StoragePlugin");
    assert_eq!(plugins[0].contract, Contract::V0_1);
    // The first contract has no docs, schedules or required settings.
    assert!(plugins[0].routes.iter().all(|r| r.doc.is_empty()));
    assert!(plugins[0].schedules.is_empty());
    let answers: Vec<String> = {
        let mut all = Vec::new();
        for line in TRANSCRIPT.lines().take(TRANSCRIPT_REPLIES.len()) {
            all.extend(say(&host, line).await);
        }
        all
    };
    assert_eq!(answers, TRANSCRIPT_REPLIES);
    let size = say(&host, "size").await;
    assert!(
        size.len() == 1 && size[0].starts_with("storage size: "),
        "{size:?}"
    );

    // The same plugin built now targets the current contract.
    let (current, _dir) = host_with(&[STORAGE], "", Arc::new(MemoryBackend::new())).await;
    assert_eq!(current.plugins()[0].contract, Contract::V0_2);
    assert_eq!(Contract::V0_2.package(), "warden:plugin@0.2.0");
}

#[test]
fn plugins_check_names_the_contract_a_component_targets() {
    let old = run_warden(
        warden_bin!(),
        [
            "plugins".as_ref(),
            "check".as_ref(),
            storage_0_1_0().as_os_str(),
        ],
        "",
    );
    assert!(old.status.success(), "{}", stderr_text(&old));
    let lines = stdout_lines(&old);
    assert!(
        lines.contains(&"  contract:    warden:plugin@0.1.0".to_owned()),
        "{lines:?}"
    );
    let new = run_warden(
        warden_bin!(),
        [
            "plugins".as_ref(),
            "check".as_ref(),
            wasm(CONTRACT).as_os_str(),
        ],
        "",
    );
    assert!(new.status.success(), "{}", stderr_text(&new));
    let lines = stdout_lines(&new);
    for expected in [
        "  contract:    warden:plugin@0.2.0",
        "  requires:    greeting",
        "  schedule:    \"* * * * * *\" -> tick",
    ] {
        assert!(
            lines.contains(&expected.to_owned()),
            "{expected}: {lines:?}"
        );
    }
}

async fn host_with(
    names: &[&str],
    config: &str,
    backend: Arc<dyn Backend>,
) -> (Host, tempfile::TempDir) {
    host(names, config, backend).await
}

#[tokio::test]
async fn a_plugin_reads_its_own_settings_and_no_other_plugins() {
    let (host, _dir) =
        host_with(&[CONTRACT, PROBE], SETTINGS, Arc::new(MemoryBackend::new())).await;
    assert_eq!(
        say(&host, "setting greeting").await,
        ["greeting = hello there"]
    );
    assert_eq!(say(&host, "setting colour").await, ["colour = teal"]);
    assert_eq!(
        say(&host, "setting not_for_contract").await,
        ["not_for_contract is not set"]
    );
    assert_eq!(say(&host, "settings").await, ["settings: colour, greeting"]);
}

#[tokio::test]
async fn a_plugin_missing_a_required_setting_is_not_loaded_and_says_which() {
    let dir = plugins_dir(&[CONTRACT, STORAGE]);
    let config = Config::parse(
        "[settings.\"warden.tests.Contract\"]\ncolour = \"red\"\n",
        "t.toml".as_ref(),
    )
    .unwrap();
    let host = Host::builder()
        .config(config)
        .plugins_dir(dir.path())
        .backend(Arc::new(MemoryBackend::new()))
        .build()
        .await
        .unwrap();
    // The other plugin loads regardless.
    let ids: Vec<String> = host.plugins().iter().map(|p| p.id.to_string()).collect();
    assert_eq!(ids, ["example.storage.StoragePlugin"]);
    let skipped = host.skipped();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        matches!(&*skipped[0], LoadError::MissingSetting { id, setting, .. }
            if id.as_str() == CONTRACT_ID && setting == "greeting"),
        "{:?}",
        skipped[0]
    );
    let text = skipped[0].to_string();
    assert!(
        text.contains("plugin warden.tests.Contract requires the setting \"greeting\""),
        "{text}"
    );
}

#[test]
fn setting_values_from_the_environment_never_reach_logs_or_listings() {
    let secret = "s3cret-v4lue-9137";
    let dir = plugins_dir(&[CONTRACT]);
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("warden.toml");
    std::fs::write(
        &config,
        "[settings.\"warden.tests.Contract\"]\ngreeting = \"hi\"\ntoken = { env = \"WARDEN_TEST_TOKEN\" }\n\
         unset = { env = \"WARDEN_TEST_NOT_SET\" }\n",
    )
    .unwrap();
    let mut args = run_args(
        dir.path(),
        data.path(),
        &["--config".as_ref(), config.as_os_str()],
    );
    args.push("--console".as_ref());
    let out = run_warden_with(
        warden_bin!(),
        args,
        &[("WARDEN_TEST_TOKEN", secret), ("WARDEN_LOG", "debug")],
        b"setting token\nsetting unset\nsettings\n",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(
        stdout_lines(&out),
        [
            format!("token = {secret}"),
            "unset is not set".to_owned(),
            "settings: greeting, token".to_owned()
        ]
    );
    let log = stderr_text(&out);
    assert!(
        !log.contains(secret),
        "the log shows a setting's value:\n{log}"
    );
    // The unset variable is named, with the plugin and the setting.
    assert!(
        log.contains("WARDEN_TEST_NOT_SET is not set") && log.contains("unset"),
        "{log}"
    );
    let list = run_warden_with(
        warden_bin!(),
        [
            "plugins".as_ref(),
            "list".as_ref(),
            "--plugins".as_ref(),
            dir.path().as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        &[("WARDEN_TEST_TOKEN", secret)],
        b"",
    );
    let listed = format!(
        "{}{}",
        String::from_utf8_lossy(&list.stdout),
        stderr_text(&list)
    );
    assert!(listed.contains(CONTRACT_ID), "{listed}");
    assert!(!listed.contains(secret), "{listed}");
}

#[tokio::test]
async fn replies_mention_the_sender_and_go_to_threads() {
    let (host, _dir) = host_with(&[CONTRACT], SETTINGS, Arc::new(MemoryBackend::new())).await;
    let mut msg = Incoming::addressed("reply to me");
    msg.user = "U123".into();
    msg.id = Some("1700000000.000100".into());
    assert_eq!(
        replies(&host, &msg).await,
        [Reply {
            text: "here you are".into(),
            thread: None,
            mention: Some("U123".into()),
        }]
    );
    // In a thread: under the message itself, then in the thread it is in.
    msg.text = "reply in thread".into();
    assert_eq!(
        replies(&host, &msg).await,
        [Reply {
            text: "in the thread".into(),
            thread: Some("1700000000.000100".into()),
            mention: None,
        }]
    );
    msg.thread = Some("1699999999.000001".into());
    assert_eq!(
        replies(&host, &msg).await[0].thread.as_deref(),
        Some("1699999999.000001")
    );
    msg.text = "say in 1234.5678".into();
    assert_eq!(
        replies(&host, &msg).await,
        [Reply {
            text: "threaded".into(),
            thread: Some("1234.5678".into()),
            mention: None,
        }]
    );
    msg.text = "who am i".into();
    msg.user_name = Some("Ann".into());
    assert_eq!(
        replies(&host, &msg).await,
        ["U123 (Ann) in console, message 1700000000.000100, thread 1699999999.000001"]
    );
    // The console shows the mention before the text.
    assert_eq!(say(&host, "reply to me").await, ["@console: here you are"]);
}

#[tokio::test]
async fn the_manual_of_the_loaded_plugins_is_in_the_shared_key_manual() {
    let grant = "[grants.\"example.help.HelpPlugin\"]\nread = [\"manual\"]\n";
    let backend = Arc::new(MemoryBackend::new());
    let (host, dir) = host_with(&[STORAGE, HELP], grant, backend.clone()).await;
    let raw = backend
        .get(&warden::storage::keys::encode_key(
            &warden::identity::Namespace::Shared,
            "manual",
        ))
        .await
        .unwrap()
        .expect("the manual is written");
    let manual: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    // In the manual itself, handlers come in the order the plugin declares
    // them, as in Slack Machine's.
    let handlers: Vec<&String> = manual["human"]["Stores, retrieves and deletes text by key"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        handlers,
        ["store", "retrieve", "delete", "exists", "size"]
            .map(|h| format!("example.storage.StoragePlugin.{h}"))
            .iter()
            .collect::<Vec<_>>()
    );
    let storage = &manual["human"]["Stores, retrieves and deletes text by key"];
    assert_eq!(
        storage["example.storage.StoragePlugin.store"],
        serde_json::json!({"command": "store TEXT under KEY", "help": "keeps TEXT under KEY"})
    );
    assert!(
        manual["robot"]["Getting Help"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("@botname ^help$")),
        "{manual}"
    );
    let help = say(&host, "help").await;
    assert_eq!(help.len(), 1, "{help:?}");
    assert!(
        help[0].starts_with("This is what I can respond to:\n\n"),
        "{}",
        help[0]
    );
    // The example lists each plugin's handlers by name.
    assert!(
        help[0].contains(
            "*Stores, retrieves and deletes text by key:*\n\t*delete KEY:* forgets KEY\n"
        ),
        "{}",
        help[0]
    );
    assert!(
        help[0].contains("\n\t*store TEXT under KEY:* keeps TEXT under KEY"),
        "{}",
        help[0]
    );
    assert!(
        help[0].contains("\t*help:* display this help text"),
        "{}",
        help[0]
    );
    let robot = say(&host, "robot help").await;
    assert!(robot[0].contains("\t`@warden ^help$`"), "{}", robot[0]);

    // A reload that unloads a plugin rewrites the manual.
    std::fs::remove_file(dir.path().join(STORAGE)).unwrap();
    host.reload().await.unwrap();
    let help = say(&host, "help").await;
    assert!(!help[0].contains("Stores, retrieves"), "{}", help[0]);
}

#[tokio::test]
async fn the_help_plugin_without_its_grant_is_refused_the_manual() {
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host_with(&[STORAGE, HELP], "", backend.clone()).await;
    let outcomes = host.dispatch(&Incoming::addressed("help")).await;
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].error.is_some(), "{:?}", outcomes[0]);
    // With no plugin allowed to read it, no manual is written at all.
    let manual = warden::storage::keys::encode_key(&warden::identity::Namespace::Shared, "manual");
    assert_eq!(backend.get(&manual).await.unwrap(), None);
}

/// The scheduled messages of `host` so far.
fn ticks(host: &Host) -> Vec<warden::outbox::Outgoing> {
    host.outbox().since(0, usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_its_handler_every_second_and_its_messages_reach_the_outbox() {
    let (host, _dir) = host_with(&[CONTRACT], SETTINGS, Arc::new(MemoryBackend::new())).await;
    let mut sent = host.outbox().subscribe();
    let first = tokio::time::timeout(Duration::from_secs(5), sent.recv())
        .await
        .expect("a tick within 5 s")
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), sent.recv())
        .await
        .expect("another tick within 5 s")
        .unwrap();
    assert_eq!(first.plugin.as_str(), CONTRACT_ID);
    assert_eq!(first.handler, "tick");
    assert_eq!(first.channel, "general");
    assert_eq!(second.fired_at, first.fired_at + 1);
    let n: i64 = first
        .reply
        .text
        .strip_prefix("tick ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(second.reply.text, format!("tick {}", n + 1));
    assert!(ticks(&host).len() >= 2);
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_redis_run_each_firing_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let prefix = unique_prefix("schedules");
    let config = format!(
        "[storage]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"\n{SETTINGS}",
        server.url()
    );
    let dir = plugins_dir(&[CONTRACT]);
    let build = || {
        Host::builder()
            .config(Config::parse(&config, "t.toml".as_ref()).unwrap())
            .plugins_dir(dir.path())
            .build()
    };
    let (a, b) = (build().await.unwrap(), build().await.unwrap());
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (from_a, from_b) = (ticks(&a), ticks(&b));
    let mut fired: Vec<i64> = from_a.iter().chain(&from_b).map(|o| o.fired_at).collect();
    let all = fired.len();
    fired.sort_unstable();
    fired.dedup();
    assert_eq!(
        fired.len(),
        all,
        "a firing ran twice: a {from_a:?}, b {from_b:?}"
    );
    assert!(all >= 3, "{all} firings in 3.5 s");
    // Every firing counted once in the shared counter.
    let counted = say(&a, "ticks").await;
    let n: usize = counted[0].strip_prefix("ticks: ").unwrap().parse().unwrap();
    assert!(n >= all && n <= all + 1, "counter {n}, firings seen {all}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[test]
fn the_console_shows_scheduled_messages_and_mentions() {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::process::{Command, Stdio};

    let dir = plugins_dir(&[CONTRACT]);
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("warden.toml");
    std::fs::write(&config, SETTINGS).unwrap();
    let mut child = Command::new(warden_bin!())
        .args(["run", "--console", "--plugins"])
        .arg(dir.path())
        .arg("--data")
        .arg(data.path())
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    writeln!(stdin, "reply to me").unwrap();
    stdin.flush().unwrap();
    // Ticks may come first: find the reply among the lines.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(seen.iter().any(|l: &String| l == "@console: here you are")
        && seen.iter().any(|l| l.starts_with("[general] tick ")))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("{e}; the console wrote {seen:?}"),
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_call_that_spins_is_stopped_at_its_deadline_and_stalls_no_one() {
    let config = format!(
        "{SETTINGS}\n[plugin_limits.\"warden.tests.Contract\"]\nhandler_timeout_ms = 400\n"
    );
    let (host, _dir) = host_with(
        &[CONTRACT, STORAGE],
        &config,
        Arc::new(MemoryBackend::new()),
    )
    .await;
    assert_eq!(say(&host, "spin on").await, ["spin on"]);
    let errors = |host: &Host| {
        host.metrics()
            .encode()
            .lines()
            .filter(|l| l.starts_with("warden_handler_errors_total") && l.contains(CONTRACT_ID))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while errors(&host) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled call was stopped"
        );
        // The other plugin answers at once the whole time.
        let started = std::time::Instant::now();
        assert_eq!(say(&host, "store v under k").await, ["'v' stored under k!"]);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    host.shutdown().await.unwrap();
}

#[test]
fn http_carries_threads_mentions_and_the_outbox() {
    use reqwest::blocking::Client;
    use serde_json::{Value, json};

    let dir = plugins_dir(&[CONTRACT]);
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("warden.toml");
    std::fs::write(&config, SETTINGS).unwrap();
    let args = run_args(
        dir.path(),
        data.path(),
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
    );
    let server = warden_tests::server::Server::start(warden_bin!(), args, &[]);
    use_ring();
    let http = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let post = |body: Value| -> Value {
        http.post(server.url("/v1/messages"))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let answer = post(json!({"text": "reply to me", "user": "U7"}));
    assert_eq!(
        answer["replies"],
        json!([{"plugin": CONTRACT_ID, "handler": "reply", "text": "here you are", "mention": "U7"}])
    );
    let answer = post(json!({"text": "reply in thread", "user": "U7", "id": "171.2"}));
    assert_eq!(answer["replies"][0]["thread"], "171.2");
    assert!(answer["replies"][0].get("mention").is_none(), "{answer}");
    let answer = post(
        json!({"text": "who am i", "user": "U7", "user_name": "Cy", "id": "171.2", "thread": "170.0"}),
    );
    assert_eq!(
        answer["replies"][0]["text"],
        "U7 (Cy) in http, message 171.2, thread 170.0"
    );

    // The schedule's ticks, read as they come.
    let outbox: Value = http
        .get(server.url("/v1/outbox?after=0&wait_ms=5000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let first = &outbox["messages"][0];
    assert_eq!(first["plugin"], CONTRACT_ID);
    assert_eq!(first["channel"], "general");
    assert!(
        first["text"].as_str().unwrap().starts_with("tick "),
        "{outbox}"
    );
    let seq = first["seq"].as_u64().unwrap();
    let next: Value = http
        .get(server.url(&format!("/v1/outbox?after={seq}&wait_ms=5000")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(next["messages"][0]["seq"].as_u64().unwrap() > seq, "{next}");
    let bad = http.get(server.url("/v1/outbox?after=x")).send().unwrap();
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
}
