//! The plugin's settings: the `[settings."ID"]` table of the host's
//! configuration for this plugin, and no other plugin's (Slack Machine's
//! `self.settings`). Read through the standard `wasi:config/store`
//! interface.
//!
//! ```no_run
//! let city = warden_sdk::settings::get("city").unwrap_or_else(|| "Utrecht".into());
//! ```
//!
//! A plugin that cannot work without a setting says so in its attribute,
//! `#[warden_sdk::plugin(id = "...", required_settings = ["api_key"])]`:
//! the host then does not load it while the setting is missing, and says
//! which one.

use crate::__bindings::wasi::config::store;

/// The value of setting `name`, or `None` if the operator set none.
pub fn get(name: &str) -> Option<String> {
    store::get(name).ok().flatten()
}

/// Every setting, as (name, value) pairs.
pub fn all() -> Vec<(String, String)> {
    store::get_all().unwrap_or_default()
}
