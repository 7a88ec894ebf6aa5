//! `jwt` mode: `Authorization: Bearer <JWT>` from the company's identity
//! provider, verified with a fixed key or a JWKS ([`super::jwks`]).

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::jwks::{JwksKeys, JwksLocation};
use super::jwt_refusal::{
    algorithm_not_allowed, expired, missing_kid, no_user_claim, not_a_user_id, refusal,
    unknown_key, unusable_key,
};
use super::{scalar_string, string_list, Identity, IdentityError, Reason, UserIdMapping};

pub(super) const BEARER_CHALLENGE: &str = r#"Bearer realm="streamgate""#;

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
    mapping: UserIdMapping,
    /// Whether a token minted for the caller expires no later than their JWT.
    cap_exp: bool,
}

impl JwtIdentity {
    pub fn new(
        keys: JwtKeys,
        validation: Validation,
        user_claim: String,
        roles_claim: Option<String>,
        mapping: UserIdMapping,
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
            mapping,
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

    /// The identity in an `Authorization: Bearer <JWT>` value, or a 401
    /// whose reason and words name the part of the JWT at fault (see
    /// [`IdentityError::is_unknown_key`] for a `kid` the key set lacks).
    pub fn identify(&self, authorization: Option<&[u8]>) -> Result<Identity, IdentityError> {
        let token = authorization
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(bearer_token)
            .ok_or_else(|| {
                IdentityError::new(
                    Reason::MissingCredentials,
                    "no credentials: send the identity provider's token as \
                     Authorization: Bearer <JWT>",
                )
                .with_challenge(BEARER_CHALLENGE)
            })?;
        let claims = match &self.keys {
            JwtKeys::Static(key) => self.decode(token, key),
            JwtKeys::Jwks(keys) => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| refusal(token, &e))?;
                if !keys.is_loaded() {
                    return Err(IdentityError::new(
                        Reason::KeysUnavailable,
                        "the identity provider's keys have not been fetched yet; try again shortly",
                    ));
                }
                // The algorithm before the key: a JWT this mode can never
                // accept is refused without its kid being looked up (nor,
                // with a provider's keys, the key set being fetched again).
                let validation = self
                    .per_algorithm
                    .iter()
                    .find(|v| v.algorithms[0] == header.alg)
                    .ok_or_else(|| algorithm_not_allowed(header.alg))?;
                let keys = keys.current();
                let jwk = match header.kid.as_deref() {
                    Some(kid) => keys.find(kid).ok_or_else(unknown_key)?,
                    None => match keys.keys.as_slice() {
                        [only] => only,
                        _ => return Err(missing_kid()),
                    },
                };
                // A key published for one algorithm verifies that one only
                // (RFC 8725 §3.1): the JWT's header does not choose.
                let published = jwk
                    .common
                    .key_algorithm
                    .and_then(|a| a.to_string().parse::<Algorithm>().ok());
                if published.is_some_and(|a| a != header.alg) {
                    return Err(algorithm_not_allowed(header.alg));
                }
                let key = DecodingKey::from_jwk(jwk).map_err(|_| unusable_key())?;
                jsonwebtoken::decode::<Value>(token, &key, validation).map(|data| data.claims)
            }
        }
        .map_err(|e| refusal(token, &e))?;
        let user = match claim(&claims, &self.user_claim) {
            None => return Err(no_user_claim(&self.user_claim)),
            Some(value) => scalar_string(value).ok_or_else(|| not_a_user_id(&self.user_claim))?,
        };
        let roles = self
            .roles_claim
            .as_ref()
            .and_then(|name| claim(&claims, name))
            .map(string_list)
            .unwrap_or_default();
        let mut identity = self.mapping.apply(&user, roles)?;
        if self.cap_exp {
            // jsonwebtoken has already required a numeric `exp` in the future
            // (within leeway); a fractional one (RFC 7519 NumericDate allows
            // it) counts down to its whole second.
            let exp = claims.get("exp").and_then(|exp| {
                exp.as_u64()
                    .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f.floor() as u64))
            });
            // `leeway` forgives clock skew in accepting the JWT, but a token
            // capped at an `exp` already past would be born expired.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if exp.is_some_and(|exp| exp <= now) {
                return Err(expired());
            }
            identity.expires_at = exp;
        }
        Ok(identity)
    }

    /// The key source and checks as configured, never the key itself.
    pub fn describe(&self) -> serde_json::Value {
        let keys = match &self.keys {
            JwtKeys::Static(_) => serde_json::json!(
                "a fixed key (hs256_secret, hs256_secret_file or public_key_file)"
            ),
            JwtKeys::Jwks(keys) => match keys.origin() {
                None => serde_json::json!("a key set file (jwks_file)"),
                Some(origin) => serde_json::json!({
                    match origin.location {
                        JwksLocation::Issuer(_) => "issuer_url",
                        JwksLocation::Url(_) => "jwks_url",
                    }: origin.location.url(),
                }),
            },
        };
        let algorithms: Vec<String> = self
            .validation
            .algorithms
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        serde_json::json!({
            "keys": keys,
            "algorithms": algorithms,
            "issuer": self.validation.iss,
            "audience": self.validation.aud,
            "user_claim": self.user_claim,
            "roles_claim": self.roles_claim,
            "leeway_seconds": self.validation.leeway,
            "cap_exp_to_credential": self.cap_exp,
        })
    }

    /// How this mode's user ids become Stream user ids.
    pub fn mapping(&self) -> &UserIdMapping {
        &self.mapping
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<Value, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Value>(token, key, &self.validation).map(|data| data.claims)
    }
}

/// A claim by its name, or by JSON pointer (RFC 6901) when the name starts
/// with `/`: Keycloak puts realm roles at `/realm_access/roles`. A name
/// with `/` elsewhere (Auth0's `https://example.com/roles`) is a name.
fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if name.starts_with('/') {
        claims.pointer(name)
    } else {
        claims.get(name)
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
