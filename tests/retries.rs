//! Retries: one more try on a new connection, only where it cannot make the
//! app act twice (issue 10, item 15), and counted.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use common::*;

/// An app that answers the first request of every connection and, on the
/// second, reads it and closes without a byte of answer: what a keep-alive
/// connection the app already dropped looks like from the proxy's side.
/// Records the request line of every request it read.
fn one_request_per_connection_app() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut stream = stream;
                for answered in [true, false] {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    if stream.read_exact(&mut body).is_err() {
                        return;
                    }
                    log.lock()
                        .unwrap()
                        .push(head.lines().next().unwrap_or_default().to_string());
                    if !answered {
                        return; // closes the connection without answering
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_connect_is_tried_once_more_and_counted() {
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gate = Streamgate::start(&default_config(closed));
    assert_eq!(status_of(gate.url("/anything")).await, 502);
    let app = [("upstream", "app")];
    assert!(
        metric_reaches(
            &gate,
            "streamgate_upstream_connect_errors_total",
            &app,
            |v| v == 2.0
        )
        .await,
        "two connects: the first and one retry"
    );
    let retries = [("upstream", "app"), ("reason", "connect")];
    assert_eq!(
        metric_now(&gate, "streamgate_upstream_retries_total", &retries).await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_pooled_connection_is_retried_for_idempotent_requests_only() {
    let (addr, seen) = one_request_per_connection_app();
    let gate = Streamgate::start(&default_config(addr));
    let mut client = RawClient::connect(gate.port);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n");

    client.send(get("/first"));
    assert_eq!(client.response().status, 200);
    // Pooled connection, dropped by the app on this request: sent again on a new one.
    client.send(get("/second"));
    let second = client.response();
    assert_eq!(second.status, 200, "{}", second.head);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "GET /first HTTP/1.1",
            "GET /second HTTP/1.1",
            "GET /second HTTP/1.1"
        ]
    );

    // The same failure for a POST: the app may have acted on it, so it is not sent again.
    client.send("POST /order HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\nhi");
    let post = client.response();
    assert_eq!(post.status, 502, "{}", post.head);
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "the POST reached the app once");

    let retries = [("upstream", "app"), ("reason", "reused_connection")];
    assert_eq!(
        metric_now(&gate, "streamgate_upstream_retries_total", &retries).await,
        1.0
    );
}
