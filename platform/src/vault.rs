//! Personal data out of the clear (crypto-shredding).
//!
//! Every data subject (a user) has a data key of its own. Personal values are sealed with it
//! (AES-256-GCM, the subject's id as associated data, so a sealed value cannot be moved to
//! another subject). Data keys are kept in a compacted key topic, each wrapped (sealed) with
//! the master key, which never enters the log: it comes from the environment or a file.
//! Erasing a subject deletes its data key (a tombstone, then compaction), after which every
//! copy of its sealed values, in every topic, backup and export, is unreadable.
//!
//! The master key also derives the key of the [`EmailIndex`], the keyed hash that stands in
//! for an email wherever an identifier is needed (the users topic's record key).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::task::JoinHandle;

use crate::log::{LogConfig, LogError, LogProducer, TopicReader, TopicSpec, ensure_topics};

/// Format version of sealed values and wrapped keys.
const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
/// The key topic's record that proves which master key wraps its keys (no user id is this).
const CHECK_SUBJECT: &str = "__master-key-check__";
/// Name of the key topic under the deployment's namespace.
pub const KEY_TOPIC: &str = "subject-keys";

/// What can go wrong with keys and sealed values.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key is not 32 bytes in hex or base64.
    #[error("the master key must be 32 bytes, as 64 hex digits or base64")]
    MasterKeyFormat,
    /// A sealed value or wrapped key that this key did not seal, or that was altered.
    #[error("the value cannot be opened with this key (another key, another subject, or altered)")]
    CannotOpen,
    /// The key topic's data keys were wrapped by another master key.
    #[error("the key topic's data keys were wrapped by another master key than the one configured")]
    WrongMasterKey,
    /// The key topic could not be read or written.
    #[error("the key topic failed")]
    Log(#[from] LogError),
}

type KeyBytes = [u8; 32];

fn cipher(key: &KeyBytes) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))
}

fn random_key() -> KeyBytes {
    let mut key = [0u8; 32];
    key.copy_from_slice(&Aes256Gcm::generate_key(&mut OsRng));
    key
}

fn seal_with(key: &KeyBytes, subject: &str, plaintext: &[u8]) -> Vec<u8> {
    let cipher = cipher(key);
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext = cipher
        .encrypt(&nonce, Payload { msg: plaintext, aad: subject.as_bytes() })
        .expect("AES-GCM encryption of a bounded message cannot fail");
    let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    sealed.push(SEALED_VERSION);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    sealed
}

fn open_with(key: &KeyBytes, subject: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < 1 + NONCE_LEN || sealed[0] != SEALED_VERSION {
        return Err(VaultError::CannotOpen);
    }
    let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| VaultError::CannotOpen)?;
    cipher(key)
        .decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: subject.as_bytes() })
        .map_err(|_| VaultError::CannotOpen)
}

/// The key that wraps every data key and derives the email index's key.
#[derive(Clone)]
pub struct MasterKey(KeyBytes);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A master key from 64 hex digits or the base64 of 32 bytes (surrounding whitespace,
    /// such as a file's last newline, is ignored).
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        use base64::Engine;
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16)).collect::<Result<Vec<u8>, _>>().ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        match bytes {
            Some(bytes) => bytes.try_into().map(Self).map_err(|_| VaultError::MasterKeyFormat),
            None => Err(VaultError::MasterKeyFormat),
        }
    }

    /// A fresh random key, as 64 hex digits (for a generated key file).
    pub fn generate_hex() -> String {
        random_key().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A key for one purpose, derived with HKDF-SHA256, so the master key itself only ever
    /// wraps data keys.
    fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        Hkdf::<Sha256>::new(None, &self.0).expand(purpose, &mut out).expect("32 bytes is a valid HKDF length");
        out
    }

    fn wrap(&self, subject: &str, key: &DataKey) -> Vec<u8> {
        seal_with(&self.0, subject, &key.0)
    }

    fn unwrap(&self, subject: &str, wrapped: &[u8]) -> Result<DataKey, VaultError> {
        let bytes = open_with(&self.0, subject, wrapped)?;
        bytes.try_into().map(DataKey).map_err(|_| VaultError::CannotOpen)
    }
}

/// A keyed hash of an identifier that must not appear in the clear (a lower-cased email):
/// the same input always gives the same key, and without the master key no one can compute
/// or reverse it.
#[derive(Clone)]
pub struct EmailIndex {
    key: [u8; 32],
}

impl EmailIndex {
    /// The index of a deployment's master key.
    pub fn new(master: &MasterKey) -> Self {
        Self { key: master.derive(b"ticketing/email-index/v1") }
    }

    /// The key standing for `email` (already normalised): 64 hex digits.
    pub fn key_of(&self, email: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(email.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One subject's data key.
#[derive(Clone)]
pub struct DataKey(KeyBytes);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Self {
        Self(random_key())
    }

    /// Seals `plaintext` for `subject`.
    pub fn seal(&self, subject: &str, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.0, subject, plaintext)
    }

    /// Opens what [`DataKey::seal`] sealed for `subject`.
    pub fn open(&self, subject: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        open_with(&self.0, subject, sealed)
    }
}

/// What the key topic says of a subject.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    /// Its data key.
    Active(DataKey),
    /// Its key was erased.
    Erased,
    /// No key is known (never had one, or its tombstone was compacted away too).
    Unknown,
}

/// The data keys of every subject, kept in a compacted topic and cached in memory from a tail
/// of it. The key topic's records: key = subject id, value = the data key wrapped by the
/// master key; a tombstone erases.
pub struct SubjectKeys {
    master: MasterKey,
    producer: LogProducer,
    topic: String,
    keys: Arc<RwLock<HashMap<String, Option<DataKey>>>>,
    caught_up: Arc<AtomicBool>,
    tail: JoinHandle<()>,
}

impl Drop for SubjectKeys {
    fn drop(&mut self) {
        self.tail.abort();
    }
}

impl SubjectKeys {
    /// The key topic of a deployment: compacted, with segments rolled hourly and a cleaner
    /// eager to run, so an erased key's record is gone from the broker's disks within hours;
    /// tombstones stay a day, so a reader that was away a while still sees the erasure.
    pub fn topic_spec(config: &LogConfig) -> TopicSpec {
        TopicSpec {
            name: config.topic(KEY_TOPIC),
            partitions: 1,
            compacted: true,
            config: vec![
                ("segment.ms", "3600000"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("min.compaction.lag.ms", "0"),
                ("delete.retention.ms", "86400000"),
            ],
        }
    }

    /// Creates the key topic if needed and reads it to its end.
    pub async fn open(config: &LogConfig, master: MasterKey) -> Result<Self, VaultError> {
        let spec = Self::topic_spec(config);
        ensure_topics(config, std::slice::from_ref(&spec)).await?;
        let reader = TopicReader::from_beginning(config, &spec.name)?;
        let keys = Arc::new(RwLock::new(HashMap::new()));
        let caught_up = Arc::new(AtomicBool::new(false));
        let tail = tokio::spawn(tail_keys(reader, master.clone(), keys.clone(), caught_up.clone()));
        let this = Self { master, producer: LogProducer::new(config)?, topic: spec.name, keys, caught_up, tail };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !this.caught_up.load(Ordering::Acquire) {
            if tokio::time::Instant::now() > deadline {
                return Err(LogError::Unavailable("the key topic was not read to its end within 30 s".into()).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first process to open the topic leaves a key wrapped by its master key: every
        // later one with another master key refuses to start, rather than take every user
        // for erased and wrap new keys no one else can read.
        let check = this.keys.read().expect("keys lock").get(CHECK_SUBJECT).map(Option::is_some);
        match check {
            Some(true) => {}
            Some(false) => return Err(VaultError::WrongMasterKey),
            None => {
                this.create(CHECK_SUBJECT).await?;
            }
        }
        Ok(this)
    }

    /// A new data key for `subject`, kept in the key topic before it is returned.
    pub async fn create(&self, subject: &str) -> Result<DataKey, VaultError> {
        let key = DataKey::generate();
        self.producer.append(&self.topic, subject.as_bytes(), &self.master.wrap(subject, &key), &[]).await?;
        self.keys.write().expect("keys lock").insert(subject.to_string(), Some(key.clone()));
        Ok(key)
    }

    /// The subject's key. A key written by another instance a moment ago may not have reached
    /// this one's tail yet: an unknown subject is waited for up to `wait`.
    pub async fn lookup(&self, subject: &str, wait: Duration) -> KeyLookup {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.keys.read().expect("keys lock").get(subject) {
                Some(Some(key)) => return KeyLookup::Active(key.clone()),
                Some(None) => return KeyLookup::Erased,
                None => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return KeyLookup::Unknown;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Erases the subject's key: a tombstone in the key topic, and gone from this cache.
    pub async fn erase(&self, subject: &str) -> Result<(), VaultError> {
        self.producer.append_tombstone(&self.topic, subject.as_bytes()).await?;
        self.keys.write().expect("keys lock").insert(subject.to_string(), None);
        Ok(())
    }
}

async fn tail_keys(
    reader: TopicReader,
    master: MasterKey,
    keys: Arc<RwLock<HashMap<String, Option<DataKey>>>>,
    caught_up: Arc<AtomicBool>,
) {
    let apply = |record: crate::log::LogRecord| {
        let Some(subject) = record.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else { return };
        let entry = match record.payload.as_deref() {
            None => None,
            Some(wrapped) => match master.unwrap(subject, wrapped) {
                Ok(key) => Some(key),
                Err(error) => {
                    // Another master key than the one that wrapped it: nothing of this subject
                    // can be read, which must not pass silently (the check subject stops start-up).
                    tracing::error!(message = "A data key cannot be unwrapped with this master key.", %subject, %error);
                    if subject == CHECK_SUBJECT {
                        keys.write().expect("keys lock").insert(subject.to_string(), None);
                    }
                    return;
                }
            },
        };
        keys.write().expect("keys lock").insert(subject.to_string(), entry);
    };
    loop {
        let ends = reader.end_offsets();
        match reader.read_until(&ends, apply).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(message = "Failed to read the key topic; retrying.", %error);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    caught_up.store(true, Ordering::Release);
    loop {
        match reader.next().await {
            Ok(record) => apply(record),
            Err(error) => {
                tracing::warn!(message = "Failed to read the key topic.", %error);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::parse(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_for_its_subject() {
        let key = DataKey::generate();
        let sealed = key.seal("u1", b"alice@example.com");
        assert!(!sealed.windows(5).any(|w| w == b"alice"), "no plaintext in the sealed bytes");
        assert_eq!(key.open("u1", &sealed).unwrap(), b"alice@example.com");
        assert!(key.open("u2", &sealed).is_err(), "another subject");
        assert!(DataKey::generate().open("u1", &sealed).is_err(), "another key");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open("u1", &altered).is_err(), "altered");
        assert!(key.open("u1", &[]).is_err());
        assert_ne!(key.seal("u1", b"x"), key.seal("u1", b"x"), "a fresh nonce each time");
    }

    #[test]
    fn data_keys_unwrap_only_with_the_master_key_that_wrapped_them() {
        let key = DataKey::generate();
        let wrapped = master().wrap("u1", &key);
        let unwrapped = master().unwrap("u1", &wrapped).unwrap();
        assert_eq!(unwrapped.open("u1", &key.seal("u1", b"v")).unwrap(), b"v");
        let other = MasterKey::parse(&"cd".repeat(32)).unwrap();
        assert!(other.unwrap("u1", &wrapped).is_err());
        assert!(master().unwrap("u2", &wrapped).is_err());
    }

    #[test]
    fn master_keys_parse_from_hex_or_base64_and_nothing_else() {
        assert!(MasterKey::parse(&MasterKey::generate_hex()).is_ok());
        assert!(MasterKey::parse(" AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").is_ok());
        for bad in ["", "abc", &"ab".repeat(31), &"zz".repeat(32), "AAAA"] {
            assert!(MasterKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_email_index_is_stable_keyed_and_reveals_nothing() {
        let index = EmailIndex::new(&master());
        let key = index.key_of("alice@example.com");
        assert_eq!(key, index.key_of("alice@example.com"));
        assert_eq!(key.len(), 64);
        assert!(!key.contains("alice"));
        assert_ne!(key, index.key_of("bob@example.com"));
        let other = EmailIndex::new(&MasterKey::parse(&"cd".repeat(32)).unwrap());
        assert_ne!(key, other.key_of("alice@example.com"));
    }
}
