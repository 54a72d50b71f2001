//! A plugin whose manifest declares an identity that is not valid (it has
//! spaces and a `!`), so that the host must refuse to load it.

use warden_sdk::Message;

/// The plugin.
#[derive(Default)]
pub struct BadIdentity;

#[warden_sdk::plugin(id = "not a valid id!", description = "Declares an invalid identity")]
impl BadIdentity {
    #[respond_to(r"^hello$")]
    fn hello(&self, msg: &Message) {
        msg.say("hi");
    }
}
