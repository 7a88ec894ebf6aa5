//! An identity provider stand-in over HTTPS on loopback: an OpenID Connect
//! discovery document and a JWK set, served with a certificate from a test CA
//! (written to a file for `jwks_fetch.ca_file`). The test chooses when it
//! starts and stops, which fixture keys it publishes, its `Cache-Control`, and
//! can make its discovery document lie about the issuer; it counts the
//! requests for each document.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::tls::TestCa;
use super::FIXTURES;

/// The discovery document's path under the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where the stand-in publishes its keys (the discovery document's `jwks_uri`).
pub const JWKS_PATH: &str = "/keys";

#[derive(Default)]
struct Published {
    jwks: Mutex<Vec<u8>>,
    cache_control: Mutex<Option<String>>,
    /// The `issuer` the discovery document names, when it should not be the real one.
    claimed_issuer: Mutex<Option<String>>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

pub struct Idp {
    pub port: u16,
    /// `https://127.0.0.1:{port}`: the issuer, and the `iss` of its tokens.
    pub issuer: String,
    /// The test CA's certificate, to give streamgate as `ca_file`.
    pub ca_file: PathBuf,
    published: Arc<Published>,
    acceptor: TlsAcceptor,
    server: Mutex<Option<JoinHandle<()>>>,
    _dir: tempfile::TempDir,
}

impl Idp {
    /// A stand-in publishing the fixture keys `keys` (`tests/fixtures/<key>.jwks.json`),
    /// on a free port, not started yet.
    pub fn new(keys: &[&str]) -> Idp {
        let ca = TestCa::new("streamgate test IdP CA");
        let pair = ca.server(1);
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("idp-ca.pem");
        std::fs::write(&ca_file, &ca.pem).expect("write CA");
        let port = super::free_port();
        let idp = Idp {
            port,
            issuer: format!("https://127.0.0.1:{port}"),
            ca_file,
            published: Arc::default(),
            acceptor: pair.acceptor(),
            server: Mutex::new(None),
            _dir: dir,
        };
        idp.publish(keys);
        idp
    }

    /// Serves on its port until [`Idp::stop`].
    pub fn start(&self) {
        let listener = StdListener::bind(("127.0.0.1", self.port)).expect("bind the IdP port");
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let (acceptor, published, issuer) = (
            self.acceptor.clone(),
            Arc::clone(&self.published),
            self.issuer.clone(),
        );
        let server = tokio::spawn(async move {
            // Connections are tasks of this one: stopping it closes them all,
            // as a provider going down would.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, published, issuer) =
                    (acceptor.clone(), Arc::clone(&published), issuer.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let answer = answer(&published, &issuer, request.uri().path());
                        async move { Ok::<_, std::convert::Infallible>(answer) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        *self.server.lock().unwrap() = Some(server);
    }

    /// Stops listening and closes every connection: the provider is down.
    pub fn stop(&self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.abort();
        }
    }

    /// Publishes the union of the fixture key sets `keys`.
    pub fn publish(&self, keys: &[&str]) {
        let keys: Vec<Value> = keys
            .iter()
            .flat_map(|key| {
                let text = std::fs::read(format!("{FIXTURES}/{key}.jwks.json")).expect("fixture");
                let set: Value = serde_json::from_slice(&text).expect("fixture JSON");
                set["keys"].as_array().expect("keys").clone()
            })
            .collect();
        *self.published.jwks.lock().unwrap() = json!({ "keys": keys }).to_string().into_bytes();
    }

    /// The `Cache-Control` the key set is served with.
    pub fn cache_control(&self, value: &str) {
        *self.published.cache_control.lock().unwrap() = Some(value.to_string());
    }

    /// Makes the discovery document name `issuer` instead of the real one.
    pub fn claim_issuer(&self, issuer: &str) {
        *self.published.claimed_issuer.lock().unwrap() = Some(issuer.to_string());
    }

    pub fn jwks_hits(&self) -> usize {
        self.published.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn discovery_hits(&self) -> usize {
        self.published.discovery_hits.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(published: &Published, issuer: &str, path: &str) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::builder().header("content-type", "application/json");
    let body = match path {
        DISCOVERY_PATH => {
            published.discovery_hits.fetch_add(1, Ordering::SeqCst);
            let claimed = published.claimed_issuer.lock().unwrap().clone();
            json!({
                "issuer": claimed.unwrap_or_else(|| issuer.to_string()),
                "jwks_uri": format!("{issuer}{JWKS_PATH}"),
                "id_token_signing_alg_values_supported": ["RS256"],
            })
            .to_string()
            .into_bytes()
        }
        JWKS_PATH => {
            published.jwks_hits.fetch_add(1, Ordering::SeqCst);
            if let Some(value) = published.cache_control.lock().unwrap().as_deref() {
                response = response.header("cache-control", value);
            }
            published.jwks.lock().unwrap().clone()
        }
        _ => {
            return http::Response::builder()
                .status(404)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    };
    response.body(Full::new(Bytes::from(body))).unwrap()
}
