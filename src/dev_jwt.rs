//! `streamgate dev-jwt`: a development identity provider, so that
//! `identity.mode: jwt` can be tried before a real one is wired in.
//!
//! It signs a test JWT with the throwaway RSA key in `conf/dev-idp/`, whose
//! public half is `conf/example-jwks.json`, and its defaults are those of
//! `conf/identity-jwt.yaml`: a streamgate started on that file accepts
//! `TOKEN=$(streamgate dev-jwt --sub alice)`. The key's private half is in
//! the repository, so a configuration that trusts it is announced at every
//! start ([`is_development_key`], read by `Config::warnings`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey, Header};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use serde::Serialize;

use crate::identity::JwtKeys;

/// The development key's RSA modulus, base64url as in `conf/example-jwks.json`
/// (a test checks both files against it): the key is recognized by it,
/// whatever file holds the key and whatever it is called.
const DEVELOPMENT_MODULUS: &str = "wnse-uAO2cv3UNyAF_PGq3Mg1hOrOUK_CXWnw17092ybixR5LNrimluSm12tkbpikM8FQtGvLjAwJiZTuT0G4iaq-ZLTOn-IxNsONCEm7tSiAkW5XVVZSOj5GoXsVuQVkXgHVml06LV2Y3WOGZCzN9vIh68fMpb6i03aQOKVYBy0yiSSITagzKABREiF-OqRKHd2uWN5nhFW4OUnCLHkyZZJpsrpD5fNDo7jrGx64Jcsu0oae0gy3b3acJkWnj-MWEE61kURz72KHcfLTK0o6fbHZLaBfCPIqowCe3ph1-lbWWph7KlGormSOMIs4_SZ4CSnjYoEB1FCj74ltGCYVw";

/// The arguments of `streamgate dev-jwt`; the defaults fit `conf/identity-jwt.yaml`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The user the token is for: its `sub` claim.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub sub: String,
    /// Roles the user holds, comma-separated: the `roles` claim (left out when empty).
    #[arg(long, value_delimiter = ',', value_name = "ROLE,...")]
    pub roles: Vec<String>,
    /// How long the token is valid (`10m`, `1h`, `2days`), at least 1s: `exp` is now plus this.
    #[arg(long, default_value = "1h", value_parser = lifetime, value_name = "DURATION")]
    pub expires_in: Duration,
    /// The `iss` claim.
    #[arg(long, default_value = "https://login.example.com/", value_name = "URL")]
    pub issuer: String,
    /// The `aud` claim.
    #[arg(long, default_value = "stream-tokens", value_name = "AUD")]
    pub audience: String,
    /// The RSA private key to sign with (PEM, PKCS#1 or PKCS#8); the default is
    /// relative to the repository root.
    #[arg(
        long,
        default_value = "conf/dev-idp/dev-idp.key.pem",
        value_name = "FILE"
    )]
    pub key: PathBuf,
    /// The `kid` header, naming the key in a JWKS.
    #[arg(long, default_value = "streamgate-dev-1", value_name = "KID")]
    pub kid: String,
}

/// A lifetime of whole seconds, at least one: `exp` has no finer unit.
fn lifetime(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.as_secs() == 0 {
        return Err("must be at least 1s".into());
    }
    Ok(duration)
}

/// The claims of a test token, in the shape identity providers use.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<&'a str>,
    /// Seconds since the Unix epoch, as `exp`.
    iat: u64,
    exp: u64,
}

/// The JWT `args` describe, issued at `now` (seconds since the Unix epoch)
/// and signed RS256 with `key_pem`. Errors: `key_pem` is not an RSA private
/// key in PEM (a public key reads as one but cannot sign).
pub fn sign(args: &Args, key_pem: &[u8], now: u64) -> Result<String, String> {
    let not_a_key = |e: jsonwebtoken::errors::Error| format!("not an RSA private key in PEM ({e})");
    let key = EncodingKey::from_rsa_pem(key_pem).map_err(not_a_key)?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(args.kid.clone());
    let claims = Claims {
        iss: &args.issuer,
        aud: &args.audience,
        sub: &args.sub,
        roles: args
            .roles
            .iter()
            .map(String::as_str)
            .filter(|role| !role.is_empty())
            .collect(),
        iat: now,
        exp: now.saturating_add(args.expires_in.as_secs()),
    };
    jsonwebtoken::encode(&header, &claims, &key).map_err(not_a_key)
}

/// Runs `streamgate dev-jwt`: the token and a newline on stdout, nothing
/// else, so that `TOKEN=$(streamgate dev-jwt --sub alice)` works; a problem
/// on stderr with exit status 1.
pub fn run(args: &Args) -> ExitCode {
    let token = std::fs::read(&args.key)
        .map_err(|e| format!("cannot read {}: {e}", args.key.display()))
        .and_then(|pem| {
            sign(args, &pem, jsonwebtoken::get_current_timestamp())
                .map_err(|reason| format!("{}: {reason}", args.key.display()))
        });
    match token {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("streamgate dev-jwt: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `keys` hold the development key, compared by RSA modulus: anyone
/// can sign a JWT such keys accept. A JWKS is looked at as it is now.
pub fn is_development_key(keys: &JwtKeys) -> bool {
    match keys {
        JwtKeys::Static(key) => is_development(key),
        JwtKeys::Jwks(set) => set
            .current()
            .keys
            .iter()
            .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
            .any(|key| is_development(&key)),
    }
}

fn is_development(key: &DecodingKey) -> bool {
    if key.family() != AlgorithmFamily::Rsa {
        return false;
    }
    let modulus = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, .. } => n.clone(),
        // From a PEM file, jsonwebtoken keeps the PKCS#1 RSAPublicKey.
        DecodingKeyKind::SecretOrDer(der) => match rsa::RsaPublicKey::from_pkcs1_der(der) {
            Ok(key) => key.n().to_bytes_be(),
            Err(_) => return false,
        },
    };
    let development = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(DEVELOPMENT_MODULUS)
        .expect("DEVELOPMENT_MODULUS is base64url");
    unsigned(&modulus) == unsigned(&development)
}

/// A big-endian unsigned integer without leading zero bytes (a JWK's `n`
/// may carry one).
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests;
