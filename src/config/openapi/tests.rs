use serde_json::json;

use super::*;
use crate::config::tests::{load, MINIMAL};

fn document(extra: &str) -> Value {
    load(&format!("{MINIMAL}{extra}"))
        .expect("a valid configuration")
        .openapi()
}

fn statuses(operation: &Value) -> Vec<&str> {
    let mut statuses: Vec<&str> = operation["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(String::as_str)
        .collect();
    statuses.sort_unstable();
    statuses
}

#[test]
fn the_default_routes_are_two_operations_without_identity() {
    let document = document("");
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["servers"],
        json!([{ "url": "http://127.0.0.1:3000" }])
    );
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(
        paths.keys().collect::<Vec<_>>(),
        ["/api/tokens/call", "/api/tokens/user"]
    );
    let user = &paths["/api/tokens/user"]["post"];
    assert_eq!(user["operationId"], "post_api_tokens_user");
    assert_eq!(
        statuses(user),
        ["200", "400", "408", "413", "414", "415", "422", "431", "500", "503"]
    );
    assert!(user.get("security").is_none() && user.get("parameters").is_none());
    let call = &paths["/api/tokens/call"]["post"];
    assert!(
        statuses(call).contains(&"403"),
        "a call role may be refused"
    );
    assert_eq!(
        call["responses"]["403"]["content"]["application/json"]["schema"],
        json!({ "$ref": "#/components/schemas/TokenError" })
    );
}

#[test]
fn each_route_documents_its_own_identity() {
    let document = document(
        r#"
routes:
  - match: { method: POST, path: /h/tokens/user }
    mint: user_token
    identity: { mode: header, header: { user: X-User, roles: X-Roles } }
  - match: { method: POST, path: /j/tokens/call }
    mint: call_token
    identity: { mode: jwt, jwt: { hs256_secret: s, audience: app } }
  - match: { path_prefix: / }
    upstream: app
rate_limits:
  per_client_ip: { requests: 10, window: 1m }
"#,
    );
    let header = &document["paths"]["/h/tokens/user"]["post"];
    assert_eq!(header["parameters"][0]["name"], "x-user");
    assert_eq!(header["parameters"][0]["required"], true);
    assert_eq!(header["parameters"][1]["name"], "x-roles");
    assert!(statuses(header).contains(&"401") && statuses(header).contains(&"429"));
    assert_eq!(
        header["responses"]["429"]["headers"]["Retry-After"]["required"],
        true
    );
    let jwt = &document["paths"]["/j/tokens/call"]["post"];
    assert_eq!(jwt["security"], json!([{ "bearer_jwt": [] }]));
    assert!(jwt["responses"]["401"]["headers"]
        .get("WWW-Authenticate")
        .is_some());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer_jwt"]["scheme"],
        "bearer"
    );
    assert_eq!(
        document["paths"].as_object().unwrap().len(),
        2,
        "no proxied route"
    );
}

#[test]
fn a_shadowed_token_route_is_left_out() {
    let document = document(
        r#"
routes:
  - { match: { path_prefix: /api/ }, upstream: app }
  - { match: { method: POST, path: /api/tokens/user }, mint: user_token }
  - { match: { path_prefix: /t/ }, mint: user_token }
"#,
    );
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(paths.keys().collect::<Vec<_>>(), ["/t/"]);
    assert_eq!(paths["/t/"]["post"]["operationId"], "post_t_prefix");
}
