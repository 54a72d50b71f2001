//! Cranelift's compiled functions, kept in the compilation cache directory
//! between compilations, so that a component sharing functions with one
//! compiled before compiles only what is new: a changed plugin all but the
//! code that changed, a new Python plugin all but its own code (every
//! Python plugin carries the same interpreter).
//!
//! Before Cranelift compiles a function it computes a key for it (a
//! SHA-256 of the function's IR and of the compiler's target and settings)
//! and asks [`Functions`] for it; what it compiles, it hands over. The
//! functions live in packs: files named `<SHA-256 of the contents>.functions`
//! beside the compiled plugins, each holding the functions that one run of
//! compilations added. When a compilation begins, every pack is read; when
//! the last running compilation ends, the functions compiled meanwhile are
//! written as a new pack (once there are [`MERGE_FROM`] packs, all of them
//! are merged into one), and the packs are let go of, so that a host that
//! is not compiling holds none of them in memory.
//!
//! A pack is written to a new file renamed into place, and never changed
//! after. It holds a magic, the functions, and a CRC-32 of all that; a pack
//! that is damaged is logged and removed. Packs count against
//! `[plugins] cache_max_bytes` like compiled plugins, and are evicted the
//! same way, least recently used first. Cranelift checks its own version in
//! each function; its key covers the compiler's settings, so a function is
//! never reused for another target or configuration. As with compiled
//! plugins, what is found is run: the directory must be writable only by
//! the operator.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// The first bytes of a pack; a new layout gets a new magic.
const MAGIC: &[u8; 8] = b"WARDENF1";
/// The file name extension of packs.
pub(crate) const EXTENSION: &str = "functions";
/// Cranelift's keys are SHA-256 digests.
const KEY: usize = 32;
/// Once this many packs are read, the next pack holds all of their
/// functions and replaces them.
pub const MERGE_FROM: usize = 8;

/// The store Cranelift asks for compiled functions. Inactive (it finds
/// nothing and keeps nothing) but while a compilation runs in
/// [`compiling`](Self::compiling).
#[derive(Debug, Default)]
pub struct Functions {
    state: Mutex<State>,
    reused: AtomicU64,
    compiled: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Compilations running.
    running: usize,
    /// The directory of the packs, while compilations run.
    dir: Option<PathBuf>,
    /// The packs read when the first of them began.
    packs: Vec<Pack>,
    /// Where each of their functions is: the pack and its bytes there.
    known: HashMap<[u8; KEY], (usize, Range<usize>)>,
    /// Functions compiled since, for the next pack.
    fresh: HashMap<[u8; KEY], Vec<u8>>,
}

/// One pack, read.
#[derive(Debug)]
struct Pack {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Functions {
    /// Lookups that found a compiled function so far: in a pack, or
    /// compiled earlier in the same run of compilations (a component may
    /// hold a function twice).
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// Functions compiled and kept so far.
    pub fn compiled(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change to the state is whole before the lock is let go.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `compile` with the packs of `dir`: functions found there are
    /// reused, and those compiled meanwhile are written there after.
    pub fn compiling<T>(&self, dir: &Path, compile: impl FnOnce() -> T) -> T {
        {
            let mut state = self.state();
            if state.running == 0 {
                *state = State::read(dir);
            }
            state.running += 1;
        }
        /// Ends the compilation however `compile` returns.
        struct End<'a>(&'a Functions);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                self.0.end();
            }
        }
        let _end = End(self);
        compile()
    }

    /// One compilation ended; after the last, writes what was compiled.
    fn end(&self) {
        let done = {
            let mut state = self.state();
            state.running -= 1;
            if state.running > 0 {
                return;
            }
            std::mem::take(&mut *state)
        };
        done.write();
    }
}

impl wasmtime::CacheStore for Functions {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let key: &[u8; KEY] = key.try_into().ok()?;
        let state = self.state();
        let found = match state.known.get(key) {
            Some((pack, range)) => state.packs[*pack].bytes[range.clone()].to_vec(),
            None => state.fresh.get(key)?.clone(),
        };
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(Cow::Owned(found))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let Ok(key) = <[u8; KEY]>::try_from(key) else {
            return false;
        };
        let mut state = self.state();
        if state.running == 0 {
            return false;
        }
        state.fresh.insert(key, value);
        self.compiled.fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl State {
    /// The packs in `dir`; damaged ones are logged and removed.
    fn read(dir: &Path) -> Self {
        let mut state = State {
            dir: Some(dir.to_path_buf()),
            ..State::default()
        };
        let items = match std::fs::read_dir(dir) {
            Ok(items) => items,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return state,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot list the compilation cache: {e}");
                return state;
            }
        };
        let mut paths: Vec<PathBuf> = items
            .filter_map(|item| item.ok())
            .map(|item| item.path())
            .filter(|path| is_pack_name(path))
            .collect();
        // The same order on every run, so that a key in two packs is
        // always found in the same one.
        paths.sort();
        for path in paths {
            let mut bytes = Vec::new();
            match std::fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
                Ok(_) => {}
                // Merged away by another Warden meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(pack = %path.display(), "cannot read compiled functions: {e}");
                    continue;
                }
            }
            let entries = match parse(&bytes) {
                Ok(entries) => entries,
                Err(why) => {
                    tracing::warn!(pack = %path.display(),
                        "removing a damaged pack of compiled functions ({why}); \
                         they are compiled again as needed");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let index = state.packs.len();
            for (key, range) in entries {
                state.known.entry(key).or_insert((index, range));
            }
            // Used now, for eviction.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_modified(SystemTime::now()));
            state.packs.push(Pack { path, bytes });
        }
        state
    }

    /// Writes the functions compiled as a new pack: with those of every
    /// pack read, replacing them, once there are [`MERGE_FROM`].
    fn write(self) {
        let Some(dir) = self.dir else { return };
        if self.fresh.is_empty() {
            return;
        }
        let merge = self.packs.len() >= MERGE_FROM;
        let mut functions: Vec<(&[u8; KEY], &[u8])> = self
            .fresh
            .iter()
            .map(|(key, value)| (key, value.as_slice()))
            .collect();
        if merge {
            functions.extend(
                self.known
                    .iter()
                    .filter(|(key, _)| !self.fresh.contains_key(*key))
                    .map(|(key, (pack, range))| (key, &self.packs[*pack].bytes[range.clone()])),
            );
        }
        // The same functions make the same pack.
        functions.sort_unstable_by_key(|(key, _)| *key);
        let pack = encode(&functions);
        let path = dir.join(format!(
            "{}.{EXTENSION}",
            super::cache::hex(&super::cache::sha256(&pack))
        ));
        let written =
            std::fs::create_dir_all(&dir).and_then(|()| super::cache::write_new(&path, &pack));
        if let Err(e) = written {
            tracing::warn!(pack = %path.display(), "cannot write compiled functions: {e}");
            return;
        }
        tracing::debug!(pack = %path.display(), functions = functions.len(),
            "kept {} compiled functions", functions.len());
        if merge {
            for pack in &self.packs {
                if pack.path != path {
                    let _ = std::fs::remove_file(&pack.path);
                }
            }
        }
    }
}

/// Whether `path` is named like a pack.
pub(crate) fn is_pack_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == EXTENSION)
        && path
            .file_stem()
            .and_then(|s| s.to_str())
            .is_some_and(|s| super::cache::hex_of(s, 64))
}

/// A pack of `functions`: the magic, their count (4 bytes), each as its
/// key, its length (4 bytes) and its bytes, and a CRC-32 of all before it;
/// numbers little-endian.
fn encode(functions: &[(&[u8; KEY], &[u8])]) -> Vec<u8> {
    let len = functions
        .iter()
        .map(|(_, v)| KEY + 4 + v.len())
        .sum::<usize>();
    let mut pack = Vec::with_capacity(MAGIC.len() + 4 + len + 4);
    pack.extend_from_slice(MAGIC);
    pack.extend_from_slice(&(functions.len() as u32).to_le_bytes());
    for (key, value) in functions {
        pack.extend_from_slice(*key);
        pack.extend_from_slice(&(value.len() as u32).to_le_bytes());
        pack.extend_from_slice(value);
    }
    let checksum = crc32fast::hash(&pack);
    pack.extend_from_slice(&checksum.to_le_bytes());
    pack
}

/// A function of a pack: its key, and where its bytes are in the pack.
type Located = ([u8; KEY], Range<usize>);

/// The functions of a pack.
fn parse(pack: &[u8]) -> Result<Vec<Located>, &'static str> {
    let body = pack
        .strip_prefix(MAGIC)
        .ok_or("not a pack of compiled functions")?;
    let (body, checksum) = body
        .split_at_checked(body.len().wrapping_sub(4))
        .ok_or("truncated")?;
    if crc32fast::hash(&pack[..MAGIC.len() + body.len()]).to_le_bytes() != checksum {
        return Err("its checksum does not match: corrupt or truncated");
    }
    let number = |at: usize| -> Result<usize, &'static str> {
        let bytes = body.get(at..at + 4).ok_or("truncated")?;
        Ok(u32::from_le_bytes(bytes.try_into().unwrap_or_default()) as usize)
    };
    let count = number(0)?;
    let mut entries = Vec::with_capacity(count.min(body.len() / (KEY + 4)));
    let mut at = 4;
    for _ in 0..count {
        let key: [u8; KEY] = body
            .get(at..at + KEY)
            .ok_or("truncated")?
            .try_into()
            .unwrap_or_default();
        let len = number(at + KEY)?;
        let start = at + KEY + 4;
        let end = start.checked_add(len).filter(|&end| end <= body.len());
        let end = end.ok_or("truncated")?;
        // Offsets into the whole pack, past the magic.
        entries.push((key, MAGIC.len() + start..MAGIC.len() + end));
        at = end;
    }
    if at != body.len() {
        return Err("bytes after the last function");
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore as _;

    fn key(n: u8) -> [u8; KEY] {
        [n; KEY]
    }

    fn packs(dir: &Path) -> Vec<PathBuf> {
        let mut packs: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| is_pack_name(p))
            .collect();
        packs.sort();
        packs
    }

    #[test]
    fn functions_compiled_once_are_found_by_the_next_compilation() {
        let dir = tempfile::tempdir().unwrap();
        let functions = Functions::default();
        // Outside a compilation, nothing is kept.
        assert!(!functions.insert(&key(9), b"outside".to_vec()));
        functions.compiling(dir.path(), || {
            assert_eq!(functions.get(&key(1)), None);
            assert!(functions.insert(&key(1), b"one".to_vec()));
            assert!(functions.insert(&key(2), vec![7; 5000]));
            // Found again within the same compilation.
            assert_eq!(functions.get(&key(1)).as_deref(), Some(&b"one"[..]));
        });
        assert_eq!(packs(dir.path()).len(), 1);
        assert_eq!(
            functions.get(&key(1)),
            None,
            "nothing is held between compilations"
        );

        let again = Functions::default();
        again.compiling(dir.path(), || {
            assert_eq!(again.get(&key(1)).as_deref(), Some(&b"one"[..]));
            assert_eq!(again.get(&key(2)).as_deref(), Some(&[7; 5000][..]));
            assert_eq!(again.get(&key(9)), None);
            assert_eq!(again.get(b"not a key"), None);
        });
        assert_eq!((again.reused(), again.compiled()), (2, 0));
        // Nothing new was compiled: no new pack.
        assert_eq!(packs(dir.path()).len(), 1);
    }

    #[test]
    fn overlapping_compilations_write_one_pack_when_the_last_ends() {
        let dir = tempfile::tempdir().unwrap();
        let functions = Functions::default();
        functions.compiling(dir.path(), || {
            functions.insert(&key(1), b"a".to_vec());
            functions.compiling(dir.path(), || {
                functions.insert(&key(2), b"b".to_vec());
            });
            assert!(
                packs(dir.path()).is_empty(),
                "one compilation is still running"
            );
        });
        let written = packs(dir.path());
        assert_eq!(written.len(), 1);
        let bytes = std::fs::read(&written[0]).unwrap();
        assert_eq!(parse(&bytes).unwrap().len(), 2);
    }

    #[test]
    fn a_panicking_compilation_still_ends() {
        let dir = tempfile::tempdir().unwrap();
        let functions = Functions::default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            functions.compiling(dir.path(), || {
                functions.insert(&key(1), b"a".to_vec());
                panic!("compile failed");
            })
        }));
        assert!(result.is_err());
        assert_eq!(functions.state().running, 0);
        assert_eq!(packs(dir.path()).len(), 1);
    }

    #[test]
    fn damaged_packs_are_removed_and_their_functions_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let functions = Functions::default();
        functions.compiling(dir.path(), || {
            functions.insert(&key(1), b"one".to_vec());
        });
        let pack = packs(dir.path()).remove(0);
        let good = std::fs::read(&pack).unwrap();
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        for damaged in [flipped, good[..good.len() - 1].to_vec(), b"junk".to_vec()] {
            std::fs::write(&pack, &damaged).unwrap();
            let functions = Functions::default();
            functions.compiling(dir.path(), || {
                assert_eq!(functions.get(&key(1)), None);
            });
            assert!(!pack.exists(), "a damaged pack is removed");
        }
    }

    #[test]
    fn packs_are_merged_once_there_are_enough() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..MERGE_FROM as u8 {
            let functions = Functions::default();
            functions.compiling(dir.path(), || {
                functions.insert(&key(n), vec![n; 10]);
            });
        }
        assert_eq!(packs(dir.path()).len(), MERGE_FROM);
        let functions = Functions::default();
        functions.compiling(dir.path(), || {
            functions.insert(&key(100), vec![1]);
        });
        let left = packs(dir.path());
        assert_eq!(left.len(), 1, "{left:?}");
        let functions = Functions::default();
        functions.compiling(dir.path(), || {
            for n in (0..MERGE_FROM as u8).chain([100]) {
                assert!(functions.get(&key(n)).is_some(), "function {n}");
            }
        });
    }

    #[test]
    fn the_pack_layout_is_fixed() {
        let one = [5u8; KEY];
        let pack = encode(&[(&one, b"xy")]);
        let mut expected = b"WARDENF1".to_vec();
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&one);
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(b"xy");
        let checksum = crc32fast::hash(&expected);
        expected.extend_from_slice(&checksum.to_le_bytes());
        assert_eq!(pack, expected);
        let entries = parse(&pack).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(&pack[entries[0].1.clone()], b"xy");
    }

    #[test]
    fn pack_names() {
        let name = format!("{}.functions", "a".repeat(64));
        assert!(is_pack_name(Path::new(&name)));
        assert!(!is_pack_name(Path::new("notes.functions")));
        assert!(!is_pack_name(Path::new(&format!(
            "{}.cwasm",
            "a".repeat(64)
        ))));
    }
}
