//! Identity: JWT verification for every contract, and minting for `boxoffice token`.
//!
//! Tokens are HS256 with the configured secret; when a public key is configured,
//! RS256 or ES256 tokens signed by an identity provider are accepted too. `alg: none`,
//! missing, malformed, expired or wrongly signed tokens are all [`AuthError`]s (401).
//! `sub` may be a number, a numeric string, or contract B's `"user_123"` form.

use crate::config::Settings;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Who is calling, once the token checked out.
/// What a user is called when nothing names them: a token without a `name` claim, or a
/// room participant the server has never seen a token of.
pub fn default_name(user: u64) -> String {
    format!("user_{user}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: u64,
    /// The `name` claim; `user_{id}` when the token has none.
    pub name: String,
    pub picture: Option<String>,
    pub admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("token not valid yet: its {0} is in the future")]
    NotYetValid(&'static str),
}

/// How far in the future a token's `nbf` or `iat` may be (clocks differ a little).
pub const CLOCK_LEEWAY_SECS: u64 = 60;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    picture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// Parse a user id as clients write it: `7`, `"7"` or `"user_7"`.
pub fn parse_user_id(v: &serde_json::Value) -> Option<u64> {
    let id = match v {
        serde_json::Value::Number(_) => crate::http::schema::json_integer(v)?,
        serde_json::Value::String(s) => parse_user_id_str(s)?,
        _ => return None,
    };
    (id > 0).then_some(id)
}

/// The string forms of a user id: `"7"` or `"user_7"`.
pub fn parse_user_id_str(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("user_").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|id| *id > 0)
}

/// Checks tokens. Built once at start-up and shared.
pub struct Verifier {
    secret: DecodingKey,
    public: Option<(DecodingKey, Algorithm)>,
    /// Tokens that checked out, with their expiry (seconds): a client sends the same token
    /// with every request, and decoding plus the signature check was ~4% of the server's
    /// CPU in a rush. The keys never change while the server runs, so a token once valid
    /// stays valid until its `exp`, which every hit checks again.
    /// Bounded: the least used are forgotten (and checked again if they come back).
    seen: quick_cache::sync::Cache<Box<str>, (Identity, u64)>,
}

/// How many verified tokens are remembered. A heap profile of the soak found the cache at
/// 100,000 holding 32-45 MiB (a JWT is ~180 bytes, plus the identity and the cache's own
/// slab); the users active within a few minutes of a sale fit in far fewer, and a token
/// forgotten is checked again (a few microseconds).
const SEEN_TOKENS_MAX: usize = 20_000;

impl Verifier {
    pub fn new(secret: &[u8], public_key_pem: Option<&[u8]>) -> anyhow::Result<Verifier> {
        let public = match public_key_pem {
            None => None,
            Some(pem) => Some(match DecodingKey::from_rsa_pem(pem) {
                Ok(k) => (k, Algorithm::RS256),
                Err(_) => (
                    DecodingKey::from_ec_pem(pem)
                        .map_err(|e| anyhow::anyhow!("public key is neither RSA nor EC PEM: {e}"))?,
                    Algorithm::ES256,
                ),
            }),
        };
        Ok(Verifier {
            secret: DecodingKey::from_secret(secret),
            public,
            seen: quick_cache::sync::Cache::new(SEEN_TOKENS_MAX),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if let Some((id, exp)) = self.seen.get(token) {
            return if exp >= crate::time::now_ms() / 1000 { Ok(id) } else { Err(AuthError::Expired) };
        }
        let (id, exp) = self.check(token)?;
        self.seen.insert(token.into(), (id.clone(), exp));
        Ok(id)
    }

    /// Decode `token` and check its signature, algorithm and expiry.
    fn check(&self, token: &str) -> Result<(Identity, u64), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = match (header.alg, &self.public) {
            (Algorithm::HS256, _) => &self.secret,
            (alg, Some((key, expected))) if alg == *expected => key,
            (alg, _) => return Err(AuthError::Invalid(format!("algorithm {alg:?} is not accepted"))),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        validation.validate_aud = false;
        // `exp` is checked below against the server's clock, as the remembered tokens are
        // (jsonwebtoken would read the wall clock, which a test may have left behind).
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let now = crate::time::now_ms() / 1000;
        if claims.exp < now {
            return Err(AuthError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + CLOCK_LEEWAY_SECS) {
            return Err(AuthError::NotYetValid("nbf"));
        }
        if claims.iat.is_some_and(|iat| iat > now + CLOCK_LEEWAY_SECS) {
            return Err(AuthError::NotYetValid("iat"));
        }
        let user_id = parse_user_id(&claims.sub).ok_or_else(|| AuthError::Invalid("sub is not a user id".into()))?;
        let id = Identity {
            user_id,
            name: claims.name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| default_name(user_id)),
            picture: claims.picture,
            admin: claims.role.as_deref() == Some("admin"),
        };
        Ok((id, claims.exp))
    }
}

/// Sign an HS256 token for `user_id`.
pub fn mint(secret: &[u8], user_id: u64, name: Option<&str>, admin: bool, ttl: Duration) -> anyhow::Result<String> {
    let now = crate::time::now_ms() / 1000;
    let claims = Claims {
        sub: serde_json::Value::String(user_id.to_string()),
        name: name.map(str::to_string),
        picture: None,
        role: admin.then(|| "admin".to_string()),
        exp: now + ttl.as_secs().max(1),
        iat: Some(now),
        nbf: None,
    };
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))?)
}

/// The HS256 secret: the configured one, else the one kept in the data dir, else a new
/// random one written there (readable by the owner only).
pub fn load_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = settings.jwt_secret.as_ref().filter(|s| !s.is_empty()) {
        return Ok(s.as_bytes().to_vec());
    }
    let path = settings.data_dir.join("jwt_secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.as_bytes().to_vec());
        }
    }
    std::fs::create_dir_all(&settings.data_dir)?;
    let secret: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::thread_rng().gen();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    write_private(&path, secret.as_bytes())?;
    tracing::info!(path = %path.display(), "created a random JWT secret");
    Ok(secret.into_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_others_do_not() {
        let v = Verifier::new(b"s3cret", None).expect("verifier");
        let t = mint(b"s3cret", 7, Some("kim"), true, Duration::from_secs(60)).expect("mint");
        let id = v.verify(&t).expect("valid");
        assert_eq!((id.user_id, id.name.as_str(), id.admin), (7, "kim", true));
        let other = mint(b"other", 7, None, false, Duration::from_secs(60)).expect("mint");
        assert!(matches!(v.verify(&other), Err(AuthError::Invalid(_))));
        assert!(v.verify("not.a.token").is_err());
    }

    /// A token whose `nbf` or `iat` lies in the future (past the leeway) is refused, and
    /// is not remembered as valid.
    #[test]
    fn tokens_from_the_future_are_refused() {
        let v = Verifier::new(b"s3cret", None).expect("verifier");
        let now = crate::time::now_ms() / 1000;
        let token = |extra: serde_json::Value| {
            let mut claims = serde_json::json!({ "sub": "7", "exp": now + 7200 });
            claims.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"s3cret"))
                .expect("encode")
        };
        let later = now + 3600;
        assert_eq!(v.verify(&token(serde_json::json!({ "nbf": later }))), Err(AuthError::NotYetValid("nbf")));
        assert_eq!(v.verify(&token(serde_json::json!({ "iat": later }))), Err(AuthError::NotYetValid("iat")));
        // Within the leeway, and in the past: valid.
        let soon = now + CLOCK_LEEWAY_SECS / 2;
        assert_eq!(v.verify(&token(serde_json::json!({ "nbf": soon, "iat": soon }))).expect("valid").user_id, 7);
        assert_eq!(
            v.verify(&token(serde_json::json!({ "nbf": now - 10, "iat": now - 10 }))).expect("valid").user_id,
            7
        );
    }

    /// A remembered token is still refused once its `exp` has passed, and remembering one
    /// token never lets a forged one through.
    #[test]
    fn remembered_tokens_expire_and_forged_ones_are_checked() {
        let v = Verifier::new(b"s3cret", None).expect("verifier");
        let t = mint(b"s3cret", 7, None, false, Duration::from_secs(60)).expect("mint");
        assert_eq!(v.verify(&t).expect("valid").user_id, 7);
        assert_eq!(v.verify(&t).expect("valid again, from memory").user_id, 7);
        let past = crate::time::now_ms() / 1000 - 1;
        let (id, _) = v.seen.get(t.as_str()).expect("remembered");
        v.seen.insert(t.as_str().into(), (id, past));
        assert_eq!(v.verify(&t), Err(AuthError::Expired));
        // One character of the signature changed (not the last, whose low bits are padding).
        let i = t.len() - 10;
        let swapped = if &t[i..=i] == "A" { "B" } else { "A" };
        let forged = format!("{}{swapped}{}", &t[..i], &t[i + 1..]);
        assert!(matches!(v.verify(&forged), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn user_ids_in_every_written_form() {
        assert_eq!(parse_user_id(&serde_json::json!(12)), Some(12));
        assert_eq!(parse_user_id(&serde_json::json!("12")), Some(12));
        assert_eq!(parse_user_id(&serde_json::json!("user_12")), Some(12));
        assert_eq!(parse_user_id(&serde_json::json!(0)), None);
        assert_eq!(parse_user_id(&serde_json::json!(-3)), None);
        assert_eq!(parse_user_id(&serde_json::json!("x12")), None);
        assert_eq!(parse_user_id(&serde_json::json!(1.5)), None);
    }

    #[test]
    fn es256_tokens_verify_with_a_configured_public_key() {
        use base64::Engine;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("pair");
        // SubjectPublicKeyInfo for a P-256 key: the fixed DER prefix, then the point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        let v = Verifier::new(b"s3cret", Some(pem.as_bytes())).expect("verifier");
        let exp = crate::time::now_ms() / 1000 + 60;
        let claims = serde_json::json!({ "sub": "9", "name": "idp user", "exp": exp });
        let es =
            jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &EncodingKey::from_ec_der(pkcs8.as_ref()))
                .expect("sign");
        assert_eq!(v.verify(&es).map(|id| id.user_id), Ok(9));
        // HS256 tokens keep working beside it; a tampered ES256 token does not.
        let hs = mint(b"s3cret", 3, None, false, Duration::from_secs(60)).expect("mint");
        assert_eq!(v.verify(&hs).map(|id| id.user_id), Ok(3));
        let mut tampered = es.clone();
        tampered.pop();
        tampered.push(if es.ends_with('A') { 'B' } else { 'A' });
        assert!(v.verify(&tampered).is_err());
        // Without the public key, ES256 is refused.
        let hs_only = Verifier::new(b"s3cret", None).expect("verifier");
        assert!(matches!(hs_only.verify(&es), Err(AuthError::Invalid(_))));
    }
}
