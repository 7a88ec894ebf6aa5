//! The self-managed serving certificate against a fake API server on
//! loopback: the real injector binary, given only a kubeconfig, creates its
//! CA and leaf in the Secret, sets the webhook's caBundle, and serves the
//! leaf; a client trusting only that caBundle gets through. When the stored
//! leaf goes bad, the injector issues a new one from the same CA, stores it,
//! and serves it to new connections without a restart.

mod common;

use common::{free_port, InjectorProcess};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

const NS: &str = "streamgate";
const SECRET: &str = "sg-injector-tls";
const WEBHOOK: &str = "sg-injector";
const SERVICE: &str = "sg-injector";

/// The objects the fake API server holds, by name, with resourceVersions.
#[derive(Default)]
struct Store {
    objects: HashMap<String, Value>,
    version: u64,
}

type Shared = Arc<Mutex<Store>>;

fn status(code: u16, reason: &str) -> (StatusCode, Json<Value>) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "reason": reason, "code": code, "message": reason});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
}

fn read(store: &Shared, name: &str) -> (StatusCode, Json<Value>) {
    let store = store.lock().expect("lock");
    match store.objects.get(name) {
        Some(o) => (StatusCode::OK, Json(o.clone())),
        None => status(404, "NotFound"),
    }
}

/// PUT: optimistic concurrency, as the API server does it.
fn write(store: &Shared, name: &str, mut object: Value) -> (StatusCode, Json<Value>) {
    let mut store = store.lock().expect("lock");
    let current = store
        .objects
        .get(name)
        .map(|o| o["metadata"]["resourceVersion"].clone());
    match current {
        None => return status(404, "NotFound"),
        Some(rv) if rv != object["metadata"]["resourceVersion"] => return status(409, "Conflict"),
        Some(_) => {}
    }
    store.version += 1;
    object["metadata"]["resourceVersion"] = json!(store.version.to_string());
    store.objects.insert(name.to_owned(), object.clone());
    (StatusCode::OK, Json(object))
}

fn fake_api(store: Shared) -> Router {
    Router::new()
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            axum::routing::post(|State(s): State<Shared>, Json(mut o): Json<Value>| async move {
                let name = o["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let mut store = s.lock().expect("lock");
                if store.objects.contains_key(&name) {
                    return status(409, "AlreadyExists");
                }
                store.version += 1;
                o["metadata"]["resourceVersion"] = json!(store.version.to_string());
                store.objects.insert(name, o.clone());
                (StatusCode::CREATED, Json(o))
            }),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(|State(s): State<Shared>, Path((_, name)): Path<(String, String)>| async move { read(&s, &name) })
                .put(
                    |State(s): State<Shared>, Path((_, name)): Path<(String, String)>, Json(o): Json<Value>| async move {
                        write(&s, &name, o)
                    },
                ),
        )
        .route(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}",
            get(|State(s): State<Shared>, Path(name): Path<String>| async move { read(&s, &name) }).put(
                |State(s): State<Shared>, Path(name): Path<String>, Json(o): Json<Value>| async move {
                    write(&s, &name, o)
                },
            ),
        )
        .with_state(store)
}

fn secret_key(store: &Shared, key: &str) -> Option<String> {
    let store = store.lock().expect("lock");
    let b64 = store.objects.get(SECRET)?["data"][key].as_str()?.to_owned();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()
}

fn ca_bundle(store: &Shared) -> Option<String> {
    let store = store.lock().expect("lock");
    let b64 = store.objects.get(WEBHOOK)?["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()?
        .to_owned();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client that trusts only `ca` and finds the Service's name on loopback.
fn trusting(ca: &str, port: u16) -> (reqwest::Client, String) {
    let host = format!("{SERVICE}.{NS}.svc");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("PEM"))
        .resolve(&host, ([127, 0, 0, 1], port).into())
        .tls_info(true)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    (client, format!("https://{host}:{port}"))
}

/// The DER of the certificate the injector serves to a new connection.
async fn served_cert(ca: &str, port: u16) -> Option<Vec<u8>> {
    let (client, base) = trusting(ca, port);
    let r = client.get(format!("{base}/healthz")).send().await.ok()?;
    assert_eq!(r.status(), 200);
    let info = r.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}

/// The fake API server, holding the webhook configuration without a caBundle.
async fn start_api(store: &Shared) -> std::net::SocketAddr {
    store.lock().expect("lock").objects.insert(
        WEBHOOK.to_owned(),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
               "metadata": {"name": WEBHOOK, "resourceVersion": "0"},
               "webhooks": [{"name": "inject.streamgate.getstream.io", "admissionReviewVersions": ["v1"],
                             "sideEffects": "None",
                             "clientConfig": {"service": {"name": SERVICE, "namespace": NS, "path": "/mutate"}}}]}),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = listener.local_addr().expect("address");
    let app = fake_api(store.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    api
}

/// The injector binary, its kubeconfig pointing at `api`; its HTTPS port.
fn start_injector(api: std::net::SocketAddr, dir: &std::path::Path) -> (InjectorProcess, u16) {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: 'http://{api}'}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: {NS}}}}}]\n"
        ),
    )
    .expect("kubeconfig");
    let template = dir.join("sidecar.yaml");
    std::fs::write(&template, common::template_yaml()).expect("template");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_streamgate-injector"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--check-interval",
            "200ms",
        ])
        .args([
            "--tls-secret",
            SECRET,
            "--webhook",
            WEBHOOK,
            "--service",
            SERVICE,
            "--namespace",
            NS,
        ])
        .arg("--template")
        .arg(&template)
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start streamgate-injector");
    (InjectorProcess(child), port)
}

#[tokio::test]
async fn the_injector_keeps_its_own_certificate_in_a_secret_and_the_webhook_trusts_it() {
    let store: Shared = Arc::default();
    let api = start_api(&store).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_injector, port) = start_injector(api, dir.path());

    let bundle = eventually("the webhook's caBundle", || ca_bundle(&store)).await;
    let ca = secret_key(&store, "ca.crt").expect("the Secret holds the CA");
    assert_eq!(bundle, ca, "caBundle is the Secret's CA");
    let leaf = secret_key(&store, "tls.crt").expect("the Secret holds the leaf");
    let mut first = None;
    for _ in 0..300 {
        first = served_cert(&bundle, port).await;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        first,
        Some(der_of(&leaf)),
        "it serves the stored leaf, trusted by the caBundle alone"
    );

    // An AdmissionReview over the trusted connection.
    let (_, request) = common::cases()
        .into_iter()
        .find(|(n, _)| n == "native-named-port")
        .expect("fixture");
    let (client, base) = trusting(&bundle, port);
    let r = client
        .post(format!("{base}/mutate"))
        .json(&request)
        .send()
        .await
        .expect("POST");
    let out: Value = r.json().await.expect("JSON");
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"]["patch"].is_string(), "a base64 patch");

    // The stored leaf goes bad (as if cut short): a new one from the same CA,
    // stored and served to new connections, the caBundle unchanged.
    {
        let mut s = store.lock().expect("lock");
        let secret = s.objects.get_mut(SECRET).expect("Secret");
        secret["data"]["tls.crt"] =
            json!(base64::engine::general_purpose::STANDARD.encode("garbage"));
    }
    let renewed = eventually("a renewed leaf in the Secret", || {
        secret_key(&store, "tls.crt")
            .filter(|c| c.starts_with("-----BEGIN CERTIFICATE") && *c != leaf)
    })
    .await;
    assert_eq!(
        secret_key(&store, "ca.crt").as_deref(),
        Some(ca.as_str()),
        "same CA"
    );
    assert_eq!(
        ca_bundle(&store).as_deref(),
        Some(bundle.as_str()),
        "caBundle unchanged"
    );
    let want = Some(der_of(&renewed));
    let deadline = Instant::now() + Duration::from_secs(30);
    while served_cert(&bundle, port).await != want {
        assert!(Instant::now() < deadline, "the renewed leaf is not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
