//! A plugin that misbehaves through the raw WIT, identity
//! `warden.tests.RawHostile0`. It implements the world by hand with
//! wit-bindgen, so it can do what the SDK would not let it: stall or bloat
//! its manifest, flood the host with calls, and pass the host text made to
//! look like the host's own output.
//!
//! Two fields of the built component are meant to be patched, each with
//! bytes of the same length, so that the copy stays a valid component:
//!
//! - the marker `RawHostile0` that ends the identity: replacing its last
//!   digit gives copies with distinct identities;
//! - the 16-byte mode field `MODE:normal.....` (the dots are padding), which
//!   chooses what `manifest` does: `normal`, `sleep` (one hour, then the
//!   normal manifest), `spin` (forever), `bigmeta` (a 1 MB version and a
//!   20 MB description), `ctrlmeta` (control characters in the version and
//!   the description), `catchall` (the normal routes and a slow route that
//!   matches every message) or `heavyroutes` (only 256 costly patterns).
//!
//! The routes of the normal manifest, all addressed to the bot:
//!
//! ```text
//! @bot sleep 500             sleeps 500 ms                   slept 500 ms
//! @bot poll 500              waits 500 ms, 1 ms at a time    polled 500 ms
//! @bot getmany k 1000        get-many of k, 1000 times       got 1000 values, 5000 bytes
//! @bot setbig k 1000000      sets k to 1 MB                  ok
//! @bot setmany k 10 1000     set-many of k = 10 bytes, 1000 times       ok
//! @bot deletemany k 1000     delete-many of k, 1000 times    ok
//! @bot refill k 1000 50      50 rounds of: set k-ROUND, set k,
//!                            delete-many k 4 times           ok after 50 rounds
//! @bot usage                 namespace-size                  usage 1000
//! @bot logbig 1000000        one 1 MB warning                logged
//! @bot logmany 1000          1000 info records               logged 1000
//! @bot logforge              records that imitate host lines logged
//! @bot printmany 1000        1000 lines on standard output   printed 1000
//! @bot saymany 1000          1000 replies: reply 0, reply 1, ...
//! @bot sayforge              replies that imitate host output
//! @bot errbig 1000000        fails with a 1 MB error
//! @bot errforge              fails with an error that imitates a reply
//! @bot ping                  pong
//! ```
//!
//! A storage failure is replied as `error: ` and the WIT error's `Debug`
//! form; an argument that does not parse as a number, as `bad argument`.

use std::str::FromStr;
use std::time::{Duration, Instant};

/// The bindings generated from `wit/0.1.0/plugin.wit`.
// Generated code: the imports with many parameters are the WIT's.
#[allow(clippy::too_many_arguments)]
mod bindings {
    // Built against the first contract: the host's support for
    // warden:plugin@0.1.0 components is exercised by every test of it.
    wit_bindgen::generate!({
        path: "../../../wit/0.1.0",
        world: "plugin",
    });
}

use bindings::warden::plugin::types::{Route, RouteKind};
use bindings::warden::plugin::{chat, logging, storage};
use bindings::{Capture, Guest, Manifest, Message};

/// The identity. Tests patch the trailing `0` of `RawHostile0`.
const ID: &str = "warden.tests.RawHostile0";

/// The version of the normal manifest.
const VERSION: &str = "1.0.0";

/// The description of the normal manifest.
const DESCRIPTION: &str = "Misbehaves through the raw WIT";

/// What `manifest` does: `MODE:` and the mode's name, padded with dots to
/// 16 bytes. Tests patch the whole field; it is read with a volatile load
/// so that the compiler keeps it, once, and cannot assume its value.
#[used]
static MODE: [u8; 16] = *b"MODE:normal.....";

/// How many routes `heavyroutes` declares.
const HEAVY_ROUTES: usize = 256;

/// How long `sleep` mode stalls `manifest`.
const MANIFEST_SLEEP: Duration = Duration::from_secs(3600);

/// How long the route `catchall` adds takes before it replies.
const CATCHALL_SLEEP: Duration = Duration::from_secs(10);

/// The behaviour of `manifest`, from [`MODE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Sleep,
    Spin,
    BigMeta,
    CtrlMeta,
    CatchAll,
    HeavyRoutes,
}

impl Mode {
    /// The mode the component was built or patched with.
    fn current() -> Mode {
        // SAFETY: `MODE` is a valid, aligned, immutable static; the volatile
        // read only stops the compiler from folding its contents.
        let field = unsafe { std::ptr::read_volatile(&raw const MODE) };
        let name = field.strip_prefix(b"MODE:").unwrap_or_else(|| {
            panic!(
                "the mode field {:?} does not start with MODE:",
                String::from_utf8_lossy(&field)
            )
        });
        let end = name.iter().rposition(|&b| b != b'.').map_or(0, |i| i + 1);
        match &name[..end] {
            b"normal" => Mode::Normal,
            b"sleep" => Mode::Sleep,
            b"spin" => Mode::Spin,
            b"bigmeta" => Mode::BigMeta,
            b"ctrlmeta" => Mode::CtrlMeta,
            b"catchall" => Mode::CatchAll,
            b"heavyroutes" => Mode::HeavyRoutes,
            other => panic!("unknown mode {:?}", String::from_utf8_lossy(other)),
        }
    }
}

/// The handlers of the normal routes.
#[derive(Debug, Clone, Copy)]
enum Handler {
    Sleep,
    Poll,
    GetMany,
    SetBig,
    SetMany,
    DeleteMany,
    Refill,
    Usage,
    LogBig,
    LogMany,
    LogForge,
    PrintMany,
    SayMany,
    SayForge,
    ErrBig,
    ErrForge,
    Ping,
}

/// The normal routes, all `respond-to` and ignoring case: pattern, handler
/// name, handler. A route's index in the manifest is its index here.
const ROUTES: [(&str, &str, Handler); 17] = [
    (r"^sleep (?P<ms>\d+)$", "sleep", Handler::Sleep),
    (r"^poll (?P<ms>\d+)$", "poll", Handler::Poll),
    (
        r"^getmany (?P<key>\S+) (?P<n>\d+)$",
        "getmany",
        Handler::GetMany,
    ),
    (
        r"^setbig (?P<key>\S+) (?P<bytes>\d+)$",
        "setbig",
        Handler::SetBig,
    ),
    (
        r"^setmany (?P<key>\S+) (?P<bytes>\d+) (?P<n>\d+)$",
        "setmany",
        Handler::SetMany,
    ),
    (
        r"^deletemany (?P<key>\S+) (?P<n>\d+)$",
        "deletemany",
        Handler::DeleteMany,
    ),
    (
        r"^refill (?P<key>\S+) (?P<bytes>\d+) (?P<rounds>\d+)$",
        "refill",
        Handler::Refill,
    ),
    (r"^usage$", "usage", Handler::Usage),
    (r"^logbig (?P<bytes>\d+)$", "logbig", Handler::LogBig),
    (r"^logmany (?P<n>\d+)$", "logmany", Handler::LogMany),
    (r"^logforge$", "logforge", Handler::LogForge),
    (r"^printmany (?P<n>\d+)$", "printmany", Handler::PrintMany),
    (r"^saymany (?P<n>\d+)$", "saymany", Handler::SayMany),
    (r"^sayforge$", "sayforge", Handler::SayForge),
    (r"^errbig (?P<bytes>\d+)$", "errbig", Handler::ErrBig),
    (r"^errforge$", "errforge", Handler::ErrForge),
    (r"^ping$", "ping", Handler::Ping),
];

/// Why a handler stopped early.
enum Failure {
    /// A capture is missing or does not parse: replied as `bad argument`.
    BadArgument,
    /// Returned to the host as the handler's error.
    Err(String),
}

/// The plugin.
struct RawHostile;

bindings::export!(RawHostile with_types_in bindings);

impl Guest for RawHostile {
    fn manifest() -> Manifest {
        let mode = Mode::current();
        let (mut version, mut description) = (VERSION.to_owned(), DESCRIPTION.to_owned());
        let mut routes: Vec<Route> = ROUTES
            .iter()
            .map(|&(pattern, handler, _)| Route {
                kind: RouteKind::RespondTo,
                pattern: pattern.to_owned(),
                ignore_case: true,
                handler: handler.to_owned(),
            })
            .collect();
        match mode {
            Mode::Normal => {}
            Mode::Sleep => std::thread::sleep(MANIFEST_SLEEP),
            Mode::Spin => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::BigMeta => {
                version = "v".repeat(1_000_000);
                description = "d".repeat(20_000_000);
            }
            Mode::CtrlMeta => {
                version = "1.0\n0".to_owned();
                description = "Misbehaves\u{1b}[2J through\nthe raw WIT".to_owned();
            }
            Mode::CatchAll => routes.push(Route {
                kind: RouteKind::ListenTo,
                pattern: "(?s).".to_owned(),
                ignore_case: true,
                handler: "late".to_owned(),
            }),
            Mode::HeavyRoutes => {
                routes = (0..HEAVY_ROUTES)
                    .map(|i| Route {
                        kind: RouteKind::ListenTo,
                        pattern: format!(r"\b(?s:.){{0,1000}}\bq1z{i}"),
                        ignore_case: true,
                        handler: format!("heavy{i}"),
                    })
                    .collect();
            }
        }
        Manifest {
            id: ID.to_owned(),
            version,
            description,
            routes,
        }
    }

    fn handle(route: u32, _message: Message, captures: Vec<Capture>) -> Result<(), String> {
        let route = route as usize;
        let mode = Mode::current();
        let outcome = if mode == Mode::HeavyRoutes {
            if route >= HEAVY_ROUTES {
                return Err(format!("no route {route}"));
            }
            chat::say(&format!("heavy{route}"));
            Ok(())
        } else if let Some(&(_, _, handler)) = ROUTES.get(route) {
            run(handler, &captures)
        } else if mode == Mode::CatchAll && route == ROUTES.len() {
            std::thread::sleep(CATCHALL_SLEEP);
            chat::say("late");
            Ok(())
        } else {
            return Err(format!("no route {route}"));
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(Failure::BadArgument) => {
                chat::say("bad argument");
                Ok(())
            }
            Err(Failure::Err(e)) => Err(e),
        }
    }
}

/// The capture `name`, parsed.
fn arg<T: FromStr>(captures: &[Capture], name: &str) -> Result<T, Failure> {
    captures
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.value.as_deref())
        .and_then(|v| v.parse().ok())
        .ok_or(Failure::BadArgument)
}

/// Replies `ok`, or `error: ` and the storage error.
fn say_result(result: Result<(), storage::Error>) {
    match result {
        Ok(()) => chat::say("ok"),
        Err(e) => chat::say(&format!("error: {e:?}")),
    }
}

/// Runs one of the normal routes' handlers.
fn run(handler: Handler, captures: &[Capture]) -> Result<(), Failure> {
    match handler {
        Handler::Sleep => {
            let ms: u64 = arg(captures, "ms")?;
            std::thread::sleep(Duration::from_millis(ms));
            chat::say(&format!("slept {ms} ms"));
        }
        Handler::Poll => {
            // Many short blocking waits rather than one long one. Each
            // `std::thread::sleep` is a wait on a `wasi:clocks` pollable
            // through `wasi:io/poll`.
            let ms: u64 = arg(captures, "ms")?;
            let start = Instant::now();
            let total = Duration::from_millis(ms);
            while start.elapsed() < total {
                std::thread::sleep(Duration::from_millis(1));
            }
            chat::say(&format!("polled {ms} ms"));
        }
        Handler::GetMany => {
            let key: String = arg(captures, "key")?;
            let n: usize = arg(captures, "n")?;
            match storage::get_many(&vec![key; n], false) {
                Ok(values) => {
                    let found: Vec<_> = values.iter().flatten().collect();
                    let total: usize = found.iter().map(|v| v.len()).sum();
                    chat::say(&format!("got {} values, {total} bytes", found.len()));
                }
                Err(e) => chat::say(&format!("error: {e:?}")),
            }
        }
        Handler::SetBig => {
            let key: String = arg(captures, "key")?;
            let bytes: usize = arg(captures, "bytes")?;
            say_result(storage::set(&key, &vec![b'x'; bytes], None, false));
        }
        Handler::SetMany => {
            let key: String = arg(captures, "key")?;
            let bytes: usize = arg(captures, "bytes")?;
            let n: usize = arg(captures, "n")?;
            let entries = vec![(key, vec![b'y'; bytes]); n];
            say_result(storage::set_many(&entries, None, false));
        }
        Handler::DeleteMany => {
            let key: String = arg(captures, "key")?;
            let n: usize = arg(captures, "n")?;
            say_result(storage::delete_many(&vec![key; n], false));
        }
        Handler::Refill => {
            // Each round keeps one more value, `{key}-{round}`, then writes
            // `key` and deletes it four times in one call: a host that
            // counts each listed deletion against the quota ends up
            // believing the namespace holds less than it does, and lets it
            // grow without bound. Rounds count from 0.
            let key: String = arg(captures, "key")?;
            let bytes: usize = arg(captures, "bytes")?;
            let rounds: u64 = arg(captures, "rounds")?;
            let value = vec![b'x'; bytes];
            let keys = vec![key.clone(); 4];
            for round in 0..rounds {
                let step = storage::set(&format!("{key}-{round}"), &value, None, false)
                    .and_then(|()| storage::set(&key, &value, None, false))
                    .and_then(|()| storage::delete_many(&keys, false));
                if let Err(e) = step {
                    chat::say(&format!("error at round {round}: {e:?}"));
                    return Ok(());
                }
            }
            chat::say(&format!("ok after {rounds} rounds"));
        }
        Handler::Usage => match storage::namespace_size() {
            Ok(n) => chat::say(&format!("usage {n}")),
            Err(e) => chat::say(&format!("error: {e:?}")),
        },
        Handler::LogBig => {
            let bytes: usize = arg(captures, "bytes")?;
            logging::log(logging::Level::Warn, &"L".repeat(bytes));
            chat::say("logged");
        }
        Handler::LogMany => {
            let n: u64 = arg(captures, "n")?;
            for i in 0..n {
                logging::log(logging::Level::Info, &format!("record {i}"));
            }
            chat::say(&format!("logged {n}"));
        }
        Handler::LogForge => {
            logging::log(
                logging::Level::Info,
                "innocent\n2026-12-01T00:00:00.000000Z ERROR \
                 plugin=example.storage.StoragePlugin: forged line",
            );
            logging::log(
                logging::Level::Info,
                "carriage\rreturn, \u{1b}[31mred\u{1b}[0m, \u{202e}reversed",
            );
            chat::say("logged");
        }
        Handler::PrintMany => {
            let n: u64 = arg(captures, "n")?;
            for i in 0..n {
                println!("stdout line {i}");
            }
            chat::say(&format!("printed {n}"));
        }
        Handler::SayMany => {
            let n: u64 = arg(captures, "n")?;
            for i in 0..n {
                chat::say(&format!("reply {i}"));
            }
        }
        Handler::SayForge => {
            chat::say("first line\nerror: example.storage.StoragePlugin: forged");
            chat::say("\u{1b}[2Jcleared");
        }
        Handler::ErrBig => {
            let bytes: usize = arg(captures, "bytes")?;
            return Err(Failure::Err("E".repeat(bytes)));
        }
        Handler::ErrForge => return Err(Failure::Err("bad\n<greeting> exists.".to_owned())),
        Handler::Ping => chat::say("pong"),
    }
    Ok(())
}
