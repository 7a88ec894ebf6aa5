//! The application behind streamgate: echoes what it received, hashes bodies
//! as they stream in, echoes WebSocket messages, can be slow on purpose, and
//! has a session endpoint (`/api/me`) for forward auth.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use axum::routing;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A running app on a loopback port; it lives as long as the test's runtime.
pub struct App {
    pub addr: SocketAddr,
    pub sessions: Arc<SessionLog>,
}

/// What the app's session endpoint was asked.
#[derive(Default)]
pub struct SessionLog {
    pub checks: AtomicUsize,
    /// Header names of the last check, sorted.
    pub last_headers: Mutex<Vec<String>>,
    /// The last check's `traceparent`.
    pub last_traceparent: Mutex<Option<String>>,
}

impl App {
    pub fn session_checks(&self) -> usize {
        self.sessions.checks.load(Ordering::SeqCst)
    }
}

pub async fn start_app() -> App {
    let sessions = Arc::new(SessionLog::default());
    let router = Router::new()
        .route("/ws", routing::get(websocket_echo))
        .route("/slow", routing::get(slow))
        .route("/api/me", routing::get(me))
        .with_state(Arc::clone(&sessions))
        .fallback(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("app address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    App { addr, sessions }
}

/// The app's "who am I": `Cookie: session=<name>` or `Authorization: Bearer app-<name>`
/// for the users it knows; 401 otherwise. It reports which headers it saw.
async fn me(State(log): State<Arc<SessionLog>>, headers: HeaderMap) -> axum::response::Response {
    log.checks.fetch_add(1, Ordering::SeqCst);
    let mut names: Vec<String> = headers.keys().map(|k| k.to_string()).collect();
    names.sort();
    *log.last_headers.lock().unwrap() = names;
    *log.last_traceparent.lock().unwrap() = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let from_cookie = headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .find_map(|part| part.trim().strip_prefix("session="))
        });
    let from_bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer app-"));
    let user = from_cookie.or(from_bearer);
    let roles: &[&str] = match user {
        Some("alice") => &["moderator"],
        Some("root") => &["admin"],
        Some("bob") => &[],
        _ => return (axum::http::StatusCode::UNAUTHORIZED, "sign in first").into_response(),
    };
    Json(json!({"user": {"id": user, "roles": roles}})).into_response()
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Json<Value> {
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut len = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("body chunk");
        len += chunk.len();
        hasher.update(&chunk);
    }
    let mut header_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &headers {
        header_map
            .entry(name.to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": header_map,
        "body_len": len,
        "body_sha256": hex(&hasher.finalize()),
    }))
}

/// Answers after `?ms=` milliseconds (default 3000).
async fn slow(uri: Uri) -> &'static str {
    let ms = uri
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "late"
}

/// Echoes a WebSocket's text messages as `echo: <text>` and binary ones as
/// they came, until the client closes.
pub async fn websocket_echo(upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(text) => Message::Text(format!("echo: {}", text.as_str()).into()),
                Message::Binary(bytes) => Message::Binary(bytes),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// Lower-case hex, as the echo reports `body_sha256`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
