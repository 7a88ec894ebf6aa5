//! Signing: HS256 JWTs byte-compatible with the ones Stream's official SDKs make.
//!
//! The header segment is a constant instead of `jsonwebtoken::encode`'s output:
//! jsonwebtoken serializes `{"typ":"JWT","alg":"HS256"}` (typ first), while every
//! official SDK emits `{"alg":"HS256","typ":"JWT"}`. Both are valid JWTs, but a
//! security reviewer diffing our tokens against the Node SDK's should find no
//! difference at all, so the header is fixed here. The HMAC-SHA256 (RFC 2104)
//! is the `hmac` crate's, keyed once per secret: keying hashes the padded
//! secret, which was a third of the signing cost when redone for every token
//! (`jsonwebtoken::crypto::sign` does), so each token starts from a copy of the
//! keyed state.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// base64url of `{"alg":"HS256","typ":"JWT"}`, the segment every official SDK emits.
pub const HEADER_SEGMENT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Signs claims with the Stream API secret.
pub struct Signer {
    /// HMAC-SHA256 keyed with the secret, before any message.
    keyed: Hmac<Sha256>,
}

// The key is secret: `{:?}` must never reveal it, even by accident in a log line.
impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

/// The claims could not be serialized or the HMAC computed; the message never
/// includes the key.
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(String);

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        Signer {
            // HMAC takes a key of any length (RFC 2104 §2): this cannot fail.
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(secret)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length")),
        }
    }

    /// `header.payload.signature`, with the fixed SDK header.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, SignError> {
        let payload = serde_json::to_vec(claims).map_err(|e| SignError(e.to_string()))?;
        let payload_len = base64::encoded_len(payload.len(), false).unwrap_or(0);
        // 43 characters of HMAC-SHA256 signature, plus two dots.
        let mut token = String::with_capacity(HEADER_SEGMENT.len() + payload_len + 45);
        token.push_str(HEADER_SEGMENT);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let mut mac = self.keyed.clone();
        mac.update(token.as_bytes());
        let signature = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// The signer in use. Rotation replaces it whole; a request loads it once and
/// signs with that one key from start to finish, so no token can mix two.
#[derive(Default)]
pub struct SignerSlot(ArcSwapOption<Signer>);

impl fmt::Debug for SignerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerSlot(loaded: {})", self.is_loaded())
    }
}

impl SignerSlot {
    pub fn load(&self) -> Option<Arc<Signer>> {
        self.0.load_full()
    }

    pub fn is_loaded(&self) -> bool {
        self.0.load().is_some()
    }

    pub fn replace(&self, secret: &[u8]) {
        self.0.store(Some(Arc::new(Signer::new(secret))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::{json, Value};

    #[test]
    fn header_segment_is_the_sdk_header() {
        let decoded = URL_SAFE_NO_PAD.decode(HEADER_SEGMENT).unwrap();
        assert_eq!(decoded, br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn token_verifies_with_the_secret_and_carries_the_claims() {
        let signer = Signer::new(b"secret");
        let claims = json!({"user_id": "john", "iat": 1, "exp": 4_000_000_000u64});
        let token = signer.sign(&claims).unwrap();
        assert!(token.starts_with(&format!("{HEADER_SEGMENT}.")));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_secret(b"secret"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims, claims);
        assert!(jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_secret(b"other"),
            &validation
        )
        .is_err());
    }

    /// The fixed vector computed outside the crate is in `token::tests`
    /// (`user_token_matches_an_independently_computed_vector`); this checks the
    /// signature shape against jsonwebtoken's own verifier.
    #[test]
    fn signature_verifies_with_jsonwebtoken() {
        let signer = Signer::new(b"top-secret");
        let token = signer.sign(&json!({"user_id": "a"})).unwrap();
        let (message, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(signature.len(), 43);
        let key = DecodingKey::from_secret(b"top-secret");
        assert!(jsonwebtoken::crypto::verify(
            signature,
            message.as_bytes(),
            &key,
            Algorithm::HS256
        )
        .unwrap());
    }

    #[test]
    fn slot_swaps_whole_signers() {
        let slot = SignerSlot::default();
        assert!(slot.load().is_none());
        slot.replace(b"first");
        let held = slot.load().unwrap();
        slot.replace(b"second");
        let claims = json!({"user_id": "u"});
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        let verifies_with = |token: &str, secret: &[u8]| {
            jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(secret), &validation)
                .is_ok()
        };
        assert!(
            verifies_with(&held.sign(&claims).unwrap(), b"first"),
            "a loaded signer keeps its key"
        );
        assert!(verifies_with(
            &slot.load().unwrap().sign(&claims).unwrap(),
            b"second"
        ));
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        assert_eq!(
            format!("{:?}", Signer::new(b"hunter2")),
            "Signer(<redacted>)"
        );
    }
}
