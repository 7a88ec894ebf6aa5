//! The HTTP client side: one client shape, and GET/POST helpers that panic on
//! a transport error so that tests only look at what came back.

use std::time::Duration;

use serde_json::Value;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
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
