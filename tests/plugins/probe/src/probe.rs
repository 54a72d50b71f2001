// The probe's behaviour. The `probe` and `probe-b` crates both include this
// file and differ only in the identity they pass to `probe_plugin!`.

use std::time::Duration;

use warden_sdk::{Error, Message, Plugin, Storage};

/// Defines the probe plugin type `$name` with the identity `$id`.
///
/// Every storage route takes an optional `shared ` prefix to address the
/// shared keyspace, and a key that is used as it is, or hex-decoded when it
/// is written `hex:<digits>` (to send keys with spaces or control
/// characters). Storage errors are replied as `error: <kind>: <message>`.
macro_rules! probe_plugin {
    ($name:ident, $id:literal) => {
        /// Each route exercises one facility of the host and replies with
        /// the outcome.
        #[derive(Default)]
        pub struct $name;

        #[warden_sdk::plugin(
                    id = $id,
                    description = "Drives storage, output, logging and failures from chat commands"
                )]
        impl $name {
            #[respond_to(r"^(?P<shared>shared )?set (?P<key>\S+) = (?P<value>.*)$")]
            fn set(&self, msg: &Message, shared: Option<String>, key: &str, value: &str) {
                respond(msg, key, |key| {
                    scope(self.storage(), &shared).set_bytes(key, value.as_bytes())?;
                    Ok("ok".to_owned())
                });
            }

            #[respond_to(r"^(?P<shared>shared )?setex (?P<secs>\d+) (?P<key>\S+) = (?P<value>.*)$")]
            fn setex(
                &self,
                msg: &Message,
                shared: Option<String>,
                secs: &str,
                key: &str,
                value: &str,
            ) {
                let Ok(secs) = secs.parse() else {
                    msg.say(format!("error: bad-secs: {secs} is not a u64"));
                    return;
                };
                respond(msg, key, |key| {
                    let ttl = Duration::from_secs(secs);
                    scope(self.storage(), &shared).set_bytes_expiring(
                        key,
                        value.as_bytes(),
                        ttl,
                    )?;
                    Ok("ok".to_owned())
                });
            }

            #[respond_to(r"^(?P<shared>shared )?get (?P<key>\S+)$")]
            fn get(&self, msg: &Message, shared: Option<String>, key: &str) {
                respond(msg, key, |key| {
                    Ok(match scope(self.storage(), &shared).get_bytes(key)? {
                        Some(value) => format!("value: {}", String::from_utf8_lossy(&value)),
                        None => "none".to_owned(),
                    })
                });
            }

            #[respond_to(r"^(?P<shared>shared )?has (?P<key>\S+)$")]
            fn has(&self, msg: &Message, shared: Option<String>, key: &str) {
                respond(msg, key, |key| {
                    Ok(scope(self.storage(), &shared).has(key)?.to_string())
                });
            }

            #[respond_to(r"^(?P<shared>shared )?del (?P<key>\S+)$")]
            fn del(&self, msg: &Message, shared: Option<String>, key: &str) {
                respond(msg, key, |key| {
                    scope(self.storage(), &shared).delete(key)?;
                    Ok("ok".to_owned())
                });
            }

            #[respond_to(r"^(?P<shared>shared )?incr (?P<key>\S+) (?P<delta>-?\d+)$")]
            fn incr(&self, msg: &Message, shared: Option<String>, key: &str, delta: &str) {
                let Ok(delta) = delta.parse::<i64>() else {
                    msg.say(format!("error: bad-delta: {delta} is not an i64"));
                    return;
                };
                respond(msg, key, |key| {
                    Ok(format!("value: {}", scope(self.storage(), &shared).increment(key, delta)?))
                });
            }

            #[respond_to(r"^(?P<shared>shared )?cas (?P<key>\S+) (?P<expected>\S+) (?P<new>\S+)$")]
            fn cas(&self, msg: &Message, shared: Option<String>, key: &str, expected: &str, new: &str) {
                // `-` stands for "absent".
                let opt = |v: &str| (v != "-").then(|| v.as_bytes().to_vec());
                let (expected, new) = (opt(expected), opt(new));
                respond(msg, key, |key| {
                    let swapped = scope(self.storage(), &shared).compare_and_swap_bytes(
                        key,
                        expected.as_deref(),
                        new.as_deref(),
                    )?;
                    Ok(format!("swapped: {swapped}"))
                });
            }

            #[respond_to(r"^(?P<shared>shared )?list(?: (?P<prefix>\S+))?$")]
            fn list(&self, msg: &Message, shared: Option<String>, prefix: Option<String>) {
                let keys = scope(self.storage(), &shared).keys(prefix.unwrap_or_default());
                msg.say(outcome(keys.map(|keys| format!("keys: {}", keys.join(",")))));
            }

            #[respond_to(r"^own size$")]
            fn own_size(&self, msg: &Message) {
                msg.say(outcome(self.storage().namespace_size().map(|n| format!("own: {n}"))));
            }

            #[respond_to(r"^size$")]
            fn size(&self, msg: &Message) {
                let storage = self.storage();
                let size = storage
                    .size()
                    .and_then(|bytes| Ok(format!("size: {bytes} ({})", storage.size_human()?)));
                msg.say(outcome(size));
            }

            #[respond_to(r"^print (?P<text>.*)$")]
            fn print(&self, msg: &Message, text: &str) {
                println!("{text}");
                eprintln!("{text}");
                msg.say("printed");
            }

            #[respond_to(r"^log (?P<text>.*)$")]
            fn log(&self, msg: &Message, text: &str) {
                warden_sdk::log::info(text);
                msg.say("logged");
            }

            #[respond_to(r"^panic$")]
            fn panic(&self, _msg: &Message) {
                panic!("probe asked to panic");
            }

            #[respond_to(r"^fail$")]
            fn fail(&self, _msg: &Message) -> Result<(), &'static str> {
                Err("probe asked to fail")
            }
        }
    };
}

/// The private storage, or the shared keyspace when the command started
/// with `shared `.
fn scope(storage: Storage, shared: &Option<String>) -> Storage {
    if shared.is_some() {
        storage.shared()
    } else {
        storage
    }
}

/// Decodes `raw_key`, runs `op` on it and replies with its outcome.
fn respond(msg: &Message, raw_key: &str, op: impl FnOnce(&str) -> Result<String, Error>) {
    let reply = match decode_key(raw_key) {
        Ok(key) => outcome(op(&key)),
        Err(reason) => format!("error: bad-key: {reason}"),
    };
    msg.say(reply);
}

/// The reply for a storage outcome: the text, or `error: <kind>: <message>`.
fn outcome(result: Result<String, Error>) -> String {
    result.unwrap_or_else(|error| format!("error: {}: {}", error.kind(), error.message()))
}

/// The key as sent, or, for `hex:<digits>`, the UTF-8 text the digits
/// encode (`hex:` alone is the empty key).
fn decode_key(raw: &str) -> Result<String, String> {
    let Some(digits) = raw.strip_prefix("hex:") else {
        return Ok(raw.to_owned());
    };
    if digits.len() % 2 != 0 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{raw:?} is not an even number of hex digits"));
    }
    let bytes = digits
        .as_bytes()
        .chunks(2)
        .map(|pair| (hex_value(pair[0]) << 4) | hex_value(pair[1]))
        .collect();
    String::from_utf8(bytes).map_err(|_| format!("{raw:?} does not encode UTF-8 text"))
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}
