//! `jwt` mode with keys from the identity provider (`issuer_url` through
//! OpenID Connect discovery, or `jwks_url`), against an HTTPS stand-in the
//! test starts, stops and rotates: readiness waits for the keys, a rotation is
//! picked up through the unknown `kid`, a flood of made-up `kid`s costs the
//! provider one request per interval, a provider that goes down leaves the
//! last keys in use, and the minted token never outlives the JWT.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const AUDIENCE: &str = "stream-tokens";

/// jwt mode through discovery at `idp`, trusting its CA; `fetch` and `jwt`
/// add settings to the `jwks_fetch` and `jwt` blocks.
fn discovery_config(app: SocketAddr, idp: &Idp, fetch: &str, jwt: &str) -> String {
    config_with(
        app,
        &format!(
            "identity:\n  mode: jwt\n  jwt:\n    issuer_url: \"{}\"\n    audience: {AUDIENCE}\n    \
             jwks_fetch: {{ ca_file: \"{}\", timeout: 2s{fetch} }}\n{jwt}",
            idp.issuer,
            idp.ca_file.display()
        ),
    )
}

/// An identity token from `idp` for `sub`, valid for `seconds`, signed with
/// the fixture key `key` (whose name is its `kid`).
fn id_token(idp: &Idp, sub: &str, seconds: u64, key: &str) -> String {
    rs256(
        json!({"sub": sub, "iss": idp.issuer, "aud": AUDIENCE, "exp": now() + seconds}),
        key,
    )
}

async fn mint_with(gate: &Streamgate, token: &str, body: Value) -> (u16, Value) {
    let (status, answer, _) =
        mint_user(gate, body, &[("authorization", &format!("Bearer {token}"))]).await;
    (status, answer)
}

async fn readiness(gate: &Streamgate) -> (u16, Value) {
    let response = get(gate.admin_url("/readyz")).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

async fn ready_within(gate: &Streamgate, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if readiness(gate).await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// An app, a provider publishing `idp-key-1`, and streamgate in front of the
/// app through discovery (`fetch` and `jwt` as in [`discovery_config`]), ready.
async fn started(fetch: &str, jwt: &str) -> (App, Idp, Streamgate) {
    let app = start_app().await;
    let idp = Idp::new(&["idp-key-1"]);
    idp.start();
    let gate = Streamgate::start(&discovery_config(app.addr, &idp, fetch, jwt));
    assert!(
        ready_within(&gate, Duration::from_secs(10)).await,
        "{}",
        gate.logs()
    );
    (app, idp, gate)
}

#[tokio::test(flavor = "multi_thread")]
async fn not_ready_until_the_provider_answers_then_tokens_are_minted() {
    let app = start_app().await;
    let idp = Idp::new(&["idp-key-1"]);
    let gate = Streamgate::start(&discovery_config(app.addr, &idp, "", ""));
    let token = id_token(&idp, "alice", 600, "idp-key-1");

    let (status, body) = readiness(&gate).await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&idp.issuer), "{reason}");
    let (status, answer) = mint_with(&gate, &token, json!({})).await;
    assert_eq!(status, 503, "no keys yet: {answer}");

    idp.start();
    assert!(
        ready_within(&gate, Duration::from_secs(10)).await,
        "{}",
        gate.logs()
    );
    let (status, answer) = mint_with(&gate, &token, json!({})).await;
    assert_eq!(
        (status, minted_user(&answer)),
        (200, "alice".to_string()),
        "{answer}"
    );
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 1));
    let keys = metric_now(&gate, "streamgate_jwks_keys", &[("key_set", &idp.issuer)]).await;
    assert_eq!(keys, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_picked_up_by_the_first_token_that_names_it() {
    let (_app, idp, gate) = started("", "").await;
    let fetched = idp.jwks_hits();

    idp.publish(&["idp-key-2"]);
    let (status, answer) =
        mint_with(&gate, &id_token(&idp, "bob", 600, "idp-key-2"), json!({})).await;
    assert_eq!(
        (status, minted_user(&answer)),
        (200, "bob".to_string()),
        "{answer}"
    );
    assert_eq!(
        idp.jwks_hits(),
        fetched + 1,
        "one refetch, and no new discovery"
    );
    assert_eq!(idp.discovery_hits(), 1);
    let refetched = metric_now(
        &gate,
        "streamgate_jwks_unknown_kid_refetches_total",
        &[("key_set", &idp.issuer), ("result", "fetched")],
    )
    .await;
    assert_eq!(refetched, 1.0);

    // The retired key's kid is now unknown, and a refetch ran moments ago.
    let (status, _) = mint_with(&gate, &id_token(&idp, "alice", 600, "idp-key-1"), json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(
        idp.jwks_hits(),
        fetched + 1,
        "the retired kid did not reach the provider"
    );
}

/// `token` with its header replaced by one naming the `kid` `made-up-{n}`:
/// what an attacker sends costs nothing to make (the signature no longer
/// matches, but the unknown `kid` is all the flood needs).
fn forged_kid(token: &str, n: usize) -> String {
    let header = URL_SAFE_NO_PAD
        .encode(json!({"alg": "RS256", "typ": "JWT", "kid": format!("made-up-{n}")}).to_string());
    let rest = token.split_once('.').expect("a JWT").1;
    format!("{header}.{rest}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_made_up_kids_costs_the_provider_one_fetch_per_interval() {
    let (_app, idp, gate) = started(", unknown_kid_refetch_interval: 2s", "").await;
    let before = idp.jwks_hits();

    let signed = id_token(&idp, "mallory", 600, "idp-key-1");
    let started = std::time::Instant::now();
    let mut sent = 0;
    let mut refused = 0;
    // At least 160 forged tokens over at least 3 s, 16 at a time, however
    // fast or busy this machine is (the bound below grows with the time
    // taken; 120 s only stops a hung run): with an interval of 2 s, the
    // provider may be asked once at the start and once per 2 s after.
    while (sent < 160 || started.elapsed() < Duration::from_secs(3))
        && started.elapsed() < Duration::from_secs(120)
    {
        let batch: Vec<_> = (0..16)
            .map(|i| {
                let token = forged_kid(&signed, sent + i);
                let gate = &gate;
                async move { mint_with(gate, &token, json!({})).await.0 }
            })
            .collect();
        for status in futures_util::future::join_all(batch).await {
            sent += 1;
            refused += usize::from(status == 401);
        }
    }
    let elapsed = started.elapsed();
    let allowed = 1 + (elapsed.as_secs_f64() / 2.0).floor() as usize;
    let fetches = idp.jwks_hits() - before;
    assert_eq!(refused, sent, "every forged kid is refused");
    assert!(sent >= 160, "the flood was a flood: {sent} requests");
    assert!(
        (1..=allowed).contains(&fetches),
        "{fetches} fetches for {sent} forged kids in {elapsed:?}"
    );
    let capped = metric_now(
        &gate,
        "streamgate_jwks_unknown_kid_refetches_total",
        &[("key_set", &idp.issuer), ("result", "capped")],
    )
    .await;
    assert!(
        capped >= (sent - allowed * 16) as f64,
        "{capped} capped of {sent}"
    );

    let (status, _) = mint_with(&gate, &id_token(&idp, "alice", 600, "idp-key-1"), json!({})).await;
    assert_eq!(status, 200, "real tokens still work");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_goes_down_leaves_the_last_keys_in_use() {
    let app = start_app().await;
    let idp = Idp::new(&["idp-key-1"]);
    idp.cache_control("public, max-age=1");
    idp.start();
    // The key set's URL directly, no discovery; cached for 1 s, so that the
    // outage is noticed at once.
    let config = config_with(
        app.addr,
        &format!(
            "identity:\n  mode: jwt\n  jwt:\n    jwks_url: \"{}{JWKS_PATH}\"\n    issuer: \"{}\"\n    \
             audience: {AUDIENCE}\n    jwks_fetch: {{ ca_file: \"{}\", timeout: 1s, \
             min_cache_duration: 1s, max_cache_duration: 1s }}",
            idp.issuer,
            idp.issuer,
            idp.ca_file.display()
        ),
    );
    let gate = Streamgate::start(&config);
    assert!(
        ready_within(&gate, Duration::from_secs(10)).await,
        "{}",
        gate.logs()
    );
    assert_eq!(idp.discovery_hits(), 0);
    let key_set = format!("{}{JWKS_PATH}", idp.issuer);
    assert!(
        metric_reaches(
            &gate,
            "streamgate_jwks_fetches_total",
            &[("key_set", &key_set), ("result", "ok")],
            |v| v >= 2.0
        )
        .await,
        "refreshed after max-age"
    );

    idp.stop();
    let failed = [("key_set", key_set.as_str()), ("result", "error")];
    assert!(
        metric_reaches(&gate, "streamgate_jwks_fetches_total", &failed, |v| v
            >= 2.0)
        .await,
        "{}",
        gate.logs()
    );
    let (status, answer) =
        mint_with(&gate, &id_token(&idp, "alice", 600, "idp-key-1"), json!({})).await;
    assert_eq!(
        (status, minted_user(&answer)),
        (200, "alice".to_string()),
        "{answer}"
    );
    assert_eq!(readiness(&gate).await.0, 200, "keys are still there");
    // A new kid while the provider is down: the refetch fails, the set stays.
    let (status, _) = mint_with(&gate, &id_token(&idp, "bob", 600, "idp-key-2"), json!({})).await;
    assert_eq!(status, 401);
    let failed = metric_now(
        &gate,
        "streamgate_jwks_unknown_kid_refetches_total",
        &[("key_set", &key_set), ("result", "failed")],
    )
    .await;
    assert_eq!(failed, 1.0);
    assert!(
        gate.logs().contains("the last keys fetched stay in use"),
        "{}",
        gate.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn algorithm_confusion_and_unsigned_tokens_are_refused() {
    let (_app, idp, gate) = started("", "").await;
    let claims = json!({"sub": "mallory", "iss": idp.issuer, "aud": AUDIENCE, "exp": now() + 600});
    let with_kid = |algorithm| {
        let mut header = Header::new(algorithm);
        header.kid = Some("idp-key-1".into());
        header
    };

    // The classic confusion: the public key, as published, used as an HMAC secret.
    let public_pem = std::fs::read(format!("{FIXTURES}/idp-key-1.pub.pem")).unwrap();
    let jwks = std::fs::read(format!("{FIXTURES}/idp-key-1.jwks.json")).unwrap();
    let modulus = serde_json::from_slice::<Value>(&jwks).unwrap()["keys"][0]["n"]
        .as_str()
        .unwrap()
        .to_string();
    let mut forged = Vec::new();
    for secret in [public_pem.clone(), modulus.into_bytes()] {
        for algorithm in [Algorithm::HS256, Algorithm::HS512] {
            forged.push(
                jsonwebtoken::encode(
                    &with_kid(algorithm),
                    &claims,
                    &EncodingKey::from_secret(&secret),
                )
                .unwrap(),
            );
        }
    }
    // alg "none", with and without a signature segment, in several spellings.
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    for alg in ["none", "None", "NONE", ""] {
        let header = URL_SAFE_NO_PAD
            .encode(json!({"alg": alg, "typ": "JWT", "kid": "idp-key-1"}).to_string());
        forged.push(format!("{header}.{payload}."));
        forged.push(format!("{header}.{payload}"));
    }
    // A real signature by the published key, but with an algorithm not accepted.
    let pem = std::fs::read(format!("{FIXTURES}/idp-key-1.pem")).unwrap();
    forged.push(
        jsonwebtoken::encode(
            &with_kid(Algorithm::RS512),
            &claims,
            &EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
        .unwrap(),
    );
    // Signed by another key under the published key's kid.
    let other = std::fs::read(format!("{FIXTURES}/idp-key-2.pem")).unwrap();
    forged.push(
        jsonwebtoken::encode(
            &with_kid(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(&other).unwrap(),
        )
        .unwrap(),
    );
    for token in &forged {
        let (status, answer) = mint_with(&gate, token, json!({"userId": "mallory"})).await;
        assert_eq!(status, 401, "{token}: {answer}");
        assert_eq!(answer["success"], false);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_minted_token_never_outlives_the_credential() {
    let (app, idp, gate) = started("", "").await;

    let credential_exp = now() + 600;
    let token = rs256(
        json!({"sub": "alice", "iss": idp.issuer, "aud": AUDIENCE, "exp": credential_exp}),
        "idp-key-1",
    );
    for body in [json!({}), json!({"validityInSeconds": 86400})] {
        let (status, answer) = mint_with(&gate, &token, body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        let exp = minted_claims(&answer)["exp"].as_u64().unwrap();
        assert_eq!(
            exp, credential_exp,
            "{body}: capped at the credential's exp"
        );
        let validity = answer["data"]["validityInSeconds"].as_u64().unwrap();
        assert!(
            (590..=600).contains(&validity),
            "{body}: validityInSeconds {validity}"
        );
        let expires_at =
            humantime::parse_rfc3339(answer["data"]["expiresAt"].as_str().unwrap()).unwrap();
        let expires_at = expires_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(expires_at, credential_exp);
    }
    // A shorter request than the credential is left as asked.
    let (_, answer) = mint_with(&gate, &token, json!({"validityInSeconds": 60})).await;
    assert_eq!(answer["data"]["validityInSeconds"], 60);

    // Switched off, the request decides alone.
    let uncapped = Streamgate::start(&discovery_config(
        app.addr,
        &idp,
        "",
        "    cap_exp_to_credential: false\n",
    ));
    assert!(
        ready_within(&uncapped, Duration::from_secs(10)).await,
        "{}",
        uncapped.logs()
    );
    let (status, answer) = mint_with(&uncapped, &token, json!({"validityInSeconds": 86400})).await;
    assert_eq!(status, 200, "{answer}");
    let exp = minted_claims(&answer)["exp"].as_u64().unwrap();
    assert!(exp >= now() + 86400 - 5, "uncapped: {exp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_not_taken_from_a_provider_that_cannot_be_believed() {
    let app = start_app().await;
    // A discovery document that names another issuer.
    let lying = Idp::new(&["idp-key-1"]);
    lying.claim_issuer("https://login.example.com/");
    lying.start();
    let gate = Streamgate::start(&discovery_config(app.addr, &lying, "", ""));
    assert!(
        metric_reaches(
            &gate,
            "streamgate_jwks_fetches_total",
            &[("key_set", &lying.issuer), ("result", "error")],
            |v| v >= 1.0
        )
        .await
    );
    assert_eq!(readiness(&gate).await.0, 503);
    assert_eq!(
        lying.jwks_hits(),
        0,
        "keys are not fetched from where it points"
    );
    assert!(gate.logs().contains("must be identical"), "{}", gate.logs());

    // A certificate the system does not trust, and no ca_file.
    let untrusted = Idp::new(&["idp-key-1"]);
    untrusted.start();
    let config = discovery_config(app.addr, &untrusted, "", "").replace(
        &format!("ca_file: \"{}\", ", untrusted.ca_file.display()),
        "",
    );
    let gate = Streamgate::start(&config);
    assert!(
        metric_reaches(
            &gate,
            "streamgate_jwks_fetches_total",
            &[("key_set", &untrusted.issuer), ("result", "error")],
            |v| v >= 1.0
        )
        .await
    );
    let (status, body) = readiness(&gate).await;
    assert_eq!(status, 503);
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the last fetch failed") && reason.contains("jwks_fetch.ca_file"),
        "{reason}"
    );
    assert_eq!(
        untrusted.discovery_hits(),
        0,
        "nothing is read over an unverified connection"
    );
    assert!(
        gate.logs().to_lowercase().contains("certificate"),
        "{}",
        gate.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_published_for_one_algorithm_verifies_that_one_only() {
    // RS384 is accepted by the route, but the published key says RS256.
    let (_app, idp, gate) = started("", "    algorithms: [RS256, RS384]\n").await;
    let claims = json!({"sub": "alice", "iss": idp.issuer, "aud": AUDIENCE, "exp": now() + 600});
    let pem = std::fs::read(format!("{FIXTURES}/idp-key-1.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some("idp-key-1".into());
    let rs384 =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap();
    let (status, answer) = mint_with(&gate, &rs384, json!({})).await;
    assert_eq!(status, 401, "{answer}");
    let (status, _) = mint_with(&gate, &id_token(&idp, "alice", 600, "idp-key-1"), json!({})).await;
    assert_eq!(status, 200);
}

/// Keycloak's shape: realm roles nested in `realm_access.roles`, the login
/// in `preferred_username`; both reached by JSON pointer.
#[tokio::test(flavor = "multi_thread")]
async fn claims_nested_as_keycloak_nests_them_are_reached_by_pointer() {
    let (_app, idp, gate) = started(
        "",
        "    user_claim: /preferred_username\n    roles_claim: /realm_access/roles\n",
    )
    .await;
    let token = |roles: Value| {
        rs256(
            json!({
                "sub": "0b1c5e1e-5d2f-4c8e-9d55-2f0c7d3e8a11",
                "preferred_username": "alice",
                "realm_access": {"roles": roles},
                "iss": idp.issuer, "aud": AUDIENCE, "exp": now() + 600,
            }),
            "idp-key-1",
        )
    };
    let body = json!({"callId": "standup", "role": "admin"});
    let bearer = format!("Bearer {}", token(json!(["offline_access", "admin"])));
    let (status, answer, _) = mint(
        &gate,
        CALL_TOKEN_PATH,
        body.clone(),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(minted_claims(&answer)["user_id"], "alice");
    assert_eq!(minted_claims(&answer)["role"], "admin");

    let bearer = format!("Bearer {}", token(json!(["offline_access"])));
    let (status, answer, _) =
        mint(&gate, CALL_TOKEN_PATH, body, &[("authorization", &bearer)]).await;
    assert_eq!(status, 403, "a role the realm did not give: {answer}");
}
