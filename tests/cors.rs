//! CORS origins compared the way browsers send them: origins written with
//! capitals, a default port or a trailing slash in the configuration allow
//! the lower-case `Origin` a browser sends, on a real streamgate.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_configured_in_capitals_allows_what_the_browser_sends() {
    let app = start_app().await;
    let config = config_with(
        app.addr,
        "cors:\n  allowed_origins: [\"https://Admin.Example.com\", \"http://App.Example.com:80/\"]\n  allow_credentials: true",
    );
    let gate = Streamgate::start(&config);
    for origin in ["https://admin.example.com", "http://app.example.com"] {
        let preflight = client()
            .request(reqwest::Method::OPTIONS, gate.url(USER_TOKEN_PATH))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 204, "{origin}");
        assert_eq!(
            preflight.headers()["access-control-allow-origin"],
            origin,
            "{origin}"
        );
        assert_eq!(
            preflight.headers()["access-control-allow-credentials"],
            "true"
        );
        let (status, answer, headers) =
            mint_user(&gate, json!({"userId": "u"}), &[("origin", origin)]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(headers["access-control-allow-origin"], origin);
    }
    // The configuration's own spelling is no browser's: not allowed, not echoed.
    let (status, _, headers) = mint_user(
        &gate,
        json!({"userId": "u"}),
        &[("origin", "https://Admin.Example.com")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers.get("access-control-allow-origin").is_none());
    assert_eq!(headers["vary"], "Origin");
    // The trailing slash was dropped, and the start said so.
    let logs = gate.logs();
    assert!(
        logs.contains("cors.allowed_origins[1]: \"http://App.Example.com:80/\" is read as the origin http://app.example.com"),
        "{logs}"
    );
    assert!(!logs.contains("cors.allowed_origins[0]"), "{logs}");
}
