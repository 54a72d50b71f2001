//! Identity bindings: the record, kept in the store, of which plugin file
//! each identity is bound to.
//!
//! Each identity is bound to the file that first declared it, by file name,
//! so that the plugins directory can move; another file declaring the same
//! identity is refused until the operator rebinds it
//! (`warden plugins rebind`). The record lives among Warden's own records
//! (see [`super::keys`]), where no plugin can reach it.

use std::path::Path;

use super::keys::binding_key;
use super::{Backend, BackendError};
use crate::identity::PluginId;

/// The name under which a plugin file is bound to its identity: its file
/// name, so that the plugins directory can move.
pub fn binding_name(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The file name `id` is bound to, if it is bound.
pub async fn bound(backend: &dyn Backend, id: &PluginId) -> Result<Option<String>, BackendError> {
    let name = backend.get(&binding_key(id)).await?;
    Ok(name.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Binds `id` to the file named `file_name`.
pub async fn bind(
    backend: &dyn Backend,
    id: &PluginId,
    file_name: &str,
) -> Result<(), BackendError> {
    backend
        .set(&binding_key(id), file_name.as_bytes(), None)
        .await
}

/// Binds `id` to the file named `file_name`, replacing any binding, so that
/// file may load with `id` (and its data) from now on. Returns the file it
/// was bound to before, if any.
pub async fn rebind(
    backend: &dyn Backend,
    id: &PluginId,
    file_name: &str,
) -> Result<Option<String>, BackendError> {
    let before = bound(backend, id).await?;
    bind(backend, id, file_name).await?;
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryBackend;

    #[tokio::test]
    async fn rebinding_reports_the_file_before() {
        let backend = MemoryBackend::new();
        let id = PluginId::new("a.A").unwrap();
        assert_eq!(bound(&backend, &id).await.unwrap(), None);
        assert_eq!(rebind(&backend, &id, "one.wasm").await.unwrap(), None);
        assert_eq!(
            rebind(&backend, &id, "two.wasm").await.unwrap().as_deref(),
            Some("one.wasm")
        );
        assert_eq!(
            bound(&backend, &id).await.unwrap().as_deref(),
            Some("two.wasm")
        );
        assert_eq!(binding_name(Path::new("dir/x.wasm")), "x.wasm");
    }
}
