use regex::Regex;
use serde_json::json;

use super::*;
use crate::token::is_user_id;

/// Every ASCII character alone, and the length bounds, around a rule.
fn samples(allowed: char, longest: usize) -> Vec<String> {
    let mut samples: Vec<String> = (0u8..128).map(|b| char::from(b).to_string()).collect();
    for len in [0, 1, longest, longest + 1] {
        samples.push(allowed.to_string().repeat(len));
    }
    samples.push("a\n".to_string());
    samples
}

#[test]
fn the_patterns_are_the_contracts_rules() {
    let user_id = Regex::new(USER_ID_PATTERN).unwrap();
    for sample in samples('@', 255) {
        assert_eq!(user_id.is_match(&sample), is_user_id(&sample), "{sample:?}");
    }
    let name = Regex::new(NAME_PATTERN).unwrap();
    for sample in samples('-', 64) {
        assert_eq!(name.is_match(&sample), is_name(&sample), "{sample:?}");
    }
}

#[test]
fn without_identity_user_id_is_required_and_roles_are_anyone_roles() {
    let policy = TokenPolicy {
        anyone_roles: vec!["user".into(), "not a name".into()],
        ..TokenPolicy::default()
    };
    let schema = request_schema(MintKind::CallToken, &policy, false);
    assert_eq!(schema["required"], json!(["userId", "callId"]));
    assert_eq!(schema["properties"]["role"]["enum"], json!(["user", null]));
    let maximum = &schema["properties"]["validityInSeconds"]["anyOf"][0]["maximum"];
    assert_eq!(maximum, &json!(86400));

    let schema = request_schema(MintKind::UserToken, &policy, true);
    assert_eq!(schema["required"], json!([]));
    assert!(schema["properties"].get("role").is_none(), "{schema:#}");
}

#[test]
fn allowed_call_types_bind_call_type_when_there_is_a_call() {
    let policy = TokenPolicy {
        allowed_call_types: Some(vec!["livestream".into()]),
        ..TokenPolicy::default()
    };
    let schema = request_schema(MintKind::UserToken, &policy, false);
    assert_eq!(schema["if"]["required"], json!(["callId"]));
    // "default", what an absent callType means, is not allowed: callType is required.
    assert_eq!(
        schema["then"],
        json!({ "properties": { "callType": { "enum": ["livestream"] } }, "required": ["callType"] })
    );
    let policy = TokenPolicy {
        allowed_call_types: Some(vec!["default".into()]),
        ..TokenPolicy::default()
    };
    let schema = request_schema(MintKind::CallToken, &policy, false);
    assert_eq!(
        schema["allOf"],
        json!([{ "properties": { "callType": { "enum": ["default", null] } } }])
    );
}

#[test]
fn a_minted_token_matches_the_success_schema_pattern() {
    let schema = success_schema(MintKind::UserToken, "key", &TokenPolicy::default());
    let pattern = schema["properties"]["data"]["properties"]["token"]["pattern"]
        .as_str()
        .unwrap();
    let token = format!("{HEADER_SEGMENT}.eyJ1c2VyX2lkIjoiYSJ9.c2ln-_");
    assert!(Regex::new(pattern).unwrap().is_match(&token));
    assert_eq!(
        schema["properties"]["data"]["properties"]["apiKey"],
        json!({ "const": "key" })
    );
}
