//! ZooKeeper access control for a chain: members authenticate with a digest
//! identity, and the chain node and every member node may be changed only
//! by that identity; everyone may read them (clients find head and tail by
//! reading). Without an identity (no peer secret: loopback-only mode) the
//! nodes stay open to all, as before.

use log::{info, warn};
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use zookeeper::{Acl, Permission, ZkError, ZooKeeper};

/// A member's ZooKeeper digest identity (derived from the peer secret by
/// whoever builds the `ChainConfig`).
#[derive(Clone, PartialEq, Eq)]
pub struct ZkIdentity {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for ZkIdentity {
    /// Never prints the password.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "ZkIdentity {{ user: {:?}, password: <hidden> }}", self.user)
    }
}

impl ZkIdentity {
    /// What `add_auth("digest", ...)` sends: `user:password`.
    fn credentials(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    /// The ACL id ZooKeeper derives from the credentials:
    /// `user:base64(sha1(user:password))`.
    pub fn digest_id(&self) -> String {
        let hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, self.credentials().as_bytes());
        format!("{}:{}", self.user, base64(hash.as_ref()))
    }
}

/// Authenticates the connection; needed after every (re)connection, since
/// ZooKeeper ties authentication to the connection and the crate does not
/// send it again by itself.
pub fn authenticate(zk: &ZooKeeper, identity: &ZkIdentity) -> Result<(), ZkError> {
    zk.add_auth("digest", identity.credentials().into_bytes())
}

/// The ACL for the chain node and member nodes.
pub fn chain_acl(identity: Option<&ZkIdentity>) -> Vec<Acl> {
    match identity {
        None => Acl::open_unsafe().clone(),
        Some(identity) => {
            vec![
                Acl::new(Permission::ALL, "digest", identity.digest_id()),
                Acl::new(Permission::READ, "world", "anyone"),
            ]
        }
    }
}

/// Whether `acl` lets anyone but the identity change a node.
fn lets_others_change(acl: &[Acl], identity: &ZkIdentity) -> bool {
    let own = identity.digest_id();
    acl.iter().any(|entry| !(entry.scheme == "digest" && entry.id == own) && entry.perms != Permission::READ)
}

/// Creates the chain node (its parents open, as ZooKeeper paths are
/// shared) with the chain ACL. A chain node left open by an older run gets
/// the ACL set when we may, and a warning when we may not.
pub fn ensure_chain_node(
    zk: &ZooKeeper,
    chain_path: &str,
    identity: Option<&ZkIdentity>,
) -> Result<(), ZkError> {
    use zookeeper::{CreateMode, ZooKeeperExt};
    if let Some((parent, _)) = chain_path.rsplit_once('/')
        && !parent.is_empty()
    {
        zk.ensure_path(parent)?;
    }
    match zk.create(chain_path, Vec::new(), chain_acl(identity), CreateMode::Persistent) {
        Ok(_) | Err(ZkError::NodeExists) => {}
        Err(error) => return Err(error),
    }
    let Some(identity) = identity else {
        return Ok(());
    };
    let (acl, stat) = zk.get_acl(chain_path)?;
    if !lets_others_change(&acl, identity) {
        return Ok(());
    }
    match zk.set_acl(chain_path, chain_acl(Some(identity)), Some(stat.aversion)) {
        Ok(_) => info!("{chain_path} was open to all: set its ACL to the chain's digest identity"),
        Err(error) => warn!(
            "{chain_path} lets others than the chain's digest identity change it ({}) and its ACL \
             cannot be set ({error:?}): anyone with that access can change the chain",
            acl.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ),
    }
    Ok(())
}

/// Standard base64 (RFC 4648, with padding), as ZooKeeper writes digests.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |group, (index, &byte)| group | (byte as u32) << (16 - 8 * index));
        for index in 0..4 {
            if index <= chunk.len() {
                text.push(ALPHABET[(group >> (18 - 6 * index) & 0x3f) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn digest_id_is_what_zookeeper_computes() {
        // From ZooKeeper's DigestAuthenticationProvider.generateDigest("super:test")
        // (its documentation's example).
        let identity = ZkIdentity { user: "super".into(), password: "test".into() };
        assert_eq!(identity.digest_id(), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn passwords_are_never_shown() {
        let identity = ZkIdentity { user: "chain".into(), password: "s3cret".into() };
        assert!(!format!("{identity:?}").contains("s3cret"));
    }

    #[test]
    fn the_chain_acl_lets_only_the_identity_change_anything() {
        let identity = ZkIdentity { user: "u".into(), password: "p".into() };
        let acl = chain_acl(Some(&identity));
        assert!(!lets_others_change(&acl, &identity));
        assert!(acl.contains(&Acl::new(Permission::READ, "world", "anyone")));
        assert!(lets_others_change(Acl::open_unsafe(), &identity));
        assert_eq!(chain_acl(None), Acl::open_unsafe().clone());
    }
}
