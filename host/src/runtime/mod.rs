//! The WebAssembly side of the host: the engine, the linker with WASI and
//! Warden's interfaces, and the per-instance state plugins call into.

mod bindings;
pub mod cache;
pub mod functions;
mod host;
mod instance;
pub mod output;
mod stdio;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::Limits;
use cache::{CacheOutcome, CompileCache};
pub use host::{Immediate, PluginHost, Serving, Settings};
pub use instance::{Contract, Declared, Handled, Instance, Pre};
pub(crate) use output::Output;

/// How often the epoch advances: running code is checked against its
/// deadline, and yields to other tasks, this often.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Components at least this large are compiled with the baseline compiler
/// first; smaller ones take Cranelift well under a second.
pub const BASELINE_FROM_BYTES: usize = 1 << 20;

/// Store data of one plugin instance.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    /// When the entry into the plugin under way must have returned.
    deadline: Instant,
    /// Warden's own interfaces.
    pub host: PluginHost,
}

impl PluginState {
    /// Turns the instance that read a plugin's manifest into the one that
    /// serves it: from now on it is named by identity `id` in logs, reaches
    /// what `serving` holds, and is bounded by `limits` (the plugin's own).
    pub fn serve_as(&mut self, id: &str, serving: Serving, limits: &Limits) {
        let id: Arc<str> = Arc::from(id);
        let output = self.host.output().clone();
        output.set_name(id.clone());
        self.host = PluginHost::new(id, output, Some(serving));
        self.limits = Limiter::new(limits);
    }

    /// Whether the instance was refused memory it asked for: it has hit
    /// its `max_memory_bytes`.
    pub fn memory_exhausted(&self) -> bool {
        self.limits.refused_memory
    }

    /// The log output of the instance, which names the plugin.
    pub(crate) fn output(&self) -> &Output {
        self.host.output()
    }
}

/// Sets the wall-clock deadline of the next entry into the instance of
/// `store` (instantiation, `manifest` or `handle`). Running code is stopped
/// at the first epoch tick past it, with [`wasmtime::Trap::Interrupt`];
/// until then it yields to other tasks at every tick. Code that waits
/// (sleeps, polls) instead is stopped by the caller, which drops the call
/// at the same deadline (see [`within`]).
pub fn arm(store: &mut Store<PluginState>, deadline: Instant) {
    store.data_mut().deadline = deadline;
    store.set_epoch_deadline(1);
}

/// Why an entry into a plugin failed.
#[derive(Debug)]
pub enum Entry {
    /// It was still running or waiting at its deadline.
    TimedOut,
    /// It trapped after the instance was refused memory past its
    /// `max_memory_bytes` (see [`refine`]).
    OutOfMemory,
    /// It trapped, or failed in the host.
    Failed(wasmtime::Error),
}

/// `result`, an entry into the instance of `store`, with a failure that
/// followed a refusal of memory named as [`Entry::OutOfMemory`].
pub fn refine<T>(result: Result<T, Entry>, store: &Store<PluginState>) -> Result<T, Entry> {
    match result {
        Err(Entry::Failed(_)) if store.data().memory_exhausted() => Err(Entry::OutOfMemory),
        result => result,
    }
}

/// Runs `call`, an entry into an instance whose store was [`arm`]ed with
/// `deadline`, and drops it at the deadline if it has not returned by then,
/// whatever it is doing: running (the epoch check stops it) or waiting in
/// WASI (sleeping, polling). A call that timed out leaves its instance in
/// no state to be used again: drop it.
pub async fn within<T>(
    deadline: Instant,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<T, Entry> {
    match tokio::time::timeout_at(deadline.into(), call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if matches!(e.downcast_ref(), Some(wasmtime::Trap::Interrupt)) => {
            Err(Entry::TimedOut)
        }
        Ok(Err(e)) => Err(Entry::Failed(e)),
        Err(_) => Err(Entry::TimedOut),
    }
}

/// The resource limits of an instance, which remember whether memory was
/// refused, so that the host can say a trap came from the memory limit.
struct Limiter {
    limits: StoreLimits,
    refused_memory: bool,
}

impl Limiter {
    /// The limits of an instance bounded by `limits`.
    fn new(limits: &Limits) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(limits.max_memory_bytes)
            // A failed memory.grow traps instead of returning -1, so the
            // plugin cannot go on in a state its allocator did not expect,
            // and the log says why it stopped.
            .trap_on_grow_failure(true)
            .instances(16)
            .tables(16)
            .memories(16)
            .build();
        Self {
            limits,
            refused_memory: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = self.limits.memory_growing(current, desired, maximum);
        if !matches!(grown, Ok(true)) {
            self.refused_memory = true;
        }
        grown
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
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

/// The engines and linkers shared by every plugin, and the clock that
/// bounds handler calls.
///
/// Plugins run on code optimized by Cranelift. A large plugin (at least
/// [`BASELINE_FROM_BYTES`]) whose optimized code is not in the compilation
/// cache yet is first compiled with wasmtime's baseline compiler, Winch,
/// about three times faster, and served from that while Cranelift compiles
/// it in the background (see [`compile`](Self::compile)).
#[derive(Clone)]
pub struct Runtime {
    optimizing: Tier,
    baseline: Option<Tier>,
    /// The functions Cranelift compiled, for the compilation cache to keep.
    functions: Option<Arc<functions::Functions>>,
    /// One optimizing compile in the background at a time (it uses every
    /// core already), so that serving keeps its share of the machine.
    background: Arc<tokio::sync::Semaphore>,
}

/// One compiler's engine, and the linker over it.
#[derive(Clone)]
struct Tier {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
}

/// Which code a compiled component holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Optimized, by Cranelift.
    Optimized,
    /// Compiled fast, by Winch; to be replaced by optimized code.
    Baseline,
}

impl Tier {
    /// An engine compiling with `strategy`, and its linker. Cranelift
    /// looks for compiled functions in `functions`, when given.
    fn new(
        strategy: wasmtime::Strategy,
        immediate: Immediate,
        functions: Option<Arc<functions::Functions>>,
    ) -> wasmtime::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.strategy(strategy);
        if let Some(functions) = functions {
            config.enable_incremental_compilation(functions)?;
        }
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
        // Every version of the contract: a component imports the
        // interfaces of the one it was built against.
        bindings::v2::Plugin::add_to_linker::<_, HasSelf<PluginHost>>(&mut linker, |s| {
            &mut s.host
        })?;
        bindings::v1::Plugin::add_to_linker::<_, HasSelf<PluginHost>>(&mut linker, |s| {
            &mut s.host
        })?;
        host::link_immediate(&mut linker, immediate)?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
        })
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// New engines and linkers, with the baseline compiler. Starts a thread
    /// that advances the engines' epochs; it ends when the last clone of the
    /// engines is dropped.
    /// `immediate` says which storage operations every plugin's backend
    /// performs without waiting; plugins call those synchronously.
    pub fn new(immediate: Immediate) -> wasmtime::Result<Self> {
        Self::with_baseline(immediate, true)
    }

    /// [`new`](Self::new), with the baseline compiler or without it (then
    /// every plugin is compiled with Cranelift before it serves).
    pub fn with_baseline(immediate: Immediate, baseline: bool) -> wasmtime::Result<Self> {
        Self::with_compilers(immediate, baseline, false)
    }

    /// [`with_baseline`](Self::with_baseline); with `reuse_functions`,
    /// Cranelift also looks for the functions it compiles in a store that
    /// the compilation cache keeps ([`functions`](Self::functions)).
    /// Without, it spends nothing on keys and copies of functions.
    pub fn with_compilers(
        immediate: Immediate,
        baseline: bool,
        reuse_functions: bool,
    ) -> wasmtime::Result<Self> {
        let functions = reuse_functions.then(|| Arc::new(functions::Functions::default()));
        let optimizing = Tier::new(wasmtime::Strategy::Cranelift, immediate, functions.clone())?;
        // Winch generates code for x86_64 only (aarch64 is in development).
        let winch = baseline && cfg!(target_arch = "x86_64");
        let baseline = match winch {
            true => Some(Tier::new(wasmtime::Strategy::Winch, immediate, None)?),
            false => None,
        };
        let engines: Vec<_> = std::iter::once(&optimizing)
            .chain(baseline.as_ref())
            .map(|tier| tier.engine.weak())
            .collect();
        std::thread::Builder::new()
            .name("warden-epoch".into())
            .spawn(move || {
                loop {
                    let mut alive = false;
                    for weak in &engines {
                        if let Some(engine) = weak.upgrade() {
                            engine.increment_epoch();
                            alive = true;
                        }
                    }
                    if !alive {
                        return;
                    }
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| wasmtime::Error::msg(format!("cannot start the epoch thread: {e}")))?;

        Ok(Self {
            optimizing,
            baseline,
            functions,
            background: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    /// The engine of optimized code.
    pub fn engine(&self) -> &Engine {
        &self.optimizing.engine
    }

    /// Where Cranelift looks for functions it compiled before, when the
    /// runtime reuses them: give it to the compilation cache
    /// ([`CompileCache::with_functions`]), which keeps them.
    pub fn functions(&self) -> Option<&Arc<functions::Functions>> {
        self.functions.as_ref()
    }

    /// The tier whose engine compiled `component`.
    fn tier_of(&self, engine: &Engine) -> &Tier {
        match &self.baseline {
            Some(baseline) if Engine::same(engine, &baseline.engine) => baseline,
            _ => &self.optimizing,
        }
    }

    /// The linker with every interface a plugin may import, over `engine`.
    fn linker(&self, engine: &Engine) -> &Linker<PluginState> {
        &self.tier_of(engine).linker
    }

    /// Compiles a component, through `cache` when given. `digest` is the
    /// SHA-256 of `bytes`; `file` names the plugin in logs. Optimized code
    /// comes from the cache when it is there; otherwise, with the baseline
    /// compiler, the code is baseline code (see [`optimize`](Self::optimize)).
    pub fn compile(
        &self,
        bytes: &[u8],
        digest: &[u8; 32],
        file: &std::path::Path,
        cache: Option<&CompileCache>,
    ) -> wasmtime::Result<(Component, CacheOutcome, Code)> {
        let optimize = || {
            let (component, outcome) = self.optimize(bytes, digest, file, cache)?;
            Ok((component, outcome, Code::Optimized))
        };
        let Some(baseline) = self
            .baseline
            .as_ref()
            .filter(|_| bytes.len() >= BASELINE_FROM_BYTES)
        else {
            return optimize();
        };
        if let Some(cache) = cache
            && let Some(component) = cache.load(self.engine(), digest, file)
        {
            return Ok((component, CacheOutcome::Hit, Code::Optimized));
        }
        cache::announce_compile(file, bytes.len(), "with the baseline compiler first");
        match Component::new(&baseline.engine, bytes) {
            Ok(component) => {
                let outcome = match cache {
                    Some(_) => CacheOutcome::Miss,
                    None => CacheOutcome::Off,
                };
                Ok((component, outcome, Code::Baseline))
            }
            // Winch does not support every WebAssembly feature: such a
            // component is optimized before it serves.
            Err(e) => {
                tracing::debug!(file = %file.display(),
                    "the baseline compiler cannot compile it ({}); optimizing it now",
                    crate::text::one_line(&format!("{e:#}")));
                optimize()
            }
        }
    }

    /// Compiles a component with Cranelift, through `cache` when given
    /// (which keeps only optimized code).
    pub fn optimize(
        &self,
        bytes: &[u8],
        digest: &[u8; 32],
        file: &std::path::Path,
        cache: Option<&CompileCache>,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        match cache {
            Some(cache) => cache.load_or_compile(self.engine(), bytes, digest, file),
            None => {
                cache::announce_compile(file, bytes.len(), "");
                Ok((Component::new(self.engine(), bytes)?, CacheOutcome::Off))
            }
        }
    }

    /// The right to compile in the background, one compile at a time.
    pub(crate) async fn background_permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.background
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"))
    }

    /// A fresh store for an instance of `pre`: no files, no environment, no network,
    /// no arguments; stdout and stderr go to the log; memory is bounded.
    /// `output` names the plugin in logs, by its identity, or its file while
    /// the manifest is read (when `serving` is `None`), and bounds what it
    /// logs. `limits` bound its memory. Each entry into it must be [`arm`]ed.
    pub(crate) fn new_store(
        &self,
        pre: &Pre,
        output: Output,
        serving: Option<Serving>,
        limits: &Limits,
    ) -> Store<PluginState> {
        let tag = output.name();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdio::LogStream::new(output.clone(), "stdout"));
        wasi.stderr(stdio::LogStream::new(output.clone(), "stderr"));
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
            limits: Limiter::new(limits),
            deadline: Instant::now() + limits.handler_timeout(),
            host: PluginHost::new(tag, output, serving),
        };
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        // At every tick, code past its deadline stops; other code yields,
        // so that a plugin that spins never holds a worker thread for more
        // than a tick at a time.
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }
}
