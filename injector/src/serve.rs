//! The HTTPS server the API server calls: `POST /mutate` takes an
//! AdmissionReview, `GET /healthz` answers the kubelet's probes. The serving
//! certificate comes from files (cert-manager writes them into a mounted
//! Secret) or from the injector's own Secret (`certs`), and is checked again
//! every interval: a renewed pair is served to new connections without a
//! restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;

use crate::certs::cluster::Cluster;
use crate::inject::Injector;
use crate::review;

/// Where the serving certificate comes from.
pub enum CertSource {
    /// PEM files, e.g. a cert-manager Certificate's Secret mounted in the pod.
    Files { cert: PathBuf, key: PathBuf },
    /// The injector's own CA and leaf, kept in a Secret; `dns_names` are the
    /// Service's names the API server calls.
    Managed {
        cluster: Box<Cluster>,
        dns_names: Vec<String>,
    },
}

impl CertSource {
    /// The current (certificate, key) PEM pair.
    async fn pair(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        match self {
            CertSource::Files { cert, key } => {
                let read =
                    |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
                Ok((read(cert)?, read(key)?))
            }
            CertSource::Managed { cluster, dns_names } => {
                let m = cluster
                    .reconcile(dns_names)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((m.cert.into_bytes(), m.key.into_bytes()))
            }
        }
    }
}

pub struct Settings {
    pub listen: SocketAddr,
    pub certs: CertSource,
    pub check_interval: Duration,
}

fn router(injector: Arc<Injector>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(injector)
}

async fn mutate(State(injector): State<Arc<Injector>>, body: Bytes) -> Response {
    match review::respond(&body, &injector) {
        Ok((reviewed, log)) => {
            log::info!("{log}");
            axum::Json(reviewed).into_response()
        }
        Err(e) => {
            log::warn!("refused a request body: {e}");
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain")],
                format!("{e}\n"),
            )
                .into_response()
        }
    }
}

/// Serves until SIGTERM or SIGINT; the first certificate must be had, the
/// later checks only log when they fail (the current pair stays in use).
pub async fn run(injector: Injector, settings: Settings) -> Result<(), String> {
    let mut first = settings.certs.pair().await;
    while let Err(e) = &first {
        log::warn!("serving certificate: {e}; trying again in 5 s");
        tokio::time::sleep(Duration::from_secs(5)).await;
        first = settings.certs.pair().await;
    }
    let (cert, key) = first.unwrap_or_default();
    let tls = RustlsConfig::from_pem(cert.clone(), key.clone())
        .await
        .map_err(|e| format!("serving certificate: {e}"))?;

    let handle = axum_server::Handle::new();
    let watcher = tokio::spawn(keep_current(
        settings.certs,
        tls.clone(),
        (cert, key),
        settings.check_interval,
    ));
    let stopper = handle.clone();
    tokio::spawn(async move {
        stop_signal().await;
        log::info!("stopping: finishing the requests in flight");
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let server = axum_server::bind_rustls(settings.listen, tls).handle(handle.clone());
    let announce = handle.clone();
    tokio::spawn(async move {
        if let Some(addr) = announce.listening().await {
            log::info!("listening on https://{addr}");
        }
    });
    let served = server
        .serve(router(Arc::new(injector)).into_make_service())
        .await
        .map_err(|e| format!("{}: {e}", settings.listen));
    watcher.abort();
    served
}

async fn keep_current(
    source: CertSource,
    tls: RustlsConfig,
    mut serving: (Vec<u8>, Vec<u8>),
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        match source.pair().await {
            Ok(pair) if pair != serving => match tls
                .reload_from_pem(pair.0.clone(), pair.1.clone())
                .await
            {
                Ok(()) => {
                    log::info!("serving a renewed certificate");
                    serving = pair;
                }
                Err(e) => log::warn!("renewed certificate refused, keeping the current one: {e}"),
            },
            Ok(_) => {}
            Err(e) => log::warn!("serving certificate check: {e}; keeping the current one"),
        }
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
