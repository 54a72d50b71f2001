//! `warden run`: load the plugins and serve messages.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};

use std::io::IsTerminal as _;

use warden::Host;
use warden::plugins::Progress;

use super::StoreArgs;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Directory of plugin components (`*.wasm`).
    #[arg(long, env = "WARDEN_PLUGINS", value_name = "DIR")]
    plugins: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    /// Read messages from stdin, one a line, and print replies to stdout
    /// (the default when neither HTTP nor Slack's Socket Mode is served).
    #[arg(long)]
    console: bool,
    /// Directory of compiled plugins, so that a restart with unchanged
    /// plugins skips compilation; turns the cache on even if the config's
    /// plugins.cache is false [default: the config's plugins.cache_dir, else
    /// $XDG_CACHE_HOME/warden, else ~/.cache/warden].
    #[arg(long, env = "WARDEN_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every plugin at start, with no compilation cache (overrides
    /// the config's plugins.cache).
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Do not watch the plugins directory: load it once at start (overrides
    /// the config's plugins.watch).
    #[arg(long)]
    no_watch: bool,
    /// Serve HTTP on this address, e.g. 127.0.0.1:8080 (port 0 picks a free
    /// port) [default: the config's http.listen; not served if neither].
    #[arg(long, env = "WARDEN_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Serve HTTP on an address other than loopback with no bearer token
    /// configured, open to anyone who can reach it.
    #[arg(long)]
    insecure_no_auth: bool,
}

/// How long shutdown waits for the Slack events under way to be answered.
const SLACK_FINISH: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let signal = shutdown_signal()?;
    let config = args.store.load_config()?;
    warden::plugins::set_store_options(args.store.options());
    if !args.plugins.is_dir() {
        bail!(
            "the plugins directory {} does not exist or is not a directory",
            args.plugins.display()
        );
    }
    let listen = args.listen.clone().or_else(|| config.http.listen.clone());
    if config.slack.events_api() && listen.is_none() {
        bail!(
            "[slack] signing_secret is set, but HTTP is not served: Slack's Events API is \
             served on the HTTP listener at /slack/events; set [http] listen or --listen"
        );
    }
    let config_tls = config.http.tls_cert.is_some();
    let (events_api, socket_mode) = (config.slack.events_api(), config.slack.socket_mode());
    // HTTP is served when an address is given, Socket Mode when its token
    // is; the console runs when asked for, or when nothing else would.
    let others = listen.is_some() || socket_mode;
    let console = args.console || !others;
    // Bind before loading plugins, so that a taken address fails at once.
    let listener = match &listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let bound = listener
                .local_addr()
                .with_context(|| format!("cannot listen on {addr}"))?;
            warden::adapters::http::check(&config.http)?;
            let tokens = warden::adapters::auth::Tokens::from_config(&config.http)?;
            if !tokens.any() && !bound.ip().is_loopback() && !args.insecure_no_auth {
                bail!(
                    "refusing to serve HTTP on {bound} with no bearer token: anyone who can \
                     reach it could send messages and read the plugins and metrics. Set \
                     [http] tokens_file or WARDEN_HTTP_TOKEN, listen on a loopback address \
                     (127.0.0.1), or pass --insecure-no-auth"
                );
            }
            if !tokens.any() && !bound.ip().is_loopback() {
                tracing::warn!("serving HTTP on {bound} with no bearer token (--insecure-no-auth)");
            }
            Some((listener, bound))
        }
        None => None,
    };
    // Slack is reached before plugins load, so that a bad token fails at
    // once.
    let slack = if events_api || socket_mode {
        Some(
            warden::adapters::slack::Slack::connect(&config.slack)
                .await
                .context("cannot start the Slack adapter")?,
        )
    } else {
        None
    };
    // Flags override the config's [plugins] table, which overrides the
    // defaults.
    let watch = !args.no_watch && config.plugins.watch;
    let cache_dir = match (&args.cache_dir, config.plugins.cache) {
        _ if args.no_cache => None,
        (Some(dir), _) => Some(dir.clone()),
        (None, false) => None,
        (None, true) => {
            let dir = config
                .plugins
                .cache_dir
                .clone()
                .or_else(super::default_cache_dir);
            if dir.is_none() {
                tracing::warn!(
                    "no compilation cache: set --cache-dir, WARDEN_CACHE_DIR, \
                     [plugins] cache_dir or HOME"
                );
            }
            dir
        }
    };
    // The store is opened here, so that a move of its layout shows a bar.
    let backend = super::open_store(&config, args.store.data.as_deref())
        .await
        .map_err(warden::HostError::Storage)?;
    let mut builder = Host::builder()
        .config(config)
        .backend(backend)
        .plugins_dir(&args.plugins)
        .watch(watch)
        .progress(progress_bar());
    if let Some(dir) = cache_dir {
        builder = builder.cache_dir(dir);
    }
    let host = Arc::new(builder.build().await?);
    let loaded = host.plugins().len();
    if loaded == 0 {
        tracing::warn!("no plugin loaded from {}", args.plugins.display());
    } else {
        tracing::info!("{loaded} plugin(s) loaded");
    }

    tokio::pin!(signal);
    // Whatever serves the host stops when `stop` turns true.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    };
    let mut services = tokio::task::JoinSet::new();
    if let Some(slack) = &slack {
        tokio::spawn(warden::adapters::slack::post_scheduled(
            &host,
            slack.clone(),
        ));
        if socket_mode {
            let (host, slack, stopped) = (host.clone(), slack.clone(), stopped());
            services.spawn(async move {
                warden::adapters::slack::socket::run(host, slack, stopped)
                    .await
                    .context("Slack's Socket Mode failed")
            });
        }
    }
    if let Some((listener, addr)) = listener {
        let events = slack.clone().filter(|_| events_api);
        let (host, stopped) = (host.clone(), stopped());
        services.spawn(async move {
            warden::adapters::http::serve(listener, host, events, stopped)
                .await
                .context("the HTTP server failed")
        });
        let scheme = if config_tls { "https" } else { "http" };
        tracing::info!("HTTP listening on {scheme}://{addr}");
    }
    let result = if console {
        tracing::info!("reading messages from stdin");
        tokio::select! {
            r = console_adapter(&host) => match r {
                // The end of the console's input ends the console only
                // while HTTP or Socket Mode goes on.
                Ok(()) if others => {
                    tracing::info!(
                        "end of console input; the host goes on until Ctrl-C or SIGTERM"
                    );
                    let why = (&mut signal).await;
                    tracing::info!("{why}; shutting down");
                    Ok(())
                }
                r => r,
            },
            why = &mut signal => {
                tracing::info!("{why}; shutting down");
                Ok(())
            }
        }
    } else {
        let why = (&mut signal).await;
        tracing::info!("{why}; shutting down");
        Ok(())
    };
    // Requests under way finish before the store closes.
    let _ = stop.send(true);
    let mut served = Ok(());
    while let Some(ended) = services.join_next().await {
        let ended = ended.context("a server task failed").and_then(|r| r);
        served = served.and(ended);
    }
    let result = result.and(served);
    // Events taken are answered before the store closes.
    if let Some(slack) = &slack
        && !slack.finish(SLACK_FINISH).await
    {
        tracing::warn!(
            "Slack events were still being answered {} s after shutdown began",
            SLACK_FINISH.as_secs()
        );
    }
    drop(slack);
    close(host).await?;
    result
}

/// Draws a bar on a terminal while several plugins load.
fn progress_bar() -> impl Fn(Progress<'_>) + Send + Sync + 'static {
    /// A bar is worth showing only for several plugins.
    const BAR_FROM: usize = 4;
    let bar = std::sync::Mutex::new(None::<indicatif::ProgressBar>);
    move |progress| {
        // The bar is only drawn: whatever a panic left, it can go on.
        let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
        match progress {
            Progress::Started { total } => {
                *bar = (total >= BAR_FROM && std::io::stderr().is_terminal()).then(|| {
                    let new = indicatif::ProgressBar::new(total as u64);
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{msg:>30.dim} {bar:30} {pos}/{len} plugins",
                    ) {
                        new.set_style(style);
                    }
                    new
                });
            }
            Progress::Loading { file } => match bar.as_ref() {
                Some(bar) => bar.set_message(file.file_name().map_or_else(
                    || file.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )),
                None => tracing::debug!(file = %file.display(), "loading plugin"),
            },
            Progress::Done => {
                if let Some(bar) = bar.as_ref() {
                    bar.inc(1);
                }
            }
            Progress::Finished => {
                if let Some(bar) = bar.take() {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
    }
}

/// Runs the console on stdin and stdout.
async fn console_adapter(host: &Host) -> anyhow::Result<()> {
    warden::adapters::console::run_stdio(host)
        .await
        .context("console input/output failed")
}

/// Watches for Ctrl-C and SIGTERM from now on; the future completes at
/// the first, saying which. Watching starts before the future is polled, so
/// a signal that comes while plugins load is not lost.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => "interrupted",
                _ = terminate.recv() => "terminated",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "interrupted",
                Err(e) => {
                    tracing::warn!("cannot watch for Ctrl-C: {e}");
                    std::future::pending().await
                }
            }
        })
    }
}

/// Shuts the host down, closing the store. Every adapter has stopped, so
/// this is the last handle.
async fn close(host: Arc<Host>) -> anyhow::Result<()> {
    let Some(host) = Arc::into_inner(host) else {
        bail!("the host is still in use at shutdown; the store was not closed cleanly");
    };
    host.shutdown().await.context("closing storage failed")
}
