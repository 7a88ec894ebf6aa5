//! Everything that is not a token route goes to the app untouched: methods,
//! query strings, headers, streamed bodies, WebSockets, plus `X-Forwarded-*`,
//! and a JSON 502/504 when the app cannot answer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn methods_query_strings_headers_and_bodies_pass_through() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
        let body = format!("body of {method}");
        let response = client()
            .request(
                method.parse().unwrap(),
                gate.url("/api/users/42?limit=10&offset=0&q=a%20b"),
            )
            .header("x-custom", "kept")
            .header("cookie", "session=abc")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        let echoed: Value = response.json().await.unwrap();
        assert_eq!(echoed["method"], method);
        assert_eq!(echoed["path"], "/api/users/42");
        assert_eq!(echoed["query"], "limit=10&offset=0&q=a%20b");
        assert_eq!(echoed["headers"]["x-custom"], json!(["kept"]));
        assert_eq!(echoed["headers"]["cookie"], json!(["session=abc"]));
        assert_eq!(echoed["body_len"], body.len());
        assert_eq!(echoed["body_sha256"], hex(&Sha256::digest(body.as_bytes())));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_is_kept_and_forwarded_headers_are_added() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let echoed: Value = get_json_with(gate.url("/whoami"), &[("host", "shop.example.com")]).await;
    let headers = &echoed["headers"];
    assert_eq!(headers["host"], json!(["shop.example.com"]));
    assert_eq!(headers["x-forwarded-for"], json!(["127.0.0.1"]));
    assert_eq!(headers["x-forwarded-proto"], json!(["http"]));
    assert_eq!(headers["x-forwarded-host"], json!(["shop.example.com"]));

    // Behind an ingress: the chain is appended to, proto and host are kept.
    let echoed: Value = get_json_with(
        gate.url("/whoami"),
        &[
            ("host", "internal:3000"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example.com"),
        ],
    )
    .await;
    let headers = &echoed["headers"];
    assert_eq!(
        headers["x-forwarded-for"],
        json!(["203.0.113.7, 127.0.0.1"])
    );
    assert_eq!(headers["x-forwarded-proto"], json!(["https"]));
    assert_eq!(headers["x-forwarded-host"], json!(["shop.example.com"]));
}

/// A body streamed in chunks (no Content-Length) arrives byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_20_mb_upload_arrives_intact() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 320; // 20 MiB
    let chunk_bytes =
        |i: usize| -> Vec<u8> { (0..CHUNK).map(|j| ((i * 31 + j * 7) % 251) as u8).collect() };
    let mut expected = Sha256::new();
    for i in 0..CHUNKS {
        expected.update(chunk_bytes(i));
    }
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk_bytes(i))),
    );
    let response = client()
        .post(gate.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(echoed["headers"]["transfer-encoding"], json!(["chunked"]));
    assert_eq!(echoed["body_len"], CHUNK * CHUNKS);
    assert_eq!(echoed["body_sha256"], hex(&expected.finalize()));
}

/// 100 MB goes through while streamgate's memory stays far below the body size,
/// which only holds if the body is streamed, not buffered.
#[tokio::test(flavor = "multi_thread")]
async fn large_upload_is_not_buffered_in_memory() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    const CHUNK: usize = 256 * 1024;
    const CHUNKS: usize = 400; // 100 MiB
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(|_| Ok::<_, std::io::Error>(vec![0x5a_u8; CHUNK])),
    );
    let response = client()
        .put(gate.url("/big"))
        .header("content-length", (CHUNK * CHUNKS).to_string())
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(echoed["body_len"], CHUNK * CHUNKS);
    let peak_mib = gate.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 64,
        "streamgate peaked at {peak_mib} MiB while proxying 100 MiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_the_proxy() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", gate.port))
            .await
            .expect("WebSocket handshake through streamgate");
    assert_eq!(response.status(), 101);
    for i in 0..5 {
        socket
            .send(Message::text(format!("hello {i}")))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("echo in time")
            .expect("socket open")
            .unwrap();
        assert_eq!(reply, Message::text(format!("echo: hello {i}")));
    }
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply, Message::binary(vec![0u8, 1, 2, 255]));
    socket.close(None).await.unwrap();
}

/// An app that answers every connection's upgrade before it has read the
/// request, then echoes what follows: its `101` is always waiting when
/// streamgate first looks, the ordering that tore tunnels down in Pingora
/// 0.9 (cloudflare/pingora#946) about half of the time.
fn start_eager_upgrade_app() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the app");
    let addr = listener.local_addr().expect("app address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let upgraded = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
                if stream.write_all(upgraded).is_err() {
                    return;
                }
                let mut received = Vec::new();
                let mut buffer = [0u8; 4096];
                while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => received.extend_from_slice(&buffer[..n]),
                    }
                }
                let head_end = received
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(0)
                    + 4;
                if stream.write_all(&received[head_end..]).is_err() {
                    return;
                }
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn an_upgrade_answered_at_once_stays_open_for_the_tunnel() {
    let gate = Streamgate::start(&default_config(start_eager_upgrade_app()));
    for attempt in 0..24 {
        let mut client = RawClient::connect(gate.port);
        client.send(
            "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        let response = client.response();
        assert_eq!(response.status, 101, "attempt {attempt}: {response:?}");
        let sent = format!("tunnel bytes {attempt}");
        client.send(&sent);
        assert_eq!(
            client.read_within(sent.len(), Duration::from_secs(5)),
            sent.into_bytes(),
            "attempt {attempt}: the tunnel closed after the 101"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn app_down_gives_a_prompt_json_502() {
    let closed = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gate = Streamgate::start(&default_config(closed));
    let started = Instant::now();
    let response = get(gate.url("/anything?x=1")).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/json");
    let json: Value = response.json().await.unwrap();
    assert_eq!(
        json,
        json!({"success": false, "error": "Bad gateway: upstream 'app' is unavailable"})
    );
    // A WebSocket handshake (its own connections) is answered the same way.
    let mut upgrade = RawClient::connect(gate.port);
    upgrade.send(
        "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    let refused = upgrade.response();
    assert_eq!(refused.status, 502, "{refused:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&refused.body).unwrap(),
        json!({"success": false, "error": "Bad gateway: upstream 'app' is unavailable"})
    );
    // Token minting does not depend on the app.
    let (status, _, _) = mint_user(&gate, json!({"userId": "u"}), &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_app_gives_a_json_504_after_the_read_timeout() {
    let app = start_app().await;
    let gate = Streamgate::start(&default_config(app.addr));
    let started = Instant::now();
    let response = get(gate.url("/slow")).await;
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 504);
    let json: Value = response.json().await.unwrap();
    assert_eq!(
        json,
        json!({"success": false, "error": "Gateway timeout: upstream 'app' did not answer within 1s"})
    );
}

/// A client that hangs up mid-body is in the access log, not in the error log:
/// it is nobody's fault to act on.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_mid_body_is_not_an_error() {
    let upstream = RecordingUpstream::start();
    let gate = Streamgate::start(&default_config(upstream.addr));
    {
        let mut client = RawClient::connect(gate.port);
        client.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nonly ten b");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        eventually(|| async { gate.stdout().contains("\"path\":\"/upload\"") }).await,
        "the request is in the access log"
    );
    let logs = gate.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
}
