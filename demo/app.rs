//! The demo app of `make demo`: a stand-in for the legacy app streamgate sits in
//! front of. It has what such an app already has and nothing streamgate-specific:
//! a login form, a session cookie, and a "who am I" endpoint (`/api/me`), which
//! is all `identity.mode: forward_auth` needs. Its page fetches a Stream token
//! from streamgate the way a browser client would (same origin, the cookie sent).
//!
//! Usage: `demo-app [ADDRESS]` (default `$APP_ADDRESS`, else `127.0.0.1:8080`).
//! Sessions live in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

/// Session id (random, what the cookie holds) → user name.
type Sessions = Arc<Mutex<HashMap<String, String>>>;

const COOKIE_NAME: &str = "demo_session";

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("APP_ADDRESS").ok())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .unwrap_or_else(|e| panic!("demo app: cannot listen on {address}: {e}"));
    eprintln!("demo app listening on http://{address}");
    let router = Router::new()
        .route("/", get(page))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/me", get(me))
        .fallback(hello)
        .with_state(Sessions::default());
    // demo/run.sh stops it with SIGINT, which a shell leaves ignored in the
    // processes it starts in the background: a handler is needed to hear it.
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("demo app serves");
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// `username=NAME` (a form post): any name made of Stream's user-id characters
/// signs in, as there are no passwords in a demo.
async fn login(State(sessions): State<Sessions>, body: String) -> Response {
    let username = url::form_urlencoded::parse(body.as_bytes())
        .find(|(key, _)| key == "username")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let valid = (1..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@_-".contains(c));
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            "username: 1-64 characters of A-Z a-z 0-9 @ _ -\n",
        )
            .into_response();
    }
    let session = uuid::Uuid::new_v4().simple().to_string();
    sessions.lock().unwrap().insert(session.clone(), username);
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, "/".to_string()),
            (
                SET_COOKIE,
                format!("{COOKIE_NAME}={session}; Path=/; HttpOnly; SameSite=Lax"),
            ),
        ],
    )
        .into_response()
}

async fn logout(State(sessions): State<Sessions>, headers: HeaderMap) -> Response {
    if let Some(session) = session_id(&headers) {
        sessions.lock().unwrap().remove(&session);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, "/".to_string()),
            (
                SET_COOKIE,
                format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}

/// The endpoint streamgate's forward_auth asks: 200 with the user, or 401.
async fn me(State(sessions): State<Sessions>, headers: HeaderMap) -> Response {
    let user = session_id(&headers).and_then(|s| sessions.lock().unwrap().get(&s).cloned());
    match user {
        Some(id) => Json(json!({"user": {"id": id, "roles": ["user"]}})).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "not signed in"})),
        )
            .into_response(),
    }
}

/// Any other request: what the app saw, so that proxying shows (the path, and
/// the forwarding headers streamgate added).
async fn hello(uri: Uri, headers: HeaderMap) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    (
        [(CONTENT_TYPE, "application/json")],
        json!({
            "app": "streamgate demo app",
            "path": uri.to_string(),
            "x-forwarded-for": header("x-forwarded-for"),
            "x-request-id": header("x-request-id"),
        })
        .to_string(),
    )
        .into_response()
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(COOKIE_NAME)?
                .strip_prefix('=')
                .map(str::to_string)
        })
}
