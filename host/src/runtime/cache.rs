//! The compilation cache: compiled plugins on disk, so that a restart with
//! unchanged plugins skips Cranelift.
//!
//! An entry is named `<component>-<engine>.cwasm`, both parts lower-case
//! hex SHA-256 digests: `<component>` of the component's bytes, `<engine>`
//! of everything in the engine that compiled code depends on (see
//! [`engine_digest`]), so a changed file or another wasmtime, target or
//! engine setting simply misses. An entry holds the compiled artifact
//! followed by a CRC-32 checksum of it and a magic string; the artifact
//! comes first so that wasmtime maps the file into memory as it is, without
//! copying it. It is used only if the checksum matches and wasmtime accepts
//! the artifact for this engine; a corrupt, truncated or foreign entry is
//! ignored, logged, and replaced by a fresh compilation. (The checksum catches damage, not
//! tampering: no checksum could, since whoever can write an entry can write
//! its checksum too. It is cheap, so loading a plugin from the cache stays
//! fast.)
//!
//! The directory also holds the packs of compiled functions that
//! [`super::functions`] keeps, when the cache is given its store
//! ([`CompileCache::with_functions`]).
//!
//! The directory is bounded: after an entry is stored, the least recently
//! used entries and packs are removed until all of them together take at
//! most the cap (`[plugins] cache_max_bytes`). "Used" is the file's modification
//! time, which a lookup that hits refreshes. Only files named like entries
//! or packs count and are removed, so anything else in the directory is left alone;
//! entries named by earlier versions of Warden (`<component>-<16 hex
//! digits>.cwasm`) are never looked up again, so they soon are the least
//! recently used, and removed.
//!
//! Compiled code is run as it is found, so the cache directory must be
//! writable only by the operator, like the store.

use std::hash::{Hash, Hasher};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::functions::{self, Functions};

/// The last bytes of every entry; a new layout gets a new magic.
const MAGIC: &[u8; 8] = b"WARDENC3";
/// The first bytes of entries written by earlier versions, which are
/// replaced.
const OLD_MAGICS: [&[u8; 8]; 2] = [b"WARDENC1", b"WARDENC2"];
/// The bytes of the checksum, before the magic.
const CHECKSUM: usize = 4;
/// The bytes after the artifact.
const TRAILER: usize = CHECKSUM + MAGIC.len();
/// The file name extension of entries.
const EXTENSION: &str = "cwasm";

/// The version of wasmtime Warden is built with, part of [`engine_digest`].
/// (wasmtime's compatibility hash holds its version too; naming it here
/// keeps the key's documented parts explicit.) A unit test checks it
/// against `Cargo.lock`.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The default of [`CompileCache::max_bytes`]: 512 MiB, as
/// `[plugins] cache_max_bytes` says.
pub const DEFAULT_MAX_BYTES: u64 = crate::config::DEFAULT_CACHE_MAX_BYTES;

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
    max_bytes: u64,
    /// The functions Cranelift compiles, kept in the directory too.
    functions: Option<Arc<Functions>>,
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

/// The SHA-256 digest of the engine settings that compiled code depends
/// on, the `<engine>` part of an entry's name.
///
/// The digest is taken over this encoding, in order:
///
/// 1. the bytes `warden-compile-cache-engine-v1`;
/// 2. wasmtime's version ([`WASMTIME_VERSION`]), then the target's
///    architecture and operating system (`std::env::consts::ARCH` and
///    `OS`), each as its length (8 bytes, little-endian) and its UTF-8
///    bytes;
/// 3. the data that [`Engine::precompile_compatibility_hash`] feeds a
///    hasher (the compiler's target triple and flags, the engine's tunables
///    and WebAssembly features, and wasmtime's version), with byte strings
///    taken as they are and integers as little-endian bytes of their own
///    width (`usize` and `isize` as 8 bytes).
///
/// wasmtime guarantees that engines whose compatibility hashes match accept
/// each other's compiled code; unlike the hash of a
/// [`std::collections::hash_map::DefaultHasher`], whose algorithm may
/// change with any Rust release, this digest depends only on those
/// settings. Should the data fed by the hash change (with a new wasmtime,
/// say), entries simply miss.
pub fn engine_digest(engine: &Engine) -> [u8; 32] {
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher.0.update(b"warden-compile-cache-engine-v1");
    for field in [
        WASMTIME_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS,
    ] {
        hasher.0.update((field.len() as u64).to_le_bytes());
        hasher.0.update(field.as_bytes());
    }
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize().into()
}

/// A [`Hasher`] that feeds SHA-256 a fixed encoding of what it is given
/// (see [`engine_digest`]). Its `finish` is unused: the digest is read from
/// the SHA-256 state.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest: [u8; 32] = self.0.clone().finalize().into();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn write_u8(&mut self, i: u8) {
        self.0.update([i]);
    }
    fn write_u16(&mut self, i: u16) {
        self.0.update(i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.0.update(i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.0.update(i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.0.update(i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.0.update((i as u64).to_le_bytes());
    }
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i as u8);
    }
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16);
    }
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as i64 as u64);
    }
}

/// Whether `s` is `len` lower-case hex digits, as the digests in the
/// names of entries and packs are.
pub(crate) fn hex_of(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `name` is the file name of an entry, of this naming
/// (`<64 hex>-<64 hex>.cwasm`) or an earlier one (`<64 hex>-<16 hex>.cwasm`).
fn is_entry_name(name: &str) -> bool {
    let Some(stem) = name
        .strip_suffix(EXTENSION)
        .and_then(|s| s.strip_suffix('.'))
    else {
        return false;
    };
    let Some((component, engine)) = stem.split_once('-') else {
        return false;
    };
    hex_of(component, 64) && (hex_of(engine, 64) || hex_of(engine, 16))
}

/// A write to a file of its own ([`write_new`]) that is this much older
/// than now was left by a process that ended before renaming it into place.
const LEFTOVER_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether `name` is that of a file [`write_new`] writes before renaming it:
/// an entry's or a pack's stem, then `.tmp<pid>-<count>` (or `.tmp<pid>`,
/// an earlier naming).
fn is_write_name(name: &str) -> bool {
    let Some((stem, tmp)) = name.rsplit_once('.') else {
        return false;
    };
    let Some(numbers) = tmp.strip_prefix("tmp") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let numbers_ok = match numbers.split_once('-') {
        Some((pid, count)) => digits(pid) && digits(count),
        None => digits(numbers),
    };
    numbers_ok && (hex_of(stem, 64) || is_entry_name(&format!("{stem}.{EXTENSION}")))
}

/// One entry found in the directory.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    len: u64,
    used: SystemTime,
}

impl CompileCache {
    /// A cache in `dir`, created on first store, of at most
    /// [`DEFAULT_MAX_BYTES`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            functions: None,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Keeps the entries together at most `max_bytes` long, removing the
    /// least recently used ones after a store (the entry just stored stays,
    /// even when it alone is larger).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Keeps the functions Cranelift compiles, so that a later compilation
    /// of a component sharing them reuses them (see [`super::functions`]).
    /// `functions` must be the store of the engine that compiles
    /// ([`Runtime::functions`](super::Runtime::functions)).
    pub fn with_functions(mut self, functions: Arc<Functions>) -> Self {
        self.functions = Some(functions);
        self
    }

    /// Lookups that found a function compiled before, so far (see
    /// [`Functions::reused`]).
    pub fn functions_reused(&self) -> u64 {
        self.functions.as_ref().map_or(0, |f| f.reused())
    }

    /// Functions compiled and kept for later compilations, so far.
    pub fn functions_compiled(&self) -> u64 {
        self.functions.as_ref().map_or(0, |f| f.compiled())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most bytes the entries take together, after a store.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
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
        self.dir.join(format!(
            "{}-{}.{EXTENSION}",
            hex(digest),
            hex(&engine_digest(engine))
        ))
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
        if let Some(component) = self.load(engine, digest, file) {
            return Ok((component, CacheOutcome::Hit));
        }
        let path = self.entry_path(engine, digest);
        announce_compile(file, bytes.len(), "");
        let artifact = match &self.functions {
            Some(functions) => {
                functions.compiling(&self.dir, || engine.precompile_component(bytes))?
            }
            None => engine.precompile_component(bytes)?,
        };
        // SAFETY: `artifact` was made by `precompile_component` on this very
        // engine just now.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        self.misses.fetch_add(1, Ordering::Relaxed);
        match self.store(&path, &artifact) {
            Ok(()) => self.evict(&path),
            Err(e) => {
                tracing::warn!(entry = %path.display(), "cannot write the compilation cache: {e}")
            }
        }
        Ok((component, CacheOutcome::Miss))
    }

    /// The compiled code of the component whose SHA-256 is `digest` (the
    /// file `file`) for `engine`, if the cache holds it intact.
    pub fn load(&self, engine: &Engine, digest: &[u8; 32], file: &Path) -> Option<Component> {
        let path = self.entry_path(engine, digest);
        match self.open(engine, &path) {
            Ok(Some(component)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                touch(&path);
                return Some(component);
            }
            Ok(None) => {}
            // An upgrade, not damage: say so quietly.
            Err(Unusable::Old) => tracing::info!(
                file = %file.display(), entry = %path.display(),
                "the compilation cache entry was written by an earlier version of Warden; \
                 compiling again"
            ),
            Err(Unusable::Read(e)) => {
                tracing::warn!(entry = %path.display(), "cannot read the compilation cache: {e}")
            }
            Err(Unusable::Bad(why)) => tracing::warn!(
                file = %file.display(), entry = %path.display(),
                "ignoring a compilation cache entry ({why}); compiling again"
            ),
        }
        None
    }

    /// Checks the entry at `path` and loads its artifact; `None` if there
    /// is none.
    fn open(&self, engine: &Engine, path: &Path) -> Result<Option<Component>, Unusable> {
        let checked = READ_BUFFER.with_borrow_mut(|entry| {
            entry.clear();
            match std::fs::File::open(path).and_then(|mut f| f.read_to_end(entry)) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(Unusable::Read(e)),
            }
            let result = check(entry);
            // A buffer grown for an unusually large entry is not kept.
            if entry.capacity() > READ_BUFFER_KEPT {
                *entry = Vec::new();
            }
            result.map(|()| true)
        })?;
        if !checked {
            return Ok(None);
        }
        // SAFETY: wasmtime requires that the file hold what
        // `precompile_component` of a compatible engine made, and that it
        // not change while mapped. The checksum shows the entry is intact as
        // it was written; entries are written only by `store` below, from
        // `precompile_component` output, into a new file renamed into place,
        // so a file is never changed once written (removing or replacing it
        // leaves a mapping intact); and the cache directory is trusted like
        // the store (see the module docs). wasmtime itself refuses artifacts
        // of another version or settings. The trailer after the artifact is
        // outside the sections wasmtime reads.
        #[allow(unsafe_code)]
        unsafe { Component::deserialize_file(engine, path) }
            .map(Some)
            .map_err(|e| Unusable::Bad(format!("{e:#}")))
    }

    /// Writes an entry atomically: a reader sees the old state or the whole
    /// new entry.
    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut entry = Vec::with_capacity(artifact.len() + TRAILER);
        entry.extend_from_slice(artifact);
        entry.extend_from_slice(&crc32fast::hash(artifact).to_le_bytes());
        entry.extend_from_slice(MAGIC);
        write_new(path, &entry)
    }

    /// The entries in the directory; other files are left out.
    fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for item in std::fs::read_dir(&self.dir)? {
            let item = item?;
            if !item.file_name().to_str().is_some_and(is_entry_name)
                && !functions::is_pack_name(&item.path())
            {
                continue;
            }
            // An entry removed meanwhile (by another Warden) is skipped.
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            entries.push(Entry {
                path: item.path(),
                len: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        Ok(entries)
    }

    /// Removes the least recently used entries, never `keep`, until the
    /// entries together take at most [`Self::max_bytes`].
    fn evict(&self, keep: &Path) {
        self.remove_leftover_writes();
        let mut entries = match self.entries() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot list the compilation cache: {e}");
                return;
            }
        };
        let mut total: u64 = entries.iter().map(|e| e.len).sum();
        if total <= self.max_bytes {
            return;
        }
        // Oldest first; the name breaks ties, so the order is the same on
        // every run.
        entries.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
        let (mut count, mut bytes) = (0u64, 0u64);
        for entry in entries {
            if total <= self.max_bytes {
                break;
            }
            if entry.path == keep {
                continue;
            }
            match std::fs::remove_file(&entry.path) {
                Ok(()) => {
                    total -= entry.len;
                    count += 1;
                    bytes += entry.len;
                }
                // Removed meanwhile by another Warden: gone all the same.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => total -= entry.len,
                Err(e) => tracing::warn!(
                    entry = %entry.path.display(),
                    "cannot remove a compilation cache entry: {e}"
                ),
            }
        }
        if count > 0 {
            tracing::info!(
                dir = %self.dir.display(), entries = count, bytes,
                "evicted {count} least recently used compilation cache entries ({}) to keep \
                 the cache within {} ([plugins] cache_max_bytes)",
                crate::storage::human_size(bytes),
                crate::storage::human_size(self.max_bytes),
            );
        }
    }

    /// Removes the files of writes that a process killed mid-write left
    /// behind, once they are [`LEFTOVER_AFTER`] old (a younger one may be
    /// another Warden's write in progress).
    fn remove_leftover_writes(&self) {
        let Ok(items) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for item in items.flatten() {
            if !item.file_name().to_str().is_some_and(is_write_name) {
                continue;
            }
            let Ok(modified) = item.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if now.duration_since(modified).unwrap_or_default() < LEFTOVER_AFTER {
                continue;
            }
            match std::fs::remove_file(item.path()) {
                Ok(()) => tracing::info!(file = %item.path().display(),
                    "removed an unfinished write to the compilation cache"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %item.path().display(),
                    "cannot remove an unfinished write to the compilation cache: {e}"),
            }
        }
    }
}

/// Writes `bytes` to `path` atomically: to a file of its own first, renamed
/// into place, so that a reader sees no file or the whole of it, and two
/// writers (in this process or another) never write the same file.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Why an entry cannot be used.
#[derive(Debug)]
enum Unusable {
    /// Written by an earlier version of Warden.
    Old,
    /// It cannot be read.
    Read(std::io::Error),
    /// Damaged or not an entry of this engine: why.
    Bad(String),
}

thread_local! {
    /// The buffer each thread reads entries into to check them, kept from
    /// one entry to the next: allocating a fresh one for each would cost
    /// more than the check.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest [`READ_BUFFER`] kept between entries: ordinary plugins'
/// entries fit, a large Python plugin's (tens of MiB) does not.
const READ_BUFFER_KEPT: usize = 4 << 20;

/// Checks the layout and checksum of an entry's bytes.
fn check(entry: &[u8]) -> Result<(), Unusable> {
    if OLD_MAGICS.iter().any(|magic| entry.starts_with(*magic)) {
        return Err(Unusable::Old);
    }
    let rest = entry
        .strip_suffix(MAGIC)
        .ok_or_else(|| Unusable::Bad("not a Warden cache entry, or truncated".into()))?;
    let (artifact, checksum) = rest
        .split_at_checked(rest.len().wrapping_sub(CHECKSUM))
        .ok_or_else(|| Unusable::Bad("truncated".into()))?;
    if crc32fast::hash(artifact).to_le_bytes() != checksum {
        return Err(Unusable::Bad(
            "its checksum does not match: corrupt or truncated".into(),
        ));
    }
    Ok(())
}

/// Marks the entry at `path` as used now, for eviction. A failure costs
/// only an earlier eviction, so it is logged at debug.
fn touch(path: &Path) {
    let result = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(SystemTime::now()));
    if let Err(e) = result {
        tracing::debug!(entry = %path.display(), "cannot mark a compilation cache entry used: {e}");
    }
}

/// Says, before a compile that takes a while, that it is under way: a
/// large component (a Python plugin is about 20 MB) can take tens of
/// seconds to compile, which would otherwise pass in silence.
pub(crate) fn announce_compile(file: &Path, len: usize, how: &str) {
    /// Components at least this large are announced at `info`.
    const LARGE: usize = 1024 * 1024;
    let size = crate::storage::human_size(len as u64);
    if len >= LARGE && how.is_empty() {
        tracing::info!(file = %file.display(), "compiling {} ({size}); this can take a while", file.display());
    } else if len >= LARGE {
        tracing::info!(file = %file.display(), "compiling {} ({size}) {how}", file.display());
    } else {
        tracing::debug!(file = %file.display(), "compiling {} ({size}) {how}", file.display());
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

    /// A cache holding one entry, that of [`EMPTY_COMPONENT`], and its path.
    fn one_entry() -> (tempfile::TempDir, Engine, CompileCache, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompileCache::new(dir.path());
        lookup(&cache, &engine);
        let entry = only_entry(dir.path());
        (dir, engine, cache, entry)
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
        let (_dir, engine, cache, entry) = one_entry();
        let good = std::fs::read(&entry).unwrap();

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0xff;
        // A flipped byte in the artifact.
        let mut corrupt = good.clone();
        corrupt[good.len() / 3] ^= 0x01;
        let junk = b"not an artifact of this engine";
        let mut foreign = junk.to_vec();
        foreign.extend_from_slice(&crc32fast::hash(junk).to_le_bytes());
        foreign.extend_from_slice(MAGIC);
        let artifact = &good[..good.len() - TRAILER];
        let mut older = vec![];
        for magic in OLD_MAGICS {
            let mut old = magic.to_vec();
            old.extend_from_slice(&crc32fast::hash(artifact).to_le_bytes());
            old.extend_from_slice(artifact);
            older.push(old);
        }
        for bad in [
            flipped,
            corrupt,
            good[..good.len() / 2].to_vec(),
            good[..good.len() - 1].to_vec(),
            b"garbage".to_vec(),
            MAGIC.to_vec(),
            foreign,
        ]
        .into_iter()
        .chain(older)
        {
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
    fn a_loaded_component_outlives_its_entry_being_replaced_or_removed() {
        let (_dir, engine, cache, entry) = one_entry();
        let digest = sha256(EMPTY_COMPONENT);
        let first = cache.load(&engine, &digest, Path::new("t.wasm")).unwrap();
        // Replaced as `store` replaces entries (a new file renamed over
        // it), then removed as eviction removes them.
        let good = std::fs::read(&entry).unwrap();
        cache.store(&entry, &good[..good.len() - TRAILER]).unwrap();
        let second = cache.load(&engine, &digest, Path::new("t.wasm")).unwrap();
        std::fs::remove_file(&entry).unwrap();
        for component in [first, second] {
            let mut store = wasmtime::Store::new(&engine, ());
            wasmtime::component::Linker::new(&engine)
                .instantiate(&mut store, &component)
                .unwrap();
        }
        assert_eq!(cache.hits(), 2);
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

    /// Sets the modification time of `path` to `secs` seconds ago.
    fn age(path: &Path, secs: u64) {
        let when = SystemTime::now() - std::time::Duration::from_secs(secs);
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    /// Writes an entry-named file of `len` bytes, used `secs` seconds ago.
    fn fake_entry(dir: &Path, letter: char, len: usize, secs: u64) -> PathBuf {
        let name = format!(
            "{}-{}.{EXTENSION}",
            letter.to_string().repeat(64),
            "0".repeat(64)
        );
        let path = dir.join(name);
        std::fs::write(&path, vec![0; len]).unwrap();
        age(&path, secs);
        path
    }

    #[test]
    fn the_engine_digest_is_stable_and_depends_on_settings() {
        let a = engine_digest(&Engine::default());
        assert_eq!(a, engine_digest(&Engine::default()));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        assert_ne!(a, engine_digest(&Engine::new(&config).unwrap()));
    }

    #[test]
    fn the_hasher_encoding_is_fixed() {
        let mut hasher = Sha256Hasher(Sha256::new());
        (1u32, 2usize, "ab", true).hash(&mut hasher);
        let digest: [u8; 32] = hasher.0.finalize().into();
        // As `Hash` for `str` writes its bytes and then 0xff.
        let expected = sha256(&[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', 0xff, 1]);
        assert_eq!(digest, expected);
    }

    #[test]
    fn the_wasmtime_version_is_the_locked_one() {
        let lock = include_str!("../../../Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find_map(|package| {
                package
                    .trim()
                    .strip_prefix("name = \"wasmtime\"\nversion = \"")?
                    .split('"')
                    .next()
            })
            .expect("wasmtime in Cargo.lock");
        assert_eq!(WASMTIME_VERSION, locked);
    }

    #[test]
    fn entry_names() {
        let (c, e) = ("ab".repeat(32), "0f".repeat(32));
        assert!(is_entry_name(&format!("{c}-{e}.cwasm")));
        assert!(is_entry_name(&format!("{c}-{}.cwasm", &e[..16])));
        for name in [
            format!("{c}-{e}.tmp123"),
            format!("{c}-{e}.cwasm.tmp1"),
            format!("{c}.cwasm"),
            format!("{}-{e}.cwasm", c.to_uppercase()),
            format!("{c}-{}.cwasm", &e[..20]),
            "notes.txt".to_owned(),
        ] {
            assert!(!is_entry_name(&name), "{name}");
        }
    }

    #[test]
    fn the_least_recently_used_entries_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = fake_entry(dir.path(), 'a', 100, 300);
        let b = fake_entry(dir.path(), 'b', 100, 200);
        let c = fake_entry(dir.path(), 'c', 100, 100);
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, vec![0; 1000]).unwrap();
        age(&other, 1000);

        CompileCache::new(dir.path()).with_max_bytes(250).evict(&c);
        assert!(!a.exists());
        assert!(b.exists() && c.exists() && other.exists());

        // The entry just written stays, even alone over the cap.
        CompileCache::new(dir.path()).with_max_bytes(10).evict(&c);
        assert!(!b.exists());
        assert!(c.exists() && other.exists());
    }

    #[test]
    fn write_names() {
        let (c, e) = ("ab".repeat(32), "0f".repeat(32));
        for name in [
            format!("{c}-{e}.tmp123-4"),
            format!("{c}-{e}.tmp123"),
            format!("{c}-{}.tmp9-0", &e[..16]),
            format!("{c}.tmp77-12"),
        ] {
            assert!(is_write_name(&name), "{name}");
        }
        for name in [
            format!("{c}-{e}.cwasm"),
            format!("{c}.functions"),
            format!("{c}-{e}.tmp"),
            format!("{c}-{e}.tmp12-"),
            format!("{c}-{e}.tmp-3"),
            format!("{c}-{e}.tmpx1"),
            format!("{}.tmp1-2", &c[..63]),
            "notes.tmp1-2".to_owned(),
        ] {
            assert!(!is_write_name(&name), "{name}");
        }
    }

    #[test]
    fn unfinished_writes_are_removed_once_old() {
        let dir = tempfile::tempdir().unwrap();
        let entry = fake_entry(dir.path(), 'e', 100, 10);
        let stem = format!("{}-{}", "a".repeat(64), "0".repeat(64));
        let old = dir.path().join(format!("{stem}.tmp41-0"));
        let old_pack = dir.path().join(format!("{}.tmp41-1", "d".repeat(64)));
        let fresh = dir.path().join(format!("{stem}.tmp42-0"));
        let other = dir.path().join("notes.tmp1-2");
        for (path, secs) in [
            (&old, 7200),
            (&old_pack, 7200),
            (&fresh, 60),
            (&other, 7200),
        ] {
            std::fs::write(path, vec![0; 10]).unwrap();
            age(path, secs);
        }
        // Within the cap: nothing is evicted, but old unfinished writes go.
        CompileCache::new(dir.path())
            .with_max_bytes(1_000)
            .evict(&entry);
        assert!(
            !old.exists() && !old_pack.exists(),
            "old unfinished writes are removed"
        );
        assert!(fresh.exists(), "a write possibly in progress stays");
        assert!(entry.exists() && other.exists(), "other files stay");
    }

    #[test]
    fn packs_of_compiled_functions_count_and_are_evicted_like_entries() {
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join(format!("{}.functions", "d".repeat(64)));
        std::fs::write(&pack, vec![0; 100]).unwrap();
        age(&pack, 300);
        let entry = fake_entry(dir.path(), 'e', 100, 200);
        CompileCache::new(dir.path())
            .with_max_bytes(200)
            .evict(&entry);
        assert!(pack.exists() && entry.exists(), "within the cap");
        CompileCache::new(dir.path())
            .with_max_bytes(150)
            .evict(&entry);
        assert!(
            !pack.exists() && entry.exists(),
            "the older pack goes first"
        );
    }

    #[test]
    fn entries_of_the_earlier_naming_are_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir
            .path()
            .join(format!("{}-{}.cwasm", "a".repeat(64), "0".repeat(16)));
        std::fs::write(&old, vec![0; 100]).unwrap();
        age(&old, 100);
        let new = fake_entry(dir.path(), 'b', 100, 200);
        CompileCache::new(dir.path())
            .with_max_bytes(150)
            .evict(&new);
        assert!(!old.exists() && new.exists());
    }

    #[test]
    fn a_hit_refreshes_an_entry() {
        let (dir, engine, cache, entry) = one_entry();
        let len = std::fs::metadata(&entry).unwrap().len();
        age(&entry, 1000);
        let other = fake_entry(dir.path(), 'f', 100, 500);
        assert_eq!(lookup(&cache, &engine), CacheOutcome::Hit);

        // Without the hit, `entry` would be the older one.
        CompileCache::new(dir.path())
            .with_max_bytes(len)
            .evict(&dir.path().join("none"));
        assert!(entry.exists());
        assert!(!other.exists());
    }

    #[test]
    fn a_store_evicts_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path()).with_max_bytes(1);
        lookup(&cache, &Engine::default());
        let first = only_entry(dir.path());
        age(&first, 100);
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        lookup(&cache, &Engine::new(&config).unwrap());
        let second = only_entry(dir.path());
        assert_ne!(first, second);
    }
}
