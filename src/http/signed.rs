//! Expiring links: `{path}?expires={unix ms}&sig={hex HMAC-SHA256}`. Contract T serves
//! message images by such links, which stop working at `expiresAt`. The key is derived
//! from the server's JWT secret, so links survive a restart and come from config.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How long a link to a message image works after it is handed out.
pub const IMAGE_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Clone)]
pub struct LinkSigner {
    key: [u8; 32],
}

impl LinkSigner {
    pub fn new(secret: &[u8]) -> LinkSigner {
        let mut h = Sha256::new();
        h.update(b"boxoffice signed links\0");
        h.update(secret);
        LinkSigner { key: h.finalize().into() }
    }

    fn mac(&self, path: &str, expires_at: u64) -> String {
        // unwrap: HMAC takes keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac key");
        mac.update(path.as_bytes());
        mac.update(b"\0");
        mac.update(expires_at.to_string().as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A link to `path` that works until `expires_at` (Unix ms).
    pub fn sign(&self, path: &str, expires_at: u64) -> String {
        format!("{path}?expires={expires_at}&sig={}", self.mac(path, expires_at))
    }

    /// Whether `sig` is this server's signature of `path` until `expires_at`, and it has
    /// not expired.
    pub fn verify(&self, path: &str, expires_at: u64, sig: &str, now: u64) -> bool {
        let expected = self.mac(path, expires_at);
        now < expires_at
            && expected.len() == sig.len()
            && expected.bytes().zip(sig.bytes()).fold(0, |d, (a, b)| d | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::LinkSigner;

    #[test]
    fn links_work_until_they_expire_and_cannot_be_forged() {
        let s = LinkSigner::new(b"secret");
        let link = s.sign("/api/chat/images/1/abc.png", 2_000);
        let sig = link.rsplit("sig=").next().expect("sig");
        assert!(s.verify("/api/chat/images/1/abc.png", 2_000, sig, 1_999));
        assert!(!s.verify("/api/chat/images/1/abc.png", 2_000, sig, 2_000), "expired");
        assert!(!s.verify("/api/chat/images/1/abd.png", 2_000, sig, 1_000), "another path");
        assert!(!s.verify("/api/chat/images/1/abc.png", 3_000, sig, 1_000), "another expiry");
        assert!(!LinkSigner::new(b"other").verify("/api/chat/images/1/abc.png", 2_000, sig, 1_000));
    }
}
