//! CURVE keypairs on disk and public-key fingerprints.
//!
//! Keys are kept as Z85 text (40 characters), the form libzmq takes and the form a user can
//! read with `cat`: `NAME.pub` holds the public key, `NAME.key` the secret one (both mode 0600,
//! as all private state: [`crate::private`]).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::private;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{what}: not a CURVE key (expected 40 Z85 characters)")]
    Malformed { what: String },
    #[error("cannot generate a CURVE keypair: {0} (is libzmq built with libsodium?)")]
    Generate(zmq::Error),
}

/// A CURVE public key in Z85 form, checked to decode to 32 bytes.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey(String);

impl PublicKey {
    pub fn parse(z85: &str) -> Result<Self, KeyError> {
        let z85 = z85.trim();
        match z85_decode(z85) {
            Some(raw) if raw.len() == 32 => Ok(Self(z85.to_string())),
            _ => Err(KeyError::Malformed { what: format!("{z85:?}") }),
        }
    }

    pub fn z85(&self) -> &str {
        &self.0
    }

    /// The 32 raw key bytes.
    pub fn raw(&self) -> Vec<u8> {
        z85_decode(&self.0).expect("checked at construction")
    }

    /// SHA-256 of the raw key, as colon-separated hex pairs (like `salt-key -F`).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.raw());
        let hex = hex::encode(digest);
        let pairs: Vec<&str> = (0..hex.len()).step_by(2).map(|i| &hex[i..i + 2]).collect();
        pairs.join(":")
    }

    /// The first 8 hex digits of the fingerprint, for routing ids and short displays.
    pub fn short_fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.raw())[..4])
    }

    /// Reads a public key from a file holding its Z85 form.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.into(), source })?;
        Self::parse(&text).map_err(|_| KeyError::Malformed { what: path.display().to_string() })
    }
}

impl TryFrom<String> for PublicKey {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        Self::parse(&s)
    }
}

impl From<PublicKey> for String {
    fn from(k: PublicKey) -> String {
        k.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short_fingerprint())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CURVE keypair. The secret key never leaves this struct except to configure a socket.
#[derive(Clone)]
pub struct KeyPair {
    pub public: PublicKey,
    secret: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

/// Z85 (ZeroMQ's base-85, RFC 32) of `text`, or None if it is not Z85. Decoded here rather
/// than with `zmq::z85_decode`, which leaks a copy of its input on every call (the master
/// parses the key of every message it receives), and accepts characters outside the alphabet.
fn z85_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 85] =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    const DIGITS: [u8; 256] = {
        let mut digits = [u8::MAX; 256];
        let mut i = 0;
        while i < ALPHABET.len() {
            digits[ALPHABET[i] as usize] = i as u8;
            i += 1;
        }
        digits
    };
    if !text.len().is_multiple_of(5) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 5 * 4);
    for chunk in text.as_bytes().chunks(5) {
        let mut value: u64 = 0;
        for &c in chunk {
            let digit = DIGITS[c as usize];
            if digit == u8::MAX {
                return None;
            }
            value = value * 85 + u64::from(digit);
        }
        out.extend_from_slice(&u32::try_from(value).ok()?.to_be_bytes());
    }
    Some(out)
}

impl KeyPair {
    pub fn generate() -> Result<Self, KeyError> {
        let pair = zmq::CurveKeyPair::new().map_err(KeyError::Generate)?;
        let public = zmq::z85_encode(&pair.public_key).expect("32 bytes encode");
        let secret = zmq::z85_encode(&pair.secret_key).expect("32 bytes encode");
        Ok(Self { public: PublicKey(public), secret })
    }

    pub fn secret_z85(&self) -> &str {
        &self.secret
    }

    pub fn secret_raw(&self) -> Vec<u8> {
        z85_decode(&self.secret).expect("checked at construction")
    }

    /// Loads `dir/NAME.pub` + `dir/NAME.key`, or creates both (the secret with mode 0600)
    /// when neither exists. Returns the pair and whether it was created.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<(Self, bool), KeyError> {
        let pub_path = dir.join(format!("{name}.pub"));
        let key_path = dir.join(format!("{name}.key"));
        if key_path.exists() {
            let public = PublicKey::read(&pub_path)?;
            let secret = fs::read_to_string(&key_path)
                .map_err(|source| KeyError::Io { path: key_path.clone(), source })?;
            let secret = secret.trim().to_string();
            match z85_decode(&secret) {
                Some(raw) if raw.len() == 32 => {}
                _ => return Err(KeyError::Malformed { what: key_path.display().to_string() }),
            }
            return Ok((Self { public, secret }, false));
        }
        let pair = Self::generate()?;
        pair.write(dir, name)?;
        Ok((pair, true))
    }

    /// Writes `dir/NAME.pub` and `dir/NAME.key` (both 0600), creating `dir` (0700).
    pub fn write(&self, dir: &Path, name: &str) -> Result<(), KeyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        private::create_dir(dir).map_err(io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(private::DIR_MODE)).map_err(io(dir))?;
        let key_path = dir.join(format!("{name}.key"));
        private::write_atomic(&key_path, format!("{}\n", self.secret).as_bytes()).map_err(io(&key_path))?;
        let pub_path = dir.join(format!("{name}.pub"));
        private::write_atomic(&pub_path, format!("{}\n", self.public).as_bytes()).map_err(io(&pub_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z85_decodes_as_libzmq_encodes_and_refuses_what_is_not_z85() {
        // RFC 32's example
        assert_eq!(z85_decode("HelloWorld").unwrap(), [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]);
        for _ in 0..20 {
            let pair = zmq::CurveKeyPair::new().unwrap();
            let text = zmq::z85_encode(&pair.public_key).unwrap();
            assert_eq!(z85_decode(&text).unwrap(), pair.public_key);
        }
        for bad in ["Hell", "HelloWorl", "Hello World", "Hello\"orld", "%%%%%"] {
            assert_eq!(z85_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_linked_libzmq_has_curve() {
        // the libzmq wire/build.rs makes; zmq-sys's own build (run when .cargo/config.toml
        // is not applied) has none, and no minion could ever connect
        assert_eq!(zmq::has("curve"), Some(true));
        assert_eq!(zmq::version(), (4, 3, 4));
    }

    #[test]
    fn keys_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = KeyPair::load_or_create(dir.path(), "minion").unwrap();
        assert!(created);
        let (b, created) = KeyPair::load_or_create(dir.path(), "minion").unwrap();
        assert!(!created);
        assert_eq!(a.public, b.public);
        assert_eq!(a.secret_z85(), b.secret_z85());
        let mode = fs::metadata(dir.path().join("minion.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn fingerprints() {
        let k = KeyPair::generate().unwrap().public;
        let fp = k.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.replace(':', "").starts_with(&k.short_fingerprint()));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(PublicKey::parse("short").is_err());
        assert!(PublicKey::parse(&",".repeat(40)).is_err());
    }
}
