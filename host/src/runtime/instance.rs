//! Instances of a plugin, and the entries into them: instantiation, the
//! `manifest` export and the `handle` export, each under a deadline.

use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::Component;

use super::bindings::{self, warden::plugin::types};
use super::{Entry, PluginState, Runtime, arm, refine, within};
use crate::router::{Capture, Incoming, Route};

/// A plugin's component, linked and checked against the plugin world:
/// ready to instantiate, as often as needed.
#[derive(Clone)]
pub struct Pre(bindings::PluginPre<PluginState>);

impl std::fmt::Debug for Pre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pre").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Links `component` with every interface a plugin may import and checks
    /// that it exports the plugin world. The error says what is missing.
    pub fn prepare(&self, component: &Component) -> wasmtime::Result<Pre> {
        let pre = self.linker().instantiate_pre(component)?;
        Ok(Pre(bindings::PluginPre::new(pre)?))
    }
}

impl Pre {
    /// A new instance in `store`, started by `deadline`.
    pub async fn instantiate(
        &self,
        mut store: Store<PluginState>,
        deadline: Instant,
    ) -> Result<Instance, Entry> {
        arm(&mut store, deadline);
        let plugin = within(deadline, self.0.instantiate_async(&mut store)).await;
        let plugin = refine(plugin, &store)?;
        Ok(Instance { store, plugin })
    }
}

/// What a plugin's manifest declares, as the plugin returned it: nothing
/// is checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The identity.
    pub id: String,
    /// The version.
    pub version: String,
    /// The description.
    pub description: String,
    /// The routes, in declaration order.
    pub routes: Vec<Route>,
}

/// A live instance and its store.
pub struct Instance {
    store: Store<PluginState>,
    plugin: bindings::Plugin,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

/// What one `handle` call returned: the replies it sent, and how it ended.
#[derive(Debug)]
pub struct Handled {
    /// The replies, in order, within the reply limits.
    pub replies: Vec<String>,
    /// `Ok(Err(text))` is an error the handler returned; `Err` an entry
    /// that failed (a trap, the deadline). After an `Err` the instance is
    /// in no state to serve again: drop it.
    pub result: Result<Result<(), String>, Entry>,
}

impl Instance {
    /// Calls the plugin's `manifest`, returning by `deadline`.
    pub async fn manifest(&mut self, deadline: Instant) -> Result<Declared, Entry> {
        arm(&mut self.store, deadline);
        let manifest = within(deadline, self.plugin.call_manifest(&mut self.store)).await;
        let manifest = refine(manifest, &self.store)?;
        Ok(Declared {
            id: manifest.id,
            version: manifest.version,
            description: manifest.description,
            routes: manifest.routes.into_iter().map(Route::from).collect(),
        })
    }

    /// Calls the plugin's `handle` for its route `index` with `msg` and the
    /// route's `captures`, returning by `deadline`.
    pub async fn handle(
        &mut self,
        deadline: Instant,
        index: u32,
        msg: &Incoming,
        captures: Vec<Capture>,
    ) -> Handled {
        let message = types::Message {
            text: msg.text.clone(),
            user: msg.user.clone(),
            channel: msg.channel.clone(),
            addressed: msg.addressed,
        };
        let captures: Vec<types::Capture> = captures.into_iter().map(Into::into).collect();
        arm(&mut self.store, deadline);
        self.store.data_mut().host.begin_call();
        let result = within(
            deadline,
            self.plugin
                .call_handle(&mut self.store, index, &message, &captures),
        )
        .await;
        let result = refine(result, &self.store);
        let replies = self.store.data_mut().host.end_call();
        Handled { replies, result }
    }

    /// The instance's state.
    pub fn state(&self) -> &PluginState {
        self.store.data()
    }

    /// The instance's state, to change.
    pub fn state_mut(&mut self) -> &mut PluginState {
        self.store.data_mut()
    }
}
