//! On-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes tens to hundreds of
//! milliseconds; loading the compiled artifact takes well under one. An
//! artifact is keyed by the BLAKE3 hash of the component bytes together
//! with the engine's compatibility hash, so a changed plugin or a changed
//! wasmtime build never loads a stale artifact. (BLAKE3 rather than
//! SHA-256: the key is computed on every load, and for an 18 MB component
//! built from Python SHA-256 alone took longer than the rest of a cached
//! load; see BENCHMARKS.md.)
//!
//! Deserializing an artifact runs its machine code, so only artifacts this
//! host wrote are trusted: the cache directory is created private (0700),
//! and an artifact is loaded only if it is a regular file owned by the
//! current user that no one else may write. Anything else is ignored and
//! the component is compiled again.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component came to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    /// Loaded from the on-disk cache.
    Cache,
    /// Compiled now (and written to the cache when one is configured).
    Compiled,
}

/// File extension of a compiled artifact.
const ARTIFACT_EXTENSION: &str = "cwasm";

/// A compiled component on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedArtifact {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Where compiled components are kept.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

/// Feeds `Hash` output into the key's hasher.
struct KeyHasher<'a>(&'a mut blake3::Hasher);

impl Hasher for KeyHasher<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ComponentCache {
    /// A cache in `dir`, or no disk cache with `None`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The default location: `$LLMHOST_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/llmhost/components`, else
    /// `~/.cache/llmhost/components`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("LLMHOST_CACHE_DIR").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|d| !d.is_empty())
                    .map(|home| PathBuf::from(home).join(".cache"))
            })?;
        Some(base.join("llmhost").join("components"))
    }

    fn key(engine: &Engine, bytes: &[u8]) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(bytes);
        engine
            .precompile_compatibility_hash()
            .hash(&mut KeyHasher(&mut hasher));
        hasher.finalize().to_hex().to_string()
    }

    /// The cache directory, if there is one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Where the compiled form of `bytes` is (or would be) kept.
    pub fn artifact_path(&self, engine: &Engine, bytes: &[u8]) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{}.{ARTIFACT_EXTENSION}", Self::key(engine, bytes))))
    }

    /// Every compiled artifact in the cache directory, by file name. Other
    /// files (a temporary file being written, anything an operator put
    /// there) are not listed. An absent directory is an empty cache.
    pub fn artifacts(&self) -> std::io::Result<Vec<CachedArtifact>> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut artifacts = Vec::new();
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let meta = entry.metadata()?;
            if meta.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == ARTIFACT_EXTENSION)
            {
                artifacts.push(CachedArtifact {
                    path,
                    bytes: meta.len(),
                });
            }
        }
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(artifacts)
    }

    /// The compiled component for `bytes`, from the cache when possible,
    /// with where its artifact is kept.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CompileSource, Duration, Option<PathBuf>)> {
        let started = Instant::now();
        let path = self.artifact_path(engine, bytes);
        if let Some(path) = &path
            && trusted_artifact(path)
        {
            // SAFETY: the artifact was written by this host (see
            // `trusted_artifact`), and wasmtime checks that it matches the
            // engine's configuration before using it.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => {
                    tracing::debug!(path = %path.display(), "loaded compiled component from cache");
                    return Ok((
                        component,
                        CompileSource::Cache,
                        started.elapsed(),
                        Some(path.clone()),
                    ));
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached component: {err:#}");
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some(path) = &path
            && let Err(err) = self.store(path, &component)
        {
            tracing::warn!(path = %path.display(), "could not cache compiled component: {err}");
        }
        Ok((component, CompileSource::Compiled, started.elapsed(), path))
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(&bytes)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|err| err.error)?;
        Ok(())
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn trusted_artifact(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let me = rustix::process::geteuid().as_raw();
    let trusted = meta.is_file() && meta.uid() == me && meta.mode() & 0o022 == 0;
    if !trusted {
        tracing::warn!(path = %path.display(), "ignoring cached component not written by this user");
    }
    trusted
}

#[cfg(not(unix))]
fn trusted_artifact(path: &Path) -> bool {
    path.is_file()
}
