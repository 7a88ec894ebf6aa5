//! The HTTP client side: one client shape, and GET/POST helpers that panic on
//! a transport error so that tests only look at what came back.

use std::time::Duration;

use serde_json::Value;

pub fn client() -> reqwest::Client {
    client_for(Http::One)
}

/// The HTTP version a test client speaks to streamgate's plaintext port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1.
    One,
    /// HTTP/2 with prior knowledge (h2c), as gRPC clients speak it.
    Two,
}

/// Both, for tests that must hold whichever a client speaks.
pub const HTTP_VERSIONS: [Http; 2] = [Http::One, Http::Two];

impl Http {
    /// The version a response over this client must have come in.
    pub fn version(self) -> reqwest::Version {
        match self {
            Http::One => reqwest::Version::HTTP_11,
            Http::Two => reqwest::Version::HTTP_2,
        }
    }
}

pub fn client_for(http: Http) -> reqwest::Client {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    match http {
        Http::One => builder.http1_only(),
        Http::Two => builder.http2_prior_knowledge(),
    }
    .build()
    .expect("http client")
}

/// GET `url`, panicking on a transport error.
pub async fn get(url: String) -> reqwest::Response {
    get_with(url, &[]).await
}

/// GET `url` with extra request headers, panicking on a transport error.
pub async fn get_with(url: String, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("GET")
}

/// The status code of a GET of `url`.
pub async fn status_of(url: String) -> u16 {
    get(url).await.status().as_u16()
}

/// GET `url` and parse the answer as JSON.
pub async fn get_json(url: String) -> Value {
    get_json_with(url, &[]).await
}

/// GET `url` with extra request headers and parse the answer as JSON.
pub async fn get_json_with(url: String, headers: &[(&str, &str)]) -> Value {
    get_with(url, headers)
        .await
        .json()
        .await
        .expect("a JSON answer")
}

/// POST `body` as JSON to `url` with extra request headers, panicking on a
/// transport error.
pub async fn post_json(url: String, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("POST")
}

/// What `curl` made of an answer.
pub struct Curled {
    /// The status line and headers, as received.
    pub head: String,
    pub body: String,
    /// The HTTP version curl spoke: `1.1`, `2`.
    pub version: String,
}

impl Curled {
    /// The value of header `name` in the head, any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (found, value) = line.split_once(": ")?;
            found.eq_ignore_ascii_case(name).then_some(value)
        })
    }

    /// The status code of the head's status line.
    pub fn status(&self) -> Option<u16> {
        self.head.split_whitespace().nth(1)?.parse().ok()
    }
}

/// curl arguments that make a request a gRPC call (gRPC over HTTP/2,
/// "Requests"): a POST of `application/grpc` that accepts trailers.
pub const GRPC_CALL: [&str; 6] = [
    "-X",
    "POST",
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
];

/// `curl -sS` with `args`, run from the repository root (the examples' paths
/// are relative to it); panics when curl gets no answer.
pub fn curl(args: &[&str]) -> Curled {
    let output = std::process::Command::new("curl")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-sS", "--max-time", "10", "-D", "-"])
        .args(["-w", "\n%{http_version}"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (rest, version) = text.rsplit_once('\n').expect("version line");
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    Curled {
        head: head.to_string(),
        body: body.to_string(),
        version: version.to_string(),
    }
}
