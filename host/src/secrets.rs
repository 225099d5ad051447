//! Encryption of stored API keys: AES-256-GCM under a keyring that allows
//! key rotation, and the key file the active key usually lives in.
//!
//! # Stored format
//!
//! An encrypted API key is stored as one line of ASCII text:
//!
//! ```text
//! llmhost:v2:<key_id>:<base64(nonce || ciphertext || tag)>
//! ```
//!
//! - `v2` is the format version. Values are written as `v2`; `v1` values
//!   (written before base URLs were bound, see below) are still read; other
//!   versions are refused, not guessed at.
//! - `<key_id>` names the key that encrypted the value (see
//!   [`EncryptionKey::id`]), so a keyring holding several keys knows which
//!   one to use and a missing key is reported as such instead of as
//!   corruption.
//! - the payload is standard base64 (with padding) of a fresh random 96-bit
//!   nonce, then the AES-256-GCM ciphertext and its 128-bit tag.
//!
//! Each value is bound to where it may be sent through the associated data
//! (see [`Binding`]): its agent, its provider and its base URL. A ciphertext
//! copied to another agent or provider, or left in a row whose base URL was
//! changed behind llmhost's back (with raw SQL, by anyone who can write the
//! database file), fails to decrypt instead of silently handing the key to
//! another row or another server.
//!
//! # Values written before base URLs were bound (`v1`)
//!
//! A `v1` value is bound to agent and provider only, so for a row with a
//! base URL nothing shows whether llmhost or someone editing the database
//! set that URL. The choice made here: a `v1` value decrypts only for a
//! binding without a base URL (the provider's default, which the database
//! cannot change); for a binding with one it is refused with
//! [`CryptoError::LegacyUnbound`] before any decryption, and the key must be
//! given again (which writes `v2`). Re-encrypting such rows automatically
//! would trust whatever base URL the row holds at that moment, which is the
//! very thing an attacker controls. `v1` values without a base URL stay
//! readable as they are, and `keys rotate` rewrites them as `v2`.
//!
//! # Rotation
//!
//! A [`Keyring`] encrypts with its active key and decrypts with any of its
//! keys. To rotate, make a new key active and keep the old one as a previous
//! key until every stored value has been re-encrypted.
//!
//! Error messages name key ids and paths, never key material or plaintext.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Environment variable holding the active key (standard base64 of 32 bytes).
pub const KEY_ENV: &str = "LLMHOST_ENCRYPTION_KEY";
/// Fallback environment variable for the active key, read when [`KEY_ENV`]
/// is unset or empty.
pub const KEY_ENV_ALT: &str = "ENCRYPTION_KEY";
/// Environment variable holding comma-separated base64 keys that are no
/// longer active but still decrypt values written with them.
pub const PREVIOUS_KEYS_ENV: &str = "LLMHOST_PREVIOUS_ENCRYPTION_KEYS";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const STORED_PREFIX: &str = "llmhost";
const KEY_ID_DOMAIN: &[u8] = b"llmhost-key-id\0";
const AAD_DOMAIN_V1: &[u8] = b"llmhost/api-key/v1\0";
const AAD_DOMAIN_V2: &[u8] = b"llmhost/api-key/v2\0";
const KEY_FILE_HEADER: &str = "\
# llmhost encryption keys: one standard-base64 256-bit key per line.
# The first key encrypts; later keys only decrypt values written before a rotation.
# Keep this file secret (mode 0600) and back it up: API keys stored in the
# database cannot be recovered without it.
";

/// Key text is accepted with or without padding, in the standard or the
/// URL-safe alphabet, since keys are pasted from many tools.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// A 256-bit encryption key. Debug prints only its id. Zeroed on drop.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl EncryptionKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Self {
        Self::from_bytes(Zeroizing::new(<[u8; KEY_LEN]>::generate()))
    }

    /// Parses a key from base64 text (surrounding whitespace ignored;
    /// standard or URL-safe alphabet, padding optional). The text must
    /// decode to exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        Self::parse(text, "key")
    }

    /// The key as standard base64 with padding, the form [`from_base64`]
    /// and the key file accept.
    ///
    /// [`from_base64`]: EncryptionKey::from_base64
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(&self.bytes[..]))
    }

    /// A short public name for the key: `k` followed by the first 8 hex
    /// digits of SHA-256(`"llmhost-key-id\0"` || key bytes). Safe to log and
    /// to store next to values the key encrypted.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn parse(text: &str, source_name: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let engine = if text.contains(['-', '_']) {
            &URL_SAFE_ANY_PAD
        } else {
            &STANDARD_ANY_PAD
        };
        let invalid = |message: String| KeyError::Invalid {
            source_name: source_name.to_owned(),
            message,
        };
        let decoded = Zeroizing::new(engine.decode(text).map_err(|_| {
            invalid("expected base64 of 32 bytes, got text that is not valid base64".to_owned())
        })?);
        let bytes: [u8; KEY_LEN] = decoded.as_slice().try_into().map_err(|_| {
            invalid(format!(
                "expected base64 of 32 bytes, got {} bytes",
                decoded.len()
            ))
        })?;
        Ok(Self::from_bytes(Zeroizing::new(bytes)))
    }

    fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(&bytes[..])
            .finalize();
        let id = format!("k{}", hex::encode(&digest[..4]));
        Self { id, bytes }
    }

    /// A 256-bit key for another purpose, derived from this one with
    /// BLAKE3's key derivation under `context` (a fixed, globally unique
    /// string naming the purpose). The raw key never leaves this type;
    /// a sub-key reveals nothing of it or of other contexts' sub-keys.
    pub(crate) fn derive_subkey(&self, context: &str) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(blake3::derive_key(context, &self.bytes[..]))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::cast_from_core(&self.bytes))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .finish()
    }
}

/// The stored format versions this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Bound to agent and provider; read, never written.
    V1,
    /// Bound to agent, provider and base URL; what is written.
    V2,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// What a ciphertext is bound to: the row it belongs to and the server its
/// key may be sent to.
///
/// For `v2` values the associated data authenticated with the value is
/// `b"llmhost/api-key/v2\0"`, then `agent_id` as 8 bytes big-endian, then
/// `provider` as its length (8 bytes big-endian) and its bytes, then for
/// `base_url` either the byte `0` (none) or the byte `1`, its length and
/// its bytes. Every field is length-prefixed so no two bindings share
/// associated data whatever bytes they hold, and "no base URL" differs
/// from every URL. (`v1` values used `b"llmhost/api-key/v1\0"`, `agent_id`
/// in decimal, `b"\0"`, `provider`.) Decrypting under any other binding
/// fails with [`CryptoError::Authentication`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The agent the API key belongs to.
    pub agent_id: i64,
    /// The provider the API key is for.
    pub provider: &'a str,
    /// The base URL the key is sent to, exactly as the config stores it
    /// (normalised by the config service before it is stored); `None`: the
    /// provider's default.
    pub base_url: Option<&'a str>,
}

impl Binding<'_> {
    fn associated_data(&self, format: Format) -> Vec<u8> {
        match format {
            Format::V1 => {
                let agent_id = self.agent_id.to_string();
                [
                    AAD_DOMAIN_V1,
                    agent_id.as_bytes(),
                    b"\0",
                    self.provider.as_bytes(),
                ]
                .concat()
            }
            Format::V2 => {
                fn field(out: &mut Vec<u8>, bytes: &[u8]) {
                    // usize is at most 64 bits on every supported target.
                    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
                let mut aad = Vec::with_capacity(
                    AAD_DOMAIN_V2.len()
                        + 8
                        + 8
                        + self.provider.len()
                        + 9
                        + self.base_url.map_or(0, str::len),
                );
                aad.extend_from_slice(AAD_DOMAIN_V2);
                aad.extend_from_slice(&self.agent_id.to_be_bytes());
                field(&mut aad, self.provider.as_bytes());
                match self.base_url {
                    None => aad.push(0),
                    Some(url) => {
                        aad.push(1);
                        field(&mut aad, url.as_bytes());
                    }
                }
                aad
            }
        }
    }
}

/// Active key encrypts; every key decrypts what it encrypted.
#[derive(Debug, Clone)]
pub struct Keyring {
    active: EncryptionKey,
    previous: Vec<EncryptionKey>,
}

impl Keyring {
    /// A keyring holding only `active`.
    pub fn new(active: EncryptionKey) -> Self {
        Self {
            active,
            previous: Vec::new(),
        }
    }

    /// Adds keys that still decrypt but no longer encrypt. Keys whose id is
    /// already in the keyring are skipped.
    pub fn with_previous(mut self, keys: impl IntoIterator<Item = EncryptionKey>) -> Self {
        for key in keys {
            if self.find(key.id()).is_none() {
                self.previous.push(key);
            }
        }
        self
    }

    /// The same keys with the key named `id` active; `None` if the
    /// keyring does not hold it.
    pub fn with_active(&self, id: &str) -> Option<Self> {
        let active = self.find(id)?.clone();
        Some(Self::new(active).with_previous(self.keys().cloned()))
    }

    /// The key new values are encrypted with.
    pub fn active(&self) -> &EncryptionKey {
        &self.active
    }

    /// All keys, the active key first.
    pub fn keys(&self) -> impl Iterator<Item = &EncryptionKey> {
        std::iter::once(&self.active).chain(&self.previous)
    }

    /// Encrypts `plaintext` with the active key and a fresh random nonce,
    /// bound to `binding`, in the current stored format (`v2`) described in
    /// the module documentation.
    pub fn encrypt(
        &self,
        plaintext: &SecretString,
        binding: &Binding,
    ) -> Result<String, CryptoError> {
        let nonce = Nonce::generate();
        let aad = binding.associated_data(Format::V2);
        let sealed = self
            .active
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let payload = [nonce.as_slice(), &sealed].concat();
        Ok(format!(
            "{STORED_PREFIX}:{}:{}:{}",
            Format::V2.name(),
            self.active.id(),
            STANDARD.encode(payload)
        ))
    }

    /// Decrypts a value [`encrypt`](Keyring::encrypt) produced for the same
    /// `binding`, with whichever key of the keyring it names. A `v1` value
    /// decrypts only for a binding without a base URL (see the module
    /// documentation).
    pub fn decrypt(&self, stored: &str, binding: &Binding) -> Result<SecretString, CryptoError> {
        let (format, key_id, payload) = parse_stored(stored)?;
        let payload = STANDARD
            .decode(payload)
            .map_err(|_| CryptoError::Malformed)?;
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let key = self.find(key_id).ok_or_else(|| CryptoError::UnknownKey {
            key_id: key_id.to_owned(),
        })?;
        // Refused before decrypting: a v1 tag says nothing about the base
        // URL, so succeeding would hand the key to whatever URL the row
        // holds.
        if format == Format::V1 && binding.base_url.is_some() {
            return Err(CryptoError::LegacyUnbound {
                key_id: key_id.to_owned(),
            });
        }
        let (nonce, sealed) = payload.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        let aad = binding.associated_data(format);
        let plaintext = Zeroizing::new(
            key.cipher()
                .decrypt(
                    &nonce,
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::Authentication {
                    key_id: key_id.to_owned(),
                })?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| CryptoError::Malformed)?;
        Ok(SecretString::from(text))
    }

    /// The key id named by a stored value, without decrypting it.
    pub fn key_id_of(stored: &str) -> Result<&str, CryptoError> {
        parse_stored(stored).map(|(_, key_id, _)| key_id)
    }

    fn find(&self, key_id: &str) -> Option<&EncryptionKey> {
        self.keys().find(|key| key.id() == key_id)
    }
}

/// Splits a stored value into its format, key id and base64 payload. Parts
/// are only echoed in errors when they have the shape of a version or key
/// id, so a plaintext that ended up in the column is never repeated.
fn parse_stored(stored: &str) -> Result<(Format, &str, &str), CryptoError> {
    let mut parts = stored.trim().splitn(4, ':');
    if parts.next() != Some(STORED_PREFIX) {
        return Err(CryptoError::Malformed);
    }
    let version = parts.next().ok_or(CryptoError::Malformed)?;
    let format = match version {
        "v1" => Format::V1,
        "v2" => Format::V2,
        _ => {
            let looks_like_version = version.len() <= 8
                && version.strip_prefix('v').is_some_and(|digits| {
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                });
            return Err(if looks_like_version {
                CryptoError::UnsupportedVersion(version.to_owned())
            } else {
                CryptoError::Malformed
            });
        }
    };
    let key_id = parts.next().ok_or(CryptoError::Malformed)?;
    let payload = parts.next().ok_or(CryptoError::Malformed)?;
    let looks_like_id = !key_id.is_empty()
        && key_id.len() <= 16
        && key_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !looks_like_id {
        return Err(CryptoError::Malformed);
    }
    Ok((format, key_id, payload))
}

/// Why a stored API key could not be encrypted or decrypted. Messages never
/// contain key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The value is not in the stored format, its payload is not base64, or
    /// it is too short to hold a nonce and a tag.
    #[error("stored API key is not an llmhost ciphertext (expected llmhost:v2:<key id>:<base64>)")]
    Malformed,
    /// The value was written in a format version this build does not read.
    #[error("stored API key uses format {0}, which this version of llmhost cannot read")]
    UnsupportedVersion(String),
    /// The value names a key that is not in the keyring.
    #[error(
        "encrypted with key {key_id}, which is not in the keyring (is LLMHOST_ENCRYPTION_KEY or the key file the one this database was written with?)"
    )]
    UnknownKey {
        /// The id the stored value names.
        key_id: String,
    },
    /// The authentication tag did not verify: the value was altered, or it
    /// was encrypted for another agent, provider or base URL.
    #[error(
        "cannot decrypt with key {key_id}: the value was altered, or was stored for another agent, provider or base URL (was the config changed outside llmhost?); give the key again"
    )]
    Authentication {
        /// The id of the key that was tried.
        key_id: String,
    },
    /// A `v1` value (not bound to a base URL) was asked for by a row that
    /// has a base URL; see the module documentation.
    #[error(
        "the stored API key (key {key_id}) was written by an older llmhost that did not bind keys to their base URL, and this config has a base URL, which anyone able to write the database could have set; it is not used: give the key again (`llmhost configs update ID --api-key -`)"
    )]
    LegacyUnbound {
        /// The id the stored value names.
        key_id: String,
    },
    /// Encryption failed; AES-GCM only fails for inputs far larger than an
    /// API key.
    #[error("encrypting the API key failed")]
    Encrypt,
}

impl CryptoError {
    /// A stable machine-readable name for the error, for logs and API
    /// responses.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            Self::Malformed => ErrorKind::MalformedCiphertext,
            Self::UnsupportedVersion(_) => ErrorKind::UnsupportedCiphertextVersion,
            Self::UnknownKey { .. } => ErrorKind::UnknownKey,
            // Reported like a failed tag: in both cases the key is not
            // used, and giving it again is the way out.
            Self::Authentication { .. } | Self::LegacyUnbound { .. } => ErrorKind::DecryptionFailed,
            Self::Encrypt => ErrorKind::EncryptionFailed,
        }
    }
}

/// Why a key could not be loaded or a key file not read or written.
/// Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key's text is not base64 of 32 bytes.
    #[error("invalid encryption key in {source_name}: {message}")]
    Invalid {
        /// Where the key came from: an environment variable, or a key file
        /// path and line number.
        source_name: String,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a key file failed.
    #[error("key file {}: {message}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        message: String,
    },
    /// A key file is readable or writable by group or others.
    #[error(
        "key file {} is accessible by group or others (mode {mode:03o}); restrict it with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A new key file was not created because one already exists.
    #[error("key file {} already exists; refusing to overwrite an encryption key", .0.display())]
    Exists(PathBuf),
    /// A key file holds no key (or no key was given to write).
    #[error("key file {} holds no encryption key", .0.display())]
    Empty(PathBuf),
}

impl KeyError {
    fn io(path: &Path, error: &io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            message: error.to_string(),
        }
    }
}

/// Where the active key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable, by name.
    Env(&'static str),
    /// A key file.
    File(PathBuf),
}

/// Loads the keyring.
///
/// The active key is, in order of precedence: [`KEY_ENV`], else
/// [`KEY_ENV_ALT`] (each only when non-empty), else the first key of
/// `key_file` if that file exists. Previous keys come from
/// [`PREVIOUS_KEYS_ENV`] and, when the active key is from the file, the
/// file's other keys. Returns `Ok(None)` when no key is configured anywhere,
/// and an error when previous keys are configured without an active key.
///
/// `env` looks up an environment variable, so callers can pass
/// `&|name| std::env::var(name).ok()` and tests need not touch the process
/// environment.
pub fn load_keyring(
    env: &dyn Fn(&str) -> Option<String>,
    key_file: &Path,
) -> Result<Option<(Keyring, KeySource)>, KeyError> {
    let from_env = [KEY_ENV, KEY_ENV_ALT].into_iter().find_map(|name| {
        let value = Zeroizing::new(env(name)?);
        (!value.trim().is_empty()).then_some((name, value))
    });
    let (mut keyring, source) = match from_env {
        Some((name, value)) => (
            Keyring::new(EncryptionKey::parse(&value, name)?),
            KeySource::Env(name),
        ),
        None if key_file
            .try_exists()
            .map_err(|e| KeyError::io(key_file, &e))? =>
        {
            let mut keys = read_key_file(key_file)?.into_iter();
            let active = keys
                .next()
                .ok_or_else(|| KeyError::Empty(key_file.to_owned()))?;
            (
                Keyring::new(active).with_previous(keys),
                KeySource::File(key_file.to_owned()),
            )
        }
        None => {
            return match env(PREVIOUS_KEYS_ENV).map(Zeroizing::new) {
                Some(previous) if !previous.trim().is_empty() => Err(KeyError::Invalid {
                    source_name: PREVIOUS_KEYS_ENV.to_owned(),
                    message: format!(
                        "previous keys are set but there is no active key; set {KEY_ENV} or create the key file {}",
                        key_file.display()
                    ),
                }),
                _ => Ok(None),
            };
        }
    };
    if let Some(previous) = env(PREVIOUS_KEYS_ENV).map(Zeroizing::new) {
        let entries = previous.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let source_name = format!("{PREVIOUS_KEYS_ENV} (entry {})", index + 1);
            keyring = keyring.with_previous([EncryptionKey::parse(entry, &source_name)?]);
        }
    }
    Ok(Some((keyring, source)))
}

/// Reads a key file: text, one standard-base64 key per line, the first line
/// is the active key and later lines are previous keys that still decrypt;
/// blank lines and lines starting with `#` are ignored.
///
/// On Unix a file readable or writable by group or others is refused with
/// [`KeyError::Permissions`]; a file without keys with [`KeyError::Empty`].
pub fn read_key_file(path: &Path) -> Result<Vec<EncryptionKey>, KeyError> {
    let mut file = File::open(path).map_err(|e| KeyError::io(path, &e))?;
    let metadata = file.metadata().map_err(|e| KeyError::io(path, &e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    // Sized up front so reading never reallocates and leaves stray copies.
    let capacity = usize::try_from(metadata.len()).unwrap_or(0) + 1;
    let mut content = Zeroizing::new(Vec::with_capacity(capacity));
    file.read_to_end(&mut content)
        .map_err(|e| KeyError::io(path, &e))?;
    let text = std::str::from_utf8(&content).map_err(|_| KeyError::Invalid {
        source_name: path.display().to_string(),
        message: "the key file is not UTF-8 text".to_owned(),
    })?;
    let keys = text
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#')
        })
        .map(|(index, line)| {
            EncryptionKey::parse(line, &format!("{}:{}", path.display(), index + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(KeyError::Empty(path.to_owned()));
    }
    Ok(keys)
}

/// Writes a key file holding `keys`, the first being the active key,
/// replacing any existing file.
///
/// The write is atomic: a temporary file with mode 0600 in the same
/// directory is written, synced and renamed over `path`, and the directory
/// is synced where the platform allows. A missing parent directory is
/// created with mode 0700. The file starts with a comment explaining the
/// format and that it must be kept secret and backed up.
pub fn write_key_file(path: &Path, keys: &[EncryptionKey]) -> Result<(), KeyError> {
    write_atomically(path, keys, Replace::Allowed)
}

/// Creates a key file holding one new key and returns that key. Refuses with
/// [`KeyError::Exists`] if the file exists: a key is never overwritten.
pub fn create_key_file(path: &Path) -> Result<EncryptionKey, KeyError> {
    if path.try_exists().map_err(|e| KeyError::io(path, &e))? {
        return Err(KeyError::Exists(path.to_owned()));
    }
    let key = EncryptionKey::generate();
    write_atomically(path, std::slice::from_ref(&key), Replace::Refused)?;
    Ok(key)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    Allowed,
    Refused,
}

fn write_atomically(path: &Path, keys: &[EncryptionKey], replace: Replace) -> Result<(), KeyError> {
    if keys.is_empty() {
        return Err(KeyError::Empty(path.to_owned()));
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;

    let mut content = Zeroizing::new(String::with_capacity(
        KEY_FILE_HEADER.len() + keys.len() * (KEY_LEN * 4 / 3 + 4),
    ));
    content.push_str(KEY_FILE_HEADER);
    for key in keys {
        content.push_str(key.to_base64().expose_secret());
        content.push('\n');
    }

    let mut builder = tempfile::Builder::new();
    builder.prefix(".llmhost-keys-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o600));
    }
    let mut temp = builder
        .tempfile_in(dir)
        .map_err(|e| KeyError::io(dir, &e))?;
    temp.write_all(content.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| KeyError::io(temp.path(), &e))?;
    let persisted = match replace {
        Replace::Allowed => temp.persist(path),
        Replace::Refused => temp.persist_noclobber(path),
    };
    persisted.map_err(|e| {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            KeyError::Exists(path.to_owned())
        } else {
            KeyError::io(path, &e.error)
        }
    })?;
    // Makes the rename itself durable; not every platform can open a
    // directory, and the file's content is already synced.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| KeyError::io(dir, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    const API_KEY: &str = "sk-test-0123456789";

    fn secret(text: &str) -> SecretString {
        SecretString::from(text)
    }

    fn binding(provider: &str) -> Binding<'_> {
        Binding {
            agent_id: 7,
            provider,
            base_url: None,
        }
    }

    fn at<'a>(provider: &'a str, base_url: &'a str) -> Binding<'a> {
        Binding {
            agent_id: 7,
            provider,
            base_url: Some(base_url),
        }
    }

    /// Written by the `v1` code (an independent AES-GCM implementation
    /// reproduced it): `API_KEY_V1` for agent 1 and provider `openai` under
    /// `V1_KEY` (base64 of the 32 ASCII bytes
    /// `llmhost-v1-fixture-key-32-bytes!`).
    const V1_KEY: &str = "bGxtaG9zdC12MS1maXh0dXJlLWtleS0zMi1ieXRlcyE=";
    const V1_VALUE: &str = "llmhost:v1:ka2a8fd30:AAECAwQFBgcICQoLIGQGGTQ0xzd2B8gDq/5KRtv2ECwNe29oRWai7Ymn1WI9KZi9elcbcaM2qTGNjBp6m1DN";
    const API_KEY_V1: &str = "sk-RECOGNISABLE-test-key-0123456789";

    fn decode_payload(stored: &str) -> (String, Vec<u8>) {
        let (head, payload) = stored.rsplit_once(':').unwrap();
        (head.to_owned(), STANDARD.decode(payload).unwrap())
    }

    #[test]
    fn round_trip_and_stored_format() {
        let keyring = Keyring::new(EncryptionKey::generate());
        let stored = keyring
            .encrypt(&secret(API_KEY), &binding("openai"))
            .unwrap();
        let id = keyring.active().id();
        assert!(stored.starts_with(&format!("llmhost:v2:{id}:")));
        assert_eq!(Keyring::key_id_of(&stored).unwrap(), id);
        assert!(!stored.contains(API_KEY));
        let (_, payload) = decode_payload(&stored);
        assert_eq!(payload.len(), NONCE_LEN + API_KEY.len() + TAG_LEN);
        let back = keyring.decrypt(&stored, &binding("openai")).unwrap();
        assert_eq!(back.expose_secret(), API_KEY);
    }

    #[test]
    fn same_plaintext_encrypts_differently() {
        let keyring = Keyring::new(EncryptionKey::generate());
        let a = keyring
            .encrypt(&secret(API_KEY), &binding("openai"))
            .unwrap();
        let b = keyring
            .encrypt(&secret(API_KEY), &binding("openai"))
            .unwrap();
        assert_ne!(a, b);
        assert_ne!(
            decode_payload(&a).1[..NONCE_LEN],
            decode_payload(&b).1[..NONCE_LEN]
        );
    }

    #[test]
    fn value_moved_to_another_row_fails_authentication() {
        let keyring = Keyring::new(EncryptionKey::generate());
        let stored = keyring
            .encrypt(&secret(API_KEY), &binding("openai"))
            .unwrap();
        let id = keyring.active().id().to_owned();
        let others = [
            Binding {
                agent_id: 8,
                provider: "openai",
                base_url: None,
            },
            Binding {
                agent_id: 7,
                provider: "anthropic",
                base_url: None,
            },
            Binding {
                agent_id: 71,
                provider: "openai",
                base_url: None,
            },
            at("openai", "https://evil.example"),
            at("openai", ""),
        ];
        for other in others {
            let err = keyring.decrypt(&stored, &other).unwrap_err();
            assert_eq!(err, CryptoError::Authentication { key_id: id.clone() });
            assert_eq!(err.kind(), "decryption_failed");
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let keyring = Keyring::new(EncryptionKey::generate());
        let stored = keyring
            .encrypt(&secret(API_KEY), &binding("openai"))
            .unwrap();
        let (head, payload) = decode_payload(&stored);
        for bit in 0..payload.len() * 8 {
            let mut altered = payload.clone();
            altered[bit / 8] ^= 1 << (bit % 8);
            let altered = format!("{head}:{}", STANDARD.encode(&altered));
            let err = keyring.decrypt(&altered, &binding("openai")).unwrap_err();
            assert!(
                matches!(err, CryptoError::Authentication { .. }),
                "bit {bit}: {err}"
            );
        }
    }

    #[test]
    fn malformed_and_unsupported_values() {
        let keyring = Keyring::new(EncryptionKey::generate());
        let id = keyring.active().id().to_owned();
        let short = STANDARD.encode([0u8; NONCE_LEN + TAG_LEN - 1]);
        for stored in [
            API_KEY.to_owned(),
            "llmhost:v1".to_owned(),
            format!("llmhost:v1:{id}:not base64!"),
            format!("llmhost:v1:{id}:{short}"),
            format!("llmhost:{API_KEY}:{id}:AAAA"),
        ] {
            let err = keyring.decrypt(&stored, &binding("openai")).unwrap_err();
            assert_eq!(err, CryptoError::Malformed, "{stored}");
            assert_eq!(err.kind(), "malformed_ciphertext");
            assert!(!err.to_string().contains(API_KEY));
        }
        let err = keyring
            .decrypt(&format!("llmhost:v3:{id}:AAAA"), &binding("openai"))
            .unwrap_err();
        assert_eq!(err, CryptoError::UnsupportedVersion("v3".to_owned()));
    }

    #[test]
    fn a_key_only_decrypts_for_the_base_url_it_was_stored_for() {
        let keyring = Keyring::new(EncryptionKey::generate());
        let id = keyring.active().id().to_owned();
        let here = "http://127.0.0.1:8089/openai/v1";
        let stored = keyring
            .encrypt(&secret(API_KEY), &at("openai", here))
            .unwrap();
        let back = keyring.decrypt(&stored, &at("openai", here)).unwrap();
        assert_eq!(back.expose_secret(), API_KEY);
        for other in [
            binding("openai"),
            at("openai", "http://127.0.0.1:9999/openai/v1"),
            at("openai", "http://127.0.0.1:8089/openai/v1/"),
            at("openai", ""),
            at("claude", here),
        ] {
            let err = keyring.decrypt(&stored, &other).unwrap_err();
            assert_eq!(err, CryptoError::Authentication { key_id: id.clone() });
            assert!(!err.to_string().contains(API_KEY));
        }
        // And a key stored for the provider's default is not sent anywhere
        // else either; "no base URL" is not the empty URL.
        let default = keyring
            .encrypt(&secret(API_KEY), &binding("openai"))
            .unwrap();
        for other in [at("openai", here), at("openai", "")] {
            let err = keyring.decrypt(&default, &other).unwrap_err();
            assert_eq!(err, CryptoError::Authentication { key_id: id.clone() });
        }
        // Length prefixes keep fields apart: a provider and URL that
        // concatenate to the same bytes are different bindings.
        let split = keyring
            .encrypt(&secret(API_KEY), &at("open", "ai"))
            .unwrap();
        assert!(keyring.decrypt(&split, &at("opena", "i")).is_err());
    }

    #[test]
    fn v1_values_decrypt_only_without_a_base_url() {
        let keyring = Keyring::new(EncryptionKey::from_base64(V1_KEY).unwrap());
        let v1 = |base_url| Binding {
            agent_id: 1,
            provider: "openai",
            base_url,
        };
        assert_eq!(Keyring::key_id_of(V1_VALUE).unwrap(), keyring.active().id());
        let back = keyring.decrypt(V1_VALUE, &v1(None)).unwrap();
        assert_eq!(back.expose_secret(), API_KEY_V1);

        // A base URL set on a v1 row (by anyone who can write the
        // database) makes the value unusable, not redirected.
        let err = keyring
            .decrypt(V1_VALUE, &v1(Some("http://127.0.0.1:9/steal")))
            .unwrap_err();
        assert!(matches!(err, CryptoError::LegacyUnbound { .. }), "{err}");
        assert_eq!(err.kind(), "decryption_failed");
        assert!(err.to_string().contains("--api-key"), "{err}");
        assert!(!err.to_string().contains(API_KEY_V1));

        // v1 keeps its agent and provider binding.
        let moved = Binding {
            agent_id: 2,
            ..v1(None)
        };
        assert!(matches!(
            keyring.decrypt(V1_VALUE, &moved),
            Err(CryptoError::Authentication { .. })
        ));
    }

    #[test]
    fn relabelling_the_format_version_does_not_help() {
        let keyring = Keyring::new(EncryptionKey::generate());
        // v2 relabelled v1 would skip the base URL check if the tag did
        // not cover the format: the domains differ, so it fails.
        let v2 = keyring
            .encrypt(&secret(API_KEY), &binding("openai"))
            .unwrap();
        let as_v1 = v2.replacen("llmhost:v2:", "llmhost:v1:", 1);
        assert!(matches!(
            keyring.decrypt(&as_v1, &binding("openai")),
            Err(CryptoError::Authentication { .. })
        ));
        let v1_keyring = Keyring::new(EncryptionKey::from_base64(V1_KEY).unwrap());
        let as_v2 = V1_VALUE.replacen("llmhost:v1:", "llmhost:v2:", 1);
        let binding = Binding {
            agent_id: 1,
            provider: "openai",
            base_url: None,
        };
        assert!(matches!(
            v1_keyring.decrypt(&as_v2, &binding),
            Err(CryptoError::Authentication { .. })
        ));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = EncryptionKey::generate();
        let new = EncryptionKey::generate();
        let old_value = Keyring::new(old.clone())
            .encrypt(&secret(API_KEY), &binding("openai"))
            .unwrap();

        let err = Keyring::new(new.clone())
            .decrypt(&old_value, &binding("openai"))
            .unwrap_err();
        assert_eq!(
            err,
            CryptoError::UnknownKey {
                key_id: old.id().to_owned()
            }
        );
        assert_eq!(err.kind(), "unknown_key");
        assert!(err.to_string().contains("LLMHOST_ENCRYPTION_KEY"));

        let rotated =
            Keyring::new(new.clone()).with_previous([old.clone(), new.clone(), old.clone()]);
        assert_eq!(
            rotated.keys().map(EncryptionKey::id).collect::<Vec<_>>(),
            [new.id(), old.id()]
        );
        let back = rotated.decrypt(&old_value, &binding("openai")).unwrap();
        assert_eq!(back.expose_secret(), API_KEY);
        let new_value = rotated
            .encrypt(&secret(API_KEY), &binding("openai"))
            .unwrap();
        assert_eq!(Keyring::key_id_of(&new_value).unwrap(), new.id());
    }

    #[test]
    fn key_text_round_trips_and_bad_text_is_not_echoed() {
        let key = EncryptionKey::generate();
        let text = key.to_base64();
        let parsed = EncryptionKey::from_base64(&format!("  {}\n", text.expose_secret())).unwrap();
        assert_eq!(parsed.id(), key.id());
        assert!(key.id().starts_with('k') && key.id().len() == 9);
        let unpadded = text
            .expose_secret()
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        assert_eq!(
            EncryptionKey::from_base64(&unpadded).unwrap().id(),
            key.id()
        );

        for (input, expected) in [
            (STANDARD.encode([7u8; 31]), "got 31 bytes"),
            (STANDARD.encode([7u8; 33]), "got 33 bytes"),
            ("this is not base64 at all!".to_owned(), "not valid base64"),
        ] {
            let message = EncryptionKey::from_base64(&input).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("expected base64 of 32 bytes"), "{message}");
            assert!(!message.contains(&input), "{message}");
        }
    }

    #[test]
    fn debug_shows_only_key_ids() {
        let key = EncryptionKey::generate();
        let text = key.to_base64();
        let keyring = Keyring::new(key.clone()).with_previous([EncryptionKey::generate()]);
        for debug in [format!("{key:?}"), format!("{keyring:?}")] {
            assert!(debug.contains(key.id()));
            assert!(!debug.contains(text.expose_secret()), "{debug}");
        }
        assert_eq!(
            format!("{key:?}"),
            format!("EncryptionKey {{ id: {:?} }}", key.id())
        );
    }

    #[test]
    fn key_file_is_created_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/llmhost/keys");
        let key = create_key_file(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let parent_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(parent_mode & 0o777, 0o700);
        let read = read_key_file(&path).unwrap();
        assert_eq!(
            read.iter().map(EncryptionKey::id).collect::<Vec<_>>(),
            [key.id()]
        );
        assert!(fs::read_to_string(&path).unwrap().starts_with('#'));

        assert!(matches!(create_key_file(&path), Err(KeyError::Exists(p)) if p == path));
        assert_eq!(read_key_file(&path).unwrap()[0].id(), key.id());
    }

    #[test]
    fn key_file_keeps_key_order_and_skips_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let keys = [EncryptionKey::generate(), EncryptionKey::generate()];
        write_key_file(&path, &keys).unwrap();
        let ids =
            |keys: &[EncryptionKey]| keys.iter().map(|k| k.id().to_owned()).collect::<Vec<_>>();
        assert_eq!(ids(&read_key_file(&path).unwrap()), ids(&keys));

        let swapped = [keys[1].clone(), keys[0].clone()];
        write_key_file(&path, &swapped).unwrap();
        assert_eq!(ids(&read_key_file(&path).unwrap()), ids(&swapped));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn bad_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        write_key_file(&path, &[EncryptionKey::generate()]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key_file(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", path.display()))
        );

        fs::write(&path, "# only a comment\n\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(read_key_file(&path), Err(KeyError::Empty(_))));

        fs::write(&path, "# header\nAAAA\n").unwrap();
        let message = read_key_file(&path).unwrap_err().to_string();
        assert!(
            message.contains(&format!("{}:2", path.display())),
            "{message}"
        );
        assert!(!message.contains("AAAA"), "{message}");
    }

    fn env_of(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn b64(key: &EncryptionKey) -> String {
        key.to_base64().expose_secret().to_owned()
    }

    #[test]
    fn load_keyring_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let (main, alt, old) = (
            EncryptionKey::generate(),
            EncryptionKey::generate(),
            EncryptionKey::generate(),
        );

        assert!(load_keyring(&env_of(&[]), &path).unwrap().is_none());
        assert!(
            load_keyring(&env_of(&[(KEY_ENV, " ".to_owned())]), &path)
                .unwrap()
                .is_none()
        );
        assert!(load_keyring(&env_of(&[(PREVIOUS_KEYS_ENV, b64(&old))]), &path).is_err());

        let file_keys = [EncryptionKey::generate(), EncryptionKey::generate()];
        write_key_file(&path, &file_keys).unwrap();
        let (keyring, source) = load_keyring(&env_of(&[]), &path).unwrap().unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        assert_eq!(keyring.active().id(), file_keys[0].id());
        assert_eq!(keyring.keys().nth(1).unwrap().id(), file_keys[1].id());

        let env = env_of(&[(KEY_ENV_ALT, b64(&alt)), (KEY_ENV, String::new())]);
        let (keyring, source) = load_keyring(&env, &path).unwrap().unwrap();
        assert_eq!(
            (keyring.active().id(), source),
            (alt.id(), KeySource::Env(KEY_ENV_ALT))
        );
        assert_eq!(keyring.keys().count(), 1);

        let env = env_of(&[
            (KEY_ENV, b64(&main)),
            (KEY_ENV_ALT, b64(&alt)),
            (
                PREVIOUS_KEYS_ENV,
                format!(" {} ,,{}", b64(&old), b64(&main)),
            ),
        ]);
        let (keyring, source) = load_keyring(&env, &path).unwrap().unwrap();
        assert_eq!(source, KeySource::Env(KEY_ENV));
        assert_eq!(
            keyring.keys().map(EncryptionKey::id).collect::<Vec<_>>(),
            [main.id(), old.id()]
        );

        let env = env_of(&[(KEY_ENV, "short".to_owned())]);
        let message = load_keyring(&env, &path).unwrap_err().to_string();
        assert!(
            message.contains(KEY_ENV) && !message.contains("short"),
            "{message}"
        );
    }
}
