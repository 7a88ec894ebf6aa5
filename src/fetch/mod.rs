//! Requests streamgate makes on its own: the identity provider's discovery
//! document and key set for `jwt` mode's `issuer_url` / `jwks_url`.
//!
//! One task per remote key set, on a Pingora background service: fetched at
//! start (and retried with backoff until it works: readiness waits for it),
//! then again when the set's cache duration runs out
//! ([`crate::identity::oidc::cache_duration`]) or when a request names an
//! unknown `kid` (rate-capped by [`JwksKeys`]). A failed fetch keeps the last
//! good set, counts in `streamgate_jwks_fetches_total{result="error"}` and
//! logs one line; it never ends the task.
//!
//! The requests go through `reqwest` on rustls: TLS always verified (against
//! the system's roots, or only the configured `ca_file`), connect and total
//! timeouts, redirects followed only to `https` when the URL is `https`, and
//! answers read up to [`MAX_DOCUMENT_BYTES`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounter, IntGauge};

use crate::identity::jwks::{JwksLocation, RemoteJwks};
use crate::identity::{oidc, JwksKeys};
use crate::telemetry::metrics::Metrics;

/// The most of a discovery document or key set that is read: real ones are a
/// few KiB, and the limit keeps a misbehaving endpoint from using memory.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The first retry after a failed fetch; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Every remote key set's fetch task.
pub struct KeySetFetchers {
    sets: Vec<Arc<KeySetFetcher>>,
}

impl KeySetFetchers {
    /// A fetcher for each remote key set among `keys`; `None` when there is none.
    pub fn new(keys: Vec<Arc<JwksKeys>>, metrics: &Metrics) -> Option<KeySetFetchers> {
        let sets: Vec<Arc<KeySetFetcher>> = keys
            .into_iter()
            .filter(|keys| keys.origin().is_some())
            .map(|keys| Arc::new(KeySetFetcher::new(keys, metrics)))
            .collect();
        (!sets.is_empty()).then_some(KeySetFetchers { sets })
    }
}

#[async_trait]
impl BackgroundService for KeySetFetchers {
    async fn start(&self, shutdown: ShutdownWatch) {
        let mut tasks = tokio::task::JoinSet::new();
        for set in &self.sets {
            let (set, shutdown) = (Arc::clone(set), shutdown.clone());
            tasks.spawn(async move { set.run(shutdown).await });
        }
        while tasks.join_next().await.is_some() {}
    }
}

struct KeySetFetcher {
    keys: Arc<JwksKeys>,
    fetched: IntCounter,
    failed: IntCounter,
    key_count: IntGauge,
}

/// What one fetch brought: the new set is in place, used for this long.
struct Fetched {
    cache_for: Duration,
    keys: usize,
    skipped: usize,
}

impl KeySetFetcher {
    fn new(keys: Arc<JwksKeys>, metrics: &Metrics) -> KeySetFetcher {
        let label = keys.origin().map_or("", |origin| origin.location.url());
        let fetches = |result| metrics.jwks_fetches.with_label_values(&[label, result]);
        KeySetFetcher {
            fetched: fetches("ok"),
            failed: fetches("error"),
            key_count: metrics.jwks_keys.with_label_values(&[label]),
            keys,
        }
    }

    async fn run(&self, mut shutdown: ShutdownWatch) {
        let Some(origin) = self.keys.origin() else {
            return;
        };
        let url = origin.location.url();
        let client = match client(origin) {
            Ok(client) => client,
            Err(e) => {
                log::error!("cannot fetch the JWKS of {url}: {e}");
                return;
            }
        };
        // Learnt from the discovery document, and learnt again after a
        // failure (the provider may have moved its keys).
        let mut jwks_uri = match &origin.location {
            JwksLocation::Url(url) => Some(url.clone()),
            JwksLocation::Issuer(_) => None,
        };
        let mut retry = FIRST_RETRY;
        loop {
            self.keys.fetch_starting();
            let outcome = self.fetch(&client, origin, &mut jwks_uri).await;
            self.keys
                .fetch_finished(outcome.as_ref().map(|_| ()).map_err(Clone::clone));
            let wait = match outcome {
                Ok(fetched) => {
                    self.fetched.inc();
                    self.key_count
                        .set(i64::try_from(fetched.keys).unwrap_or(i64::MAX));
                    log::info!(
                        "JWKS of {url}: {} key{}{}; next fetch in {}",
                        fetched.keys,
                        if fetched.keys == 1 { "" } else { "s" },
                        match fetched.skipped {
                            0 => String::new(),
                            n =>
                                format!(" ({n} skipped: not signature keys this verifier can use)"),
                        },
                        humantime::format_duration(fetched.cache_for)
                    );
                    retry = FIRST_RETRY;
                    fetched.cache_for
                }
                Err(reason) => {
                    self.failed.inc();
                    if matches!(origin.location, JwksLocation::Issuer(_)) {
                        jwks_uri = None;
                    }
                    let kept = if self.keys.is_loaded() {
                        "the last keys fetched stay in use"
                    } else {
                        "no keys yet: jwt tokens are refused (503) and /readyz says not ready"
                    };
                    log::warn!(
                        "JWKS of {url}: fetch failed: {reason}; {kept}; retrying in {}",
                        humantime::format_duration(retry)
                    );
                    let wait = retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.keys.refetch_requested() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
        origin: &RemoteJwks,
        jwks_uri: &mut Option<String>,
    ) -> Result<Fetched, String> {
        let uri = match (jwks_uri.as_ref(), &origin.location) {
            (Some(uri), _) => uri.clone(),
            (None, JwksLocation::Issuer(issuer)) => {
                let (document, _) = get(client, &oidc::discovery_url(issuer)).await?;
                let uri = oidc::jwks_uri(&document, issuer)?;
                *jwks_uri = Some(uri.clone());
                uri
            }
            (None, JwksLocation::Url(url)) => url.clone(),
        };
        let (document, cache_control) = get(client, &uri).await?;
        let parsed = self
            .keys
            .replace(&document)
            .map_err(|reason| format!("{uri}: {reason}"))?;
        Ok(Fetched {
            cache_for: oidc::cache_duration(
                cache_control.as_deref(),
                origin.min_cache_duration,
                origin.max_cache_duration,
            ),
            keys: parsed.keys.keys.len(),
            skipped: parsed.skipped,
        })
    }
}

fn client(origin: &RemoteJwks) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(origin.connect_timeout)
        .timeout(origin.timeout)
        .user_agent(concat!("streamgate/", env!("CARGO_PKG_VERSION")))
        .https_only(origin.location.url().starts_with("https://"));
    if let Some(pem) = &origin.ca_pem {
        // The configured CA only, as `curl --cacert` and Envoy's trusted_ca:
        // an operator who names the provider's CA means that one.
        builder = builder.tls_built_in_root_certs(false);
        for certificate in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// A `200` answer's body (at most [`MAX_DOCUMENT_BYTES`]) and `Cache-Control`.
async fn get(client: &reqwest::Client, url: &str) -> Result<(Vec<u8>, Option<String>), String> {
    let mut response = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| describe(url, e))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(format!("{url}: answered {}", response.status()));
    }
    let cache_control = response
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(url, e))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "{url}: the answer is over {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, cache_control))
}

/// reqwest's error with its causes (the TLS or connection reason is in
/// them), the URL said once, and what a certificate refusal usually means.
fn describe(url: &str, error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = format!("{url}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if text.contains("invalid peer certificate") {
        text.push_str(
            " (the provider's certificate does not verify against jwks_fetch.ca_file, or the \
             system's roots when it is not set: ca_file must hold the CA that issued the \
             certificate, and a self-signed certificate that is itself a CA is refused)",
        );
    }
    text
}
