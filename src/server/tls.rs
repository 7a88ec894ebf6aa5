//! TLS listeners (`listen` entries with `tls`): Pingora's rustls settings for
//! each, and its certificate files followed while streamgate runs.
//!
//! Pingora reads a listener's certificate files once, when the listener
//! starts, but asks a certificate resolver at every handshake. So each TLS
//! listener gets a [`CertificateResolver`], and both files of its pair are
//! followed like the Stream API secret ([`crate::reload`]: Kubernetes swaps a
//! `..data` symlink, cert-manager renews): when either changes, the pair is
//! read again and, if whole and matching, served from the next handshake on.
//! Connections already open keep theirs: TLS authenticates the server only
//! at the handshake. A pair that cannot be served (unreadable, not PEM, a key
//! of another certificate, which is also the moment between the two writes
//! of a rotation done by hand) leaves the last good one serving, and is
//! logged and counted once per distinct content.
//!
//! ALPN offers `h2`, then `http/1.1`. Protocol versions are those Pingora's
//! rustls listener enables, TLS 1.2 and 1.3; rustls has no older ones. TLS
//! listeners keep Pingora's default read buffer, which plaintext ones drop
//! (`L4_BUFFERS`): TLS records are read through it. The handshake is
//! Pingora's, before the connection reaches [`Downstream`](super::downstream):
//! Pingora gives it 60 s and logs a failed one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ALPN;
use sha2::{Digest, Sha256};

use crate::config::{Listener, ListenerTls};
use crate::reload::{Applied, WatchedFile};
use crate::telemetry::metrics::{Metrics, TlsListenerMetrics};
use crate::tls::{CertificateResolver, PairFile, ServerCertificate};

/// The TLS settings of every listener of `listen` (`None` for plaintext ones),
/// in order; the certificate files to follow are added to `watched`.
pub(super) fn settings(
    listen: &[Listener],
    metrics: &Metrics,
    watched: &mut Vec<Arc<WatchedFile>>,
) -> pingora::Result<Vec<Option<TlsSettings>>> {
    listen
        .iter()
        .map(|listener| {
            let Some(tls) = &listener.tls else {
                return Ok(None);
            };
            let pair = Arc::new(Pair::new(listener.address, tls, metrics));
            watched.push(Arc::new(pair.watched_file(PairFile::Certificate)));
            watched.push(Arc::new(pair.watched_file(PairFile::Key)));
            // The paths are never read by Pingora: the resolver takes precedence.
            let mut settings = TlsSettings::intermediate(
                &tls.cert_file.to_string_lossy(),
                &tls.key_file.to_string_lossy(),
            )?;
            settings.set_cert_resolver(Arc::clone(&pair.resolver) as _);
            settings.set_alpn(ALPN::H2H1);
            if let Some(verifier) = &tls.client_verifier {
                settings.set_client_cert_verifier(Arc::clone(verifier));
            }
            Ok(Some(settings))
        })
        .collect()
}

/// One listener's certificate pair, as followed.
struct Pair {
    address: SocketAddr,
    cert_file: PathBuf,
    key_file: PathBuf,
    resolver: Arc<CertificateResolver>,
    metrics: TlsListenerMetrics,
    /// The files' bytes last refused (SHA-256 of both): a kubelet swap
    /// changes both files at once and each is read again, and any later
    /// event in the directory reads them again too; one broken pair is one
    /// failure, however often it is read.
    refused: Mutex<Option<[u8; 32]>>,
}

impl Pair {
    fn new(address: SocketAddr, tls: &ListenerTls, metrics: &Metrics) -> Pair {
        let metrics = metrics.tls_listener(&address.to_string());
        metrics.expiry.set(tls.certificate.not_after);
        Pair {
            address,
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
            resolver: Arc::new(CertificateResolver::new(Arc::clone(&tls.certificate))),
            metrics,
            refused: Mutex::new(None),
        }
    }

    /// The file `which` of the pair, followed: any change reads the other
    /// file too and offers the pair.
    fn watched_file(self: &Arc<Self>, which: PairFile) -> WatchedFile {
        let pair = Arc::clone(self);
        let (path, what) = match which {
            PairFile::Certificate => (&self.cert_file, "TLS certificate"),
            PairFile::Key => (&self.key_file, "TLS private key"),
        };
        WatchedFile::new(
            path.clone(),
            what,
            Box::new(move |content| pair.offer(which, content)),
        )
    }

    /// The pair with `content` as its file `which` and the other file as it
    /// is now: served from the next handshake if it is whole and matching.
    fn offer(&self, which: PairFile, content: &[u8]) -> Result<Applied, String> {
        let other_path = match which {
            PairFile::Certificate => &self.key_file,
            PairFile::Key => &self.cert_file,
        };
        let other = match std::fs::read(other_path) {
            Ok(other) => other,
            Err(e) => {
                let reason = format!("cannot read {}: {e}", other_path.display());
                return self.refuse(&[content, &[]], reason);
            }
        };
        let (chain, key) = match which {
            PairFile::Certificate => (content, other.as_slice()),
            PairFile::Key => (other.as_slice(), content),
        };
        let next = match ServerCertificate::from_pem(chain, key) {
            Ok(next) => next,
            // The log line names the file read (`which`); the other is named
            // here when it is the one at fault.
            Err(e) if e.file == which => return self.refuse(&[chain, key], e.reason),
            Err(e) => {
                let reason = format!("{}: {e}", other_path.display());
                return self.refuse(&[chain, key], reason);
            }
        };
        if let Ok(mut refused) = self.refused.lock() {
            *refused = None;
        }
        let (subject, serial, not_after) =
            (next.subject.clone(), next.serial.clone(), next.not_after);
        if !self.resolver.replace(next) {
            return Ok(Applied::Same);
        }
        self.metrics.reloads.inc();
        self.metrics.expiry.set(not_after);
        log::info!(
            "TLS listener {}: new connections get the certificate {subject} (serial {serial})",
            self.address
        );
        Ok(Applied::Changed)
    }

    /// Counts a pair made of `files` that cannot be served, unless it is the
    /// one refused last; the last good pair stays.
    fn refuse(&self, files: &[&[u8]; 2], reason: String) -> Result<Applied, String> {
        let fingerprint: [u8; 32] = files
            .iter()
            .fold(Sha256::new(), |hash, file| {
                hash.chain_update(Sha256::digest(file))
            })
            .finalize()
            .into();
        let mut refused = self
            .refused
            .lock()
            .map_err(|_| "an earlier reload panicked")?;
        if *refused != Some(fingerprint) {
            *refused = Some(fingerprint);
            self.metrics.reload_failures.inc();
        }
        Err(reason)
    }
}
