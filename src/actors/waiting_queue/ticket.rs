//! Queue tokens that prove themselves.
//!
//! A token names its holder, its place in line, when it was issued and which queue issued
//! it, signed with a key derived from the deployment's JWT secret. Any node that has the
//! secret and the queue's published [admission state](super::admission) can tell what a
//! token stands for without asking the queue: the token says *who* and *where*, the
//! admission state says how far the line has moved.
//!
//! The text is `q1` followed by unpadded base64url of 28 bytes of payload (user, place,
//! issue time in Unix ms, queue epoch; big-endian) and the first 16 bytes of their
//! HMAC-SHA256. The same place always gives the same text, so a user who asks again gets
//! the same token back.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const PREFIX: &str = "q1";
const PAYLOAD: usize = 28;
const TAG: usize = 16;
/// Unpadded base64 of `PAYLOAD + TAG` bytes.
const ENCODED: usize = ((PAYLOAD + TAG) * 4).div_ceil(3);

/// What a queue token says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub user: u64,
    /// The place in line: places are numbered in the order they were taken.
    pub seq: u64,
    /// Unix ms.
    pub issued_at: u64,
    /// The queue that issued it (a new data directory starts a new epoch).
    pub epoch: u32,
}

/// Signs and checks queue tokens. Cheap to clone.
#[derive(Clone)]
pub struct TicketKey {
    key: [u8; 32],
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

impl TicketKey {
    /// The key every node derives from the shared JWT secret.
    pub fn new(secret: &[u8]) -> TicketKey {
        let mut h = Sha256::new();
        h.update(b"boxoffice queue tokens\0");
        h.update(secret);
        TicketKey { key: h.finalize().into() }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac key")
    }

    /// The token's text.
    pub fn sign(&self, t: &Ticket) -> String {
        let mut bytes = [0u8; PAYLOAD + TAG];
        bytes[..8].copy_from_slice(&t.user.to_be_bytes());
        bytes[8..16].copy_from_slice(&t.seq.to_be_bytes());
        bytes[16..24].copy_from_slice(&t.issued_at.to_be_bytes());
        bytes[24..28].copy_from_slice(&t.epoch.to_be_bytes());
        let mut mac = self.mac();
        mac.update(&bytes[..PAYLOAD]);
        let tag = mac.finalize().into_bytes();
        bytes[PAYLOAD..].copy_from_slice(&tag[..TAG]);
        let mut text = String::with_capacity(PREFIX.len() + ENCODED);
        text.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(bytes, &mut text);
        text
    }

    /// What `text` says, if this deployment signed it unchanged.
    pub fn verify(&self, text: &str) -> Option<Ticket> {
        let body = text.strip_prefix(PREFIX)?;
        // Room for base64's estimate of the decoded length, which rounds up.
        let mut bytes = [0u8; PAYLOAD + TAG + 4];
        if body.len() != ENCODED || URL_SAFE_NO_PAD.decode_slice(body, &mut bytes).ok()? != PAYLOAD + TAG {
            return None;
        }
        let mut mac = self.mac();
        mac.update(&bytes[..PAYLOAD]);
        mac.verify_truncated_left(&bytes[PAYLOAD..PAYLOAD + TAG]).ok()?;
        let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        Some(Ticket {
            user: u64_at(0),
            seq: u64_at(8),
            issued_at: u64_at(16),
            epoch: u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_says_what_it_was_signed_with_and_nothing_else_passes() {
        let key = TicketKey::new(b"secret");
        let t = Ticket { user: 7, seq: 123_456, issued_at: 1_700_000_000_000, epoch: 9 };
        let text = key.sign(&t);
        assert!(text.starts_with("q1") && text.len() == 61, "{text}");
        assert_eq!(key.sign(&t), text, "the same place gives the same token");
        assert_eq!(key.verify(&text), Some(t));
        assert_eq!(TicketKey::new(b"other").verify(&text), None, "another deployment's key");
        // Any change of any character is refused.
        for i in 0..text.len() {
            let mut b = text.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(b).expect("ascii");
            if altered != text {
                assert_eq!(key.verify(&altered), None, "{altered}");
            }
        }
        for bad in ["", "q1", "nope", &text[..text.len() - 1], &format!("{text}A"), &text[2..]] {
            assert_eq!(key.verify(bad), None, "{bad:?}");
        }
    }
}
