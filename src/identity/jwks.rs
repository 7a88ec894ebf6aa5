//! A JWK set (RFC 7517) that can be replaced while requests read it: the keys
//! of `jwt` mode from a `jwks_file` (followed by [`crate::reload`]) or from
//! the identity provider over HTTPS (`jwks_url`, `issuer_url`: fetched by
//! [`crate::fetch`]). This holds the current set, parses new ones, and — for a
//! remote set — decides when a token naming an unknown `kid` may make the
//! fetcher ask the provider again.
//!
//! That decision is the defence against forged `kid`s: every request with a
//! random `kid` would otherwise be one request to the provider, so a flood of
//! them would turn streamgate into a load generator against the IdP. At most
//! one such refetch starts per [`RemoteJwks::unknown_kid_refetch_interval`];
//! requests that arrive while it runs wait for it, others are refused at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use serde::Deserialize;
use tokio::sync::{watch, Notify};

#[derive(Debug)]
pub struct JwksKeys {
    current: ArcSwap<JwkSet>,
    /// False until a first set is in place (a remote set before its first fetch).
    loaded: AtomicBool,
    remote: Option<Remote>,
}

/// What a document held: the usable keys, and how many were skipped.
#[derive(Debug)]
pub struct ParsedJwks {
    pub keys: JwkSet,
    /// Keys this verifier cannot use (encryption keys, unknown `kty` or
    /// `alg`): skipped so that one exotic key does not hide the rest.
    pub skipped: usize,
}

impl JwksKeys {
    /// A key set from a JWKS document (`{"keys":[…]}`, at least one usable key).
    pub fn parse(document: &[u8]) -> Result<JwksKeys, String> {
        let parsed = parse_jwks(document)?;
        Ok(JwksKeys {
            current: ArcSwap::from_pointee(parsed.keys),
            loaded: AtomicBool::new(true),
            remote: None,
        })
    }

    /// A key set to be fetched from `origin`; empty (not loaded) until then.
    pub fn remote(origin: RemoteJwks) -> JwksKeys {
        JwksKeys {
            current: ArcSwap::from_pointee(JwkSet { keys: Vec::new() }),
            loaded: AtomicBool::new(false),
            remote: Some(Remote::new(origin)),
        }
    }

    /// The key set in use; a request keeps the one it loaded.
    pub fn current(&self) -> Arc<JwkSet> {
        self.current.load_full()
    }

    /// Whether any key set was ever loaded (readiness waits for it).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Where a remote set comes from; `None` for a file.
    pub fn origin(&self) -> Option<&RemoteJwks> {
        self.remote.as_ref().map(|remote| &remote.origin)
    }

    /// Replaces the key set with the one in `document`; an invalid document
    /// changes nothing.
    pub fn replace(&self, document: &[u8]) -> Result<ParsedJwks, String> {
        let parsed = parse_jwks(document)?;
        self.current.store(Arc::new(parsed.keys.clone()));
        self.loaded.store(true, Ordering::Release);
        Ok(parsed)
    }

    /// Asks the fetcher for the remote set again because a token named a `kid`
    /// the set lacks, and waits up to `wait` for that fetch to finish.
    pub async fn refetch_for_unknown_kid(&self, wait: Duration) -> Refetch {
        match &self.remote {
            None => Refetch::NotRemote,
            Some(remote) => remote.refetch(Instant::now(), wait).await,
        }
    }

    /// The fetcher's side: resolves when a request asks for a refetch.
    pub async fn refetch_requested(&self) {
        if let Some(remote) = &self.remote {
            remote.wake.notified().await;
        }
    }

    /// The fetcher's side: a fetch (scheduled or asked for) starts now.
    pub fn fetch_starting(&self) {
        if let Some(remote) = &self.remote {
            remote.with_gate(|gate| {
                gate.fetching = true;
                gate.requested = false;
            });
        }
    }

    /// The fetcher's side: the fetch has finished, with `outcome` (the
    /// reason when it failed); requests waiting for it look again.
    pub fn fetch_finished(&self, outcome: Result<(), String>) {
        if let Some(remote) = &self.remote {
            remote.with_gate(|gate| gate.fetching = false);
            remote.finished.send_modify(|(count, ok)| {
                *count = count.wrapping_add(1);
                *ok = outcome.is_ok();
            });
            if let Ok(mut last) = remote.last_error.lock() {
                *last = outcome.err();
            }
        }
    }

    /// Why the last fetch failed, while it is the last word (readiness
    /// shows it until the keys are in).
    pub fn last_error(&self) -> Option<String> {
        let remote = self.remote.as_ref()?;
        remote.last_error.lock().ok()?.clone()
    }
}

/// What asking for a refetch for an unknown `kid` came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// A fetch that started after the request finished: look the `kid` up again.
    Fetched,
    /// That fetch failed: the key set is unchanged.
    Failed,
    /// A refetch already started within the interval: refused without asking
    /// the provider.
    Capped,
    /// The fetch did not finish within the wait.
    TimedOut,
    /// A key set from a file: nothing to fetch.
    NotRemote,
}

impl Refetch {
    /// The `result` label of `streamgate_jwks_unknown_kid_refetches_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refetch::Fetched => "fetched",
            Refetch::Failed => "failed",
            Refetch::Capped => "capped",
            Refetch::TimedOut => "timed_out",
            Refetch::NotRemote => "not_remote",
        }
    }
}

/// How a remote key set is fetched: the `jwt` block's `issuer_url` or
/// `jwks_url` and its `jwks_fetch` settings, checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub location: JwksLocation,
    /// TCP and TLS connection set-up, per attempt.
    pub connect_timeout: Duration,
    /// A whole fetch: connection, request and the complete answer.
    pub timeout: Duration,
    /// PEM certificates to trust instead of the system's roots, when set.
    pub ca_pem: Option<Vec<u8>>,
    /// Bounds on how long a fetched set is used before it is fetched again
    /// (its `Cache-Control: max-age` is clamped into them; no max-age: the upper).
    pub min_cache_duration: Duration,
    pub max_cache_duration: Duration,
    /// At most one refetch for an unknown `kid` starts per this interval.
    pub unknown_kid_refetch_interval: Duration,
}

/// Where the key set is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// OpenID Connect Discovery 1.0: the key set's URL is the `jwks_uri` of
    /// `{issuer}/.well-known/openid-configuration`.
    Issuer(String),
    /// The key set's URL itself.
    Url(String),
}

impl JwksLocation {
    /// The configured URL: the metrics' `key_set` label and log lines.
    pub fn url(&self) -> &str {
        match self {
            JwksLocation::Issuer(url) | JwksLocation::Url(url) => url,
        }
    }
}

#[derive(Debug)]
struct Remote {
    origin: RemoteJwks,
    gate: Mutex<Gate>,
    /// Wakes the fetcher for a refetch.
    wake: Notify,
    /// Counts finished fetches, so that waiting requests see one end, and
    /// whether the last one succeeded.
    finished: watch::Sender<(u64, bool)>,
    last_error: Mutex<Option<String>>,
}

#[derive(Debug, Default)]
struct Gate {
    /// When the last refetch for an unknown `kid` was asked for.
    last_refetch: Option<Instant>,
    /// A refetch was asked for and has not started.
    requested: bool,
    /// A fetch (scheduled or asked for) is under way.
    fetching: bool,
}

impl Remote {
    fn new(origin: RemoteJwks) -> Remote {
        Remote {
            origin,
            gate: Mutex::new(Gate::default()),
            wake: Notify::new(),
            finished: watch::Sender::new((0, false)),
            last_error: Mutex::new(None),
        }
    }

    fn with_gate<T>(&self, f: impl FnOnce(&mut Gate) -> T) -> Option<T> {
        self.gate.lock().ok().map(|mut gate| f(&mut gate))
    }

    async fn refetch(&self, now: Instant, wait: Duration) -> Refetch {
        let mut finished = self.finished.subscribe();
        let seen = finished.borrow_and_update().0;
        let interval = self.origin.unknown_kid_refetch_interval;
        // How many fetches must finish before one that began after this
        // request has: the one under way (if any) began before it.
        let target = self.with_gate(|gate| {
            let behind_current = u64::from(gate.fetching);
            let recent = gate
                .last_refetch
                .is_some_and(|last| now.saturating_duration_since(last) < interval);
            if gate.requested {
                Some(seen.wrapping_add(1 + behind_current))
            } else if !recent {
                gate.last_refetch = Some(now);
                gate.requested = true;
                // The permit is kept if the fetcher is busy: it fetches again
                // right after the fetch under way.
                self.wake.notify_one();
                Some(seen.wrapping_add(1 + behind_current))
            } else if gate.fetching {
                // The refetch asked for within the interval is under way.
                Some(seen.wrapping_add(1))
            } else {
                None
            }
        });
        let Some(Some(target)) = target else {
            return Refetch::Capped;
        };
        let reached = tokio::time::timeout(
            wait,
            finished.wait_for(|(count, _)| count.wrapping_sub(target) < u64::MAX / 2),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|state| state.1);
        match reached {
            Some(true) => Refetch::Fetched,
            Some(false) => Refetch::Failed,
            None => Refetch::TimedOut,
        }
    }
}

/// The document's shape before its keys are looked at one by one.
#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

fn parse_jwks(document: &[u8]) -> Result<ParsedJwks, String> {
    let raw: RawJwkSet = serde_json::from_slice(document)
        .map_err(|e| format!("not a JWK set ({{\"keys\": [...]}}): {e}"))?;
    let total = raw.keys.len();
    let keys: Vec<Jwk> = raw
        .keys
        .into_iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
        .filter(|key| {
            // A key without `alg` may verify any algorithm of its type; one
            // with an encryption or unknown `alg` verifies nothing here.
            let algorithm_known = key.common.key_algorithm.is_none() || key.is_supported();
            let for_signatures = !matches!(
                key.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            );
            algorithm_known && for_signatures
        })
        .collect();
    if keys.is_empty() {
        return Err(if total == 0 {
            "the JWK set has no keys".into()
        } else {
            format!("none of the JWK set's {total} keys is a signature key this verifier can use")
        });
    }
    Ok(ParsedJwks {
        skipped: total - keys.len(),
        keys: JwkSet { keys },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_KEY: &str = r#"{"kty":"RSA","kid":"a","use":"sig","alg":"RS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;

    fn origin(interval: Duration) -> RemoteJwks {
        RemoteJwks {
            location: JwksLocation::Url("https://idp.example/jwks".into()),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            ca_pem: None,
            min_cache_duration: Duration::from_secs(60),
            max_cache_duration: Duration::from_secs(3600),
            unknown_kid_refetch_interval: interval,
        }
    }

    #[test]
    fn keys_it_cannot_use_are_skipped_not_fatal() {
        let document = format!(
            r#"{{"keys":[{RSA_KEY},{{"kty":"RSA","use":"enc","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}},{{"kty":"XYZ"}},{{"kty":"RSA","alg":"RS999","n":"AQAB","e":"AQAB"}}]}}"#
        );
        let parsed = parse_jwks(document.as_bytes()).unwrap();
        assert_eq!(parsed.keys.keys.len(), 1);
        assert_eq!(parsed.skipped, 3);
    }

    #[test]
    fn a_set_without_a_usable_key_is_refused() {
        assert_eq!(
            parse_jwks(br#"{"keys":[]}"#).unwrap_err(),
            "the JWK set has no keys"
        );
        let err = parse_jwks(br#"{"keys":[{"kty":"XYZ"}]}"#).unwrap_err();
        assert!(err.contains("none of the JWK set's 1 keys"), "{err}");
        assert!(parse_jwks(b"<html>")
            .unwrap_err()
            .starts_with("not a JWK set"));
    }

    #[test]
    fn a_remote_set_is_not_loaded_until_its_first_document() {
        let keys = JwksKeys::remote(origin(Duration::from_secs(30)));
        assert!(!keys.is_loaded());
        assert!(keys.current().keys.is_empty());
        assert!(keys.replace(b"{}").is_err());
        assert!(!keys.is_loaded());
        keys.replace(format!(r#"{{"keys":[{RSA_KEY}]}}"#).as_bytes())
            .unwrap();
        assert!(keys.is_loaded());
    }

    #[tokio::test]
    async fn a_file_set_is_never_refetched() {
        let keys = JwksKeys::parse(format!(r#"{{"keys":[{RSA_KEY}]}}"#).as_bytes()).unwrap();
        let outcome = keys.refetch_for_unknown_kid(Duration::from_secs(1)).await;
        assert_eq!(outcome, Refetch::NotRemote);
    }

    /// Stands in for the fetcher: one fetch per request for a refetch.
    fn fetcher(keys: &Arc<JwksKeys>, fetches: usize) -> tokio::task::JoinHandle<()> {
        let keys = Arc::clone(keys);
        tokio::spawn(async move {
            for _ in 0..fetches {
                keys.refetch_requested().await;
                keys.fetch_starting();
                tokio::time::sleep(Duration::from_millis(20)).await;
                keys.fetch_finished(Ok(()));
            }
        })
    }

    #[tokio::test]
    async fn one_refetch_per_interval_and_waiters_share_it() {
        let keys = Arc::new(JwksKeys::remote(origin(Duration::from_secs(30))));
        let fetcher = fetcher(&keys, 1);
        let wait = Duration::from_secs(5);
        let (first, second) = tokio::join!(
            keys.refetch_for_unknown_kid(wait),
            keys.refetch_for_unknown_kid(wait),
        );
        assert_eq!((first, second), (Refetch::Fetched, Refetch::Fetched));
        fetcher.await.unwrap();
        // Within the interval, no new refetch: refused at once.
        let started = Instant::now();
        assert_eq!(keys.refetch_for_unknown_kid(wait).await, Refetch::Capped);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_fetch_under_way_does_not_count_for_a_later_request() {
        let keys = Arc::new(JwksKeys::remote(origin(Duration::from_secs(30))));
        // A scheduled fetch is under way when the request comes.
        keys.fetch_starting();
        let waiting = {
            let keys = Arc::clone(&keys);
            tokio::spawn(async move { keys.refetch_for_unknown_kid(Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        keys.fetch_finished(Ok(()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "the scheduled fetch began before the request"
        );
        let fetcher = fetcher(&keys, 1);
        assert_eq!(waiting.await.unwrap(), Refetch::Fetched);
        fetcher.await.unwrap();
    }

    #[tokio::test]
    async fn after_the_interval_a_refetch_may_start_again() {
        let keys = JwksKeys::remote(origin(Duration::from_secs(30)));
        let remote = keys.remote.as_ref().unwrap();
        let start = Instant::now();
        // Nobody answers: the wait runs out.
        let outcome = remote.refetch(start, Duration::from_millis(10)).await;
        assert_eq!(outcome, Refetch::TimedOut);
        keys.fetch_starting();
        keys.fetch_finished(Err("down".into()));
        assert_eq!(keys.last_error().as_deref(), Some("down"));
        let later = start + Duration::from_secs(29);
        assert_eq!(remote.refetch(later, Duration::ZERO).await, Refetch::Capped);
        let later = start + Duration::from_secs(30);
        assert_eq!(
            remote.refetch(later, Duration::ZERO).await,
            Refetch::TimedOut
        );
        let last = remote.with_gate(|gate| gate.last_refetch).flatten();
        assert_eq!(last, Some(later));
    }

    #[tokio::test]
    async fn a_failed_refetch_is_told_apart_from_a_new_set() {
        let keys = Arc::new(JwksKeys::remote(origin(Duration::from_secs(30))));
        let fetcher = {
            let keys = Arc::clone(&keys);
            tokio::spawn(async move {
                keys.refetch_requested().await;
                keys.fetch_starting();
                keys.fetch_finished(Err("connection refused".into()));
            })
        };
        let outcome = keys.refetch_for_unknown_kid(Duration::from_secs(5)).await;
        assert_eq!(outcome, Refetch::Failed);
        fetcher.await.unwrap();
        assert_eq!(keys.last_error().as_deref(), Some("connection refused"));
        keys.fetch_finished(Ok(()));
        assert_eq!(keys.last_error(), None);
    }
}
