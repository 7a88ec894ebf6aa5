//! The token request body and the field rules it must satisfy.

use serde::Deserialize;
use serde_json::Value;

use super::{MintKind, Rejection, TokenPolicy};

/// A token request that passed the contract's rules, before authorization.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub(super) kind: MintKind,
    pub(super) user_id: Option<String>,
    pub(super) validity_seconds: u64,
    pub(super) call_id: Option<String>,
    pub(super) call_type: String,
    pub(super) role: Option<String>,
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

pub const USER_ID_RULE: &str = "must be 1 to 255 characters from A-Z a-z 0-9 @ _ -";
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
    pub(super) fn parse(
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

/// `application/json`, with parameters such as `charset` allowed.
pub(super) fn is_json_media_type(raw: &[u8]) -> bool {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == "application/json")
}

/// The longest user id Stream accepts, in characters (every allowed character
/// is ASCII, so also in bytes).
pub const USER_ID_MAX_LEN: usize = 255;

/// Stream's user-id rule: `^[@\w-]*$` with ASCII `\w`, 1 to [`USER_ID_MAX_LEN`]
/// characters.
pub fn is_user_id(s: &str) -> bool {
    (1..=USER_ID_MAX_LEN).contains(&s.len()) && s.chars().all(is_user_id_char)
}

/// A character Stream allows in a user id: `A-Z a-z 0-9 @ _ -`.
pub fn is_user_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '@' | '_' | '-')
}

/// Call ids, call types and roles: `[A-Za-z0-9_-]`, 1 to 64 characters.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}
