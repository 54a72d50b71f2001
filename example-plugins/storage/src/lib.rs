//! Stores, retrieves and deletes text by key, in the plugin's private
//! storage.
//!
//! ```text
//! @bot store hello world under greeting   'hello world' stored under greeting!
//! @bot retrieve greeting                  'hello world' retrieved from <greeting>!
//! @bot does greeting exist?               <greeting> exists.
//! @bot delete greeting                    data in <greeting> deleted!
//! @bot size                               storage size: 32.0 KiB
//! ```

use warden_sdk::{Message, Plugin, Result};

/// The plugin. It keeps no state of its own: everything is in storage.
#[derive(Default)]
pub struct StoragePlugin;

#[warden_sdk::plugin(
    id = "example.storage.StoragePlugin",
    description = "Stores, retrieves and deletes text by key"
)]
impl StoragePlugin {
    /// store TEXT under KEY: keeps TEXT under KEY
    #[respond_to(r"store (?P<text>.*) under (?P<key>\w+)")]
    fn store(&self, msg: &Message, text: String, key: String) -> Result<()> {
        self.storage().set(&key, &text)?;
        msg.say(format!("'{text}' stored under {key}!"));
        Ok(())
    }

    /// retrieve KEY: shows what KEY holds
    #[respond_to(r"retrieve (?P<key>\w+)")]
    fn retrieve(&self, msg: &Message, key: String) -> Result<()> {
        let data: Option<String> = self.storage().get(&key)?;
        match data {
            Some(data) if !data.is_empty() => msg.say(format!("'{data}' retrieved from <{key}>!")),
            _ => msg.say("Key not found!"),
        }
        Ok(())
    }

    /// delete KEY: forgets KEY
    #[respond_to(r"delete (?P<key>\w+)")]
    fn delete(&self, msg: &Message, key: String) -> Result<()> {
        self.storage().delete(&key)?;
        msg.say(format!("data in <{key}> deleted!"));
        Ok(())
    }

    /// does KEY exist?: tells whether KEY holds anything
    #[respond_to(r"does (?P<key>\w+) exist?")]
    fn exists(&self, msg: &Message, key: String) -> Result<()> {
        if self.storage().has(&key)? {
            msg.say(format!("<{key}> exists."));
        } else {
            msg.say(format!("<{key}> does not exist!"));
        }
        Ok(())
    }

    /// size: shows the store's size
    #[respond_to(r"size")]
    fn size(&self, msg: &Message) -> Result<()> {
        let human = self.storage().size_human()?;
        msg.say(format!("storage size: {human}"));
        Ok(())
    }
}
