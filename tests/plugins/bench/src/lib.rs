//! The benchmark plugin, identity `warden.bench.Bench00`.
//!
//! Every route starts with the marker `Bench00`, which also ends the
//! identity. The benchmark makes as many distinct plugins as it needs by
//! replacing every occurrence of the marker's bytes in the built component
//! with `Bench01`, `Bench02`, ...: the replacement has the same length, so
//! the component stays valid, and each copy has its own identity, routes and
//! digest.
//!
//! ```text
//! @bot Bench00 get 1000 k        reads k 1000 times        got 1000 x 100 bytes
//! @bot Bench00 set 1000 k        writes 100 bytes to k 1000 times     set 1000
//! @bot Bench00 has 1000 k        asks whether k exists 1000 times   has 1000/1000
//! @bot Bench00 store hi under k  the example storage plugin's store:
//!                                'hi' stored under k!
//! ```
//!
//! With a count of 0 a route makes no storage call: it measures an empty
//! handler call.

use warden_sdk::{Message, Plugin};

/// The value `set` writes: 100 bytes.
const VALUE: [u8; 100] = [b'x'; 100];

/// The plugin. It keeps no state of its own.
#[derive(Default)]
pub struct Bench;

#[warden_sdk::plugin(
    id = "warden.bench.Bench00",
    description = "Benchmark plugin Bench00: storage calls in a loop, and the seed's store"
)]
impl Bench {
    #[respond_to(r"^Bench00 get (?P<n>\d+) (?P<key>\S+)$")]
    fn get(&self, msg: &Message, n: &str, key: &str) -> Result<(), String> {
        let storage = self.storage();
        let (mut found, mut len) = (0u64, 0usize);
        for _ in 0..count(n)? {
            if let Some(value) = storage.get_bytes(key).map_err(|e| e.to_string())? {
                found += 1;
                len = value.len();
            }
        }
        msg.say(format!("got {found} x {len} bytes"));
        Ok(())
    }

    #[respond_to(r"^Bench00 set (?P<n>\d+) (?P<key>\S+)$")]
    fn set(&self, msg: &Message, n: &str, key: &str) -> Result<(), String> {
        let storage = self.storage();
        let n = count(n)?;
        for _ in 0..n {
            storage.set_bytes(key, &VALUE).map_err(|e| e.to_string())?;
        }
        msg.say(format!("set {n}"));
        Ok(())
    }

    #[respond_to(r"^Bench00 has (?P<n>\d+) (?P<key>\S+)$")]
    fn has(&self, msg: &Message, n: &str, key: &str) -> Result<(), String> {
        let storage = self.storage();
        let n = count(n)?;
        let mut yes = 0u64;
        for _ in 0..n {
            if storage.has(key).map_err(|e| e.to_string())? {
                yes += 1;
            }
        }
        msg.say(format!("has {yes}/{n}"));
        Ok(())
    }

    #[respond_to(r"^Bench00 store (?P<text>.*) under (?P<key>\w+)$")]
    fn store(&self, msg: &Message, text: String, key: String) -> warden_sdk::Result<()> {
        self.storage().set(&key, &text)?;
        msg.say(format!("'{text}' stored under {key}!"));
        Ok(())
    }
}

/// The repeat count of a command.
fn count(n: &str) -> Result<u64, String> {
    n.parse().map_err(|_| format!("{n} is not a count"))
}
