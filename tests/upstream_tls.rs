//! An upstream reached over TLS: SNI is sent, and a certificate that does not
//! verify is refused unless verification was switched off on purpose.

mod common;

use axum::Router;
use common::*;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};

/// An HTTPS app on loopback with a self-signed certificate for `app.internal`;
/// it echoes WebSocket messages on `/ws` and answers every other request with
/// the TLS server name the client asked for.
/// Returns its address and the certificate in PEM, to trust it as a CA.
async fn start_tls_app() -> (std::net::SocketAddr, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["app.internal".to_string()]).expect("certificate");
    let pair = Pair {
        cert: certified.cert.pem(),
        key: certified.signing_key.serialize_pem(),
    };
    let acceptor = pair.acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                let router = Router::new()
                    .route("/ws", axum::routing::get(websocket_echo))
                    .fallback(move || async move { axum::Json(json!({"tls": true, "sni": sni})) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, pair.cert)
}

fn tls_config(app: std::net::SocketAddr, options: &str) -> String {
    default_config(app).replace(
        &format!("app: {{ address: \"{app}\", connect_timeout: 1s, read_timeout: 1s }}"),
        &format!("app: {{ address: \"{app}\", connect_timeout: 1s, read_timeout: 1s, tls: true, sni: app.internal{options} }}"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn proxies_to_a_tls_upstream_with_sni() {
    let (app, _) = start_tls_app().await;
    let gate = Streamgate::start(&tls_config(app, ", verify_cert: false"));
    let response = get(gate.url("/over-tls")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"tls": true, "sni": "app.internal"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unverifiable_certificate_is_refused_by_default() {
    let (app, _) = start_tls_app().await;
    let gate = Streamgate::start(&tls_config(app, ""));
    let response = get(gate.url("/over-tls")).await;
    assert_eq!(
        response.status(),
        502,
        "a self-signed certificate must not be trusted silently"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "Bad gateway: upstream 'app' is unavailable");
}

/// Streamgate in front of the TLS `app`, trusting `pem` as `server.ca_file`.
fn trusting_the_app(app: std::net::SocketAddr, pem: &str) -> Streamgate {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, pem).unwrap();
    let config = tls_config(app, "").replace(
        "server: {",
        &format!("server: {{ ca_file: \"{}\",", ca_file.display()),
    );
    Streamgate::start(&config)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_the_configured_ca_is_verified_and_accepted() {
    let (app, pem) = start_tls_app().await;
    let gate = trusting_the_app(app, &pem);
    let response = get(gate.url("/over-tls")).await;
    assert_eq!(response.status(), 200, "verified against server.ca_file");
    assert_eq!(
        response.json::<Value>().await.unwrap()["sni"],
        "app.internal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets_reach_a_tls_upstream() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (app, pem) = start_tls_app().await;
    let gate = trusting_the_app(app, &pem);
    for connection in 0..3 {
        let (mut socket, response) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", gate.port))
                .await
                .expect("WebSocket handshake through streamgate to the TLS app");
        assert_eq!(response.status(), 101);
        for i in 0..3 {
            let text = format!("over tls {connection}.{i}");
            socket.send(Message::text(text.clone())).await.unwrap();
            let reply = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
                .await
                .expect("echo in time")
                .expect("socket open")
                .expect("a frame");
            assert_eq!(reply, Message::text(format!("echo: {text}")));
        }
        socket.close(None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_to_an_unverifiable_tls_upstream_is_refused() {
    let (app, _) = start_tls_app().await;
    let gate = Streamgate::start(&tls_config(app, ""));
    let refused = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", gate.port))
        .await
        .expect_err("the app's certificate does not verify");
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 502)
        }
        other => panic!("expected a 502 answer, got {other}"),
    }
}
