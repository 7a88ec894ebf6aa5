//! TLS listeners (issue 11): ALPN offers h2 and http/1.1 and both are proxied,
//! token routes answer over TLS, only TLS 1.2 and 1.3 are spoken, plain HTTP on
//! the TLS port harms nothing, mutual TLS admits only the client CA's
//! certificates, an unusable certificate stops the start naming its key, and a
//! graceful upgrade hands the TLS listener over. Certificate rotation is in
//! `tls_reload.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};

/// The default config in front of `app` with its one listener on `{port}`
/// made a TLS listener serving `pair`, written to `dir`; `extra` goes on in
/// the `tls` map (`, client_ca_file: …`).
fn tls_config(app: SocketAddr, dir: &Path, pair: &Pair, extra: &str) -> String {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, &pair.cert).unwrap();
    std::fs::write(&key, &pair.key).unwrap();
    default_config(app).replace(
        "listen: [\"127.0.0.1:{port}\"]",
        &format!(
            "listen:\n  - {{ address: \"127.0.0.1:{{port}}\", tls: {{ cert_file: \"{}\", key_file: \"{}\"{extra} }} }}",
            cert.display(),
            key.display()
        ),
    )
}

/// streamgate with a TLS listener in front of the echo app, and the CA its
/// certificate comes from.
async fn start_tls(extra: &str) -> (Streamgate, TestCa, tempfile::TempDir) {
    let app = start_app().await;
    let ca = TestCa::new("listener CA");
    let dir = tempfile::tempdir().unwrap();
    let gate = Streamgate::start(&tls_config(app.addr, dir.path(), &ca.server(1), extra));
    (gate, ca, dir)
}

fn json_of(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_over_tls_is_proxied_and_the_app_is_told_https() {
    let (gate, ca, _dir) = start_tls("").await;
    for alpn in [&["http/1.1"][..], &[]] {
        let options = ClientOptions {
            alpn,
            ..ClientOptions::trusting(&ca.pem)
        };
        let mut client = TlsClient::connect(gate.port, &options).unwrap();
        assert_eq!(client.alpn().as_deref(), alpn.first().copied(), "{alpn:?}");
        let response = client.get("/over/tls?x=1").unwrap();
        assert_eq!(response.status, 200, "{}", response.body_text());
        let echoed = json_of(&response);
        assert_eq!(echoed["path"], "/over/tls");
        assert_eq!(echoed["headers"]["x-forwarded-proto"], json!(["https"]));
        assert_eq!(
            echoed["headers"]["x-forwarded-port"],
            json!([gate.port.to_string()])
        );
        let again = client.get("/second").unwrap();
        assert_eq!(json_of(&again)["path"], "/second", "keep-alive over TLS");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_is_negotiated_by_alpn_and_proxied() {
    let (gate, ca, _dir) = start_tls("").await;
    let options = ClientOptions {
        alpn: &["h2", "http/1.1"],
        ..ClientOptions::trusting(&ca.pem)
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gate.port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(options.config())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("an HTTP/2 connection");
    tokio::spawn(connection);
    let request = http::Request::get(format!("https://localhost:{}/over/h2", gate.port))
        .body(String::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .expect("an answer within 5 s")
        .expect("an HTTP/2 response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echoed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["path"], "/over/h2");
    assert_eq!(echoed["headers"]["x-forwarded-proto"], json!(["https"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn token_routes_answer_over_tls() {
    let (gate, ca, _dir) = start_tls("").await;
    let mut client = TlsClient::connect(gate.port, &ClientOptions::trusting(&ca.pem)).unwrap();
    let body = r#"{"userId":"john_doe"}"#;
    let response = client
        .request(&format!(
            "POST {USER_TOKEN_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body_text());
    let answer = json_of(&response);
    assert_eq!(minted_user(&answer), "john_doe");
    assert!(verifies_with(token_in(&answer), API_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_1_2_and_1_3_are_spoken_and_tls_1_1_is_refused() {
    let (gate, ca, _dir) = start_tls("").await;
    let tls13 = TlsClient::connect(gate.port, &ClientOptions::trusting(&ca.pem)).unwrap();
    assert_eq!(tls13.version(), Some(rustls::ProtocolVersion::TLSv1_3));
    let options = ClientOptions {
        tls12_only: true,
        ..ClientOptions::trusting(&ca.pem)
    };
    let mut tls12 = TlsClient::connect(gate.port, &options).unwrap();
    assert_eq!(tls12.version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(tls12.get("/v12").unwrap().status, 200);

    let mut old = TcpStream::connect(("127.0.0.1", gate.port)).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    old.write_all(&tls11_client_hello()).unwrap();
    let mut answer = Vec::new();
    let _ = old.read_to_end(&mut answer);
    // An alert record (21), fatal (2), protocol_version (70); nothing else.
    assert_eq!(answer.first(), Some(&21), "{answer:?}");
    assert_eq!(&answer[answer.len() - 2..], [2, 70], "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_the_tls_port_harms_nothing() {
    let (gate, ca, _dir) = start_tls("").await;
    let mut plain = RawClient::connect(gate.port);
    plain.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        plain.response_within(Duration::from_secs(2)).is_none(),
        "no HTTP answer on a TLS port"
    );
    assert!(plain.closed_within(Duration::from_secs(5)), "closed");
    let mut client = TlsClient::connect(gate.port, &ClientOptions::trusting(&ca.pem)).unwrap();
    assert_eq!(client.get("/after").unwrap().status, 200);
    assert_eq!(status_of(gate.admin_url("/readyz")).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_only_certificates_from_the_client_ca() {
    let clients = TestCa::new("client CA");
    let strangers = TestCa::new("another CA");
    let dir = tempfile::tempdir().unwrap();
    let client_ca = dir.path().join("client-ca.pem");
    std::fs::write(&client_ca, &clients.pem).unwrap();
    let extra = format!(", client_ca_file: \"{}\"", client_ca.display());
    let (gate, ca, _files) = start_tls(&extra).await;
    let request = |identity: Option<&Pair>| {
        let options = ClientOptions {
            identity,
            ..ClientOptions::trusting(&ca.pem)
        };
        // With TLS 1.3 the refusal comes after the client's half of the
        // handshake, so it shows on the first response.
        TlsClient::connect(gate.port, &options).and_then(|mut client| client.get("/mtls"))
    };
    let without = request(None).unwrap_err();
    assert!(without.contains("CertificateRequired"), "{without}");
    let admitted = request(Some(&clients.client("app-client"))).unwrap();
    assert_eq!(admitted.status, 200);
    let stranger = request(Some(&strangers.client("intruder"))).unwrap_err();
    assert!(stranger.contains("alert"), "{stranger}");
}

/// Pingora's graceful upgrade hands the TLS listener's socket over; the new
/// process serves with the certificate of its own configuration.
#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_upgrade_hands_over_the_tls_listener() {
    let app = start_app().await;
    let ca = TestCa::new("listener CA");
    let (first, second) = (ca.server(1), ca.server(2));
    let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = Streamgate::start(&tls_config(app.addr, old_dir.path(), &first, ""));
    let new = old.start_upgrade(&tls_config(app.addr, new_dir.path(), &second, ""));
    old.signal("QUIT");
    let mut old = old;
    let exited = tokio::task::spawn_blocking(move || old.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(exited.is_some(), "the old process exits after handing over");
    let mut client = TlsClient::connect(new.port, &ClientOptions::trusting(&ca.pem)).unwrap();
    assert_eq!(client.served_serial(), second.serial());
    assert_eq!(
        client.get("/upgraded").unwrap().status,
        200,
        "{}",
        new.logs()
    );
}

/// `streamgate` with `args` on `config`; its exit code and stderr.
fn run(config: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamgate.yaml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(binary())
        .args(args)
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn an_unusable_certificate_stops_the_start_naming_its_key() {
    let ca = TestCa::new("listener CA");
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(
        "127.0.0.1:9".parse().unwrap(),
        dir.path(),
        &ca.server(1),
        "",
    )
    .replace("{port}", &free_port().to_string())
    .replace("{admin_port}", &free_port().to_string())
    .replace("{dir}", dir.path().to_str().unwrap());
    let (code, stderr) = run(&config, &["-t"]);
    assert_eq!(code, Some(0), "{stderr}");

    std::fs::write(dir.path().join("tls.crt"), "not a certificate\n").unwrap();
    for args in [&["-t"][..], &[]] {
        let (code, stderr) = run(&config, args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "listen[0].tls.cert_file: {}: holds no PEM certificate",
                dir.path().join("tls.crt").display()
            )),
            "{args:?}: {stderr}"
        );
    }
    std::fs::remove_file(dir.path().join("tls.crt")).unwrap();
    let (code, stderr) = run(&config, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("listen[0].tls.cert_file: cannot read"),
        "{stderr}"
    );
}

/// The shipped TLS + gRPC example passes `-t` as shipped (its development
/// pair) and with a pair of the operator's given by `TLS_CERT_FILE` and
/// `TLS_KEY_FILE`, as a pod sets them.
#[test]
fn the_tls_example_config_passes_the_check() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tls-grpc.yaml");
    let check = |env: &[(&str, &std::ffi::OsStr)]| {
        let output = Command::new(binary())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["-t", "-c", example])
            .env_remove("TLS_CERT_FILE")
            .env_remove("TLS_KEY_FILE")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    let (code, stderr) = check(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    // As shipped, the development pair: loud, as the development secret is.
    assert!(
        stderr.contains("listen[1].tls.cert_file is the DEVELOPMENT certificate"),
        "{stderr}"
    );
    let ca = TestCa::new("operator CA");
    let pair = ca.server(7);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &pair.cert).unwrap();
    std::fs::write(&key, &pair.key).unwrap();
    let env = [
        ("TLS_CERT_FILE", cert.as_os_str()),
        ("TLS_KEY_FILE", key.as_os_str()),
    ];
    let (code, stderr) = check(&env);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("DEVELOPMENT certificate"), "{stderr}");
    let (code, stderr) = check(&[("TLS_CERT_FILE", key.as_os_str())]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("listen[1].tls.cert_file"), "{stderr}");
}
