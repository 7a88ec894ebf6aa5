//! `jwt` mode: `Authorization: Bearer <JWT>` from the company's identity
//! provider, verified with a fixed key or a JWKS ([`super::jwks`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::jwks::JwksKeys;
use super::{scalar_string, string_list, Identity, IdentityError, UserIdTemplate};

pub(super) const BEARER_CHALLENGE: &str = r#"Bearer realm="streamgate""#;
/// The refusal of a JWT whose `kid` is not in the key set.
pub(super) const UNKNOWN_KID: &str = "invalid JWT: no key in the JWKS matches its kid";
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="streamgate", error="invalid_token""#;

/// Where JWT verification keys come from.
pub enum JwtKeys {
    Static(DecodingKey),
    /// A key set that can change while streamgate runs (a JWKS file that
    /// [`crate::reload`] follows).
    Jwks(Arc<JwksKeys>),
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKeys::Static(_) => f.write_str("Static(<key>)"),
            JwtKeys::Jwks(keys) => write!(f, "Jwks({} keys)", keys.current().keys.len()),
        }
    }
}

/// `jwt` mode: `Authorization: Bearer <JWT>` from the identity provider.
#[derive(Debug)]
pub struct JwtIdentity {
    keys: JwtKeys,
    validation: Validation,
    /// `validation` narrowed to each accepted algorithm, built once: jsonwebtoken
    /// wants every listed algorithm to fit the key, and a JWKS mixes RSA and EC
    /// keys, so a JWKS token is checked against its own algorithm only.
    per_algorithm: Vec<Validation>,
    user_claim: String,
    roles_claim: Option<String>,
    template: UserIdTemplate,
    /// Whether a token minted for the caller expires no later than their JWT.
    cap_exp: bool,
}

impl JwtIdentity {
    pub fn new(
        keys: JwtKeys,
        validation: Validation,
        user_claim: String,
        roles_claim: Option<String>,
        template: UserIdTemplate,
    ) -> Self {
        let per_algorithm = validation
            .algorithms
            .iter()
            .map(|algorithm| {
                let mut narrowed = validation.clone();
                narrowed.algorithms = vec![*algorithm];
                narrowed
            })
            .collect();
        JwtIdentity {
            keys,
            validation,
            per_algorithm,
            user_claim,
            roles_claim,
            template,
            cap_exp: false,
        }
    }

    /// With `cap`, the identity carries the JWT's `exp`, and the token minted
    /// for it expires no later (see [`crate::token::TokenMinter::issue`]).
    pub fn cap_exp_to_credential(mut self, cap: bool) -> Self {
        self.cap_exp = cap;
        self
    }

    /// Whether tokens must name an audience (`aud`): without one, a token the
    /// same provider issued to any other application is accepted too.
    pub fn checks_audience(&self) -> bool {
        self.validation.validate_aud && self.validation.aud.is_some()
    }

    /// The key set, when it is fetched from the identity provider and may be
    /// asked for again (a token naming an unknown `kid`).
    pub fn remote_keys(&self) -> Option<&Arc<JwksKeys>> {
        match &self.keys {
            JwtKeys::Jwks(keys) if keys.origin().is_some() => Some(keys),
            _ => None,
        }
    }

    /// Where the verification keys come from (start-up warnings look at them).
    pub fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    pub fn identify(&self, authorization: Option<&[u8]>) -> Result<Identity, IdentityError> {
        let token = authorization
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(bearer_token)
            .ok_or_else(|| {
                IdentityError::unauthorized(
                    "an Authorization: Bearer <JWT> header is required",
                    Some(BEARER_CHALLENGE),
                )
            })?;
        let invalid =
            |reason: String| IdentityError::unauthorized(reason, Some(INVALID_TOKEN_CHALLENGE));
        let claims = match &self.keys {
            JwtKeys::Static(key) => self.decode(token, key),
            JwtKeys::Jwks(keys) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|e| invalid(format!("invalid JWT: {e}")))?;
                if !keys.is_loaded() {
                    return Err(IdentityError::Unavailable(
                        "the identity provider's keys have not been fetched yet".into(),
                    ));
                }
                let keys = keys.current();
                let jwk = match header.kid.as_deref() {
                    Some(kid) => keys.find(kid),
                    None if keys.keys.len() == 1 => keys.keys.first(),
                    None => None,
                }
                .ok_or_else(|| invalid(UNKNOWN_KID.into()))?;
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| invalid(format!("invalid JWT: unusable JWKS key: {e}")))?;
                let validation = self
                    .per_algorithm
                    .iter()
                    .find(|v| v.algorithms[0] == header.alg)
                    .ok_or_else(|| {
                        invalid(format!(
                            "invalid JWT: algorithm {:?} is not accepted",
                            header.alg
                        ))
                    })?;
                jsonwebtoken::decode::<BTreeMap<String, Value>>(token, &key, validation)
                    .map(|data| data.claims)
            }
        }
        .map_err(|e| invalid(format!("invalid JWT: {e}")))?;
        let user = claims
            .get(&self.user_claim)
            .and_then(scalar_string)
            .ok_or_else(|| invalid(format!("the JWT has no {:?} claim", self.user_claim)))?;
        let roles = self
            .roles_claim
            .as_ref()
            .and_then(|claim| claims.get(claim))
            .map(string_list)
            .unwrap_or_default();
        let mut identity = self.template.apply(&user, roles)?;
        if self.cap_exp {
            // jsonwebtoken has already required a numeric `exp` in the future
            // (within leeway); a fractional one (RFC 7519 NumericDate allows
            // it) counts down to its whole second.
            identity.expires_at = claims.get("exp").and_then(|exp| {
                exp.as_u64()
                    .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f.floor() as u64))
            });
        }
        Ok(identity)
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
    ) -> Result<BTreeMap<String, Value>, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<BTreeMap<String, Value>>(token, key, &self.validation)
            .map(|data| data.claims)
    }
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads a PEM public key of any type jsonwebtoken verifies with.
pub fn decoding_key_from_pem(pem: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok((key, Algorithm::ES256));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, Algorithm::EdDSA));
    }
    Err("not a PEM-encoded RSA, EC or Ed25519 public key".into())
}
