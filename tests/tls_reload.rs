//! A TLS listener's certificate follows its files (issue 11): a pair rotated
//! by a kubelet `..data` swap reaches new connections within seconds, with no
//! restart and no harm to connections already open; a broken pair keeps the
//! last good one serving and is counted; a pair written one file at a time is
//! refused while half-written and served once whole.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;

const RELOADS: &str = "streamgate_tls_certificate_reloads_total";
const FAILURES: &str = "streamgate_tls_certificate_reload_failures_total";
const EXPIRY: &str = "streamgate_tls_certificate_expiry_timestamp_seconds";

/// The default config in front of `app`, its one listener on `{port}` a TLS
/// listener on `cert` and `key`.
fn config(app: SocketAddr, cert: &Path, key: &Path) -> String {
    default_config(app).replace(
        "listen: [\"127.0.0.1:{port}\"]",
        &format!(
            "listen:\n  - {{ address: \"127.0.0.1:{{port}}\", tls: {{ cert_file: \"{}\", key_file: \"{}\" }} }}",
            cert.display(),
            key.display()
        ),
    )
}

/// Publishes `cert` and `key` as a new version of a `kubernetes.io/tls` Secret.
fn publish(mount: &Mount, cert: &str, key: &str) {
    mount.publish(&[("tls.crt", cert.as_bytes()), ("tls.key", key.as_bytes())]);
}

/// streamgate in front of `app` with a TLS listener on a mounted
/// `kubernetes.io/tls` Secret that holds `pair`.
fn serving_from_a_secret(app: SocketAddr, pair: &Pair) -> (Mount, Streamgate) {
    let mount = Mount::with_keys(&["tls.crt", "tls.key"]);
    publish(&mount, &pair.cert, &pair.key);
    let gate = Streamgate::start(&config(
        app,
        &mount.path_of("tls.crt"),
        &mount.path_of("tls.key"),
    ));
    (mount, gate)
}

/// The serial of the certificate a new connection gets.
fn served_to_a_new_connection(gate: &Streamgate, ca: &TestCa) -> String {
    TlsClient::connect(gate.port, &ClientOptions::trusting(&ca.pem))
        .expect("a TLS handshake")
        .served_serial()
}

/// Whether new connections get the certificate with `serial` within
/// [`EVENTUALLY`].
async fn new_connections_get(gate: &Streamgate, ca: &TestCa, serial: &str) -> bool {
    eventually(|| async { served_to_a_new_connection(gate, ca) == serial }).await
}

fn listener(gate: &Streamgate) -> String {
    format!("127.0.0.1:{}", gate.port)
}

async fn count(gate: &Streamgate, name: &str) -> f64 {
    metric_now(gate, name, &[("listener", &listener(gate))]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pair_rotated_by_a_data_swap_reaches_new_connections_only() {
    let app = start_app().await;
    let ca = TestCa::new("listener CA");
    let (first, second) = (ca.server(1), ca.server(2));
    let (mount, gate) = serving_from_a_secret(app.addr, &first);
    let mut open = TlsClient::connect(gate.port, &ClientOptions::trusting(&ca.pem)).unwrap();
    assert_eq!(open.served_serial(), first.serial());
    assert_eq!(open.get("/before").unwrap().status, 200);
    assert_eq!(count(&gate, EXPIRY).await, first.not_after() as f64);

    publish(&mount, &second.cert, &second.key);
    assert!(
        new_connections_get(&gate, &ca, &second.serial()).await,
        "still serving {}:\n{}",
        served_to_a_new_connection(&gate, &ca),
        gate.logs()
    );
    // The connection opened before keeps its certificate and keeps serving.
    assert_eq!(open.served_serial(), first.serial());
    assert_eq!(open.get("/after").unwrap().status, 200);
    assert_eq!(count(&gate, RELOADS).await, 1.0);
    assert_eq!(count(&gate, FAILURES).await, 0.0);
    assert_eq!(count(&gate, EXPIRY).await, second.not_after() as f64);
    assert!(
        gate.logs()
            .contains("new connections get the certificate CN=streamgate test 2"),
        "{}",
        gate.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_pair_keeps_the_last_good_one_and_is_counted() {
    let app = start_app().await;
    let ca = TestCa::new("listener CA");
    let (first, second, third) = (ca.server(1), ca.server(2), ca.server(3));
    let (mount, gate) = serving_from_a_secret(app.addr, &first);
    let failures_reach = |wanted: fn(f64) -> bool| {
        let labels = [("listener", listener(&gate))];
        let gate = &gate;
        async move {
            let labels = [(labels[0].0, labels[0].1.as_str())];
            metric_reaches(gate, FAILURES, &labels, wanted).await
        }
    };

    publish(&mount, "not a certificate\n", &first.key);
    assert!(failures_reach(|n| n == 1.0).await, "{}", gate.logs());
    // Every event in the directory reads the pair again: one broken pair,
    // however often read, is one failure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&gate, FAILURES).await, 1.0, "each broken pair once");
    // A read that straddles the next swap (the new certificate with the
    // previous key) is a broken pair of its own, so at least one more.
    publish(&mount, &second.cert, &third.key);
    assert!(failures_reach(|n| n >= 2.0).await, "{}", gate.logs());
    assert_eq!(served_to_a_new_connection(&gate, &ca), first.serial());
    let mut client = TlsClient::connect(gate.port, &ClientOptions::trusting(&ca.pem)).unwrap();
    assert_eq!(client.get("/still-served").unwrap().status, 200);
    let logs = gate.logs();
    assert!(
        logs.contains("tls.crt: holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"); keeping the last good one"),
        "{logs}"
    );
    assert!(
        logs.contains(
            "is not the private key of the certificate in cert_file; keeping the last good one"
        ),
        "{logs}"
    );
    assert_eq!(count(&gate, RELOADS).await, 0.0);
    assert_eq!(count(&gate, EXPIRY).await, first.not_after() as f64);

    let failures = count(&gate, FAILURES).await;
    publish(&mount, &third.cert, &third.key);
    assert!(new_connections_get(&gate, &ca, &third.serial()).await);
    assert_eq!(count(&gate, RELOADS).await, 1.0);
    assert_eq!(
        count(&gate, FAILURES).await,
        failures,
        "a good pair is no failure"
    );
}

/// A rotation by hand in a plain directory, each file replaced on its own
/// (`mv`, atomic per file): between the two, the directory holds a new
/// certificate with the old key.
#[tokio::test(flavor = "multi_thread")]
async fn a_pair_written_one_file_at_a_time_is_served_once_whole() {
    let app = start_app().await;
    let ca = TestCa::new("listener CA");
    let (first, second) = (ca.server(1), ca.server(2));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let replace = |path: &Path, content: &str| {
        let tmp = dir.path().join(".incoming");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    };
    replace(&cert, &first.cert);
    replace(&key, &first.key);
    let gate = Streamgate::start(&config(app.addr, &cert, &key));
    let labels = [("listener", listener(&gate))];
    let labels = [(labels[0].0, labels[0].1.as_str())];

    replace(&cert, &second.cert);
    assert!(
        metric_reaches(&gate, FAILURES, &labels, |n| n == 1.0).await,
        "{}",
        gate.logs()
    );
    assert_eq!(served_to_a_new_connection(&gate, &ca), first.serial());

    replace(&key, &second.key);
    assert!(new_connections_get(&gate, &ca, &second.serial()).await);
    assert_eq!(count(&gate, RELOADS).await, 1.0);
    assert_eq!(count(&gate, FAILURES).await, 1.0);
}
