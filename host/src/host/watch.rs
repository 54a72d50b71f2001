//! Watching the plugins directory, to reload it when it changes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{HostError, Shared};

/// How long the plugins directory must be quiet before a reload, so that a
/// file being copied in is loaded once, whole.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching `dir`; each burst of changes to its `.wasm` files
/// reloads it once, when the directory has been quiet for
/// [`RELOAD_DEBOUNCE`].
///
/// Only changes count: a file created, written, renamed or removed. Opening
/// or reading a file, or changing its metadata, does not, so the reload's
/// own reading of the files raises nothing to react to; nor do changes to
/// other files (a copy still being written under another name).
pub(super) fn watch(dir: &Path, shared: &Arc<Shared>) -> Result<Watcher, HostError> {
    use notify_debouncer_mini::notify::{self, RecursiveMode, Watcher as _};
    let watch_error = |e: notify::Error| HostError::Watch {
        dir: dir.to_path_buf(),
        source: e,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if is_plugin_change(&event) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching the plugins directory failed: {e}"),
        })
        .map_err(watch_error)?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(watch_error)?;
    let weak = Arc::downgrade(shared);
    let task = tokio::spawn(async move {
        // The first change of a burst, then quiet for the debounce time.
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(RELOAD_DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            let Some(shared) = weak.upgrade() else { break };
            match shared.reload().await {
                Ok(reloaded) => tracing::debug!(
                    added = reloaded.added.len(),
                    replaced = reloaded.replaced.len(),
                    removed = reloaded.removed.len(),
                    failed = reloaded.failed.len(),
                    "plugins directory reloaded"
                ),
                Err(e) => tracing::error!("reloading plugins failed: {e}"),
            }
        }
    });
    tracing::info!(dir = %dir.display(), "watching the plugins directory for changes");
    Ok(Watcher {
        _watcher: watcher,
        task,
    })
}

/// Whether `event` changed a `.wasm` file: created, written, renamed or
/// removed it (not opened, read, or its metadata changed).
fn is_plugin_change(event: &notify_debouncer_mini::notify::Event) -> bool {
    use notify_debouncer_mini::notify::EventKind;
    use notify_debouncer_mini::notify::event::ModifyKind;
    let change = match event.kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Other => false,
    };
    change
        && event
            .paths
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "wasm"))
}

/// A watch on the plugins directory; dropping it stops it.
pub(super) struct Watcher {
    _watcher: notify_debouncer_mini::notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}
