//! The real injector binary on loopback, serving TLS with a certificate from
//! files (the cert-manager path), fed the golden AdmissionReviews over HTTPS by
//! a client that trusts only the certificate's CA; when the files are renewed,
//! new connections get the new certificate without a restart.

mod common;

use common::{free_port, InjectorProcess};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::Value;

/// A CA: its PEM, and the issuer that signs leaves with it.
fn ca() -> (String, Issuer<'static, KeyPair>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    (ca_cert.pem(), Issuer::new(ca, ca_key))
}

/// A leaf for localhost: (certificate PEM, key PEM).
fn leaf(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, issuer)
        .expect("leaf");
    (leaf.pem(), key.serialize_pem())
}

fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}

fn client(ca_pem: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(5))
        .tls_info(true)
        .resolve("localhost", ([127, 0, 0, 1], 0).into());
    if let Some(pem) = ca_pem {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("PEM"));
    }
    builder.build().expect("client")
}

/// Every golden AdmissionReview, answered over HTTPS as its expected file says.
async fn answers_every_fixture(trusted: &reqwest::Client, base: &str) {
    for (name, request) in common::cases() {
        let r = trusted
            .post(format!("{base}/mutate"))
            .json(&request)
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 200, "{name}");
        let out: Value = r.json().await.expect("JSON");
        let response = &out["response"];
        assert_eq!(response["uid"], request["request"]["uid"], "{name}");
        let path = common::fixtures().join(format!("{name}.expected.json"));
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("golden")).expect("JSON");
        assert_eq!(response["allowed"], expected["allowed"], "{name}");
        assert_eq!(
            response["status"]["message"].as_str(),
            expected["message"].as_str(),
            "{name}"
        );
        // The patch is a base64 string, as the API server requires (not the
        // array of numbers kube-core would write).
        let patch = response["patch"].as_str().map(|b64| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            serde_json::from_slice::<Value>(&bytes).expect("JSON")
        });
        assert_eq!(patch.as_ref(), expected.get("patch"), "{name}");
    }
}

/// The DER of the certificate served to a new connection.
async fn served_cert(ca: &str, base: &str) -> Option<Vec<u8>> {
    let r = client(Some(ca))
        .get(format!("{base}/healthz"))
        .send()
        .await
        .ok()?;
    let info = r.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

#[tokio::test]
async fn the_injector_answers_admission_reviews_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, issuer) = ca();
    let (cert, key) = leaf(&issuer);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let template = write("sidecar.yaml", &common::template_yaml());
    let cert_file = write("tls.crt", &cert);
    let key_file = write("tls.key", &key);
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_streamgate-injector"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--check-interval",
            "200ms",
        ])
        .arg("--template")
        .arg(&template)
        .arg("--tls-cert-file")
        .arg(&cert_file)
        .arg("--tls-key-file")
        .arg(&key_file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start streamgate-injector");
    let _injector = InjectorProcess(child);

    let trusted = client(Some(&ca));
    let base = format!("https://localhost:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match trusted.get(format!("{base}/healthz")).send().await {
            Ok(r) if r.status() == 200 => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the injector did not come up: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let stranger = client(None).get(format!("{base}/healthz")).send().await;
    assert!(
        stranger.is_err(),
        "a client without the CA must not get through: {stranger:?}"
    );

    answers_every_fixture(&trusted, &base).await;

    let r = trusted
        .post(format!("{base}/mutate"))
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 400, "a body that is not an AdmissionReview");

    // cert-manager renews: the kubelet swaps the mounted files; new
    // connections get the new leaf, no restart.
    let (renewed, renewed_key) = leaf(&issuer);
    std::fs::write(&key_file, &renewed_key).expect("write");
    std::fs::write(&cert_file, &renewed).expect("write");
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_cert(&ca, &base).await != Some(der_of(&renewed)) {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
