//! Keeps notes by key. It uses the same key names as the storage example
//! (`greeting`, ...) without ever seeing its values: each plugin's storage
//! is its own. `publish` and `read shared` use the shared keyspace instead,
//! which works only if the operator granted this plugin access to it.
//!
//! ```text
//! @bot remember hello as greeting    noted 'hello' as <greeting>.
//! @bot recall greeting               <greeting> is 'hello'.
//! @bot forget greeting               forgot <greeting>.
//! @bot publish hi all as motd        published 'hi all' as <motd>.
//! @bot read shared motd              shared <motd> is 'hi all'.
//! ```

use warden_sdk::{Error, Message, Plugin, Result};

/// The plugin. It keeps no state of its own: everything is in storage.
#[derive(Default)]
pub struct NotesPlugin;

#[warden_sdk::plugin(
    id = "example.notes.NotesPlugin",
    description = "Keeps notes by key, privately or in the shared keyspace"
)]
impl NotesPlugin {
    /// remember TEXT as KEY: keeps a note of your own
    #[respond_to(r"remember (?P<text>.*) as (?P<key>\w+)")]
    fn remember(&self, msg: &Message, text: &str, key: &str) -> Result<()> {
        self.storage().set(key, text)?;
        msg.say(format!("noted '{text}' as <{key}>."));
        Ok(())
    }

    /// recall KEY: shows a note
    #[respond_to(r"recall (?P<key>\w+)")]
    fn recall(&self, msg: &Message, key: &str) -> Result<()> {
        match self.storage().get::<String>(key)? {
            Some(text) => msg.say(format!("<{key}> is '{text}'.")),
            None => msg.say(format!("I don't remember <{key}>.")),
        }
        Ok(())
    }

    /// forget KEY: forgets a note
    #[respond_to(r"forget (?P<key>\w+)")]
    fn forget(&self, msg: &Message, key: &str) -> Result<()> {
        self.storage().delete(key)?;
        msg.say(format!("forgot <{key}>."));
        Ok(())
    }

    /// publish TEXT as KEY: writes a shared key (needs a grant)
    #[respond_to(r"publish (?P<text>.*) as (?P<key>\w+)")]
    fn publish(&self, msg: &Message, text: &str, key: &str) -> Result<()> {
        match self.storage().shared().set(key, text) {
            Ok(()) => msg.say(format!("published '{text}' as <{key}>.")),
            Err(error @ Error::AccessDenied(_)) => msg.say(format!("not allowed: {error}")),
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// read shared KEY: reads a shared key (needs a grant)
    #[respond_to(r"read shared (?P<key>\w+)")]
    fn read_shared(&self, msg: &Message, key: &str) -> Result<()> {
        match self.storage().shared().get::<String>(key) {
            Ok(Some(text)) => msg.say(format!("shared <{key}> is '{text}'.")),
            Ok(None) => msg.say(format!("nothing is shared as <{key}>.")),
            Err(error @ Error::AccessDenied(_)) => msg.say(format!("not allowed: {error}")),
            Err(error) => return Err(error),
        }
        Ok(())
    }
}
