//! The webhook's serving certificate when the injector manages it itself (no
//! cert-manager): a private CA and a leaf for the Service's DNS names, kept in
//! one Secret that every replica shares, the CA in the webhook's `caBundle`.
//!
//! [`plan`] is the pure part: given what the Secret holds (if anything) and the
//! time, keep it or issue what is due. The leaf is renewed a third of its life
//! before it expires or when the Service's names change; the CA when it would
//! expire before a new leaf does. The bundle keeps the previous CA while it is
//! valid, so that replicas still serving a leaf of the old CA are trusted until
//! they pick up the new one from the Secret. `cluster` does the API calls.

pub mod cluster;

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

const DAY: Duration = Duration::from_secs(24 * 3600);
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// The Secret's keys.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const BUNDLE: &str = "ca-bundle.crt";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("the clock is before 1970")]
    Clock,
}

/// What the Secret holds, PEM throughout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca_cert: String,
    pub ca_key: String,
    /// The CA certificates the API server trusts: `ca_cert`, then the
    /// previous CA while it is valid. The webhook's `caBundle`.
    pub bundle: String,
    pub cert: String,
    pub key: String,
}

/// What a certificate says about itself, as far as renewal cares.
struct Facts {
    not_after: SystemTime,
    dns_names: Vec<String>,
}

fn facts(pem: &str) -> Option<Facts> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let not_after = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Facts {
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(not_after),
        dns_names,
    })
}

fn remaining(facts: &Facts, now: SystemTime) -> Duration {
    facts.not_after.duration_since(now).unwrap_or_default()
}

/// `None`: what the Secret holds is good; `Some`: the material to store.
pub fn plan(
    stored: Option<&Material>,
    dns_names: &[String],
    now: SystemTime,
) -> Result<Option<Material>, CertError> {
    let ca = stored.and_then(|m| {
        let f = facts(&m.ca_cert)?;
        let key = KeyPair::from_pem(&m.ca_key).ok()?;
        Some((m, f, key))
    });
    let ca = match ca {
        Some((m, f, key)) if remaining(&f, now) > LEAF_LIFETIME => Some((m, key)),
        _ => None,
    };
    let Some((material, ca_key)) = ca else {
        // No usable CA, or one that would expire before a new leaf: a new CA,
        // trusted beside the old one while that is still valid.
        let (ca_cert, ca_key) = issue_ca(now)?;
        let previous = stored
            .map(|m| m.ca_cert.clone())
            .filter(|old| facts(old).is_some_and(|f| f.not_after > now));
        let bundle = match previous {
            Some(old) => format!("{ca_cert}{old}"),
            None => ca_cert.clone(),
        };
        let (cert, key) = issue_leaf(&ca_cert, &ca_key, dns_names, now)?;
        return Ok(Some(Material {
            ca_cert,
            ca_key: ca_key.serialize_pem(),
            bundle,
            cert,
            key,
        }));
    };
    let leaf_ok = facts(&material.cert).is_some_and(|f| {
        let mut have = f.dns_names.clone();
        let mut want = dns_names.to_vec();
        have.sort();
        want.sort();
        remaining(&f, now) > LEAF_LIFETIME / 3 && have == want
    }) && KeyPair::from_pem(&material.key).is_ok();
    if leaf_ok {
        return Ok(None);
    }
    let (cert, key) = issue_leaf(&material.ca_cert, &ca_key, dns_names, now)?;
    Ok(Some(Material {
        cert,
        key,
        ..material.clone()
    }))
}

fn offset(t: SystemTime) -> Result<OffsetDateTime, CertError> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| CertError::Clock)?;
    let secs = i64::try_from(secs.as_secs()).map_err(|_| CertError::Clock)?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| CertError::Clock)
}

fn issue_ca(now: SystemTime) -> Result<(String, KeyPair), CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "streamgate injector CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Back-dated a day: clocks of the API servers may lag ours.
    params.not_before = offset(now - DAY)?;
    params.not_after = offset(now + CA_LIFETIME)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

fn issue_leaf(
    ca_cert: &str,
    ca_key: &KeyPair,
    dns_names: &[String],
    now: SystemTime,
) -> Result<(String, String), CertError> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    if let Some(first) = dns_names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = offset(now - DAY)?;
    params.not_after = offset(now + LEAF_LIFETIME)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests;
