//! The compilation cache: compiled plugins on disk, so that a restart with
//! unchanged plugins skips Cranelift.
//!
//! An entry is named after the SHA-256 digest of the component and a hash
//! of everything in the engine that compiled code depends on (wasmtime's
//! version, target and settings), so a changed file or a new Warden simply
//! misses. An entry holds a magic string, a CRC-32 checksum of the
//! compiled artifact and the artifact itself. It is used only if the
//! checksum matches and wasmtime accepts the artifact for this engine; a
//! corrupt, truncated or foreign entry is ignored, logged, and replaced by
//! a fresh compilation. (The checksum catches damage, not tampering: no
//! checksum could, since whoever can write an entry can write its checksum
//! too. It is cheap, so loading a plugin from the cache stays fast.)
//!
//! Compiled code is run as it is found, so the cache directory must be
//! writable only by the operator, like the store.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every entry; a new layout gets a new magic.
const MAGIC: &[u8; 8] = b"WARDENC2";
/// The magic of entries written by earlier versions, which are replaced.
const OLD_MAGIC: &[u8; 8] = b"WARDENC1";
/// The bytes of the checksum after the magic.
const CHECKSUM: usize = 4;

/// What became of one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The compiled plugin came from the cache.
    Hit,
    /// It was compiled and stored.
    Miss,
    /// No cache is configured: it was compiled.
    Off,
}

/// A directory of compiled plugins.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CompileCache {
    /// A cache in `dir`, created on first store.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lookups served from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that compiled so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    fn entry_path(&self, engine: &Engine, digest: &[u8; 32]) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{}-{:016x}.cwasm", hex(digest), hasher.finish()))
    }

    /// The compiled form of `bytes` (whose SHA-256 is `digest`), from the
    /// cache or compiled now and stored. `file` names the plugin in logs.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &[u8; 32],
        file: &Path,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(engine, digest);
        match std::fs::read(&path) {
            // An upgrade, not damage: say so quietly.
            Ok(entry) if entry.starts_with(OLD_MAGIC) => tracing::info!(
                file = %file.display(), entry = %path.display(),
                "the compilation cache entry was written by an earlier version of Warden; \
                 compiling again"
            ),
            Ok(entry) => match self.open(engine, &entry) {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, CacheOutcome::Hit));
                }
                Err(why) => tracing::warn!(
                    file = %file.display(), entry = %path.display(),
                    "ignoring a compilation cache entry ({why}); compiling again"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(entry = %path.display(), "cannot read the compilation cache: {e}")
            }
        }
        announce_compile(file, bytes.len());
        let artifact = engine.precompile_component(bytes)?;
        // SAFETY: `artifact` was made by `precompile_component` on this very
        // engine just now.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.store(&path, &artifact) {
            tracing::warn!(entry = %path.display(), "cannot write the compilation cache: {e}");
        }
        Ok((component, CacheOutcome::Miss))
    }

    /// Checks an entry and deserializes its artifact.
    fn open(&self, engine: &Engine, entry: &[u8]) -> Result<Component, String> {
        let rest = entry
            .strip_prefix(MAGIC)
            .ok_or("not a Warden cache entry")?;
        let (checksum, artifact) = rest.split_at_checked(CHECKSUM).ok_or("truncated")?;
        if crc32fast::hash(artifact).to_le_bytes() != checksum {
            return Err("its checksum does not match: corrupt or truncated".into());
        }
        // SAFETY: wasmtime requires that deserialized bytes come from
        // `precompile_component` of a compatible engine. The checksum shows
        // the entry is intact as it was written; entries are written only by
        // `store` below from `precompile_component` output, and the cache
        // directory is trusted like the store (see the module docs).
        // wasmtime itself refuses artifacts of another version or settings.
        #[allow(unsafe_code)]
        unsafe { Component::deserialize(engine, artifact) }.map_err(|e| format!("{e:#}"))
    }

    /// Writes an entry atomically: a reader sees the old state or the whole
    /// new entry.
    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut entry = Vec::with_capacity(MAGIC.len() + CHECKSUM + artifact.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&crc32fast::hash(artifact).to_le_bytes());
        entry.extend_from_slice(artifact);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &entry)?;
        std::fs::rename(&tmp, path)
    }
}

/// Says, before a compile that takes a while, that it is under way: a
/// large component (a Python plugin is about 20 MB) can take tens of
/// seconds to compile, which would otherwise pass in silence.
pub(crate) fn announce_compile(file: &Path, len: usize) {
    /// Components at least this large are announced at `info`.
    const LARGE: usize = 1024 * 1024;
    let size = crate::storage::human_size(len as u64);
    if len >= LARGE {
        tracing::info!(file = %file.display(), "compiling {} ({size}); this can take a while", file.display());
    } else {
        tracing::debug!(file = %file.display(), "compiling {} ({size})", file.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny valid component: no imports, no exports.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn lookup(cache: &CompileCache, engine: &Engine) -> CacheOutcome {
        let digest = sha256(EMPTY_COMPONENT);
        cache
            .load_or_compile(engine, EMPTY_COMPONENT, &digest, Path::new("t.wasm"))
            .unwrap()
            .1
    }

    fn only_entry(dir: &Path) -> PathBuf {
        let entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.into_iter().next().unwrap()
    }

    #[test]
    fn a_second_lookup_hits() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompileCache::new(dir.path());
        assert_eq!(lookup(&cache, &engine), CacheOutcome::Miss);
        assert_eq!(lookup(&cache, &engine), CacheOutcome::Hit);
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
    }

    #[test]
    fn corrupt_truncated_and_foreign_entries_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompileCache::new(dir.path());
        lookup(&cache, &engine);
        let entry = only_entry(dir.path());
        let good = std::fs::read(&entry).unwrap();

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0xff;
        let mut foreign = MAGIC.to_vec();
        let junk = b"not an artifact of this engine";
        foreign.extend_from_slice(&crc32fast::hash(junk).to_le_bytes());
        foreign.extend_from_slice(junk);
        let mut old = OLD_MAGIC.to_vec();
        old.extend_from_slice(&[0; 32]);
        old.extend_from_slice(&good[MAGIC.len() + CHECKSUM..]);
        for bad in [
            flipped,
            good[..good.len() / 2].to_vec(),
            b"garbage".to_vec(),
            foreign,
            old,
        ] {
            std::fs::write(&entry, &bad).unwrap();
            assert_eq!(lookup(&cache, &engine), CacheOutcome::Miss);
            assert_eq!(
                std::fs::read(&entry).unwrap(),
                good,
                "the entry was rewritten"
            );
            assert_eq!(lookup(&cache, &engine), CacheOutcome::Hit);
        }
    }

    #[test]
    fn another_engine_configuration_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path());
        lookup(&cache, &Engine::default());
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_eq!(lookup(&cache, &other), CacheOutcome::Miss);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
