//! The I/O that checking a configuration needs, in one place: resolving
//! upstream host names and reading key files and certificates. Everything else in `config/` is
//! pure but for [`super::Config::warnings`], which looks at the API secret file
//! (a missing one is a warning, not an error: the server follows the file).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::error::ConfigError;
use super::raw::RawJwksFetch;
use crate::identity::jwks::{JwksLocation, RemoteJwks};
use crate::identity::{decoding_key_from_pem, JwksKeys, JwtKeys};
use crate::reload::{Applied, WatchedFile};
use crate::tls::{ClientVerifier, PairFile, ServerCertificate};

/// `host:port` resolved to its first address.
pub(super) fn socket_address(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.to_socket_addrs()
        .map_err(|e| ConfigError::new(key, format!("cannot resolve {text:?} as host:port: {e}")))?
        .next()
        .ok_or_else(|| ConfigError::new(key, format!("{text:?} resolves to no address")))
}

/// Where `jwt` mode's verification key comes from, as configured.
pub(super) enum JwtKeySource {
    Secret(String),
    SecretFile(PathBuf),
    PublicKeyFile(PathBuf),
    JwksFile(PathBuf),
    /// Fetched from the identity provider while running.
    Remote(JwksLocation, RawJwksFetch),
}

/// A key source, read.
pub(super) struct ResolvedJwtKeys {
    pub keys: JwtKeys,
    /// What a key of this kind verifies when `algorithms` is not set.
    pub default_algorithms: Vec<Algorithm>,
    /// The JWKS file to follow while running.
    pub watched: Option<Arc<WatchedFile>>,
}

/// Reads the key of `jwt` mode; `key` is the `…jwt` key path for errors.
pub(super) fn jwt_keys(key: &str, source: JwtKeySource) -> Result<ResolvedJwtKeys, ConfigError> {
    let fixed = |keys, algorithm| ResolvedJwtKeys {
        keys: JwtKeys::Static(keys),
        default_algorithms: vec![algorithm],
        watched: None,
    };
    match source {
        JwtKeySource::Secret(secret) if secret.is_empty() => Err(ConfigError::new(
            format!("{key}.hs256_secret"),
            "must not be empty",
        )),
        JwtKeySource::Secret(secret) => Ok(fixed(
            DecodingKey::from_secret(secret.as_bytes()),
            Algorithm::HS256,
        )),
        JwtKeySource::SecretFile(path) => {
            let secret = crate::reload::read_secret(&path)
                .map_err(|reason| ConfigError::new(format!("{key}.hs256_secret_file"), reason))?;
            Ok(fixed(DecodingKey::from_secret(&secret), Algorithm::HS256))
        }
        JwtKeySource::PublicKeyFile(path) => {
            let field = format!("{key}.public_key_file");
            let pem = read(&field, &path)?;
            let (decoding_key, algorithm) = decoding_key_from_pem(&pem).map_err(|reason| {
                ConfigError::new(field, format!("{}: {reason}", path.display()))
            })?;
            Ok(fixed(decoding_key, algorithm))
        }
        JwtKeySource::JwksFile(path) => {
            let field = format!("{key}.jwks_file");
            let document = read(&field, &path)?;
            let keys = Arc::new(JwksKeys::parse(&document).map_err(|reason| {
                ConfigError::new(field, format!("JWKS file {}: {reason}", path.display()))
            })?);
            let target = Arc::clone(&keys);
            let watched = WatchedFile::new(
                path,
                "JWKS",
                Box::new(move |content| target.replace(content).map(|_| Applied::Changed)),
            )
            .applied(&document);
            Ok(ResolvedJwtKeys {
                keys: JwtKeys::Jwks(keys),
                default_algorithms: vec![Algorithm::RS256, Algorithm::ES256],
                watched: Some(Arc::new(watched)),
            })
        }
        JwtKeySource::Remote(location, fetch) => {
            let origin = remote_jwks(key, location, fetch)?;
            Ok(ResolvedJwtKeys {
                keys: JwtKeys::Jwks(Arc::new(JwksKeys::remote(origin))),
                default_algorithms: vec![Algorithm::RS256, Algorithm::ES256],
                watched: None,
            })
        }
    }
}

/// How a remote key set is fetched, checked; its CA file read and parsed here
/// so that a bad one fails the load, not the first fetch.
fn remote_jwks(
    key: &str,
    location: JwksLocation,
    fetch: RawJwksFetch,
) -> Result<RemoteJwks, ConfigError> {
    let field = |name: &str| format!("{key}.jwks_fetch.{name}");
    for (name, value) in [
        ("connect_timeout", fetch.connect_timeout),
        ("timeout", fetch.timeout),
        ("min_cache_duration", fetch.min_cache_duration),
    ] {
        if value.is_zero() {
            return Err(ConfigError::new(field(name), "must be more than 0s"));
        }
    }
    if fetch.max_cache_duration < fetch.min_cache_duration {
        return Err(ConfigError::new(
            field("max_cache_duration"),
            "must not be less than min_cache_duration",
        ));
    }
    if fetch.unknown_kid_refetch_interval < Duration::from_secs(1) {
        return Err(ConfigError::new(
            field("unknown_kid_refetch_interval"),
            "must be at least 1s: it is what keeps a flood of tokens with made-up key ids \
             from becoming a flood of requests to the identity provider",
        ));
    }
    let ca_pem = match &fetch.ca_file {
        None => None,
        Some(path) => {
            let name = field("ca_file");
            let pem = read(&name, path)?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certificates) if !certificates.is_empty() => Some(pem),
                _ => {
                    return Err(ConfigError::new(
                        name,
                        format!("{}: no PEM certificate in it", path.display()),
                    ))
                }
            }
        }
    };
    Ok(RemoteJwks {
        location,
        connect_timeout: fetch.connect_timeout,
        timeout: fetch.timeout,
        ca_pem,
        min_cache_duration: fetch.min_cache_duration,
        max_cache_duration: fetch.max_cache_duration,
        unknown_kid_refetch_interval: fetch.unknown_kid_refetch_interval,
    })
}

/// A TLS listener's certificate and key, read and checked as the running
/// listener checks them on a change; `key` is the `listen[i].tls` key path,
/// and the error names the file at fault.
pub(super) fn certificate_pair(
    key: &str,
    cert_file: &Path,
    key_file: &Path,
) -> Result<ServerCertificate, ConfigError> {
    let (cert_key, key_key) = (format!("{key}.cert_file"), format!("{key}.key_file"));
    let chain = read(&cert_key, cert_file)?;
    let private = read(&key_key, key_file)?;
    ServerCertificate::from_pem(&chain, &private).map_err(|e| {
        let (field, path) = match e.file {
            PairFile::Certificate => (cert_key, cert_file),
            PairFile::Key => (key_key, key_file),
        };
        ConfigError::new(field, format!("{}: {e}", path.display()))
    })
}

/// The CA bundle of mutual TLS, read; `key` is its `…client_ca_file` key path.
pub(super) fn client_verifier(key: &str, path: &Path) -> Result<ClientVerifier, ConfigError> {
    let pem = read(key, path)?;
    crate::tls::client_verifier(&pem)
        .map_err(|reason| ConfigError::new(key, format!("{}: {reason}", path.display())))
}

/// A PEM bundle of CA certificates, read and checked to hold at least one;
/// `key` is its `…ca_file` key path.
pub(super) fn ca_bundle(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let pem = read(key, path)?;
    let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certificates {
        Ok(certificates) if !certificates.is_empty() => Ok(pem),
        Ok(_) => Err(ConfigError::new(
            key,
            format!("{}: no PEM certificate in it", path.display()),
        )),
        Err(e) => Err(ConfigError::new(
            key,
            format!("{}: not a PEM certificate bundle: {e}", path.display()),
        )),
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))
}
