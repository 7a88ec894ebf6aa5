//! Provider ids that Stream refuses (`auth0|123`, e-mail addresses) made into
//! Stream user ids by `identity.user_id_map`: the real binary in header mode,
//! and the user id of the token it mints.

mod common;

use common::*;
use serde_json::json;

/// `printf %s 'auth0|123' | sha256sum`
const AUTH0_123_SHA256: &str = "4043445eadeeeb2a5d885af3c133f60ef57523a1ff87ba20edcc5b6de392eb6c";

#[tokio::test(flavor = "multi_thread")]
async fn replace_invalid_mints_for_the_id_with_underscores() {
    let app = start_app().await;
    let gate = Streamgate::start(&config_with(
        app.addr,
        "identity:\n  mode: header\n  user_id_map: { replace_invalid: \"_\" }",
    ));
    for (provider_id, stream_id) in [
        ("auth0|123", "auth0_123"),
        ("google-oauth2|1041", "google-oauth2_1041"),
        ("a.b+c@example.com", "a_b_c@example_com"),
    ] {
        let (status, answer, _) =
            mint_user(&gate, json!({}), &[("x-forwarded-user", provider_id)]).await;
        assert_eq!(status, 200, "{provider_id}: {answer}");
        assert_eq!(minted_user(&answer), stream_id);
        assert_eq!(answer["data"]["userId"], stream_id);
    }
    // The caller names the mapped id, never the provider's.
    let (status, answer, _) = mint_user(
        &gate,
        json!({"userId": "auth0_123"}),
        &[("x-forwarded-user", "auth0|123")],
    )
    .await;
    assert_eq!((status, minted_user(&answer)), (200, "auth0_123".into()));
}

/// Per route: one hashes, the other has no map and says what would fix it.
#[tokio::test(flavor = "multi_thread")]
async fn hash_mints_for_the_sha256_and_no_map_says_what_to_set() {
    let app = start_app().await;
    let routes = format!(
        "routes:\n  - match: {{ method: POST, path: {USER_TOKEN_PATH} }}\n    mint: user_token\n    \
         identity: {{ mode: header, user_id_map: {{ hash: sha256 }} }}\n  - match: {{ method: POST, \
         path: /api/tokens/plain }}\n    mint: user_token\n    identity: {{ mode: header }}\n  - \
         {{ match: {{ path_prefix: / }}, upstream: app }}"
    );
    let gate = Streamgate::start(&config_with(app.addr, &routes));
    let auth0 = [("x-forwarded-user", "auth0|123")];

    let (status, answer, _) = mint_user(&gate, json!({}), &auth0).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(minted_user(&answer), AUTH0_123_SHA256);

    let (status, answer, _) = mint(&gate, "/api/tokens/plain", json!({}), &auth0).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        answer["error"],
        "Forbidden: the authenticated user id contains '|', which Stream does not allow in a \
         user id (a user id must be 1 to 255 characters from A-Z a-z 0-9 @ _ -): set \
         identity.user_id_map: {replace_invalid: \"_\"} or {hash: sha256}"
    );
    assert!(
        metric_reaches(
            &gate,
            "streamgate_tokens_refused_total",
            &[
                ("route", "POST /api/tokens/plain"),
                ("reason", "invalid_user_id")
            ],
            |v| v == 1.0
        )
        .await
    );
}
