//! Authenticated frames on a replication link without TLS: after the
//! handshake each frame carries an HMAC-SHA-256 tag over a per-direction
//! frame counter and its body, under a key for this link and direction
//! only. A third party on the network can then neither splice a frame in,
//! nor replay, reorder or drop one unnoticed: the next tag fails and the
//! link closes.

use super::secret::AuthKey;

/// Bytes of the tag after each sealed frame's body.
pub const TAG_BYTES: usize = 32;

/// One direction of a link: the key and the number of the next frame.
pub struct FrameSeal {
    key: AuthKey,
    counter: u64,
}

impl FrameSeal {
    pub fn new(key: AuthKey) -> FrameSeal {
        FrameSeal { key, counter: 0 }
    }

    /// The tag to send after `body`, the next frame's.
    pub fn seal(&mut self, body: &[u8]) -> Vec<u8> {
        let tag = self.key.tag(&[&self.counter.to_be_bytes(), body]).as_ref().to_vec();
        self.counter += 1;
        tag
    }

    /// The body of the sealed frame `sealed` if its tag is right for the
    /// next frame, `None` otherwise.
    pub fn open<'a>(&mut self, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let split = sealed.len().checked_sub(TAG_BYTES)?;
        let (body, tag) = sealed.split_at(split);
        if !self.key.verify(&[&self.counter.to_be_bytes(), body], tag) {
            return None;
        }
        self.counter += 1;
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (FrameSeal, FrameSeal) {
        let key = AuthKey::from_bytes(b"a link key of thirty-two bytes!!");
        (FrameSeal::new(key.clone()), FrameSeal::new(key))
    }

    #[test]
    fn frames_open_in_order_only() {
        let (mut sender, mut receiver) = pair();
        let sealed: Vec<Vec<u8>> = (0..3u8)
            .map(|n| {
                let mut frame = vec![n; 5];
                frame.extend(sender.seal(&[n; 5]));
                frame
            })
            .collect();
        assert_eq!(receiver.open(&sealed[0]), Some(&[0u8; 5][..]));
        assert_eq!(receiver.open(&sealed[2]), None, "a dropped frame is noticed");
        let (_, mut fresh) = pair();
        assert_eq!(fresh.open(&sealed[0]), Some(&[0u8; 5][..]));
        assert_eq!(fresh.open(&sealed[0]), None, "a replayed frame is noticed");
        let mut forged = sealed[1].clone();
        forged[0] ^= 1;
        assert_eq!(fresh.open(&forged), None, "a changed body is noticed");
        assert_eq!(fresh.open(&sealed[1]), Some(&[1u8; 5][..]));
        assert_eq!(fresh.open(b"short"), None);
    }
}
