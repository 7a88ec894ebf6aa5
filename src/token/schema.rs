//! The token contract in JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it):
//! the request body a route accepts and the two envelopes it answers with,
//! for the OpenAPI document of the running configuration
//! (`crate::config::Config::openapi`).
//!
//! Written from the same rules as [`super::request`] and [`super::TokenMinter::authorize`],
//! with the policy's numbers and lists filled in, so that a body valid here is
//! minted for and one invalid here is refused with a 4xx; schemathesis checks
//! that from outside (`make test`). A field set to `null` counts as absent, so
//! optional fields also admit `null`.

use serde_json::{json, Map, Value};

use super::signing::HEADER_SEGMENT;
use super::{is_name, MintKind, TokenPolicy};

/// Stream's user-id rule ([`super::is_user_id`]).
pub const USER_ID_PATTERN: &str = "^[A-Za-z0-9@_-]{1,255}$";
/// Call ids, call types and roles ([`super::is_name`]).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// The body of a token request to a route minting `kind` under `policy`;
/// `identified`: the route has an identity mode, so `userId` is optional (the
/// authenticated user) and roles beyond `anyone_roles` may be granted.
pub fn request_schema(kind: MintKind, policy: &TokenPolicy, identified: bool) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let user_id = json!({
        "type": "string",
        "pattern": USER_ID_PATTERN,
        "description": if identified {
            "The user the token is for: optional, the authenticated user; another user is 403."
        } else {
            "The user the token is for (Stream's user-id rule)."
        },
    });
    if identified {
        properties.insert("userId".into(), nullable(user_id));
    } else {
        properties.insert("userId".into(), user_id);
        required.push("userId");
    }
    properties.insert(
        "validityInSeconds".into(),
        nullable(json!({
            "type": "integer",
            "minimum": 1,
            "maximum": policy.max_validity_seconds,
            "default": policy.default_validity_seconds,
            "description": "How long the token is valid, in seconds; an integral float (7200.0) \
                            is accepted, a string is not.",
        })),
    );
    let call_id = json!({
        "type": "string",
        "pattern": NAME_PATTERN,
        "description": "Restricts the token to this call.",
    });
    match kind {
        MintKind::UserToken => {
            properties.insert("callId".into(), nullable(call_id));
        }
        MintKind::CallToken => {
            properties.insert("callId".into(), call_id);
            required.push("callId");
        }
    }
    properties.insert(
        "callType".into(),
        nullable(json!({
            "type": "string",
            "pattern": NAME_PATTERN,
            "default": "default",
            "description": "The call's type, with callId.",
        })),
    );
    if kind == MintKind::CallToken {
        properties.insert("role".into(), role_schema(policy, identified));
    }
    let mut schema = json!({
        "type": "object",
        "description": "Unknown fields are ignored.",
        "properties": properties,
        "required": required,
    });
    if let Some(allowed) = allowed_call_types(policy) {
        restrict_call_type(&mut schema, kind, &allowed);
    }
    schema
}

/// The call role: in a route without identity only `anyone_roles` can be
/// granted; with one, any valid name (a role the identity does not carry is 403).
fn role_schema(policy: &TokenPolicy, identified: bool) -> Value {
    if identified {
        return nullable(json!({
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "The call role: one of tokens.anyone_roles, or one the caller's \
                            identity carries (403 otherwise).",
        }));
    }
    let mut roles: Vec<Value> = policy
        .anyone_roles
        .iter()
        .filter(|role| is_name(role))
        .map(|role| json!(role))
        .collect();
    roles.push(Value::Null);
    json!({
        "enum": roles,
        "description": "The call role: one of tokens.anyone_roles (no identity carries others here).",
    })
}

/// `tokens.allowed_call_types`, less names no request could carry.
fn allowed_call_types(policy: &TokenPolicy) -> Option<Vec<&str>> {
    let allowed = policy.allowed_call_types.as_ref()?;
    Some(
        allowed
            .iter()
            .map(String::as_str)
            .filter(|name| is_name(name))
            .collect(),
    )
}

/// With `tokens.allowed_call_types`, a token with a call (`callId` given)
/// must have one of them as `callType`, whose default is `"default"`.
fn restrict_call_type(schema: &mut Value, kind: MintKind, allowed: &[&str]) {
    let mut values: Vec<Value> = allowed.iter().map(|name| json!(name)).collect();
    let default_allowed = allowed.contains(&"default");
    if default_allowed {
        values.push(Value::Null);
    }
    let mut rule = json!({ "properties": { "callType": { "enum": values } } });
    if !default_allowed {
        rule["required"] = json!(["callType"]);
    }
    match kind {
        MintKind::CallToken => {
            if let Some(object) = schema.as_object_mut() {
                object.insert("allOf".into(), json!([rule]));
            }
        }
        MintKind::UserToken => {
            let with_call = json!({
                "required": ["callId"],
                "properties": { "callId": { "type": "string" } },
            });
            if let Some(object) = schema.as_object_mut() {
                object.insert("if".into(), with_call);
                object.insert("then".into(), rule);
            }
        }
    }
}

/// `schema`, or `null` (absent).
fn nullable(schema: Value) -> Value {
    let Value::Object(mut object) = schema else {
        return schema;
    };
    let description = object.remove("description");
    let mut wrapped = json!({ "anyOf": [Value::Object(object), { "type": "null" }] });
    if let Some(description) = description {
        wrapped["description"] = description;
    }
    wrapped
}

/// The `200` body: the token and what it was minted for. `apiKey` is the
/// configured Stream API key; `role` only in call tokens that asked for one.
pub fn success_schema(kind: MintKind, api_key: &str, policy: &TokenPolicy) -> Value {
    let mut data = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["token", "userId", "apiKey", "callType", "validityInSeconds", "expiresAt"],
        "properties": {
            "token": {
                "type": "string",
                // Every token starts with the SDKs' header segment.
                "pattern": format!(r"^{HEADER_SEGMENT}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"),
                "description": "The Stream token: HS256, signed with the API secret.",
            },
            "userId": { "type": "string", "pattern": USER_ID_PATTERN },
            "apiKey": { "const": api_key },
            "callId": {
                "type": "string",
                "pattern": NAME_PATTERN,
                "description": "Present when the request had one.",
            },
            "callType": { "type": "string", "pattern": NAME_PATTERN },
            "validityInSeconds": {
                "type": "integer",
                "minimum": 1,
                "maximum": policy.max_validity_seconds,
                "description": "Seconds until expiresAt (shorter than asked when capped by the \
                                credential's own expiry).",
            },
            "expiresAt": {
                "type": "string",
                "format": "date-time",
                "pattern": "Z$",
                "description": "The token's exp, RFC 3339 UTC.",
            },
        },
    });
    if kind == MintKind::CallToken {
        data["required"] = json!([
            "token",
            "userId",
            "apiKey",
            "callId",
            "callType",
            "validityInSeconds",
            "expiresAt"
        ]);
        data["properties"]["role"] = json!({
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "The granted call role, when asked for.",
        });
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["success", "data"],
        "properties": { "success": { "const": true }, "data": data },
    })
}

/// Every refusal: `{"success":false,"error":"<message>"}` ([`super::Reply::error`]).
pub fn error_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["success", "error"],
        "properties": {
            "success": { "const": false },
            "error": {
                "type": "string",
                "minLength": 1,
                "description": "What was wrong and, where the caller can act, what to do.",
            },
        },
    })
}

#[cfg(test)]
mod tests;
