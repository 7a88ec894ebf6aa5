//! The identity shapes of the file: `identity:` and `routes[].identity`,
//! one struct per mode, and how their user ids become Stream user ids.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{default_true, duration, seconds};

/// How a token route learns who is calling.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(in crate::config) enum IdentityMode {
    /// No check: the request's `userId` is minted for, whoever asks.
    #[default]
    None,
    /// An auth proxy in front (from `trusted_cidrs`) names the user in a header.
    Header,
    /// The app's session endpoint is asked with the caller's `Cookie` and
    /// `Authorization`.
    ForwardAuth,
    /// A JWT from the identity provider in `Authorization: Bearer`, verified.
    Jwt,
}

/// Who may get a token for whom (README, "Security").
#[derive(Deserialize, Clone, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Identity")]
pub(in crate::config) struct RawIdentity {
    /// `none` (default), `header`, `forward_auth` or `jwt`; the key of the
    /// same name holds the mode's settings.
    pub mode: IdentityMode,
    /// `header` mode's settings.
    pub header: Option<RawHeaderIdentity>,
    /// `forward_auth` mode's settings.
    pub forward_auth: Option<RawForwardAuth>,
    /// `jwt` mode's settings.
    pub jwt: Option<RawJwt>,
    /// For provider ids Stream refuses (`auth0|123`, e-mail addresses):
    /// applied before `user_id_template`.
    pub user_id_map: Option<RawUserIdMap>,
    /// Text around the (mapped) id, e.g. `tenant-{id}` (default `{id}`); only
    /// `A-Z a-z 0-9 @ _ -` around `{id}`.
    pub user_id_template: Option<String>,
}

/// `user_id_map`: exactly one of the two forms.
#[derive(Deserialize, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UserIdMap")]
pub(in crate::config) struct RawUserIdMap {
    /// Replace each character outside `A-Z a-z 0-9 @ _ -` with these 1 to 8
    /// allowed characters (not one-to-one: `a.b@x.com` and `a_b@x.com` become
    /// one Stream user).
    pub replace_invalid: Option<String>,
    /// Use the lowercase hex digest of the id (64 characters).
    pub hash: Option<UserIdHash>,
}

/// `user_id_map.hash`: the one hash offered.
#[derive(Deserialize, Clone, Copy, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(in crate::config) enum UserIdHash {
    /// SHA-256.
    Sha256,
}

/// `header` mode: the user (and roles) in headers set by an auth proxy.
#[derive(Deserialize, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HeaderIdentity")]
pub(in crate::config) struct RawHeaderIdentity {
    /// The header holding the user (default `X-Forwarded-User`).
    #[serde(default = "default_user_header")]
    pub user: String,
    /// The header holding the user's roles, comma-separated.
    pub roles: Option<String>,
}

impl Default for RawHeaderIdentity {
    fn default() -> Self {
        RawHeaderIdentity {
            user: default_user_header(),
            roles: None,
        }
    }
}

fn default_user_header() -> String {
    "X-Forwarded-User".into()
}

/// `forward_auth` mode: the app's "who am I" endpoint decides; exactly one of
/// `user_id_header` and `user_id_pointer`.
#[derive(Deserialize, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ForwardAuth")]
pub(in crate::config) struct RawForwardAuth {
    /// The upstream with the session endpoint; absent: the only one.
    pub upstream: Option<String>,
    /// The method of the session request (default `GET`).
    #[serde(default = "default_get")]
    pub method: String,
    /// The session endpoint's path: 2xx is signed in, 401/403 is not.
    pub path: String,
    /// The answer's header holding the user id.
    pub user_id_header: Option<String>,
    /// JSON pointer to the user id in the answer's JSON body (`/user/id`).
    pub user_id_pointer: Option<String>,
    /// JSON pointer to a role string or list in the answer's body.
    pub roles_pointer: Option<String>,
    /// Slower than this is 503 (default `2s`).
    #[serde(with = "humantime_serde", default = "seconds::<2>")]
    #[schemars(schema_with = "duration")]
    pub timeout: Duration,
    /// How long an answer is reused per credential (default `5s`; `0s`
    /// disables).
    #[serde(with = "humantime_serde", default = "seconds::<5>")]
    #[schemars(schema_with = "duration")]
    pub cache_ttl: Duration,
}

fn default_get() -> String {
    "GET".into()
}

/// `jwt` mode: a verified JWT from the identity provider. Exactly one key
/// source: `issuer_url`, `jwks_url`, `jwks_file`, `public_key_file`,
/// `hs256_secret` or `hs256_secret_file`.
#[derive(Deserialize, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Jwt")]
pub(in crate::config) struct RawJwt {
    /// A shared HMAC secret (HS256).
    pub hs256_secret: Option<String>,
    /// A file holding the shared HMAC secret (HS256).
    pub hs256_secret_file: Option<PathBuf>,
    /// A PEM public key (RSA or EC).
    pub public_key_file: Option<PathBuf>,
    /// A JSON Web Key Set file, followed when it changes.
    pub jwks_file: Option<PathBuf>,
    /// OpenID Connect Discovery: the key set is the `jwks_uri` of
    /// `{issuer_url}/.well-known/openid-configuration`; also the `iss` required.
    pub issuer_url: Option<String>,
    /// The provider's key set URL, fetched and refreshed.
    pub jwks_url: Option<String>,
    /// How `issuer_url`/`jwks_url` are fetched.
    pub jwks_fetch: Option<RawJwksFetch>,
    /// The minted token's `exp` is at most the presented JWT's `exp`
    /// (default true).
    #[serde(default = "default_true")]
    pub cap_exp_to_credential: bool,
    /// Accepted `alg` values; absent: HS256 for a secret, the key's own for a
    /// PEM, RS256 and ES256 for a key set.
    pub algorithms: Option<Vec<String>>,
    /// Required `iss`; absent: `issuer_url`, else not checked.
    pub issuer: Option<String>,
    /// Required `aud`; absent: not checked (and a warning at start).
    pub audience: Option<String>,
    /// The claim holding the user (default `sub`): a name, or a JSON pointer
    /// when it starts with `/`.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// The claim holding a role string or list: a name or a JSON pointer.
    pub roles_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (default `30s`).
    #[serde(with = "humantime_serde", default = "seconds::<30>")]
    #[schemars(schema_with = "duration")]
    pub leeway: Duration,
}

/// How the provider's discovery document and key set are fetched.
#[derive(Deserialize, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "JwksFetch")]
pub(in crate::config) struct RawJwksFetch {
    /// Connection set-up of one fetch (default `5s`).
    #[serde(with = "humantime_serde", default = "seconds::<5>")]
    #[schemars(schema_with = "duration")]
    pub connect_timeout: Duration,
    /// One whole fetch (default `10s`).
    #[serde(with = "humantime_serde", default = "seconds::<10>")]
    #[schemars(schema_with = "duration")]
    pub timeout: Duration,
    /// PEM CA to trust instead of the system's roots: the CA that issued the
    /// provider's certificate.
    pub ca_file: Option<PathBuf>,
    /// Lower bound on the key set's `Cache-Control: max-age` (default `5m`).
    #[serde(with = "humantime_serde", default = "seconds::<300>")]
    #[schemars(schema_with = "duration")]
    pub min_cache_duration: Duration,
    /// Upper bound on the key set's `max-age`, and the refresh interval
    /// without one (default `1h`).
    #[serde(with = "humantime_serde", default = "seconds::<3600>")]
    #[schemars(schema_with = "duration")]
    pub max_cache_duration: Duration,
    /// At most one refetch per interval for a token naming an unknown `kid`
    /// (default `30s`, at least `1s`).
    #[serde(with = "humantime_serde", default = "seconds::<30>")]
    #[schemars(schema_with = "duration")]
    pub unknown_kid_refetch_interval: Duration,
}

impl Default for RawJwksFetch {
    fn default() -> Self {
        RawJwksFetch {
            connect_timeout: seconds::<5>(),
            timeout: seconds::<10>(),
            ca_file: None,
            min_cache_duration: seconds::<300>(),
            max_cache_duration: seconds::<3600>(),
            unknown_kid_refetch_interval: seconds::<30>(),
        }
    }
}

fn default_user_claim() -> String {
    "sub".into()
}
