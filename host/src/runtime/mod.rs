//! The WebAssembly side of the host: the engine, the linker with WASI and
//! Warden's interfaces, and the per-instance state plugins call into.

pub mod bindings;
mod host;
mod stdio;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::Limits;
use crate::plugins::cache::{CacheOutcome, CompileCache};
use crate::storage::PluginStorage;
pub use host::{Immediate, PluginHost};

/// How often the epoch advances; handler timeouts are counted in these.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Store data of one plugin instance.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// How its output names the plugin.
    tag: stdio::Tag,
    /// Warden's own interfaces.
    pub host: PluginHost,
}

impl PluginState {
    /// Turns the instance that read a plugin's manifest into the one that
    /// serves it: from now on it is named by identity `id` in logs, reaches
    /// `storage`, and is bounded by `limits` (the plugin's own).
    pub fn serve_as(&mut self, id: &str, storage: PluginStorage, limits: &Limits) {
        let id: Arc<str> = Arc::from(id);
        self.tag.set(id.clone());
        self.host = PluginHost::new(id, Some(storage));
        self.limits = store_limits(limits);
    }
}

/// The store limits of an instance bounded by `limits`.
fn store_limits(limits: &Limits) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(limits.max_memory_bytes)
        // A failed memory.grow traps instead of returning -1, so the plugin
        // cannot go on in a state its allocator did not expect, and the log
        // says why it stopped.
        .trap_on_grow_failure(true)
        .instances(16)
        .tables(16)
        .memories(16)
        .build()
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The engine and linker shared by every plugin, and the clock that bounds
/// handler calls.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// A new engine and linker. Starts a thread that advances the engine's
    /// epoch; it ends when the last clone of the engine is dropped.
    /// `immediate` says which storage operations every plugin's backend
    /// performs without waiting; plugins call those synchronously.
    pub fn new(immediate: Immediate) -> wasmtime::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        // Component-model async is not used by the plugin world, and turning
        // it off makes every host-to-guest call several times cheaper.
        config.concurrency_support(false);
        // Bounds the CPU time of each handler call (see `call_deadline`).
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::<PluginState>::new(&engine);
        // WASI is linked so that components built for wasm32-wasip2 load,
        // but each instance's WasiCtx grants nothing (see `new_store`).
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<PluginHost>>(&mut linker, |s| &mut s.host)?;
        host::link_immediate(&mut linker, immediate)?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("warden-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| wasmtime::Error::msg(format!("cannot start the epoch thread: {e}")))?;

        Ok(Self {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with every interface a plugin may import.
    pub fn linker(&self) -> &Linker<PluginState> {
        &self.linker
    }

    /// Compiles a component, through `cache` when given. `digest` is the
    /// SHA-256 of `bytes`; `file` names the plugin in logs.
    pub fn compile(
        &self,
        bytes: &[u8],
        digest: &[u8; 32],
        file: &std::path::Path,
        cache: Option<&CompileCache>,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        match cache {
            Some(cache) => cache.load_or_compile(&self.engine, bytes, digest, file),
            None => Ok((Component::new(&self.engine, bytes)?, CacheOutcome::Off)),
        }
    }

    /// A fresh store for plugin `id`: no files, no environment, no network,
    /// no arguments; stdout and stderr go to the log; memory is bounded.
    /// `tag` names the plugin in logs: its identity, or its file while the
    /// manifest is read (when `storage` is `None`). `limits` bound its
    /// memory and the time of each call.
    pub fn new_store(
        &self,
        tag: &str,
        storage: Option<PluginStorage>,
        limits: &Limits,
    ) -> Store<PluginState> {
        let tag: Arc<str> = Arc::from(tag);
        let log_tag = stdio::Tag::new(tag.clone());
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdio::LogStream::new(log_tag.clone(), "stdout"));
        wasi.stderr(stdio::LogStream::new(log_tag.clone(), "stderr"));
        // Nothing else is granted: no preopened directories, environment or
        // arguments are added, and the network stays closed. These are
        // wasmtime's defaults too; they are spelled out so that a change of
        // defaults cannot open them.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .allow_blocking_current_thread(false);
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: store_limits(limits),
            tag: log_tag,
            host: PluginHost::new(tag, storage),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(call_deadline(limits));
        store
    }
}

/// The epoch ticks a call bounded by `limits` may run before it is
/// interrupted.
pub fn call_deadline(limits: &Limits) -> u64 {
    let ticks = limits
        .handler_timeout()
        .as_millis()
        .div_ceil(EPOCH_TICK.as_millis());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}
