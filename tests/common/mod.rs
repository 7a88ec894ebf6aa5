//! Shared harness for the integration tests: a real upstream application on a
//! loopback port, and the real `streamgate` binary started in front of it.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

pub const API_KEY: &str = "test-api-key";
pub const API_SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// The application behind streamgate: echoes what it received, hashes bodies
/// as they stream in, echoes WebSocket messages, can be slow on purpose, and
/// has a session endpoint (`/api/me`) for forward auth.
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
}

impl App {
    pub fn session_checks(&self) -> usize {
        self.sessions.checks.load(Ordering::SeqCst)
    }
}

pub async fn start_app() -> App {
    let sessions = Arc::new(SessionLog::default());
    let router = Router::new()
        .route("/ws", routing::get(websocket))
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

async fn websocket(upgrade: WebSocketUpgrade) -> impl IntoResponse {
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A port that was free a moment ago, for configs that need a fixed address.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port()
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_streamgate"))
}

/// A running `streamgate` process; killed when dropped.
pub struct Streamgate {
    pub port: u16,
    pub admin_port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// The config used by most tests: the default routes in front of `upstream`.
pub fn default_config(upstream: SocketAddr) -> String {
    format!(
        r#"
listen: ["127.0.0.1:{{port}}"]
upstreams:
  app: {{ address: "{upstream}", connect_timeout: 1s, read_timeout: 1s }}
stream:
  api_key: "{API_KEY}"
  api_secret: "{API_SECRET}"
admin: {{ listen: "127.0.0.1:{{admin_port}}" }}
access_log: {{ format: json }}
server: {{ threads: 2, pid_file: "{{dir}}/streamgate.pid", upgrade_sock: "{{dir}}/upgrade.sock", drain_seconds: 1, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }}
"#
    )
}

impl Streamgate {
    /// Starts streamgate with `config`, where `{port}` and `{dir}` are replaced
    /// by a free port and a private temporary directory.
    pub fn start(config: &str) -> Streamgate {
        Streamgate::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Streamgate {
        // The port is chosen before streamgate binds it; if another process
        // takes it in between, try again with a new one.
        let mut last_logs = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let admin_port = free_port();
            let text = config
                .replace("{port}", &port.to_string())
                .replace("{admin_port}", &admin_port.to_string())
                .replace("{dir}", dir.path().to_str().expect("utf-8 temp dir"));
            let config_path = dir.path().join("streamgate.yaml");
            std::fs::write(&config_path, text).expect("write config");
            let stdout = std::fs::File::create(dir.path().join("stdout.log")).expect("log file");
            let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
            let mut command = Command::new(binary());
            command
                .arg("-c")
                .arg(&config_path)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr);
            for (name, value) in env {
                command.env(name, value);
            }
            let child = command.spawn().expect("spawn streamgate");
            let mut gate = Streamgate {
                port,
                admin_port,
                child,
                dir,
            };
            if gate.wait_until_listening() {
                return gate;
            }
            last_logs = gate.logs();
        }
        panic!("streamgate did not start; last logs:\n{last_logs}");
    }

    fn wait_until_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let up = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.port) && up(self.admin_port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`"TERM"`, `"QUIT"`…) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `limit` for the process to exit; its exit code if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Starts a second streamgate with `config` (placeholders as in `start`,
    /// filled with this one's ports and directory) that takes over this one's
    /// listening sockets: Pingora's graceful upgrade. Returns once the new
    /// process waits on the upgrade socket; send this one SIGQUIT next.
    pub fn start_upgrade(&self, config: &str) -> Streamgate {
        let text = config
            .replace("{port}", &self.port.to_string())
            .replace("{admin_port}", &self.admin_port.to_string())
            .replace("{dir}", self.dir().to_str().expect("utf-8 temp dir"));
        let config_path = self.dir().join("streamgate-v2.yaml");
        std::fs::write(&config_path, text).expect("write config");
        let new_dir = tempfile::tempdir().expect("temp dir");
        let stdout = std::fs::File::create(new_dir.path().join("stdout.log")).expect("log file");
        let stderr = std::fs::File::create(new_dir.path().join("stderr.log")).expect("log file");
        let child = Command::new(binary())
            .arg("-u")
            .arg("-c")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn streamgate -u");
        let socket = self.dir().join("upgrade.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            socket.exists(),
            "the new process never opened the upgrade socket"
        );
        Streamgate {
            port: self.port,
            admin_port: self.admin_port,
            child,
            dir: new_dir,
        }
    }

    /// Everything streamgate wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in ["stdout.log", "stderr.log"] {
            if let Ok(mut file) = std::fs::File::open(self.dir.path().join(name)) {
                let _ = file.read_to_string(&mut all);
            }
        }
        all
    }

    /// What streamgate wrote to stdout: the access log.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Peak resident memory of the process so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }
}

impl Drop for Streamgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`, panicking on a transport error.
pub async fn get(url: String) -> reqwest::Response {
    client().get(url).send().await.expect("GET")
}

/// GET `url` and parse the answer as JSON.
pub async fn get_json(url: String) -> Value {
    get_json_with(url, &[]).await
}

/// GET `url` with extra request headers and parse the answer as JSON.
pub async fn get_json_with(url: String, headers: &[(&str, &str)]) -> Value {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON answer")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}
