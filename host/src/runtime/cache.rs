//! On-disk cache of compiled components, authenticated with a per-user key.
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
//! Deserializing an artifact runs its machine code, so an artifact is
//! loaded only if this host wrote it, and that is proved by a MAC, not by
//! who owns the file: the cache directory can be chosen by an `llmhost.toml`
//! in the working directory, and a file from `git clone` or a tarball is a
//! regular file owned by the user like any other.
//!
//! - **The key.** A random 32-byte key in `$XDG_CONFIG_HOME/llmhost/cache.key`,
//!   else `~/.config/llmhost/cache.key` (never inside the cache directory,
//!   and never relative to the working directory), created on first use with
//!   mode 0600 in 0700 directories. It is written to a temporary file and
//!   linked into place without replacing anything, so two hosts starting at
//!   once agree on one key. A key file that is not a regular file of 32
//!   bytes owned by the user and private to them is refused, and the host
//!   runs without the disk cache (with a warning) rather than fail to load.
//! - **The artifact.** `<cache key>.cwasm` holds a 44-byte header (magic,
//!   format version, MAC) and then wasmtime's serialized component. The MAC
//!   is keyed BLAKE3 over the cache key and the serialized bytes, so an
//!   artifact copied to another component's name does not verify either.
//! - **Loading.** The artifact is opened without following a symlink and
//!   without blocking on a FIFO; the open file (not the path) must be a
//!   regular file owned by the user that no one else may write. It is read
//!   into memory, its MAC checked in constant time, and wasmtime
//!   deserializes those same bytes, so nothing can change between the check
//!   and the use. Anything that fails is compiled again and the artifact
//!   rewritten, with a warning naming the path.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;
use zeroize::Zeroizing;

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

/// First bytes of every artifact this host writes.
const MAGIC: [u8; 8] = *b"LLMHCWSM";

/// Version of the artifact layout; a new layout gets a new number, and an
/// artifact of another version is recompiled.
const FORMAT_VERSION: u32 = 1;

/// Magic, little-endian format version, MAC.
const HEADER_LEN: usize = MAGIC.len() + 4 + blake3::OUT_LEN;

/// Separates this use of the key from any other the key might get later.
const MAC_CONTEXT: &[u8] = b"llmhost compiled-component cache artifact v1\0";

/// Length of the cache key.
const KEY_LEN: usize = blake3::KEY_LEN;

/// Name of the key file in the user's config directory.
/// Environment variable naming the cache key file.
pub const KEY_FILE_ENV: &str = "LLMHOST_CACHE_KEY_FILE";
const KEY_FILE_NAME: &str = "cache.key";

/// The largest artifact read into memory. Compiled components run to tens
/// of megabytes (CPython is the largest known); the cap only stops a huge
/// planted file from exhausting memory before its MAC is checked.
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// A compiled component on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedArtifact {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Where compiled components are kept, and the key that proves this host
/// wrote them.
#[derive(Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    /// Read (or created) on first use, so a host with caching off never
    /// touches the key file; `None` inside once it proved unusable.
    key: Arc<OnceLock<Option<MacKey>>>,
}

impl fmt::Debug for ComponentCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentCache")
            .field("dir", &self.dir)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// The MAC key. Zeroed on drop; never printed.
struct MacKey(Zeroizing<[u8; KEY_LEN]>);

/// Why a key file was not used.
#[derive(Debug, thiserror::Error)]
enum KeyFileError {
    #[error("no config directory for it (neither XDG_CONFIG_HOME nor HOME is set)")]
    NoLocation,
    #[error("it is inside the cache directory, which a project's llmhost.toml may choose")]
    InsideCacheDir,
    #[error("it is a symbolic link")]
    Symlink,
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it is owned by uid {0}, not by this user")]
    NotOwned(u32),
    #[error("group or others may access it (mode {0:o}); it must be private (0600)")]
    Exposed(u32),
    #[error("it does not hold a {KEY_LEN}-byte key")]
    BadLength,
    #[error("no random numbers for a new key: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why a cached artifact was not loaded.
#[derive(Debug, thiserror::Error)]
enum Rejected {
    #[error("there is none")]
    Missing,
    #[error("it is a symbolic link")]
    Symlink,
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it is owned by uid {0}, not by this user")]
    NotOwned(u32),
    #[error("group or others may write it (mode {0:o})")]
    Writable(u32),
    #[error("it is larger than {MAX_ARTIFACT_BYTES} bytes")]
    TooLarge,
    #[error("it is not an llmhost artifact (no llmhost header)")]
    NotOurs,
    #[error("it has artifact format version {0}, this host writes {FORMAT_VERSION}")]
    Version(u32),
    #[error("its MAC does not verify: this host did not write it under this name")]
    BadMac,
    #[error("cannot read it: {0}")]
    Io(std::io::Error),
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
    /// A cache in `dir`, or no disk cache with `None`, authenticated with
    /// the key in [`ComponentCache::default_key_file`].
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            key_file: Self::default_key_file(),
            key: Arc::new(OnceLock::new()),
        }
    }

    /// The same cache, authenticated with the key in `path` instead
    /// (created there, mode 0600, if missing) — for embedders and tests
    /// that keep their own config directory.
    pub fn with_key_file(self, path: impl Into<PathBuf>) -> Self {
        Self {
            dir: self.dir,
            key_file: Some(path.into()),
            key: Arc::new(OnceLock::new()),
        }
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

    /// The default key location: `$LLMHOST_CACHE_KEY_FILE` (for
    /// containers and services without a home directory), else
    /// `$XDG_CONFIG_HOME/llmhost/cache.key`, else
    /// `~/.config/llmhost/cache.key`. It deliberately does not follow the
    /// cache directory (which a project's `llmhost.toml` may choose) and
    /// has no fallback in the working directory: without any of these
    /// there is no disk cache.
    pub fn default_key_file() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(KEY_FILE_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|d| !d.is_empty())
                    .map(|home| PathBuf::from(home).join(".config"))
            })?;
        Some(base.join("llmhost").join(KEY_FILE_NAME))
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

    /// Where the artifact with `cache_key` is kept in `dir`.
    fn path_in(dir: &Path, cache_key: &str) -> PathBuf {
        dir.join(format!("{cache_key}.{ARTIFACT_EXTENSION}"))
    }

    /// The MAC key, read or created on first use; `None` (after one
    /// warning) when it cannot be used, which turns the disk cache off.
    fn mac_key(&self) -> Option<&MacKey> {
        self.key
            .get_or_init(|| {
                let dir = self.dir.as_deref()?;
                let loaded = match &self.key_file {
                    None => Err(KeyFileError::NoLocation),
                    Some(path) if inside(dir, path) => Err(KeyFileError::InsideCacheDir),
                    Some(path) => load_or_create_key(path),
                };
                match loaded {
                    Ok(key) => Some(key),
                    Err(err) => {
                        let key_file = self
                            .key_file
                            .as_deref()
                            .map_or_else(|| "<none>".into(), |p| p.display().to_string());
                        tracing::warn!(
                            %key_file,
                            "compiled-component cache off for this run, every component is compiled: cannot use the cache key: {err}"
                        );
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Every compiled artifact in the cache directory, by file name. Other
    /// files (a temporary file being written, anything an operator put
    /// there) are not listed. An absent directory is an empty cache. Names
    /// are listed whether or not their MAC verifies: listing and pruning
    /// do not run anything.
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
    /// with where its artifact is kept (`None` when the disk cache is off,
    /// including when the cache key is unusable).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CompileSource, Duration, Option<PathBuf>)> {
        let started = Instant::now();
        let cached = match (&self.dir, self.mac_key()) {
            (Some(dir), Some(key)) => {
                let cache_key = Self::key(engine, bytes);
                Some((Self::path_in(dir, &cache_key), cache_key, key))
            }
            _ => None,
        };
        if let Some((path, cache_key, key)) = &cached {
            match read_artifact(path, key, cache_key) {
                Ok(artifact) => {
                    // SAFETY: the MAC proves that this host serialized these
                    // exact bytes for this component and engine (only it has
                    // the key), they are in memory that nothing else can
                    // change, and wasmtime checks that they match the
                    // engine's configuration before using them.
                    match unsafe { Component::deserialize(engine, &artifact[HEADER_LEN..]) } {
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
                Err(Rejected::Missing) => {}
                Err(reason) => {
                    tracing::warn!(
                        path = %path.display(),
                        "ignoring cached component, compiling it again: {reason}"
                    );
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some((path, cache_key, key)) = &cached
            && let Err(err) = store(path, cache_key, key, &component)
        {
            tracing::warn!(path = %path.display(), "could not cache compiled component: {err}");
        }
        Ok((
            component,
            CompileSource::Compiled,
            started.elapsed(),
            cached.map(|(path, _, _)| path),
        ))
    }
}

/// The MAC of an artifact: keyed BLAKE3 over the cache key (which names the
/// component and engine) and the serialized component.
fn mac(key: &MacKey, cache_key: &str, serialized: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(&key.0);
    hasher.update(MAC_CONTEXT);
    // Length-prefixed so no split of the input between the two fields
    // gives the same MAC.
    hasher.update(&(cache_key.len() as u64).to_le_bytes());
    hasher.update(cache_key.as_bytes());
    hasher.update(serialized);
    hasher.finalize()
}

fn header(key: &MacKey, cache_key: &str, serialized: &[u8]) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(&MAGIC);
    header[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[MAGIC.len() + 4..].copy_from_slice(mac(key, cache_key, serialized).as_bytes());
    header
}

/// Checks an artifact read into memory: header, version, then the MAC
/// (compared in constant time by `blake3::Hash`'s `PartialEq`).
fn verify(artifact: &[u8], key: &MacKey, cache_key: &str) -> Result<(), Rejected> {
    if artifact.len() < HEADER_LEN || artifact[..MAGIC.len()] != MAGIC {
        return Err(Rejected::NotOurs);
    }
    let mut version = [0; 4];
    version.copy_from_slice(&artifact[MAGIC.len()..MAGIC.len() + 4]);
    let version = u32::from_le_bytes(version);
    if version != FORMAT_VERSION {
        return Err(Rejected::Version(version));
    }
    let mut stored = [0; blake3::OUT_LEN];
    stored.copy_from_slice(&artifact[MAGIC.len() + 4..HEADER_LEN]);
    if mac(key, cache_key, &artifact[HEADER_LEN..]) == blake3::Hash::from_bytes(stored) {
        Ok(())
    } else {
        Err(Rejected::BadMac)
    }
}

/// Reads the artifact at `path` into memory and verifies it; on success
/// the serialized component is everything after [`HEADER_LEN`].
fn read_artifact(path: &Path, key: &MacKey, cache_key: &str) -> Result<Vec<u8>, Rejected> {
    // Group/world-writable is redundant with the MAC, which catches any
    // write; refused so an artifact someone else could have rewritten is
    // not even read.
    let (file, meta) = open_private(path, 0o022).map_err(|err| match err {
        OpenError::Symlink => Rejected::Symlink,
        OpenError::Io(err) if err.kind() == std::io::ErrorKind::NotFound => Rejected::Missing,
        OpenError::Io(err) => Rejected::Io(err),
        OpenError::NotRegular => Rejected::NotRegular,
        OpenError::NotOwned(uid) => Rejected::NotOwned(uid),
        OpenError::Mode(mode) => Rejected::Writable(mode),
    })?;
    if meta.len() > MAX_ARTIFACT_BYTES {
        return Err(Rejected::TooLarge);
    }
    let capacity = usize::try_from(meta.len()).unwrap_or(0);
    let mut artifact = Vec::with_capacity(capacity);
    // Bounded too: the file may grow after the fstat.
    file.take(MAX_ARTIFACT_BYTES + 1)
        .read_to_end(&mut artifact)
        .map_err(Rejected::Io)?;
    if artifact.len() as u64 > MAX_ARTIFACT_BYTES {
        return Err(Rejected::TooLarge);
    }
    verify(&artifact, key, cache_key)?;
    Ok(artifact)
}

/// Writes the artifact of `component` atomically: a temporary file (mode
/// 0600) in the cache directory, renamed over `path`. The rename replaces
/// whatever was at `path`, a planted file or a symlink included, without
/// following it.
fn store(path: &Path, cache_key: &str, key: &MacKey, component: &Component) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let serialized = component.serialize().map_err(std::io::Error::other)?;
    let header = header(key, cache_key, &serialized);
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(&header)?;
    file.write_all(&serialized)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|err| err.error)?;
    Ok(())
}

/// Whether `path` lies inside `dir`, compared both as written and with
/// symlinks resolved (as far as the paths exist).
fn inside(dir: &Path, path: &Path) -> bool {
    if path.starts_with(dir) {
        return true;
    }
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let parent = path.parent().unwrap_or(Path::new("."));
    parent
        .canonicalize()
        .is_ok_and(|parent| parent.starts_with(dir))
}

/// Reads the key in `path`, creating it when there is none.
fn load_or_create_key(path: &Path) -> Result<MacKey, KeyFileError> {
    match read_key(path) {
        Err(KeyFileError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {}
        other => return other,
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;
    let mut key = Zeroizing::new([0; KEY_LEN]);
    getrandom::fill(&mut key[..]).map_err(KeyFileError::Random)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".cache-key-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut temp = builder.tempfile_in(dir)?;
    temp.write_all(&key[..])?;
    temp.as_file().sync_all()?;
    // Linked into place only if nothing is there, so the file is never seen
    // half-written and a concurrent first start cannot replace our key (or
    // we theirs): the loser reads the winner's.
    match temp.persist_noclobber(path) {
        Ok(_) => {
            tracing::info!(key_file = %path.display(), "created the compiled-component cache key");
            Ok(MacKey(key))
        }
        Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => read_key(path),
        Err(err) => Err(err.error.into()),
    }
}

fn read_key(path: &Path) -> Result<MacKey, KeyFileError> {
    let (file, _) = open_private(path, 0o077).map_err(|err| match err {
        OpenError::Symlink => KeyFileError::Symlink,
        OpenError::Io(err) => KeyFileError::Io(err),
        OpenError::NotRegular => KeyFileError::NotRegular,
        OpenError::NotOwned(uid) => KeyFileError::NotOwned(uid),
        OpenError::Mode(mode) => KeyFileError::Exposed(mode),
    })?;
    let mut content = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
    file.take(KEY_LEN as u64 + 1).read_to_end(&mut content)?;
    let key: [u8; KEY_LEN] = content
        .as_slice()
        .try_into()
        .map_err(|_| KeyFileError::BadLength)?;
    Ok(MacKey(Zeroizing::new(key)))
}

enum OpenError {
    Symlink,
    Io(std::io::Error),
    NotRegular,
    NotOwned(u32),
    /// Its mode has one of the forbidden permission bits.
    Mode(u32),
}

/// Opens `path` (see [`open_no_follow`]) and checks the open file, not the
/// path, so a rename after the open cannot swap in another file: a regular
/// file, owned by the current user, with none of the `forbidden` mode bits.
fn open_private(
    path: &Path,
    forbidden: u32,
) -> Result<(std::fs::File, std::fs::Metadata), OpenError> {
    let file = open_no_follow(path)?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotRegular);
    }
    if let Some((uid, mode)) = owner_and_mode(&meta) {
        if uid != current_uid() {
            return Err(OpenError::NotOwned(uid));
        }
        if mode & forbidden != 0 {
            return Err(OpenError::Mode(mode));
        }
    }
    Ok((file, meta))
}

/// Opens `path` for reading without following a symlink in its last
/// component, and without blocking if it is a FIFO (a planted FIFO would
/// otherwise hang the start until someone writes to it).
#[cfg(unix)]
fn open_no_follow(path: &Path) -> Result<std::fs::File, OpenError> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(rustix::io::Errno::LOOP) => Err(OpenError::Symlink),
        Err(err) => Err(OpenError::Io(err.into())),
    }
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> Result<std::fs::File, OpenError> {
    if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink()) {
        return Err(OpenError::Symlink);
    }
    std::fs::File::open(path).map_err(OpenError::Io)
}

#[cfg(unix)]
fn owner_and_mode(meta: &std::fs::Metadata) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.uid(), meta.mode() & 0o7777))
}

#[cfg(not(unix))]
fn owner_and_mode(_meta: &std::fs::Metadata) -> Option<(u32, u32)> {
    None
}

#[cfg(unix)]
fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[cfg(not(unix))]
fn current_uid() -> u32 {
    0
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::Mutex;

    /// A tiny but real component; `tag` (a custom section) makes each one
    /// a different component with a different cache key.
    fn component(tag: &str) -> Vec<u8> {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        let name = b"tag";
        let size = 1 + name.len() + tag.len();
        assert!(size < 128, "one-byte LEB128 sizes only");
        bytes.push(0);
        bytes.push(size as u8);
        bytes.push(name.len() as u8);
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(tag.as_bytes());
        bytes
    }

    struct Fixture {
        root: tempfile::TempDir,
        engine: Engine,
        cache: ComponentCache,
    }

    impl Fixture {
        fn new() -> Self {
            let root = tempfile::tempdir().expect("temp dir");
            let cache = ComponentCache::new(Some(root.path().join("cache")))
                .with_key_file(root.path().join("config/llmhost/cache.key"));
            Self {
                root,
                engine: Engine::default(),
                cache,
            }
        }

        fn dir(&self) -> PathBuf {
            self.root.path().join("cache")
        }

        fn key_file(&self) -> PathBuf {
            self.root.path().join("config/llmhost/cache.key")
        }

        /// A new cache over the same directory and key file, as the next
        /// process would have.
        fn restart(&self) -> ComponentCache {
            ComponentCache::new(Some(self.dir())).with_key_file(self.key_file())
        }

        fn load(&self, cache: &ComponentCache, bytes: &[u8]) -> (CompileSource, Option<PathBuf>) {
            let (_, source, _, path) = cache
                .load_or_compile(&self.engine, bytes)
                .expect("load or compile");
            (source, path)
        }

        fn path(&self, bytes: &[u8]) -> PathBuf {
            ComponentCache::path_in(&self.dir(), &ComponentCache::key(&self.engine, bytes))
        }

        fn mac_key(&self) -> &MacKey {
            self.cache.mac_key().expect("usable key")
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Log output while `f` runs.
    fn logs<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("log lock").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&capture.0.lock().expect("log lock")).into_owned();
        (out, text)
    }

    #[test]
    fn an_artifact_this_host_wrote_carries_a_mac_and_loads_on_the_next_start() {
        let fx = Fixture::new();
        let bytes = component("a");
        assert_eq!(fx.load(&fx.cache, &bytes).0, CompileSource::Compiled);

        let path = fx.path(&bytes);
        let artifact = std::fs::read(&path).expect("artifact written");
        assert_eq!(artifact[..MAGIC.len()], MAGIC);
        assert_eq!(
            artifact[MAGIC.len()..MAGIC.len() + 4],
            FORMAT_VERSION.to_le_bytes()
        );
        assert_eq!(
            &artifact[HEADER_LEN..HEADER_LEN + 4],
            b"\x7fELF",
            "wasmtime's serialized component follows the header"
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&fx.dir()), 0o700);

        // The key: 32 bytes, private, in private directories.
        let key_file = fx.key_file();
        assert_eq!(std::fs::read(&key_file).expect("key").len(), KEY_LEN);
        assert_eq!(mode(&key_file), 0o600);
        assert_eq!(mode(key_file.parent().expect("parent")), 0o700);

        // The next process reads the same key and trusts the artifact.
        assert_eq!(
            fx.load(&fx.restart(), &bytes),
            (CompileSource::Cache, Some(path))
        );
    }

    #[test]
    fn a_planted_artifact_that_wasmtime_would_run_is_compiled_again_instead() {
        let fx = Fixture::new();
        let bytes = component("planted");
        // Creates the key, as any earlier start would have.
        fx.mac_key();
        let path = fx.path(&bytes);
        std::fs::create_dir_all(fx.dir()).expect("cache dir");

        // wasmtime's own serialization of a valid component, planted with
        // a plain write where the cache looks, mode 0644 like a cloned file.
        let serialized = Component::new(&fx.engine, &bytes)
            .and_then(|c| c.serialize())
            .expect("serialize");
        std::fs::write(&path, &serialized).expect("plant");
        chmod(&path, 0o644);

        // Everything the old check asked for holds: a regular file, owned
        // by us, that no one else may write...
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        assert!(meta.is_file());
        assert_eq!(meta.uid(), current_uid());
        assert_eq!(meta.mode() & 0o022, 0);
        // ...and wasmtime accepts these bytes: deserializing (and so
        // running) them succeeds. Only the MAC stands in the way.
        // SAFETY: the bytes are wasmtime's own serialization, made just now.
        assert!(unsafe { Component::deserialize(&fx.engine, &serialized) }.is_ok());

        let ((source, _), log) = logs(|| fx.load(&fx.cache, &bytes));
        assert_eq!(source, CompileSource::Compiled);
        assert!(
            log.contains(&path.display().to_string()) && log.contains("not an llmhost artifact"),
            "the warning names the path: {log}"
        );
        // The good artifact replaced the planted one.
        let rewritten = std::fs::read(&path).expect("rewritten");
        assert_eq!(rewritten[..MAGIC.len()], MAGIC);
        assert_eq!(fx.load(&fx.restart(), &bytes).0, CompileSource::Cache);

        // A planted file with a well-formed header but a MAC made without
        // our key fails the same way.
        let forged_key = MacKey(Zeroizing::new([7; KEY_LEN]));
        let cache_key = ComponentCache::key(&fx.engine, &bytes);
        let mut forged = header(&forged_key, &cache_key, &serialized).to_vec();
        forged.extend_from_slice(&serialized);
        std::fs::write(&path, &forged).expect("plant forged");
        assert!(matches!(
            read_artifact(&path, fx.mac_key(), &cache_key),
            Err(Rejected::BadMac)
        ));
        assert_eq!(fx.load(&fx.restart(), &bytes).0, CompileSource::Compiled);
    }

    #[test]
    fn a_flipped_byte_anywhere_fails_verification_and_is_recompiled() {
        let fx = Fixture::new();
        let bytes = component("flip");
        fx.load(&fx.cache, &bytes);
        let path = fx.path(&bytes);
        let good = std::fs::read(&path).expect("artifact");
        let cache_key = ComponentCache::key(&fx.engine, &bytes);
        verify(&good, fx.mac_key(), &cache_key).expect("the written artifact verifies");

        for at in [
            0,
            MAGIC.len(),
            MAGIC.len() + 4,
            HEADER_LEN,
            good.len() / 2,
            good.len() - 1,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert!(
                verify(&bad, fx.mac_key(), &cache_key).is_err(),
                "flipped byte {at} went unnoticed"
            );
        }
        assert!(matches!(
            verify(&good[..good.len() - 1], fx.mac_key(), &cache_key),
            Err(Rejected::BadMac)
        ));
        assert!(matches!(
            verify(&good[..HEADER_LEN - 1], fx.mac_key(), &cache_key),
            Err(Rejected::NotOurs)
        ));
        let mut other_version = good.clone();
        other_version[MAGIC.len()] = 2;
        assert!(matches!(
            verify(&other_version, fx.mac_key(), &cache_key),
            Err(Rejected::Version(2))
        ));

        // On disk: one flipped byte in the code is compiled again and the
        // artifact rewritten.
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x01;
        std::fs::write(&path, &bad).expect("tamper");
        assert_eq!(fx.load(&fx.restart(), &bytes).0, CompileSource::Compiled);
        assert_eq!(std::fs::read(&path).expect("rewritten"), good);
        assert_eq!(fx.load(&fx.restart(), &bytes).0, CompileSource::Cache);
    }

    #[test]
    fn an_artifact_copied_to_another_components_name_does_not_verify() {
        let fx = Fixture::new();
        let (a, b) = (component("a"), component("b"));
        fx.load(&fx.cache, &a);
        fx.load(&fx.cache, &b);
        let (path_a, path_b) = (fx.path(&a), fx.path(&b));
        assert_ne!(path_a, path_b);
        std::fs::copy(&path_a, &path_b).expect("copy");

        let key_b = ComponentCache::key(&fx.engine, &b);
        assert!(matches!(
            read_artifact(&path_b, fx.mac_key(), &key_b),
            Err(Rejected::BadMac)
        ));
        let cache = fx.restart();
        assert_eq!(fx.load(&cache, &b).0, CompileSource::Compiled);
        // Under its own name the same bytes are fine.
        assert_eq!(fx.load(&cache, &a).0, CompileSource::Cache);
    }

    #[test]
    fn an_artifact_written_under_another_key_does_not_verify() {
        let fx = Fixture::new();
        let bytes = component("other key");
        fx.load(&fx.cache, &bytes);
        let other = ComponentCache::new(Some(fx.dir()))
            .with_key_file(fx.root.path().join("other/cache.key"));
        assert_eq!(fx.load(&other, &bytes).0, CompileSource::Compiled);
    }

    #[test]
    fn a_symlink_at_the_artifact_path_is_not_followed() {
        let fx = Fixture::new();
        let bytes = component("link");
        fx.load(&fx.cache, &bytes);
        let path = fx.path(&bytes);
        let elsewhere = fx.root.path().join("elsewhere.cwasm");
        std::fs::rename(&path, &elsewhere).expect("move");
        std::os::unix::fs::symlink(&elsewhere, &path).expect("symlink");

        let cache_key = ComponentCache::key(&fx.engine, &bytes);
        assert!(matches!(
            read_artifact(&path, fx.mac_key(), &cache_key),
            Err(Rejected::Symlink)
        ));
        let target = std::fs::read(&elsewhere).expect("target");
        assert_eq!(fx.load(&fx.restart(), &bytes).0, CompileSource::Compiled);
        // The rewrite replaced the link itself and left its target alone.
        assert!(
            std::fs::symlink_metadata(&path)
                .expect("stat")
                .file_type()
                .is_file()
        );
        assert_eq!(std::fs::read(&elsewhere).expect("target"), target);
    }

    #[test]
    fn a_fifo_at_the_artifact_path_does_not_hang_the_load() {
        let fx = Fixture::new();
        let bytes = component("fifo");
        fx.mac_key();
        std::fs::create_dir_all(fx.dir()).expect("cache dir");
        let path = fx.path(&bytes);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .expect("mkfifo");
        let (done, result) = std::sync::mpsc::channel();
        let (engine, cache, input) = (fx.engine.clone(), fx.cache.clone(), bytes.clone());
        std::thread::spawn(move || {
            let loaded = cache.load_or_compile(&engine, &input).map(|(_, s, _, _)| s);
            let _ = done.send(loaded.ok());
        });
        let source = result
            .recv_timeout(Duration::from_secs(60))
            .expect("the load finished instead of blocking on the FIFO");
        assert_eq!(source, Some(CompileSource::Compiled));
        assert!(std::fs::symlink_metadata(&path).expect("stat").is_file());
    }

    #[test]
    fn an_artifact_others_may_write_or_another_user_owns_is_not_read() {
        let fx = Fixture::new();
        let bytes = component("perm");
        fx.load(&fx.cache, &bytes);
        let path = fx.path(&bytes);
        let cache_key = ComponentCache::key(&fx.engine, &bytes);
        chmod(&path, 0o666);
        assert!(matches!(
            read_artifact(&path, fx.mac_key(), &cache_key),
            Err(Rejected::Writable(0o666))
        ));
        chmod(&path, 0o600);
        // Only root can give a file away; elsewhere this part is moot.
        if rustix::fs::chown(&path, Some(rustix::process::Uid::from_raw(4242)), None).is_ok() {
            assert!(matches!(
                read_artifact(&path, fx.mac_key(), &cache_key),
                Err(Rejected::NotOwned(4242))
            ));
        }
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_private_key() {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().join("config/llmhost/cache.key");
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let keys: Vec<[u8; KEY_LEN]> = (0..8)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    *load_or_create_key(&path).expect("key").0
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert!(keys.iter().all(|k| k == &keys[0]), "one key for everyone");
        assert_eq!(std::fs::read(&path).expect("key file"), keys[0]);
        assert_eq!(mode(&path), 0o600);
        let dir = path.parent().expect("parent");
        assert_eq!(mode(dir), 0o700);
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .filter(|name| name != KEY_FILE_NAME)
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn a_key_file_others_can_read_turns_the_cache_off_but_the_load_succeeds() {
        let fx = Fixture::new();
        let bytes = component("exposed");
        fx.load(&fx.cache, &bytes);
        let path = fx.path(&bytes);
        let artifact = std::fs::read(&path).expect("artifact");
        chmod(&fx.key_file(), 0o644);

        let cache = fx.restart();
        let ((source, artifact_path), log) = logs(|| fx.load(&cache, &bytes));
        assert_eq!(
            source,
            CompileSource::Compiled,
            "even a valid artifact is not loaded"
        );
        assert_eq!(artifact_path, None, "no artifact in use");
        assert!(
            log.contains(&fx.key_file().display().to_string()) && log.contains("mode 644"),
            "the warning names the key file: {log}"
        );
        assert_eq!(fx.load(&cache, &bytes).0, CompileSource::Compiled);
        // Nothing was written with a key others may have read, and the
        // key file was left as the user set it.
        assert_eq!(std::fs::read(&path).expect("artifact"), artifact);
        assert_eq!(mode(&fx.key_file()), 0o644);
    }

    #[test]
    fn key_files_that_are_not_private_regular_files_of_32_bytes_are_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        let good = root.path().join("good.key");
        load_or_create_key(&good).expect("create");
        let at = |name: &str| root.path().join(name);

        std::os::unix::fs::symlink(&good, at("link.key")).expect("symlink");
        assert!(matches!(
            read_key(&at("link.key")),
            Err(KeyFileError::Symlink)
        ));
        // Not created either: the link is left alone.
        assert!(matches!(
            load_or_create_key(&at("link.key")),
            Err(KeyFileError::Symlink)
        ));

        std::fs::create_dir(at("dir.key")).expect("dir");
        assert!(matches!(
            read_key(&at("dir.key")),
            Err(KeyFileError::NotRegular)
        ));

        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            at("fifo.key"),
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .expect("mkfifo");
        assert!(matches!(
            read_key(&at("fifo.key")),
            Err(KeyFileError::NotRegular)
        ));

        for (name, len) in [
            ("short.key", KEY_LEN - 1),
            ("long.key", KEY_LEN + 1),
            ("empty.key", 0),
        ] {
            std::fs::write(at(name), vec![1; len]).expect("write");
            chmod(&at(name), 0o600);
            assert!(
                matches!(read_key(&at(name)), Err(KeyFileError::BadLength)),
                "{name}"
            );
        }

        for exposed in [0o640, 0o604, 0o660] {
            chmod(&good, exposed);
            assert!(matches!(read_key(&good), Err(KeyFileError::Exposed(m)) if m == exposed));
        }
        chmod(&good, 0o600);
        assert!(read_key(&good).is_ok());
        if rustix::fs::chown(&good, Some(rustix::process::Uid::from_raw(4242)), None).is_ok() {
            assert!(matches!(read_key(&good), Err(KeyFileError::NotOwned(4242))));
        }
    }

    #[test]
    fn a_key_file_inside_the_cache_directory_is_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("cache");
        let engine = Engine::default();
        let bytes = component("inside");
        for key_file in [dir.join("cache.key"), dir.join("sub/cache.key")] {
            let cache = ComponentCache::new(Some(dir.clone())).with_key_file(&key_file);
            let (_, source, _, path) = cache.load_or_compile(&engine, &bytes).expect("load");
            assert_eq!((source, path), (CompileSource::Compiled, None));
            assert!(!key_file.exists(), "no key was created in the cache dir");
        }
        // Also through a symlink to the cache directory.
        std::fs::create_dir_all(&dir).expect("cache dir");
        std::os::unix::fs::symlink(&dir, root.path().join("alias")).expect("symlink");
        let key_file = root.path().join("alias/cache.key");
        let cache = ComponentCache::new(Some(dir.clone())).with_key_file(&key_file);
        assert!(cache.mac_key().is_none());
        assert!(!key_file.exists());
    }

    #[test]
    fn without_a_cache_directory_the_key_file_is_never_touched() {
        let root = tempfile::tempdir().expect("temp dir");
        let key_file = root.path().join("cache.key");
        let cache = ComponentCache::new(None).with_key_file(&key_file);
        let (_, source, _, path) = cache
            .load_or_compile(&Engine::default(), &component("none"))
            .expect("load");
        assert_eq!((source, path), (CompileSource::Compiled, None));
        assert!(!key_file.exists());
    }

    #[test]
    fn listing_shows_authenticated_artifacts_only_by_extension() {
        let fx = Fixture::new();
        let bytes = component("list");
        fx.load(&fx.cache, &bytes);
        std::fs::write(fx.dir().join("notes.txt"), b"x").expect("write");
        let listed = fx.cache.artifacts().expect("list");
        let path = fx.path(&bytes);
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(listed, vec![CachedArtifact { path, bytes: len }]);
    }
}
