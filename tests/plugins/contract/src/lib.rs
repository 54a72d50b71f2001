//! Test plugin `warden.tests.Contract`: what the second plugin contract
//! added. It needs the setting `greeting`, reads settings, answers with
//! mentions and in threads, tells who sent a message, and counts a
//! schedule that fires every second (and, after `spin on`, spins in it).

use warden_sdk::{Message, Plugin, Result};

/// The contract's features, one route each.
#[derive(Default)]
pub struct Contract;

#[warden_sdk::plugin(
    id = "warden.tests.Contract",
    description = "Contract features",
    required_settings = ["greeting"]
)]
impl Contract {
    /// setting NAME: tells a setting's value
    #[respond_to(r"^setting (?P<name>\S+)$")]
    fn setting(&self, msg: &Message, name: String) {
        match warden_sdk::settings::get(&name) {
            Some(value) => msg.say(format!("{name} = {value}")),
            None => msg.say(format!("{name} is not set")),
        }
    }

    /// settings: lists the settings' names
    #[respond_to(r"^settings$")]
    fn settings(&self, msg: &Message) {
        let names: Vec<String> = warden_sdk::settings::all()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        msg.say(format!("settings: {}", names.join(", ")));
    }

    /// reply to me: answers with a mention
    #[respond_to(r"^reply to me$")]
    fn reply(&self, msg: &Message) {
        msg.reply("here you are");
    }

    #[respond_to(r"^reply in thread$")]
    fn reply_in_thread(&self, msg: &Message) {
        msg.reply_in_thread("in the thread");
    }

    #[respond_to(r"^say in (?P<thread>\S+)$")]
    fn say_in(&self, msg: &Message, thread: String) {
        msg.say_in_thread(&thread, "threaded");
    }

    #[respond_to(r"^who am i$")]
    fn who(&self, msg: &Message) {
        let sender = msg.sender();
        msg.say(format!(
            "{} ({}) in {}, message {}, thread {}",
            sender.id,
            sender.name.unwrap_or("no name"),
            msg.channel(),
            msg.id().unwrap_or("none"),
            msg.thread().unwrap_or("none")
        ));
    }

    #[respond_to(r"^ticks$")]
    fn ticks(&self, msg: &Message) -> Result<()> {
        let ticks: Option<i64> = self.storage().get("ticks")?;
        msg.say(format!("ticks: {}", ticks.unwrap_or(0)));
        Ok(())
    }

    /// With `spin on`, every later tick spins until the host stops it.
    #[respond_to(r"^spin (?P<on>on|off)$")]
    fn spin(&self, msg: &Message, on: String) -> Result<()> {
        self.storage().set("spin", &(on == "on"))?;
        msg.say(format!("spin {on}"));
        Ok(())
    }

    /// tick: counts the seconds
    #[schedule("* * * * * *")]
    fn tick(&self) -> Result<()> {
        if self.storage().get::<bool>("spin")?.unwrap_or(false) {
            loop {
                std::hint::spin_loop();
            }
        }
        let n = self.storage().increment("ticks", 1)?;
        warden_sdk::say(format!("tick {n}"));
        Ok(())
    }
}
