//! Reading a JWT for a person: its header and claims without verification,
//! times in words, and a Stream token's verdict with the reason in words.
//!
//! Pure: no I/O and no clock; `now` (Unix seconds) is passed in, so every
//! answer is unit-tested.

use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// A JWT's two readable parts, neither verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The JOSE header (`alg`, `typ`, `kid`…).
    pub header: Map<String, Value>,
    /// The claims (payload).
    pub claims: Map<String, Value>,
}

/// Why a text is not a JWT; the message names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a JWT: {0}")]
pub struct Malformed(String);

/// `token` read as `header.payload.signature` (compact JWS, base64url
/// without padding). Errors: not three dot-separated parts; a part that is
/// not base64url; a header or payload that is not a JSON object.
pub fn decode(token: &str) -> Result<Decoded, Malformed> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err(Malformed(format!(
            "expected 3 parts separated by dots (header.payload.signature), found {}",
            parts.len()
        )));
    };
    // In order, so that the message names the first part that is wrong.
    let header = json_object(header, "the header (part 1)")?;
    let claims = json_object(payload, "the payload (part 2)")?;
    if signature.is_empty() {
        return Err(Malformed("the signature (part 3) is empty".into()));
    }
    URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| Malformed(format!("the signature (part 3) is not base64url: {e}")))?;
    Ok(Decoded { header, claims })
}

fn json_object(segment: &str, what: &str) -> Result<Map<String, Value>, Malformed> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|e| Malformed(format!("{what} is not base64url: {e}")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Malformed(format!("{what} is JSON but not an object"))),
        Err(e) => Err(Malformed(format!("{what} is not JSON: {e}"))),
    }
}

/// A span of seconds in at most two units, largest first: `59m 12s`,
/// `3h`, `2d 4h`, `0s`.
pub fn span(seconds: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut rest = seconds;
    let mut words = Vec::new();
    for (size, unit) in UNITS {
        let count = rest / size;
        rest %= size;
        // Two units once the first is found, even when the second is zero
        // (`3h` rather than `3h 0m`): the second is dropped when zero.
        if count > 0 && words.len() < 2 {
            words.push(format!("{count}{unit}"));
        } else if !words.is_empty() {
            break;
        }
    }
    if words.is_empty() {
        "0s".into()
    } else {
        words.join(" ")
    }
}

/// A time claim (`iat`, `exp`, `nbf`) in words, relative to `now`:
/// `2026-11-30T08:00:00Z (expires in 59m 12s)`. A value that is not a
/// whole number of seconds since the epoch says so.
pub fn time_claim(name: &str, value: &Value, now: u64) -> String {
    let Some(at) = value.as_u64() else {
        return format!("{value} (not a number of seconds since 1970: not a valid {name})");
    };
    let rfc3339 = UNIX_EPOCH.checked_add(Duration::from_secs(at)).map_or_else(
        || "far future".into(),
        |t| humantime::format_rfc3339_seconds(t).to_string(),
    );
    let (ahead, behind) = (span(at.saturating_sub(now)), span(now.saturating_sub(at)));
    let words = match (name, at > now) {
        ("exp", true) => format!("expires in {ahead}"),
        ("exp", false) => format!("expired {behind} ago"),
        ("nbf", true) => format!("not valid for another {ahead}"),
        ("nbf", false) => format!("valid since {behind} ago"),
        (_, true) => format!("{ahead} in the future"),
        (_, false) => format!("{behind} ago"),
    };
    format!("{rfc3339} ({words})")
}

/// The time claims present in `claims`, one `name: words` line each.
pub fn time_lines(claims: &Map<String, Value>, now: u64) -> Vec<String> {
    ["iat", "nbf", "exp"]
        .iter()
        .filter_map(|name| {
            claims
                .get(*name)
                .map(|value| format!("{name}: {}", time_claim(name, value, now)))
        })
        .collect()
}

/// Why a Stream token is not valid, in words that start with the kind of
/// problem (`signature`, `expired`, `not HS256`, `missing exp`…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Verifies `token` as a Stream token: HS256 with `secret`, an `exp` in the
/// future, and an `nbf`, when present, in the past (no leeway: the verdict is
/// for this second). Returns the claims. Errors: [`Invalid`] with the reason.
pub fn verify(token: &str, secret: &[u8], now: u64) -> Result<Map<String, Value>, Invalid> {
    let decoded = decode(token).map_err(|e| Invalid(format!("malformed: {e}")))?;
    match decoded.header.get("alg").and_then(Value::as_str) {
        Some("HS256") => {}
        Some(other) => {
            return Err(Invalid(format!(
            "not HS256: the header says alg {other}; Stream tokens are HS256 with the API secret"
        )))
        }
        None => return Err(Invalid("not HS256: the header has no alg".into())),
    }
    // The signature first: claims of a token that is not ours mean nothing.
    let mut signature_only = Validation::new(Algorithm::HS256);
    signature_only.required_spec_claims.clear();
    signature_only.validate_exp = false;
    signature_only.validate_nbf = false;
    signature_only.validate_aud = false;
    let key = DecodingKey::from_secret(secret);
    jsonwebtoken::decode::<Value>(token, &key, &signature_only).map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => Invalid(
            "signature does not match this API secret (signed with another secret, or altered)"
                .into(),
        ),
        _ => Invalid(format!("malformed: {e}")),
    })?;
    let claims = decoded.claims;
    let exp = match claims.get("exp") {
        None => {
            return Err(Invalid(
                "missing exp: the token never expires; Stream tokens minted by streamgate always carry one"
                    .into(),
            ))
        }
        Some(exp) => exp.as_u64().ok_or_else(|| {
            Invalid(format!("exp is not a number of seconds since 1970: {exp}"))
        })?,
    };
    if exp <= now {
        return Err(Invalid(format!(
            "expired: exp is {}",
            time_claim("exp", &Value::from(exp), now)
        )));
    }
    if let Some(nbf) = claims.get("nbf") {
        match nbf.as_u64() {
            Some(at) if at > now => {
                return Err(Invalid(format!(
                    "not valid yet: nbf is {}",
                    time_claim("nbf", nbf, now)
                )))
            }
            Some(_) => {}
            None => {
                return Err(Invalid(format!(
                    "nbf is not a number of seconds since 1970: {nbf}"
                )))
            }
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests;
