//! The published contracts: the JSON Schema of the configuration file
//! (`streamgate schema`, checked in as `conf/streamgate.schema.json`) and the
//! OpenAPI document of the token routes (`GET /openapi.json` on the admin
//! listener). That the shipped configs validate against the schema and that
//! the running routes answer as the document says is checked with
//! independent tools (check-jsonschema, schemathesis) by `make contract-check`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

#[test]
fn the_checked_in_schema_is_what_the_code_derives() {
    let output = Command::new(binary())
        .arg("schema")
        .output()
        .expect("run streamgate schema");
    assert!(output.status.success(), "{output:?}");
    let derived = String::from_utf8(output.stdout).expect("utf-8");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/streamgate.schema.json");
    let checked_in = std::fs::read_to_string(&path).expect("conf/streamgate.schema.json");
    assert!(
        derived == checked_in,
        "conf/streamgate.schema.json is not what the code derives: a key or doc comment of \
         src/config/raw.rs changed. Regenerate it with\n  \
         cargo run -q -- schema > conf/streamgate.schema.json\nand commit the result."
    );
    let schema: Value = serde_json::from_str(&derived).expect("JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let help = Command::new(binary())
        .arg("--help")
        .output()
        .expect("--help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("schema") && help.contains("Print the JSON Schema of the configuration file"),
        "{help}"
    );
}

#[tokio::test]
async fn openapi_json_describes_the_token_routes_as_configured() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(
        app.addr,
        r#"
trusted_cidrs: ["127.0.0.1/32"]
routes:
  - { match: { method: POST, path: /tokens/anyone }, mint: user_token }
  - match: { method: POST, path: /tokens/proxied }
    mint: call_token
    identity: { mode: header, header: { user: X-Auth-User } }
  - match: { method: POST, path: /tokens/jwt }
    mint: user_token
    identity: { mode: jwt, jwt: { hs256_secret: idp-secret, audience: app } }
  - { match: { path_prefix: / }, upstream: app }
"#,
    ));
    // As README fetches it.
    let fetched = curl(&["-s", &gate.admin_url("/openapi.json")]);
    assert_eq!(fetched.status(), Some(200), "{}", fetched.head);
    assert_eq!(fetched.header("content-type"), Some("application/json"));
    let document: Value = serde_json::from_str(&fetched.body).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["servers"],
        json!([{ "url": format!("http://127.0.0.1:{}", gate.port) }])
    );
    let paths = document["paths"].as_object().expect("paths");
    assert_eq!(
        paths.keys().collect::<Vec<_>>(),
        ["/tokens/anyone", "/tokens/jwt", "/tokens/proxied"],
        "the token routes, not the proxied ones"
    );
    let anyone = &paths["/tokens/anyone"]["post"];
    assert_eq!(
        anyone["requestBody"]["content"]["application/json"]["schema"]["required"],
        json!(["userId"])
    );
    let proxied = &paths["/tokens/proxied"]["post"];
    assert_eq!(proxied["parameters"][0]["name"], "x-auth-user");
    assert_eq!(proxied["parameters"][0]["in"], "header");
    let jwt = &paths["/tokens/jwt"]["post"];
    assert_eq!(jwt["security"], json!([{ "bearer_jwt": [] }]));

    // The document's request is answered as its 200 says.
    let answer = post_json(
        gate.url("/tokens/proxied"),
        &json!({ "callId": "standup" }),
        &[("X-Auth-User", "alice")],
    )
    .await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("JSON");
    let data_schema =
        &proxied["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"];
    let mut fields: Vec<&str> = body["data"]
        .as_object()
        .expect("data")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    let mut documented: Vec<&str> = data_schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    documented.sort_unstable();
    assert_eq!(fields, documented);
    assert_eq!(data_schema["properties"]["apiKey"]["const"], API_KEY);
}
