//! Secrets read from files (`--peer-secret-file`, `--client-secret-file`,
//! `--secret-file`) and the keys derived from them, one per purpose.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use log::warn;
use ring::hmac;

/// Shorter secrets are refused: they could be guessed offline from one
/// recorded handshake.
pub const SECRET_BYTES_MIN: usize = 16;

/// Secret files are small; a larger file is a mistake (a wrong path).
const SECRET_FILE_BYTES_MAX: u64 = 4096;

/// Labels that separate the keys derived from one secret: a key for one
/// purpose proves nothing for another.
const PEER_KEY_LABEL: &[u8] = b"chaintable peer key v1";
const CLIENT_KEY_LABEL: &[u8] = b"chaintable client key v1";
const ZOOKEEPER_DIGEST_LABEL: &[u8] = b"chaintable zookeeper digest v1";

/// The ZooKeeper digest user of chain members.
pub const ZOOKEEPER_DIGEST_USER: &str = "chaintable";

/// A shared secret: the file's bytes without surrounding whitespace.
pub struct Secret {
    bytes: Vec<u8>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads a secret file. Warns when others than its owner may read it.
    pub fn load(path: &Path) -> Result<Secret, String> {
        let shown = path.display();
        let metadata =
            fs::metadata(path).map_err(|error| format!("cannot read secret file {shown}: {error}"))?;
        if metadata.len() > SECRET_FILE_BYTES_MAX {
            return Err(format!(
                "secret file {shown} has {} bytes; a secret file holds one secret of at most \
                 {SECRET_FILE_BYTES_MAX} bytes",
                metadata.len()
            ));
        }
        if metadata.permissions().mode() & 0o077 != 0 {
            warn!("secret file {shown} may be read by other users; `chmod 600 {shown}`");
        }
        let bytes = fs::read(path).map_err(|error| format!("cannot read secret file {shown}: {error}"))?;
        Secret::from_bytes(&bytes).map_err(|reason| format!("secret file {shown}: {reason}"))
    }

    /// The secret in `bytes`, trimmed of surrounding whitespace (a newline
    /// an editor added is not part of it).
    pub fn from_bytes(bytes: &[u8]) -> Result<Secret, String> {
        let bytes = bytes.trim_ascii();
        if bytes.len() < SECRET_BYTES_MIN {
            return Err(format!(
                "the secret has {} bytes, at least {SECRET_BYTES_MIN} are needed (e.g. `head -c 32 /dev/urandom \
                 | base64`)",
                bytes.len()
            ));
        }
        Ok(Secret { bytes: bytes.to_vec() })
    }

    /// The key chain members prove to each other on replication links.
    pub fn peer_key(&self) -> AuthKey {
        self.derive(PEER_KEY_LABEL)
    }

    /// The key clients prove to servers.
    pub fn client_key(&self) -> AuthKey {
        self.derive(CLIENT_KEY_LABEL)
    }

    /// The password of the members' ZooKeeper digest identity (user
    /// [`ZOOKEEPER_DIGEST_USER`]): derived, so the secret itself is never
    /// given to ZooKeeper.
    pub fn zookeeper_password(&self) -> String {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.bytes), ZOOKEEPER_DIGEST_LABEL);
        tag.as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// True when both are the same secret: peers and clients must not
    /// share one, or every client could pose as a peer.
    pub fn same_as(&self, other: &Secret) -> bool {
        // Two local files compared once at start: no timing to hide.
        self.bytes == other.bytes
    }

    fn derive(&self, label: &[u8]) -> AuthKey {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.bytes), label);
        AuthKey::from_bytes(tag.as_ref())
    }
}

/// An HMAC-SHA-256 key for one purpose.
#[derive(Clone)]
pub struct AuthKey {
    key: hmac::Key,
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(..)")
    }
}

impl AuthKey {
    pub(crate) fn from_bytes(bytes: &[u8]) -> AuthKey {
        AuthKey { key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// The HMAC of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> hmac::Tag {
        hmac::sign(&self.key, &framed(parts))
    }

    /// Whether `tag` is the HMAC of `parts` (ring compares in constant time).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        hmac::verify(&self.key, &framed(parts), tag).is_ok()
    }

    /// A key for a narrower purpose (one link, one direction).
    pub fn derive(&self, parts: &[&[u8]]) -> AuthKey {
        AuthKey::from_bytes(self.tag(parts).as_ref())
    }
}

/// `parts`, each prefixed with its length, so no two different lists of
/// parts are the same bytes.
fn framed(parts: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(parts.iter().map(|part| part.len() + 8).sum());
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret {
        Secret::from_bytes(text.as_bytes()).unwrap()
    }

    #[test]
    fn short_secrets_are_refused_and_whitespace_is_trimmed() {
        assert!(Secret::from_bytes(b"short\n").unwrap_err().contains("at least 16"));
        assert!(Secret::from_bytes(b"  0123456789abcdef\n").unwrap().same_as(&secret("0123456789abcdef")));
    }

    #[test]
    fn keys_differ_by_purpose() {
        let one = secret("0123456789abcdef");
        let parts: &[&[u8]] = &[b"nonce", b"other"];
        let peer = one.peer_key().tag(parts);
        assert!(!one.client_key().verify(parts, peer.as_ref()), "a client key must not pass as a peer key");
        assert!(one.peer_key().verify(parts, peer.as_ref()));
        assert_ne!(one.zookeeper_password(), secret("0123456789abcdeX").zookeeper_password());
    }

    #[test]
    fn parts_are_delimited() {
        let key = secret("0123456789abcdef").peer_key();
        let tag = key.tag(&[b"ab", b"c"]);
        assert!(!key.verify(&[b"a", b"bc"], tag.as_ref()));
    }
}
