//! Shows what every loaded plugin answers to, from the manual the host
//! writes to the shared key `manual` (Slack Machine's built-in help
//! plugin). It needs a read grant for that key:
//!
//! ```toml
//! [grants."example.help.HelpPlugin"]
//! read = ["manual"]
//! ```
//!
//! ```text
//! @bot help         This is what I can respond to: ...
//! @bot robot help   This is what triggers me: ...
//! ```
//!
//! It lists plugins, and each plugin's handlers, by name.

use std::collections::BTreeMap;

use warden_sdk::{Message, Plugin, Result};

/// One handler's line of the manual.
#[derive(serde::Deserialize)]
struct HumanHelp {
    command: String,
    help: String,
}

/// The manual, as the host writes it.
#[derive(serde::Deserialize)]
struct Manual {
    /// By plugin, by handler.
    human: BTreeMap<String, BTreeMap<String, HumanHelp>>,
    /// By plugin, every pattern.
    robot: BTreeMap<String, Vec<String>>,
}

/// The plugin.
#[derive(Default)]
pub struct HelpPlugin;

#[warden_sdk::plugin(id = "example.help.HelpPlugin", description = "Getting Help")]
impl HelpPlugin {
    /// help: display this help text
    #[respond_to(r"^help$")]
    fn help(&self, msg: &Message) -> Result<()> {
        let text = match self.storage().shared().get::<Manual>("manual")? {
            None => "Help is not available!".to_owned(),
            Some(manual) => {
                let sections: Vec<String> = manual
                    .human
                    .iter()
                    .filter(|(_, handlers)| !handlers.is_empty())
                    .map(|(plugin, handlers)| {
                        let lines: Vec<String> = handlers
                            .values()
                            .map(|h| format!("\t*{}:* {}", h.command, h.help))
                            .collect();
                        format!("*{plugin}:*\n{}", lines.join("\n"))
                    })
                    .collect();
                format!(
                    "This is what I can respond to:\n\n{}",
                    sections.join("\n\n")
                )
            }
        };
        msg.say(text);
        Ok(())
    }

    /// robot help: display regular expressions that the bot responds to
    #[respond_to(r"^robot help$")]
    fn robot_help(&self, msg: &Message) -> Result<()> {
        let text = match self.storage().shared().get::<Manual>("manual")? {
            None => "Help is not available!".to_owned(),
            Some(manual) => {
                let sections: Vec<String> = manual
                    .robot
                    .iter()
                    .map(|(plugin, patterns)| {
                        let lines: Vec<String> = patterns
                            .iter()
                            .map(|p| format!("\t`{}`", p.replace("@botname", "@warden")))
                            .collect();
                        format!("*{plugin}:*\n{}", lines.join("\n"))
                    })
                    .collect();
                format!("This is what triggers me:\n\n{}", sections.join("\n\n"))
            }
        };
        msg.say(text);
        Ok(())
    }
}
