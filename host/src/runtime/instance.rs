//! Instances of a plugin, and the entries into them: instantiation, the
//! `manifest` export, the `handle` export and the `run-schedule` export,
//! each under a deadline.

use std::time::Instant;

use wasmtime::component::Component;
use wasmtime::{Engine, Store};

use super::bindings::{self, v1, v2};
use super::host::CallContext;
use super::{Entry, PluginState, Runtime, arm, refine, within};
use crate::router::{Capture, Incoming, Reply, Route};
use crate::schedule::Schedule;

/// The version of the plugin contract a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Contract {
    /// `warden:plugin@0.1.0`: routes and storage.
    V0_1,
    /// `warden:plugin@0.2.0`: adds settings, route docs, replies with
    /// threads and mentions, and schedules.
    V0_2,
}

impl Contract {
    /// The contract's WIT package, such as `warden:plugin@0.2.0`.
    pub fn package(self) -> &'static str {
        match self {
            Contract::V0_1 => bindings::CONTRACTS[1],
            Contract::V0_2 => bindings::CONTRACTS[0],
        }
    }

    /// The version a component's imports name, if it imports any of
    /// Warden's interfaces.
    fn imported_by(component: &Component, engine: &Engine) -> Option<Self> {
        component
            .component_type()
            .imports(engine)
            .find_map(|(name, _)| {
                let version = name.strip_prefix("warden:plugin/")?.split_once('@')?.1;
                if version.starts_with("0.1.") {
                    Some(Contract::V0_1)
                } else if version.starts_with("0.2.") {
                    Some(Contract::V0_2)
                } else {
                    None
                }
            })
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.package())
    }
}

/// A plugin's component, linked and checked against the plugin world of
/// its contract: ready to instantiate, as often as needed.
#[derive(Clone)]
pub enum Pre {
    /// Built against `warden:plugin@0.1.0`.
    V0_1(v1::PluginPre<PluginState>),
    /// Built against `warden:plugin@0.2.0`.
    V0_2(v2::PluginPre<PluginState>),
}

impl std::fmt::Debug for Pre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pre")
            .field("contract", &self.contract())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Links `component` with every interface a plugin may import and checks
    /// that it exports the plugin world of its contract: the version its
    /// imports of Warden's interfaces name, or, for a component that imports
    /// none, whichever version its exports fit, newest first. The error says
    /// what is missing.
    pub fn prepare(&self, component: &Component) -> wasmtime::Result<Pre> {
        let pre = self.linker(component.engine()).instantiate_pre(component)?;
        match Contract::imported_by(component, component.engine()) {
            Some(Contract::V0_1) => Ok(Pre::V0_1(v1::PluginPre::new(pre)?)),
            Some(Contract::V0_2) => Ok(Pre::V0_2(v2::PluginPre::new(pre)?)),
            None => match v2::PluginPre::new(pre.clone()) {
                Ok(current) => Ok(Pre::V0_2(current)),
                Err(e) => v1::PluginPre::new(pre).map(Pre::V0_1).map_err(|_| e),
            },
        }
    }
}

impl Pre {
    /// The engine that compiled the component.
    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::V0_1(pre) => pre.instance_pre().engine(),
            Pre::V0_2(pre) => pre.instance_pre().engine(),
        }
    }

    /// The contract the component was built against.
    pub fn contract(&self) -> Contract {
        match self {
            Pre::V0_1(_) => Contract::V0_1,
            Pre::V0_2(_) => Contract::V0_2,
        }
    }

    /// A new instance in `store`, started by `deadline`.
    pub async fn instantiate(
        &self,
        mut store: Store<PluginState>,
        deadline: Instant,
    ) -> Result<Instance, Entry> {
        arm(&mut store, deadline);
        let plugin = match self {
            Pre::V0_1(pre) => within(deadline, pre.instantiate_async(&mut store))
                .await
                .map(Plugin::V0_1),
            Pre::V0_2(pre) => within(deadline, pre.instantiate_async(&mut store))
                .await
                .map(Plugin::V0_2),
        };
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
    /// The schedules, in declaration order.
    pub schedules: Vec<Schedule>,
    /// The settings the plugin needs.
    pub required_settings: Vec<String>,
}

/// The exports of an instance, by contract.
enum Plugin {
    V0_1(v1::Plugin),
    V0_2(v2::Plugin),
}

/// A live instance and its store.
pub struct Instance {
    store: Store<PluginState>,
    plugin: Plugin,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

/// What one `handle` or `run-schedule` call returned: the replies it sent,
/// and how it ended.
#[derive(Debug)]
pub struct Handled {
    /// The replies, in order, within the reply limits.
    pub replies: Vec<Reply>,
    /// `Ok(Err(text))` is an error the handler returned; `Err` an entry
    /// that failed (a trap, the deadline). After an `Err` the instance is
    /// in no state to serve again: drop it.
    pub result: Result<Result<(), String>, Entry>,
}

impl Instance {
    /// Calls the plugin's `manifest`, returning by `deadline`.
    pub async fn manifest(&mut self, deadline: Instant) -> Result<Declared, Entry> {
        arm(&mut self.store, deadline);
        let declared = match &self.plugin {
            Plugin::V0_1(plugin) => within(deadline, plugin.call_manifest(&mut self.store))
                .await
                .map(|m| Declared {
                    id: m.id,
                    version: m.version,
                    description: m.description,
                    routes: m.routes.into_iter().map(Route::from).collect(),
                    schedules: Vec::new(),
                    required_settings: Vec::new(),
                }),
            Plugin::V0_2(plugin) => within(deadline, plugin.call_manifest(&mut self.store))
                .await
                .map(|m| Declared {
                    id: m.id,
                    version: m.version,
                    description: m.description,
                    routes: m.routes.into_iter().map(Route::from).collect(),
                    schedules: m
                        .schedules
                        .into_iter()
                        .map(|s| Schedule {
                            cron: s.cron,
                            channel: s.channel,
                            handler: s.handler,
                            doc: s.doc,
                        })
                        .collect(),
                    required_settings: m.required_settings,
                }),
        };
        refine(declared, &self.store)
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
        arm(&mut self.store, deadline);
        self.store
            .data_mut()
            .host
            .begin_call(CallContext::Message(msg.into()));
        let result = match &self.plugin {
            Plugin::V0_1(plugin) => {
                let message = v1::warden::plugin::types::Message::from(msg);
                let captures: Vec<_> = captures.into_iter().map(Into::into).collect();
                within(
                    deadline,
                    plugin.call_handle(&mut self.store, index, &message, &captures),
                )
                .await
            }
            Plugin::V0_2(plugin) => {
                let message = v2::warden::plugin::types::Message::from(msg);
                let captures: Vec<_> = captures.into_iter().map(Into::into).collect();
                within(
                    deadline,
                    plugin.call_handle(&mut self.store, index, &message, &captures),
                )
                .await
            }
        };
        let result = refine(result, &self.store);
        let replies = self.store.data_mut().host.end_call();
        Handled { replies, result }
    }

    /// Calls the plugin's `run-schedule` for its schedule `index`,
    /// returning by `deadline`.
    pub async fn run_schedule(&mut self, deadline: Instant, index: u32) -> Handled {
        arm(&mut self.store, deadline);
        self.store.data_mut().host.begin_call(CallContext::Schedule);
        let result = match &self.plugin {
            // The first contract has no schedules, so none is declared.
            Plugin::V0_1(_) => Err(Entry::Failed(wasmtime::Error::msg(
                "a warden:plugin@0.1.0 component has no schedules",
            ))),
            Plugin::V0_2(plugin) => {
                within(deadline, plugin.call_run_schedule(&mut self.store, index)).await
            }
        };
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
