//! A JWK set (RFC 7517) that can be replaced while requests read it: the keys
//! of `jwt` mode when they come from a `jwks_file`. Following the file is
//! [`crate::reload`]'s job; this holds the current set and parses new ones.

use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;

#[derive(Debug)]
pub struct JwksKeys {
    current: ArcSwap<JwkSet>,
}

impl JwksKeys {
    /// A key set from a JWKS document (`{"keys":[…]}`, at least one key).
    pub fn parse(document: &[u8]) -> Result<JwksKeys, String> {
        Ok(JwksKeys {
            current: ArcSwap::from_pointee(parse_jwks(document)?),
        })
    }

    /// The key set in use; a request keeps the one it loaded.
    pub fn current(&self) -> Arc<JwkSet> {
        self.current.load_full()
    }

    /// Replaces the key set with the one in `document`; an invalid document
    /// changes nothing.
    pub fn replace(&self, document: &[u8]) -> Result<(), String> {
        self.current.store(Arc::new(parse_jwks(document)?));
        Ok(())
    }
}

fn parse_jwks(document: &[u8]) -> Result<JwkSet, String> {
    let keys: JwkSet =
        serde_json::from_slice(document).map_err(|e| format!("not a JWK set: {e}"))?;
    if keys.keys.is_empty() {
        return Err("the JWK set has no keys".into());
    }
    Ok(keys)
}
