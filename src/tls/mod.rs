//! Listener TLS: the certificate a TLS listener serves, swappable while it
//! runs, and the client CA that mutual TLS checks clients against.
//!
//! Its own module, without Pingora, because two places must judge a
//! certificate pair the same way: the configuration check (`-t` and start,
//! in `config::resolve`) and the running listener when the files change
//! (`server::tls`). Both go through [`ServerCertificate::from_pem`]. Pingora's
//! rustls listener takes a rustls certificate resolver and client verifier,
//! so nothing here needs Pingora itself.
//!
//! A pair is judged whole: the chain and the key are parsed together, and the
//! key must be the one the certificate certifies. A kubelet updates both
//! files of a Secret in one step, but a rotation done by hand may write them
//! one after the other; the state in between (new certificate, old key) is a
//! mismatch, refused, and the last good pair keeps being served until the
//! second file lands.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};

/// What mutual TLS checks a client's certificate with.
pub type ClientVerifier = Arc<dyn ClientCertVerifier>;

/// A certificate chain and its private key, checked to belong together:
/// what a TLS listener presents.
pub struct ServerCertificate {
    key: Arc<CertifiedKey>,
    /// SHA-256 over both files' bytes: a rewrite of the same pair (a kubelet
    /// resync, a touch) is not a rotation.
    fingerprint: [u8; 32],
    /// The leaf certificate's subject, for logs (`CN=app.example`).
    pub subject: String,
    /// The leaf certificate's serial number, hex, colon-separated.
    pub serial: String,
    /// When the leaf certificate expires, in seconds since the Unix epoch.
    pub not_after: i64,
}

// Hand-written: what identifies the certificate, never the key.
impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("subject", &self.subject)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Which file of a pair is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairFile {
    Certificate,
    Key,
}

/// Why a pair cannot be served. `reason` never quotes the files' content (a
/// private key), and names no path: the caller knows which path `file` is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct PairError {
    pub file: PairFile,
    pub reason: String,
}

impl PairError {
    fn certificate(reason: impl Into<String>) -> PairError {
        PairError {
            file: PairFile::Certificate,
            reason: reason.into(),
        }
    }

    fn key(reason: impl Into<String>) -> PairError {
        PairError {
            file: PairFile::Key,
            reason: reason.into(),
        }
    }
}

impl ServerCertificate {
    /// Parses a PEM certificate chain (leaf first, as cert-manager and every
    /// CA write it) and a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC),
    /// and checks that the key is the leaf's.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<ServerCertificate, PairError> {
        let certificates = certificates(chain).map_err(PairError::certificate)?;
        let leaf = x509_parser::parse_x509_certificate(&certificates[0])
            .map_err(|e| PairError::certificate(format!("is not a valid X.509 certificate: {e}")))?
            .1;
        let (subject, serial) = (leaf.subject().to_string(), leaf.raw_serial_as_string());
        let not_after = leaf.validity().not_after.timestamp();
        // The PEM parser's messages can quote what it could not decode: none
        // of a key file's content goes into an error.
        let private = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
            PairError::key(
                "holds no PEM private key (\"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")",
            )
        })?;
        let signing = ring::default_provider()
            .key_provider
            .load_private_key(private)
            .map_err(|_| PairError::key("holds a private key of a type rustls cannot sign with"))?;
        let certified = CertifiedKey::new(certificates, signing);
        // Every key type ring loads knows its public key, so "cannot tell" is
        // as much a refusal as a mismatch.
        certified.keys_match().map_err(|_| {
            PairError::key("is not the private key of the certificate in cert_file")
        })?;
        let fingerprint = Sha256::new()
            .chain_update(Sha256::digest(chain))
            .chain_update(Sha256::digest(key))
            .finalize()
            .into();
        Ok(ServerCertificate {
            key: Arc::new(certified),
            fingerprint,
            subject,
            serial,
            not_after,
        })
    }
}

/// Every certificate of a PEM bundle, in order; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not a valid PEM file: {e}"))?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")".into());
    }
    Ok(certificates)
}

/// The certificate a TLS listener presents, asked for at every handshake:
/// replacing it changes what new connections get, while connections already
/// established keep theirs (TLS authenticates the server only at the
/// handshake).
#[derive(Debug)]
pub struct CertificateResolver {
    current: ArcSwap<ServerCertificate>,
}

impl CertificateResolver {
    pub fn new(first: Arc<ServerCertificate>) -> CertificateResolver {
        CertificateResolver {
            current: ArcSwap::new(first),
        }
    }

    /// The certificate being served.
    pub fn current(&self) -> Arc<ServerCertificate> {
        self.current.load_full()
    }

    /// Serves `next` from the next handshake on; false when it is the pair
    /// already served (same bytes), which changes nothing.
    pub fn replace(&self, next: ServerCertificate) -> bool {
        if self.current.load().fingerprint == next.fingerprint {
            return false;
        }
        self.current.store(Arc::new(next));
        true
    }
}

impl ResolvesServerCert for CertificateResolver {
    /// One certificate per listener, whatever name the client asks for (SNI):
    /// a sidecar serves one app.
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.load().key))
    }
}

/// The verifier of mutual TLS: a client must present a certificate that
/// chains to one of the CA certificates in `pem`, or the handshake fails.
pub fn client_verifier(pem: &[u8]) -> Result<ClientVerifier, String> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(pem)? {
        roots
            .add(certificate)
            .map_err(|e| format!("holds a CA certificate that cannot be used: {e}"))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(ring::default_provider()))
        .build()
        .map_err(|e| format!("cannot verify clients with these CA certificates: {e}"))
}

#[cfg(test)]
mod tests;
