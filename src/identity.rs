//! Identity: who is asking for a token, decided from the request alone.
//!
//! A Stream token is a bearer credential for one user, so a token endpoint that
//! mints for whatever `userId` it is sent lets anyone impersonate anyone. Each
//! mode here answers "which user is this request from?" without the app
//! changing: a header set by a trusted auth proxy, the app's own session
//! endpoint (forward auth), or a JWT from the company's identity provider.
//!
//! Everything here is free of Pingora: the forward-auth mode describes the
//! sub-request and interprets its answer, while the Pingora glue performs it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, Method, StatusCode};
use ipnet::IpNet;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The authenticated caller, already mapped to a Stream user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    /// Roles the identity carries (role header, JWT claim, session JSON); they
    /// decide which call roles may be granted beyond the ones anyone may ask for.
    pub roles: Vec<String>,
}

/// Why no identity could be established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// 401: no credentials, or credentials that do not hold.
    Unauthorized {
        reason: String,
        /// `WWW-Authenticate` value, where the mode has a scheme to name.
        challenge: Option<&'static str>,
    },
    /// 403: authenticated, but the identity cannot be a Stream user id.
    Forbidden(String),
    /// 503: the app's session endpoint could not be asked.
    Unavailable(String),
}

impl IdentityError {
    fn unauthorized(reason: impl Into<String>, challenge: Option<&'static str>) -> Self {
        IdentityError::Unauthorized {
            reason: reason.into(),
            challenge,
        }
    }
}

/// Peers whose forwarding headers are believed: the auth proxy or ingress in
/// front of streamgate. Default: loopback only, i.e. another container of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedNetworks(Vec<IpNet>);

impl Default for TrustedNetworks {
    fn default() -> Self {
        TrustedNetworks(vec![
            "127.0.0.0/8".parse().expect("valid CIDR"),
            "::1/128".parse().expect("valid CIDR"),
        ])
    }
}

impl TrustedNetworks {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedNetworks(networks)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The address a request really comes from: the socket peer, unless that
    /// peer is trusted, in which case `X-Forwarded-For` is read from the right
    /// and the first address not itself trusted is the client. Reading from the
    /// right matters: everything left of the last trusted hop was written by the
    /// client and can be anything.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded_for
            .filter_map(|value| std::str::from_utf8(value).ok())
            .flat_map(|value| value.split(','))
            .map(|hop| hop.trim().parse::<IpAddr>())
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        hops.iter()
            .rev()
            .copied()
            .find(|hop| !self.contains(*hop))
            .unwrap_or(peer)
    }
}

/// `"tenant-{id}"`: how an identity becomes a Stream user id when teams
/// namespace their Stream users. The result must still satisfy Stream's rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIdTemplate {
    prefix: String,
    suffix: String,
}

impl UserIdTemplate {
    /// Parses a template with exactly one `{id}`.
    pub fn parse(template: &str) -> Result<Self, String> {
        match template.split_once("{id}") {
            Some((prefix, suffix)) if !suffix.contains("{id}") => Ok(UserIdTemplate {
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
            }),
            _ => Err(format!(
                "{template:?} must contain {{id}} exactly once, e.g. \"tenant-{{id}}\""
            )),
        }
    }

    fn apply(&self, raw: &str, roles: Vec<String>) -> Result<Identity, IdentityError> {
        let user_id = format!("{}{raw}{}", self.prefix, self.suffix);
        if crate::token_contract::is_user_id(&user_id) {
            Ok(Identity { user_id, roles })
        } else {
            Err(IdentityError::Forbidden(format!(
                "the authenticated user {raw:?} does not map to a valid Stream user id \
                 (1 to 255 characters from A-Z a-z 0-9 @ _ -); set identity.user_id_template"
            )))
        }
    }
}

/// How a token route learns who is calling.
#[derive(Debug)]
pub enum IdentitySource {
    /// Anyone may mint for any user. Allowed, and warned about at every start.
    None,
    Header(HeaderIdentity),
    ForwardAuth(ForwardAuth),
    Jwt(Box<JwtIdentity>),
}

impl IdentitySource {
    pub fn mode_name(&self) -> &'static str {
        match self {
            IdentitySource::None => "none",
            IdentitySource::Header(_) => "header",
            IdentitySource::ForwardAuth(_) => "forward_auth",
            IdentitySource::Jwt(_) => "jwt",
        }
    }
}

/// `header` mode: an auth layer in front (oauth2-proxy, an ingress) has put the
/// user in a header. Believed only from trusted peers.
#[derive(Debug, Clone)]
pub struct HeaderIdentity {
    pub user_header: HeaderName,
    pub roles_header: Option<HeaderName>,
    pub template: UserIdTemplate,
}

impl HeaderIdentity {
    pub fn identify(
        &self,
        peer_trusted: bool,
        headers: &HeaderMap,
    ) -> Result<Identity, IdentityError> {
        let missing = || {
            IdentityError::unauthorized(
                format!(
                    "no authenticated user: the {} header must be set by a trusted proxy",
                    self.user_header
                ),
                None,
            )
        };
        if !peer_trusted {
            return Err(missing());
        }
        // Two values mean something in front appended instead of replacing:
        // which one is the real user cannot be told, so neither is believed.
        let mut values = headers.get_all(&self.user_header).iter();
        let (first, second) = (values.next(), values.next());
        if second.is_some() {
            return Err(IdentityError::unauthorized(
                format!("the {} header was sent more than once", self.user_header),
                None,
            ));
        }
        let user = first
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(missing)?;
        let roles = self
            .roles_header
            .as_ref()
            .map(|name| {
                headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        self.template.apply(user, roles)
    }

    /// Headers that must not reach the app from an untrusted peer: they would
    /// let a caller claim to be someone to the app as well.
    pub fn spoofable_headers(&self) -> impl Iterator<Item = &HeaderName> {
        std::iter::once(&self.user_header).chain(self.roles_header.as_ref())
    }
}

/// Where the user id is in the app's "who am I" answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserIdLocation {
    Header(HeaderName),
    /// RFC 6901 JSON pointer into the response body, e.g. `/user/id`.
    JsonPointer(String),
}

/// `forward_auth` mode: ask the app's existing session endpoint who the caller
/// is, forwarding only the caller's `Cookie` and `Authorization`.
#[derive(Debug)]
pub struct ForwardAuth {
    /// Index into the configuration's upstreams.
    pub upstream: usize,
    pub method: Method,
    pub path: String,
    pub user_id: UserIdLocation,
    pub roles_pointer: Option<String>,
    pub timeout: Duration,
    /// `Duration::ZERO` disables caching.
    pub cache_ttl: Duration,
    pub max_body_bytes: usize,
    pub template: UserIdTemplate,
}

/// Cache key for a caller's credentials: a SHA-256 over them, so the cache never
/// holds a raw cookie or bearer token.
pub fn credential_key(cookie: Option<&[u8]>, authorization: Option<&[u8]>) -> Option<[u8; 32]> {
    if cookie.is_none() && authorization.is_none() {
        return None;
    }
    let mut hasher = Sha256::new();
    for part in [cookie, authorization] {
        // Length-prefixed so that moving bytes between the two fields changes the key.
        let part = part.unwrap_or_default();
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    Some(hasher.finalize().into())
}

impl ForwardAuth {
    /// Interprets the session endpoint's answer.
    pub fn interpret(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Identity, IdentityError> {
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(IdentityError::unauthorized(
                format!(
                    "not signed in (the app answered {} at {})",
                    status.as_u16(),
                    self.path
                ),
                None,
            ));
        }
        if !status.is_success() {
            return Err(IdentityError::Unavailable(format!(
                "the app's session endpoint {} answered {}",
                self.path,
                status.as_u16()
            )));
        }
        let unreadable = |what: &str| {
            IdentityError::Unavailable(format!(
                "the app's session endpoint {} answered without {what}",
                self.path
            ))
        };
        let json = || serde_json::from_slice::<Value>(body).map_err(|_| unreadable("a JSON body"));
        let user = match &self.user_id {
            UserIdLocation::Header(name) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| unreadable(&format!("the {name} header")))?,
            UserIdLocation::JsonPointer(pointer) => json()?
                .pointer(pointer)
                .and_then(scalar_string)
                .ok_or_else(|| unreadable(&format!("a user id at {pointer}")))?,
        };
        let roles = match &self.roles_pointer {
            Some(pointer) => json()?
                .pointer(pointer)
                .map(string_list)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        self.template.apply(&user, roles)
    }
}

/// A user id given as a JSON string or integer.
fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// Roles given as one string (space- or comma-separated) or a list of strings.
fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s
            .split([',', ' '])
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

const BEARER_CHALLENGE: &str = r#"Bearer realm="streamgate""#;
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="streamgate", error="invalid_token""#;

/// Where JWT verification keys come from.
pub enum JwtKeys {
    Static(DecodingKey),
    /// A JWKS file, re-read when it changes on disk (Kubernetes swaps mounted
    /// ConfigMaps and Secrets by renaming a symlink, so the file's identity is
    /// checked through the link, not watched).
    JwksFile(JwksFile),
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKeys::Static(_) => f.write_str("Static(<key>)"),
            JwtKeys::JwksFile(file) => write!(f, "JwksFile({})", file.path.display()),
        }
    }
}

/// `jwt` mode: `Authorization: Bearer <JWT>` from the identity provider.
#[derive(Debug)]
pub struct JwtIdentity {
    keys: JwtKeys,
    validation: Validation,
    /// `validation` narrowed to each accepted algorithm, built once: jsonwebtoken
    /// wants every listed algorithm to fit the key, and a JWKS mixes RSA and EC
    /// keys, so a JWKS token is checked against its own algorithm only.
    per_algorithm: Vec<Validation>,
    user_claim: String,
    roles_claim: Option<String>,
    template: UserIdTemplate,
}

impl JwtIdentity {
    pub fn new(
        keys: JwtKeys,
        validation: Validation,
        user_claim: String,
        roles_claim: Option<String>,
        template: UserIdTemplate,
    ) -> Self {
        let per_algorithm = validation
            .algorithms
            .iter()
            .map(|algorithm| {
                let mut narrowed = validation.clone();
                narrowed.algorithms = vec![*algorithm];
                narrowed
            })
            .collect();
        JwtIdentity {
            keys,
            validation,
            per_algorithm,
            user_claim,
            roles_claim,
            template,
        }
    }

    pub fn identify(&self, authorization: Option<&[u8]>) -> Result<Identity, IdentityError> {
        let token = authorization
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(bearer_token)
            .ok_or_else(|| {
                IdentityError::unauthorized(
                    "an Authorization: Bearer <JWT> header is required",
                    Some(BEARER_CHALLENGE),
                )
            })?;
        let invalid =
            |reason: String| IdentityError::unauthorized(reason, Some(INVALID_TOKEN_CHALLENGE));
        let claims = match &self.keys {
            JwtKeys::Static(key) => self.decode(token, key),
            JwtKeys::JwksFile(file) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|e| invalid(format!("invalid JWT: {e}")))?;
                let keys = file.current();
                let jwk = match header.kid.as_deref() {
                    Some(kid) => keys.find(kid),
                    None if keys.keys.len() == 1 => keys.keys.first(),
                    None => None,
                }
                .ok_or_else(|| invalid("invalid JWT: no key in the JWKS matches its kid".into()))?;
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| invalid(format!("invalid JWT: unusable JWKS key: {e}")))?;
                let validation = self
                    .per_algorithm
                    .iter()
                    .find(|v| v.algorithms[0] == header.alg)
                    .ok_or_else(|| {
                        invalid(format!(
                            "invalid JWT: algorithm {:?} is not accepted",
                            header.alg
                        ))
                    })?;
                jsonwebtoken::decode::<BTreeMap<String, Value>>(token, &key, validation)
                    .map(|data| data.claims)
            }
        }
        .map_err(|e| invalid(format!("invalid JWT: {e}")))?;
        let user = claims
            .get(&self.user_claim)
            .and_then(scalar_string)
            .ok_or_else(|| invalid(format!("the JWT has no {:?} claim", self.user_claim)))?;
        let roles = self
            .roles_claim
            .as_ref()
            .and_then(|claim| claims.get(claim))
            .map(string_list)
            .unwrap_or_default();
        self.template.apply(&user, roles)
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
    ) -> Result<BTreeMap<String, Value>, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<BTreeMap<String, Value>>(token, key, &self.validation)
            .map(|data| data.claims)
    }
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads a PEM public key of any type jsonwebtoken verifies with.
pub fn decoding_key_from_pem(pem: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok((key, Algorithm::ES256));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, Algorithm::EdDSA));
    }
    Err("not a PEM-encoded RSA, EC or Ed25519 public key".into())
}

/// How often a JWKS file is checked for changes, at most.
const JWKS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies one version of a file: it changes when the file is
/// rewritten or when the path's symlink is pointed at another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

pub struct JwksFile {
    path: PathBuf,
    keys: RwLock<Arc<JwkSet>>,
    checked: Mutex<(Instant, FileStamp)>,
}

impl JwksFile {
    pub fn load(path: &Path) -> Result<JwksFile, String> {
        let stamp = stamp(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let keys = read_jwks(path)?;
        Ok(JwksFile {
            path: path.to_path_buf(),
            keys: RwLock::new(Arc::new(keys)),
            checked: Mutex::new((Instant::now(), stamp)),
        })
    }

    /// The current key set, re-read first if the file changed. A file that
    /// became unreadable or invalid keeps the last good keys.
    fn current(&self) -> Arc<JwkSet> {
        self.refresh_if_changed();
        self.keys
            .read()
            .map(|k| Arc::clone(&k))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    fn refresh_if_changed(&self) {
        let Ok(mut checked) = self.checked.try_lock() else {
            return; // another request is checking right now
        };
        if checked.0.elapsed() < JWKS_CHECK_INTERVAL {
            return;
        }
        checked.0 = Instant::now();
        let Ok(new_stamp) = stamp(&self.path) else {
            log::error!(
                "JWKS file {} is unreadable; keeping the last good keys",
                self.path.display()
            );
            return;
        };
        if new_stamp == checked.1 {
            return;
        }
        match read_jwks(&self.path) {
            Ok(keys) => {
                checked.1 = new_stamp;
                if let Ok(mut current) = self.keys.write() {
                    *current = Arc::new(keys);
                }
                log::info!("reloaded JWKS file {}", self.path.display());
            }
            Err(e) => log::error!("{e}; keeping the last good keys"),
        }
    }
}

fn read_jwks(path: &Path) -> Result<JwkSet, String> {
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read JWKS file {}: {e}", path.display()))?;
    let keys: JwkSet = serde_json::from_slice(&text)
        .map_err(|e| format!("JWKS file {} is not a JWK set: {e}", path.display()))?;
    if keys.keys.is_empty() {
        return Err(format!("JWKS file {} has no keys", path.display()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn client_ip_reads_forwarded_for_only_behind_trusted_peers() {
        let trusted = TrustedNetworks::default();
        let xff = [b"198.51.100.1, 203.0.113.9".as_slice()];
        let external: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(trusted.client_ip(external, xff.into_iter()), external);
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            trusted.client_ip(loopback, xff.into_iter()),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(trusted.client_ip(loopback, std::iter::empty()), loopback);
        assert_eq!(
            trusted.client_ip(loopback, [b"garbage".as_slice()].into_iter()),
            loopback
        );
        assert!(
            trusted.contains("::ffff:127.0.0.1".parse().unwrap()),
            "IPv4-mapped loopback"
        );
    }

    #[test]
    fn header_identity_is_believed_only_from_trusted_peers() {
        let mode = HeaderIdentity {
            user_header: HeaderName::from_static("x-forwarded-user"),
            roles_header: Some(HeaderName::from_static("x-forwarded-groups")),
            template: UserIdTemplate::default(),
        };
        let request = headers(&[
            ("x-forwarded-user", "alice"),
            ("x-forwarded-groups", "admin, staff"),
        ]);
        let identity = mode.identify(true, &request).unwrap();
        assert_eq!(identity.user_id, "alice");
        assert_eq!(identity.roles, ["admin", "staff"]);
        assert!(matches!(
            mode.identify(false, &request),
            Err(IdentityError::Unauthorized { .. })
        ));
        assert!(matches!(
            mode.identify(true, &headers(&[])),
            Err(IdentityError::Unauthorized { .. })
        ));
        let smuggled = headers(&[
            ("x-forwarded-user", "mallory"),
            ("x-forwarded-user", "alice"),
        ]);
        assert!(matches!(
            mode.identify(true, &smuggled),
            Err(IdentityError::Unauthorized { .. })
        ));
    }

    #[test]
    fn template_maps_and_checks_the_user_id() {
        let template = UserIdTemplate::parse("tenant-{id}").unwrap();
        assert_eq!(template.apply("42", vec![]).unwrap().user_id, "tenant-42");
        assert!(matches!(
            template.apply("a.b@example.com", vec![]),
            Err(IdentityError::Forbidden(_))
        ));
        assert!(UserIdTemplate::parse("no-placeholder").is_err());
        assert!(UserIdTemplate::parse("{id}-{id}").is_err());
    }

    #[test]
    fn credential_key_hashes_and_separates_fields() {
        assert_eq!(credential_key(None, None), None);
        let a = credential_key(Some(b"ab"), Some(b"c")).unwrap();
        let b = credential_key(Some(b"a"), Some(b"bc")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, credential_key(Some(b"ab"), Some(b"c")).unwrap());
    }

    fn forward_auth(user_id: UserIdLocation) -> ForwardAuth {
        ForwardAuth {
            upstream: 0,
            method: Method::GET,
            path: "/api/me".into(),
            user_id,
            roles_pointer: Some("/user/roles".into()),
            timeout: Duration::from_secs(1),
            cache_ttl: Duration::ZERO,
            max_body_bytes: 65536,
            template: UserIdTemplate::default(),
        }
    }

    #[test]
    fn forward_auth_reads_pointer_header_and_statuses() {
        let mode = forward_auth(UserIdLocation::JsonPointer("/user/id".into()));
        let body = br#"{"user":{"id":"alice","roles":["moderator"]}}"#;
        let identity = mode
            .interpret(StatusCode::OK, &HeaderMap::new(), body)
            .unwrap();
        assert_eq!(
            identity,
            Identity {
                user_id: "alice".into(),
                roles: vec!["moderator".into()]
            }
        );
        let numeric = mode
            .interpret(StatusCode::OK, &HeaderMap::new(), br#"{"user":{"id":7}}"#)
            .unwrap();
        assert_eq!(numeric.user_id, "7");
        assert!(matches!(
            mode.interpret(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b""),
            Err(IdentityError::Unauthorized { .. })
        ));
        assert!(matches!(
            mode.interpret(StatusCode::FORBIDDEN, &HeaderMap::new(), b""),
            Err(IdentityError::Unauthorized { .. })
        ));
        assert!(matches!(
            mode.interpret(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), b""),
            Err(IdentityError::Unavailable(_))
        ));
        assert!(matches!(
            mode.interpret(StatusCode::OK, &HeaderMap::new(), b"<html>"),
            Err(IdentityError::Unavailable(_))
        ));

        let by_header = forward_auth(UserIdLocation::Header(HeaderName::from_static("x-user-id")));
        let identity = by_header
            .interpret(StatusCode::OK, &headers(&[("x-user-id", "bob")]), b"{}")
            .unwrap();
        assert_eq!(identity.user_id, "bob");
    }

    fn jwt_mode(secret: &[u8]) -> JwtIdentity {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&["https://idp.example"]);
        validation.validate_aud = false;
        JwtIdentity::new(
            JwtKeys::Static(DecodingKey::from_secret(secret)),
            validation,
            "sub".into(),
            Some("roles".into()),
            UserIdTemplate::default(),
        )
    }

    fn bearer(claims: Value, secret: &[u8]) -> String {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        format!("Bearer {token}")
    }

    #[test]
    fn jwt_identity_verifies_signature_expiry_and_issuer() {
        let mode = jwt_mode(b"idp-secret");
        let exp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let good = bearer(
            json!({"sub":"alice","iss":"https://idp.example","exp":exp,"roles":"admin"}),
            b"idp-secret",
        );
        let identity = mode.identify(Some(good.as_bytes())).unwrap();
        assert_eq!(
            identity,
            Identity {
                user_id: "alice".into(),
                roles: vec!["admin".into()]
            }
        );

        let forged = bearer(
            json!({"sub":"alice","iss":"https://idp.example","exp":exp}),
            b"wrong",
        );
        let expired = bearer(
            json!({"sub":"alice","iss":"https://idp.example","exp":1000}),
            b"idp-secret",
        );
        let wrong_issuer = bearer(
            json!({"sub":"alice","iss":"https://evil.example","exp":exp}),
            b"idp-secret",
        );
        let no_sub = bearer(
            json!({"iss":"https://idp.example","exp":exp}),
            b"idp-secret",
        );
        for bad in [
            forged,
            expired,
            wrong_issuer,
            no_sub,
            "Bearer not.a.jwt".into(),
            "Basic abc".into(),
        ] {
            match mode.identify(Some(bad.as_bytes())) {
                Err(IdentityError::Unauthorized {
                    challenge: Some(_), ..
                }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            mode.identify(None),
            Err(IdentityError::Unauthorized {
                challenge: Some(BEARER_CHALLENGE),
                ..
            })
        ));
    }
}
