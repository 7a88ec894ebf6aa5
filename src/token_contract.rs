//! The token contract: request bytes in, HTTP status and JSON body out.
//!
//! This is the whole behaviour of the token routes apart from socket I/O and
//! identity lookup, kept free of Pingora types so that every status, message
//! and claim can be unit-tested and fuzzed without a server. The Pingora glue
//! reads the body (enforcing the size limit while it does), finds out who is
//! calling ([`crate::identity`]), and writes the [`Reply`].
//!
//! A request goes through three steps, so that the glue can rate-limit between
//! knowing whom a token is for and signing it:
//! [`TokenMinter::parse`] (400/422), [`TokenMinter::authorize`] (403), then
//! [`TokenMinter::issue`].
//!
//! Anything a client can send maps to a 2xx or 4xx with a message that names the
//! field and the rule; a 500 is reserved for a fault of ours (a signing failure)
//! and never carries detail that could include the secret.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identity::Identity;
use crate::routing::MintKind;
use crate::signing::SignerSlot;

/// Limits and defaults from the `tokens:` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    pub default_validity_seconds: u64,
    pub max_validity_seconds: u64,
    /// `iat` is back-dated by this much so that a Stream server whose clock is a
    /// little behind ours does not reject a fresh token as "used before issued".
    pub iat_leeway_seconds: u64,
    pub max_body_bytes: usize,
    /// Call roles any caller may ask for; others need an identity carrying them.
    pub anyone_roles: Vec<String>,
    /// `None`: any valid call type.
    pub allowed_call_types: Option<Vec<String>>,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            default_validity_seconds: 3600,
            max_validity_seconds: 86400,
            iat_leeway_seconds: 5,
            max_body_bytes: 16384,
            anyone_roles: vec!["user".to_string()],
            allowed_call_types: None,
        }
    }
}

/// A finished answer: status and the JSON body to send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// The `{"success":false,"error":…}` envelope every error uses, including the
    /// proxy's own (404 no route, 502 upstream down).
    pub fn error(status: u16, message: &str) -> Reply {
        #[derive(Serialize)]
        struct Envelope<'a> {
            success: bool,
            error: &'a str,
        }
        let body = serde_json::to_vec(&Envelope {
            success: false,
            error: message,
        })
        .unwrap_or_else(|_| br#"{"success":false,"error":"Internal error"}"#.to_vec());
        Reply { status, body }
    }
}

/// Why a token request was refused, one variant per status of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    InvalidHeader(String),
    InvalidJson(String),
    Unauthorized(String),
    Forbidden(String),
    TooLarge { limit: usize },
    UnsupportedMediaType(String),
    Validation(String),
    TooManyRequests { retry_after_seconds: u64 },
    Internal,
    Unavailable(String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::InvalidHeader(_) | Rejection::InvalidJson(_) => 400,
            Rejection::Unauthorized(_) => 401,
            Rejection::Forbidden(_) => 403,
            Rejection::TooLarge { .. } => 413,
            Rejection::UnsupportedMediaType(_) => 415,
            Rejection::Validation(_) => 422,
            Rejection::TooManyRequests { .. } => 429,
            Rejection::Internal => 500,
            Rejection::Unavailable(_) => 503,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Rejection::InvalidHeader(reason) => format!("Invalid request header: {reason}"),
            Rejection::InvalidJson(reason) => format!("Invalid JSON body: {reason}"),
            Rejection::Unauthorized(reason) => format!("Unauthorized: {reason}"),
            Rejection::Forbidden(reason) => format!("Forbidden: {reason}"),
            Rejection::TooLarge { limit } => {
                format!("Request body too large: the limit is {limit} bytes")
            }
            Rejection::UnsupportedMediaType(got) => {
                format!("Unsupported Content-Type {got:?}: send application/json")
            }
            Rejection::Validation(reason) => format!("Validation failed: {reason}"),
            Rejection::TooManyRequests {
                retry_after_seconds,
            } => {
                format!("Too many requests: retry in {retry_after_seconds} s")
            }
            Rejection::Internal => "Internal error: the token could not be signed".to_string(),
            Rejection::Unavailable(reason) => format!("Service unavailable: {reason}"),
        }
    }

    pub fn into_reply(self) -> Reply {
        Reply::error(self.status(), &self.message())
    }

    /// The `reason` label of the refused-tokens metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::InvalidHeader(_) => "invalid_header",
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::Unauthorized(_) => "unauthorized",
            Rejection::Forbidden(_) => "forbidden",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::UnsupportedMediaType(_) => "unsupported_media_type",
            Rejection::Validation(_) => "validation",
            Rejection::TooManyRequests { .. } => "rate_limited",
            Rejection::Internal => "internal",
            Rejection::Unavailable(_) => "unavailable",
        }
    }
}

/// Signs tokens for the token routes: credentials, policy and signer, built
/// once at start and shared by every request.
#[derive(Debug)]
pub struct TokenMinter {
    api_key: String,
    policy: TokenPolicy,
    signer: Arc<SignerSlot>,
}

/// A token request that passed the contract's rules, before authorization.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenRequest {
    kind: MintKind,
    user_id: Option<String>,
    validity_seconds: u64,
    call_id: Option<String>,
    call_type: String,
    role: Option<String>,
}

/// An authorized request: exactly what the token will say.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    pub user_id: String,
    validity_seconds: u64,
    call_id: Option<String>,
    call_type: String,
    role: Option<String>,
}

impl TokenMinter {
    pub fn new(api_key: &str, api_secret: &str, policy: TokenPolicy) -> Self {
        TokenMinter::with_signer(
            api_key,
            Arc::new(SignerSlot::with_secret(api_secret.as_bytes())),
            policy,
        )
    }

    /// A minter whose key can be rotated through `signer` while it runs.
    pub fn with_signer(api_key: &str, signer: Arc<SignerSlot>, policy: TokenPolicy) -> Self {
        TokenMinter {
            api_key: api_key.to_string(),
            signer,
            policy,
        }
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// Checks that need only the headers, so that a wrong or oversized request is
    /// refused before its body is read.
    pub fn check_headers(
        &self,
        content_type: Option<&[u8]>,
        content_length: Option<&[u8]>,
    ) -> Result<(), Rejection> {
        if let Some(raw) = content_type {
            if !is_json_media_type(raw) {
                return Err(Rejection::UnsupportedMediaType(
                    String::from_utf8_lossy(raw).into_owned(),
                ));
            }
        }
        if let Some(raw) = content_length {
            let length = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    Rejection::InvalidHeader(
                        "Content-Length must be a whole number of bytes".into(),
                    )
                })?;
            if length > self.policy.max_body_bytes as u64 {
                return Err(self.too_large());
            }
        }
        Ok(())
    }

    pub fn too_large(&self) -> Rejection {
        Rejection::TooLarge {
            limit: self.policy.max_body_bytes,
        }
    }

    /// Parses and validates a body. `userId` may be left out only when the
    /// caller is identified (`identified`), since it then defaults to them.
    pub fn parse(
        &self,
        kind: MintKind,
        body: &[u8],
        identified: bool,
    ) -> Result<TokenRequest, Rejection> {
        TokenRequest::parse(kind, body, &self.policy, identified)
    }

    /// Decides what the token may say for this caller: with an identity, only
    /// that user, and only roles the policy or the identity allows.
    pub fn authorize(
        &self,
        request: TokenRequest,
        identity: Option<&Identity>,
    ) -> Result<Grant, Rejection> {
        let user_id = match (identity, request.user_id) {
            (Some(identity), Some(requested)) if requested != identity.user_id => {
                return Err(Rejection::Forbidden(
                    "userId does not match the authenticated user".into(),
                ))
            }
            (Some(identity), _) => identity.user_id.clone(),
            (None, Some(requested)) => requested,
            (None, None) => return Err(Rejection::Validation("userId is required".into())),
        };
        if let Some(allowed) = &self.policy.allowed_call_types {
            if request.call_id.is_some() && !allowed.contains(&request.call_type) {
                return Err(Rejection::Forbidden(format!(
                    "callType {:?} is not allowed (allowed: {})",
                    request.call_type,
                    allowed.join(", ")
                )));
            }
        }
        if let Some(role) = &request.role {
            let carried = identity.is_some_and(|i| i.roles.contains(role));
            if !self.policy.anyone_roles.contains(role) && !carried {
                return Err(Rejection::Forbidden(format!(
                    "role {role:?} is not granted to this user"
                )));
            }
        }
        debug_assert!(request.kind == MintKind::UserToken || request.call_id.is_some());
        Ok(Grant {
            user_id,
            validity_seconds: request.validity_seconds,
            call_id: request.call_id,
            call_type: request.call_type,
            role: request.role,
        })
    }

    /// Signs the token and builds the 200 answer.
    pub fn issue(&self, grant: &Grant, now: SystemTime) -> Result<Reply, Rejection> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let iat = now.saturating_sub(self.policy.iat_leeway_seconds);
        let exp = now.saturating_add(grant.validity_seconds);
        let call_cid = grant
            .call_id
            .as_deref()
            .map(|call_id| format!("{}:{call_id}", grant.call_type));
        let claims = Claims {
            user_id: &grant.user_id,
            iat,
            exp,
            call_cids: call_cid.as_deref().map(|cid| [cid]),
            role: grant.role.as_deref(),
        };
        let signer = self.signer.load().ok_or_else(|| {
            Rejection::Unavailable("the Stream API secret is not loaded yet".into())
        })?;
        let token = signer.sign(&claims).map_err(|e| {
            log::error!("token signing failed: {e}");
            Rejection::Internal
        })?;
        let expires_at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(exp));
        let response = Success {
            success: true,
            data: TokenData {
                token: &token,
                user_id: &grant.user_id,
                api_key: &self.api_key,
                call_id: grant.call_id.as_deref(),
                call_type: &grant.call_type,
                role: grant.role.as_deref(),
                validity_in_seconds: grant.validity_seconds,
                expires_at: expires_at.to_string(),
            },
        };
        let body = serde_json::to_vec(&response).map_err(|_| Rejection::Internal)?;
        Ok(Reply { status: 200, body })
    }

    /// All three steps for a complete body; what a route without rate limits does.
    pub fn answer(
        &self,
        kind: MintKind,
        body: &[u8],
        identity: Option<&Identity>,
        now: SystemTime,
    ) -> Reply {
        self.parse(kind, body, identity.is_some())
            .and_then(|request| self.authorize(request, identity))
            .and_then(|grant| self.issue(&grant, now))
            .unwrap_or_else(Rejection::into_reply)
    }
}

/// `application/json`, with parameters such as `charset` allowed.
fn is_json_media_type(raw: &[u8]) -> bool {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == "application/json")
}

/// Claims exactly as Stream's Node SDK writes them: nothing else, so that no
/// request field can leak into the token.
#[derive(Serialize)]
struct Claims<'a> {
    user_id: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_cids: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

#[derive(Serialize)]
struct Success<'a> {
    success: bool,
    data: TokenData<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenData<'a> {
    token: &'a str,
    user_id: &'a str,
    api_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_id: Option<&'a str>,
    call_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    validity_in_seconds: u64,
    expires_at: String,
}

/// The body as sent. Every field is a raw JSON value so that a wrong type is a
/// 422 naming the field, not a 400 from the parser; `null` counts as absent.
#[derive(Deserialize)]
struct RawTokenRequest {
    #[serde(rename = "userId", default)]
    user_id: Option<Value>,
    #[serde(rename = "validityInSeconds", default)]
    validity_in_seconds: Option<Value>,
    #[serde(rename = "callId", default)]
    call_id: Option<Value>,
    #[serde(rename = "callType", default)]
    call_type: Option<Value>,
    #[serde(default)]
    role: Option<Value>,
}

const USER_ID_RULE: &str = "must be 1 to 255 characters from A-Z a-z 0-9 @ _ -";
pub const NAME_RULE: &str = "must be 1 to 64 characters from A-Z a-z 0-9 _ -";

/// A string field that must satisfy `valid`; `None` when absent.
fn string_field(
    value: Option<Value>,
    field: &str,
    valid: fn(&str) -> bool,
    rule: &str,
) -> Result<Option<String>, Rejection> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) if valid(&s) => Ok(Some(s)),
        Some(Value::String(_)) => Err(validation(field, rule)),
        Some(_) => Err(validation(field, "must be a string")),
    }
}

impl TokenRequest {
    fn parse(
        kind: MintKind,
        body: &[u8],
        policy: &TokenPolicy,
        identified: bool,
    ) -> Result<TokenRequest, Rejection> {
        let raw = parse_object(body)?;
        let user_id = string_field(raw.user_id, "userId", is_user_id, USER_ID_RULE)?;
        if user_id.is_none() && !identified {
            return Err(Rejection::Validation("userId is required".into()));
        }
        let validity_seconds = match raw.validity_in_seconds {
            None => policy.default_validity_seconds,
            Some(value) => whole_seconds(&value)
                .filter(|s| (1..=policy.max_validity_seconds).contains(s))
                .ok_or_else(|| {
                    validation(
                        "validityInSeconds",
                        &format!(
                            "must be an integer between 1 and {}",
                            policy.max_validity_seconds
                        ),
                    )
                })?,
        };
        let call_id = string_field(raw.call_id, "callId", is_name, NAME_RULE)?;
        let call_type = string_field(raw.call_type, "callType", is_name, NAME_RULE)?
            .unwrap_or_else(|| "default".into());
        let role = match kind {
            // A user token has no role: the field is ignored like any unknown one.
            MintKind::UserToken => None,
            MintKind::CallToken => {
                if call_id.is_none() {
                    return Err(Rejection::Validation("callId is required".into()));
                }
                string_field(raw.role, "role", is_name, NAME_RULE)?
            }
        };
        Ok(TokenRequest {
            kind,
            user_id,
            validity_seconds,
            call_id,
            call_type,
            role,
        })
    }
}

fn validation(field: &str, rule: &str) -> Rejection {
    Rejection::Validation(format!("{field} {rule}"))
}

fn parse_object(body: &[u8]) -> Result<RawTokenRequest, Rejection> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(Rejection::InvalidJson(
            r#"the body is empty; send a JSON object such as {"userId":"john"}"#.into(),
        )),
        // serde would also accept an array as a struct, field by field in order;
        // the contract is an object, so anything else is refused up front.
        Some(b'{') => {
            serde_json::from_slice(body).map_err(|e| Rejection::InvalidJson(e.to_string()))
        }
        Some(_) => Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Rejection::InvalidJson("expected a JSON object".into()),
                Err(e) => Rejection::InvalidJson(e.to_string()),
            },
        ),
    }
}

/// A whole number of seconds: an integer, or a float with no fractional part
/// (`7200.0`, as JavaScript clients sometimes send). Strings are refused.
fn whole_seconds(value: &Value) -> Option<u64> {
    let number = value.as_number()?;
    if let Some(n) = number.as_u64() {
        return Some(n);
    }
    let f = number.as_f64()?;
    // Beyond 2^53 a float is no longer a trustworthy integer, and far beyond any
    // validity limit anyway.
    (f.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&f)).then_some(f as u64)
}

/// Stream's user-id rule: `^[@\w-]*$` with ASCII `\w`, 1 to 255 characters.
pub fn is_user_id(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'-'))
}

/// Call ids, call types and roles: `[A-Za-z0-9_-]`, 1 to 64 characters.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::HEADER_SEGMENT;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::json;

    const NOW: u64 = 1_795_000_000;

    fn endpoint() -> TokenMinter {
        TokenMinter::new("the-key", "the-secret", TokenPolicy::default())
    }

    fn answer(body: &str) -> (u16, Value) {
        let reply = endpoint().answer(
            MintKind::UserToken,
            body.as_bytes(),
            None,
            UNIX_EPOCH + Duration::from_secs(NOW),
        );
        (
            reply.status,
            serde_json::from_slice(&reply.body).expect("reply is JSON"),
        )
    }

    fn error_of(body: &str) -> (u16, String) {
        let (status, json) = answer(body);
        assert_eq!(json["success"], json!(false), "{json}");
        assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
        (
            status,
            json["error"]
                .as_str()
                .expect("error is a string")
                .to_string(),
        )
    }

    fn claims_of(token: &str) -> Value {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(b"the-secret"), &validation)
            .expect("token verifies")
            .claims
    }

    #[test]
    fn user_token_with_call() {
        let (status, json) =
            answer(r#"{"userId":"user123","validityInSeconds":7200,"callId":"call-456"}"#);
        assert_eq!(status, 200);
        assert_eq!(json["success"], json!(true));
        let data = &json["data"];
        assert_eq!(data["userId"], "user123");
        assert_eq!(data["apiKey"], "the-key");
        assert_eq!(data["callId"], "call-456");
        assert_eq!(data["callType"], "default");
        assert_eq!(data["validityInSeconds"], 7200);
        assert_eq!(data["expiresAt"], "2026-11-18T13:06:40Z");
        let token = data["token"].as_str().unwrap();
        assert!(token.starts_with(HEADER_SEGMENT));
        assert_eq!(
            claims_of(token),
            json!({"user_id":"user123","iat":NOW - 5,"exp":NOW + 7200,"call_cids":["default:call-456"]})
        );
    }

    #[test]
    fn data_keys_are_exactly_the_contract() {
        let reply = endpoint().answer(
            MintKind::UserToken,
            br#"{"userId":"u","extra":"ignored","role":"admin"}"#,
            None,
            UNIX_EPOCH + Duration::from_secs(NOW),
        );
        let text = String::from_utf8(reply.body).unwrap();
        let order = [
            "token",
            "userId",
            "apiKey",
            "callType",
            "validityInSeconds",
            "expiresAt",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["data"].as_object().unwrap().len(),
            order.len(),
            "{text}"
        );
        let claims = claims_of(json["data"]["token"].as_str().unwrap());
        assert_eq!(
            claims,
            json!({"user_id":"u","iat":NOW - 5,"exp":NOW + 3600})
        );
    }

    #[test]
    fn custom_call_type_and_integral_float() {
        let (status, json) = answer(
            r#"{"userId":"a@b_c-d","validityInSeconds":60.0,"callId":"x","callType":"livestream"}"#,
        );
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["data"]["validityInSeconds"], 60);
        let claims = claims_of(json["data"]["token"].as_str().unwrap());
        assert_eq!(claims["call_cids"], json!(["livestream:x"]));
    }

    #[test]
    fn null_fields_count_as_absent() {
        let (status, json) =
            answer(r#"{"userId":"u","callId":null,"callType":null,"validityInSeconds":null}"#);
        assert_eq!(status, 200, "{json}");
        assert!(json["data"].get("callId").is_none());
        assert_eq!(json["data"]["validityInSeconds"], 3600);
    }

    #[test]
    fn validation_messages_name_field_and_rule() {
        let cases = [
            (r#"{}"#, "Validation failed: userId is required"),
            (
                r#"{"userId":null}"#,
                "Validation failed: userId is required",
            ),
            (
                r#"{"userId":""}"#,
                "Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -",
            ),
            (
                r#"{"userId":"a b"}"#,
                "Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -",
            ),
            (
                r#"{"userId":"a|b"}"#,
                "Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -",
            ),
            (
                r#"{"userId":"é"}"#,
                "Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -",
            ),
            (
                r#"{"userId":42}"#,
                "Validation failed: userId must be a string",
            ),
            (
                r#"{"userId":"u","validityInSeconds":0}"#,
                "Validation failed: validityInSeconds must be an integer between 1 and 86400",
            ),
            (
                r#"{"userId":"u","validityInSeconds":86401}"#,
                "Validation failed: validityInSeconds must be an integer between 1 and 86400",
            ),
            (
                r#"{"userId":"u","validityInSeconds":-5}"#,
                "Validation failed: validityInSeconds must be an integer between 1 and 86400",
            ),
            (
                r#"{"userId":"u","validityInSeconds":1.5}"#,
                "Validation failed: validityInSeconds must be an integer between 1 and 86400",
            ),
            (
                r#"{"userId":"u","validityInSeconds":"7200"}"#,
                "Validation failed: validityInSeconds must be an integer between 1 and 86400",
            ),
            (
                r#"{"userId":"u","validityInSeconds":1e300}"#,
                "Validation failed: validityInSeconds must be an integer between 1 and 86400",
            ),
            (
                r#"{"userId":"u","callId":""}"#,
                "Validation failed: callId must be 1 to 64 characters from A-Z a-z 0-9 _ -",
            ),
            (
                r#"{"userId":"u","callId":"a:b"}"#,
                "Validation failed: callId must be 1 to 64 characters from A-Z a-z 0-9 _ -",
            ),
            (
                r#"{"userId":"u","callId":7}"#,
                "Validation failed: callId must be a string",
            ),
            (
                r#"{"userId":"u","callType":"a.b"}"#,
                "Validation failed: callType must be 1 to 64 characters from A-Z a-z 0-9 _ -",
            ),
            (
                r#"{"userId":"u","callType":7}"#,
                "Validation failed: callType must be a string",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(error_of(body), (422, message.to_string()), "body {body}");
        }
    }

    #[test]
    fn length_limits_are_inclusive() {
        let at = format!(
            r#"{{"userId":"{}","callId":"{}"}}"#,
            "u".repeat(255),
            "c".repeat(64)
        );
        assert_eq!(answer(&at).0, 200);
        assert_eq!(
            error_of(&format!(r#"{{"userId":"{}"}}"#, "u".repeat(256))).0,
            422
        );
        assert_eq!(
            error_of(&format!(
                r#"{{"userId":"u","callId":"{}"}}"#,
                "c".repeat(65)
            ))
            .0,
            422
        );
    }

    #[test]
    fn malformed_bodies_are_400() {
        for body in [
            "",
            "  ",
            "{",
            "not json",
            "[1,2]",
            r#"["user123"]"#,
            "\"userId\"",
            "null",
            r#"{"userId":"u"} x"#,
            r#"{"userId":"u","userId":"v"}"#,
        ] {
            let (status, message) = error_of(body);
            assert_eq!(status, 400, "body {body:?}: {message}");
            assert!(message.starts_with("Invalid JSON body: "), "{message}");
        }
        assert_eq!(
            error_of("[1]").1,
            "Invalid JSON body: expected a JSON object"
        );
    }

    #[test]
    fn header_checks() {
        let e = endpoint();
        assert_eq!(e.check_headers(None, None), Ok(()));
        assert_eq!(
            e.check_headers(Some(b"application/json"), Some(b"10")),
            Ok(())
        );
        assert_eq!(
            e.check_headers(Some(b"Application/JSON; charset=utf-8"), None),
            Ok(())
        );
        let rejected = e.check_headers(Some(b"text/plain"), None).unwrap_err();
        assert_eq!(rejected.status(), 415);
        assert_eq!(
            rejected.message(),
            r#"Unsupported Content-Type "text/plain": send application/json"#
        );
        assert_eq!(
            e.check_headers(Some(b"garbage"), None)
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(e.check_headers(None, Some(b"16384")), Ok(()));
        assert_eq!(
            e.check_headers(None, Some(b"ten")).unwrap_err().status(),
            400
        );
        let too_large = e.check_headers(None, Some(b"16385")).unwrap_err();
        assert_eq!(too_large.status(), 413);
        assert_eq!(
            too_large.message(),
            "Request body too large: the limit is 16384 bytes"
        );
    }

    #[test]
    fn error_envelope_escapes_the_message() {
        let reply = Reply::error(404, "no route for \"/x\"");
        assert_eq!(
            reply.body,
            br#"{"success":false,"error":"no route for \"/x\""}"#
        );
    }

    fn call_answer(body: &str, identity: Option<&Identity>, policy: TokenPolicy) -> (u16, Value) {
        let minter = TokenMinter::new("the-key", "the-secret", policy);
        let reply = minter.answer(
            MintKind::CallToken,
            body.as_bytes(),
            identity,
            UNIX_EPOCH + Duration::from_secs(NOW),
        );
        (reply.status, serde_json::from_slice(&reply.body).unwrap())
    }

    fn alice(roles: &[&str]) -> Identity {
        Identity {
            user_id: "alice".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn identity_decides_the_user() {
        let minter = endpoint();
        let at = UNIX_EPOCH + Duration::from_secs(NOW);
        let me = alice(&[]);
        let reply = minter.answer(MintKind::UserToken, b"{}", Some(&me), at);
        assert_eq!(reply.status, 200);
        let json: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(json["data"]["userId"], "alice");
        assert_eq!(
            claims_of(json["data"]["token"].as_str().unwrap())["user_id"],
            "alice"
        );
        assert_eq!(
            minter
                .answer(MintKind::UserToken, br#"{"userId":"alice"}"#, Some(&me), at)
                .status,
            200
        );
        let other = minter.answer(
            MintKind::UserToken,
            br#"{"userId":"mallory"}"#,
            Some(&me),
            at,
        );
        assert_eq!(
            other,
            Reply::error(
                403,
                "Forbidden: userId does not match the authenticated user"
            )
        );
    }

    #[test]
    fn call_token_carries_the_role_and_call() {
        let (status, json) = call_answer(
            r#"{"userId":"u","callId":"c1","role":"user"}"#,
            None,
            TokenPolicy::default(),
        );
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["data"]["role"], "user");
        assert_eq!(
            claims_of(json["data"]["token"].as_str().unwrap()),
            json!({"user_id":"u","iat":NOW - 5,"exp":NOW + 3600,"call_cids":["default:c1"],"role":"user"})
        );
        let (status, json) = call_answer(
            r#"{"userId":"u","callId":"c1"}"#,
            None,
            TokenPolicy::default(),
        );
        assert_eq!(status, 200);
        assert!(claims_of(json["data"]["token"].as_str().unwrap())
            .get("role")
            .is_none());
        assert_eq!(
            call_answer(r#"{"userId":"u"}"#, None, TokenPolicy::default()),
            (
                422,
                json!({"success":false,"error":"Validation failed: callId is required"})
            )
        );
        assert_eq!(
            call_answer(
                r#"{"userId":"u","callId":"c","role":"a b"}"#,
                None,
                TokenPolicy::default()
            )
            .0,
            422
        );
    }

    #[test]
    fn roles_beyond_the_open_list_need_the_identity_to_carry_them() {
        let escalate = r#"{"callId":"c1","role":"admin"}"#;
        let refused = json!({"success":false,"error":"Forbidden: role \"admin\" is not granted to this user"});
        assert_eq!(
            call_answer(escalate, Some(&alice(&[])), TokenPolicy::default()),
            (403, refused.clone())
        );
        assert_eq!(
            call_answer(
                r#"{"userId":"u","callId":"c1","role":"admin"}"#,
                None,
                TokenPolicy::default()
            ),
            (403, refused)
        );
        assert_eq!(
            call_answer(escalate, Some(&alice(&["admin"])), TokenPolicy::default()).0,
            200
        );
    }

    #[test]
    fn call_types_can_be_restricted() {
        let policy = TokenPolicy {
            allowed_call_types: Some(vec!["default".into()]),
            ..TokenPolicy::default()
        };
        assert_eq!(
            call_answer(r#"{"userId":"u","callId":"c"}"#, None, policy.clone()).0,
            200
        );
        let (status, json) = call_answer(
            r#"{"userId":"u","callId":"c","callType":"livestream"}"#,
            None,
            policy,
        );
        assert_eq!(status, 403);
        assert_eq!(
            json["error"],
            "Forbidden: callType \"livestream\" is not allowed (allowed: default)"
        );
    }
}
