//! `identity` (top-level or per token route): the mode and its block.

use jsonwebtoken::{Algorithm, Validation};

use super::{header_name, json_pointer, method, nonzero, upstream_name, Followed};
use crate::config::error::ConfigError;
use crate::config::raw::{
    IdentityMode, RawForwardAuth, RawIdentity, RawJwt, RawUserIdMap, UserIdHash,
};
use crate::config::resolve::{self, JwtKeySource};
use crate::config::{HttpSettings, RouteAction, UpstreamSettings};
use crate::identity::jwks::JwksLocation;
use crate::identity::JwtKeys;
use crate::identity::{
    ForwardAuth, HeaderIdentity, IdentitySource, JwtIdentity, UserIdLocation, UserIdMap,
    UserIdMapping, UserIdTemplate,
};
use crate::net::headers::{has_underscore, UnderscoresAction};
use crate::routing::RouteTable;

/// The most of a session endpoint's answer streamgate reads.
const FORWARD_AUTH_MAX_BODY_BYTES: usize = 64 * 1024;

/// The identity source of a token route; `key` is where `raw` was written
/// (`identity` or `routes[2].identity`). Key files are read here (through
/// [`resolve`]); a JWKS file to follow or a key set to fetch while running goes
/// into `followed`.
pub(super) fn identity(
    raw: RawIdentity,
    key: &str,
    upstreams: &[UpstreamSettings],
    followed: &mut Followed,
) -> Result<IdentitySource, ConfigError> {
    let mapping = user_id_mapping(&raw, key)?;
    let stray = [
        ("header", raw.header.is_some(), IdentityMode::Header),
        (
            "forward_auth",
            raw.forward_auth.is_some(),
            IdentityMode::ForwardAuth,
        ),
        ("jwt", raw.jwt.is_some(), IdentityMode::Jwt),
    ];
    if let Some((block, ..)) = stray
        .iter()
        .find(|(_, present, mode)| *present && raw.mode != *mode)
    {
        return Err(ConfigError::new(
            format!("{key}.{block}"),
            format!("is set but identity.mode is not {block}"),
        ));
    }
    let required = |block: &str| {
        ConfigError::new(
            format!("{key}.{block}"),
            format!("is required when mode is {block}"),
        )
    };
    match raw.mode {
        IdentityMode::None => Ok(IdentitySource::None),
        IdentityMode::Header => {
            let block = raw.header.unwrap_or_default();
            Ok(IdentitySource::Header(HeaderIdentity {
                user_header: header_name(&format!("{key}.header.user"), &block.user)?,
                roles_header: block
                    .roles
                    .map(|r| header_name(&format!("{key}.header.roles"), &r))
                    .transpose()?,
                mapping,
            }))
        }
        IdentityMode::ForwardAuth => {
            let block = raw.forward_auth.ok_or_else(|| required("forward_auth"))?;
            forward_auth(block, &format!("{key}.forward_auth"), mapping, upstreams)
                .map(IdentitySource::ForwardAuth)
        }
        IdentityMode::Jwt => {
            let block = raw.jwt.ok_or_else(|| required("jwt"))?;
            jwt(block, &format!("{key}.jwt"), mapping, followed)
                .map(|jwt| IdentitySource::Jwt(Box::new(jwt)))
        }
    }
}

/// `user_id_map` and `user_id_template`: how the mode's user ids become
/// Stream user ids.
fn user_id_mapping(raw: &RawIdentity, key: &str) -> Result<UserIdMapping, ConfigError> {
    let map = match &raw.user_id_map {
        None => UserIdMap::Verbatim,
        Some(RawUserIdMap {
            replace_invalid: Some(replacement),
            hash: None,
        }) => UserIdMap::replace_invalid(replacement).map_err(|reason| {
            ConfigError::new(format!("{key}.user_id_map.replace_invalid"), reason)
        })?,
        Some(RawUserIdMap {
            replace_invalid: None,
            hash: Some(UserIdHash::Sha256),
        }) => UserIdMap::Sha256,
        Some(_) => {
            return Err(ConfigError::new(
                format!("{key}.user_id_map"),
                "needs exactly one of replace_invalid (e.g. { replace_invalid: \"_\" }) or \
                 hash ({ hash: sha256 })",
            ))
        }
    };
    let template_key = format!("{key}.user_id_template");
    let template = match &raw.user_id_template {
        Some(t) => {
            UserIdTemplate::parse(t).map_err(|reason| ConfigError::new(&template_key, reason))?
        }
        None => UserIdTemplate::default(),
    };
    UserIdMapping::new(map, template).map_err(|reason| ConfigError::new(template_key, reason))
}

/// A `header` mode header whose name has `_` would be dropped, or its requests
/// refused, by `http.headers_with_underscores_action` before any token route
/// reads it: no token could ever be minted, so that is a configuration error.
pub(super) fn header_names_survive(
    routes: &RouteTable<RouteAction>,
    http: &HttpSettings,
) -> Result<(), ConfigError> {
    if http.headers_with_underscores_action == UnderscoresAction::Allow {
        return Ok(());
    }
    for route in routes.routes() {
        let RouteAction::Mint(settings) = &route.action else {
            continue;
        };
        let IdentitySource::Header(mode) = &settings.identity else {
            continue;
        };
        if let Some(name) = mode.spoofable_headers().find(|n| has_underscore(n)) {
            return Err(ConfigError::new(
                "http.headers_with_underscores_action",
                format!(
                    "removes header names with '_' (or refuses their requests), so the identity \
                     header {name} of route {} would never arrive: name it with '-' (as auth \
                     proxies do) or set headers_with_underscores_action: allow",
                    route.describe()
                ),
            ));
        }
    }
    Ok(())
}

fn forward_auth(
    block: RawForwardAuth,
    key: &str,
    mapping: UserIdMapping,
    upstreams: &[UpstreamSettings],
) -> Result<ForwardAuth, ConfigError> {
    let upstream = upstream_name(
        &format!("{key}.upstream"),
        block.upstream.as_deref(),
        upstreams,
    )?;
    if !block.path.starts_with('/') {
        return Err(ConfigError::new(
            format!("{key}.path"),
            "must start with '/'",
        ));
    }
    let user_id = match (block.user_id_header, block.user_id_pointer) {
        (Some(h), None) => {
            UserIdLocation::Header(header_name(&format!("{key}.user_id_header"), &h)?)
        }
        (None, Some(p)) => {
            UserIdLocation::JsonPointer(json_pointer(&format!("{key}.user_id_pointer"), p)?)
        }
        _ => {
            return Err(ConfigError::new(
                key,
                "needs exactly one of user_id_header or user_id_pointer",
            ))
        }
    };
    Ok(ForwardAuth {
        upstream,
        method: method(&format!("{key}.method"), &block.method)?,
        path: block.path,
        user_id,
        roles_pointer: block
            .roles_pointer
            .map(|p| json_pointer(&format!("{key}.roles_pointer"), p))
            .transpose()?,
        timeout: nonzero(&format!("{key}.timeout"), block.timeout)?,
        cache_ttl: block.cache_ttl,
        max_body_bytes: FORWARD_AUTH_MAX_BODY_BYTES,
        mapping,
    })
}

fn jwt(
    block: RawJwt,
    key: &str,
    mapping: UserIdMapping,
    followed: &mut Followed,
) -> Result<JwtIdentity, ConfigError> {
    let source = key_source(&block, key)?;
    let key_is_secret = matches!(
        source,
        JwtKeySource::Secret(_) | JwtKeySource::SecretFile(_)
    );
    let resolved = resolve::jwt_keys(key, source)?;
    if let Some(file) = resolved.watched {
        followed.files.push(file);
    }
    let keys = match resolved.keys {
        // Routes that name the same provider the same way share one key set,
        // so the provider sees one fetcher and one refetch cap.
        JwtKeys::Jwks(keys) if keys.origin().is_some() => JwtKeys::Jwks(followed.key_set(keys)),
        keys => keys,
    };
    let algorithms = match block.algorithms {
        None => resolved.default_algorithms,
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                name.parse::<Algorithm>().map_err(|_| {
                    ConfigError::new(
                        format!("{key}.algorithms[{i}]"),
                        format!("{name:?} is not a JWT algorithm"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    // An HMAC algorithm beside a public key is the classic algorithm-confusion
    // hole (the public key used as an HMAC secret); refuse any mix outright.
    let is_hmac =
        |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    if algorithms.is_empty() || algorithms.iter().any(|a| is_hmac(a) != key_is_secret) {
        return Err(ConfigError::new(
            format!("{key}.algorithms"),
            "HS256/HS384/HS512 go with hs256_secret(_file) only, and public keys with RS*/PS*/ES*/EdDSA only",
        ));
    }
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    validation.validate_nbf = true;
    validation.leeway = block.leeway.as_secs();
    // jsonwebtoken compares `iss` and `aud` only when the token has them:
    // without also requiring them, a token that leaves them out would pass.
    match (&block.issuer, &block.issuer_url) {
        (Some(issuer), Some(url)) if issuer != url => {
            return Err(ConfigError::new(
                format!("{key}.issuer"),
                format!(
                    "is {issuer:?} but issuer_url is {url:?}: a provider's tokens carry its issuer \
                     URL as iss, so leave issuer out (issuer_url sets it)"
                ),
            ))
        }
        (Some(issuer), _) | (None, Some(issuer)) => {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        (None, None) => {}
    }
    match &block.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".into());
        }
        None => validation.validate_aud = false,
    }
    Ok(JwtIdentity::new(
        keys,
        validation,
        block.user_claim,
        block.roles_claim,
        mapping,
    )
    .cap_exp_to_credential(block.cap_exp_to_credential))
}

/// The one key source a `jwt` block names.
fn key_source(block: &RawJwt, key: &str) -> Result<JwtKeySource, ConfigError> {
    let mut sources = Vec::new();
    if let Some(secret) = &block.hs256_secret {
        sources.push(JwtKeySource::Secret(secret.clone()));
    }
    if let Some(path) = &block.hs256_secret_file {
        sources.push(JwtKeySource::SecretFile(path.clone()));
    }
    if let Some(path) = &block.public_key_file {
        sources.push(JwtKeySource::PublicKeyFile(path.clone()));
    }
    if let Some(path) = &block.jwks_file {
        sources.push(JwtKeySource::JwksFile(path.clone()));
    }
    let fetch = block.jwks_fetch.clone();
    if let Some(url) = &block.issuer_url {
        let url = remote_url(&format!("{key}.issuer_url"), url, false)?;
        sources.push(JwtKeySource::Remote(
            JwksLocation::Issuer(url),
            fetch.clone().unwrap_or_default(),
        ));
    }
    if let Some(url) = &block.jwks_url {
        let url = remote_url(&format!("{key}.jwks_url"), url, true)?;
        sources.push(JwtKeySource::Remote(
            JwksLocation::Url(url),
            fetch.clone().unwrap_or_default(),
        ));
    }
    if sources.len() != 1 {
        return Err(ConfigError::new(
            key,
            "needs exactly one of hs256_secret, hs256_secret_file, public_key_file, jwks_file, \
             issuer_url or jwks_url",
        ));
    }
    if fetch.is_some() && !matches!(sources[0], JwtKeySource::Remote(..)) {
        return Err(ConfigError::new(
            format!("{key}.jwks_fetch"),
            "is set but the keys are not fetched (no issuer_url or jwks_url)",
        ));
    }
    Ok(sources.remove(0))
}

/// An identity provider URL streamgate fetches keys from: `https`, or `http`
/// to a loopback address only (a test IdP), since keys fetched in the clear
/// let anyone on the path mint tokens for any user. No credentials in it
/// (it is a metrics label and appears in logs), and an issuer has no query or
/// fragment (OpenID Connect Discovery §2).
fn remote_url(key: &str, text: &str, query_allowed: bool) -> Result<String, ConfigError> {
    let error = |reason: String| ConfigError::new(key, reason);
    let url =
        reqwest::Url::parse(text).map_err(|e| error(format!("{text:?} is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(error(format!(
                "{text:?} is plaintext http: keys fetched in the clear can be replaced on the way, \
                 and then anyone can mint tokens; use https (http is allowed to loopback only)"
            )))
        }
        scheme => return Err(error(format!("{text:?}: scheme {scheme:?} is not https"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(error(format!(
            "{:?} carries credentials; key sets are public, and the URL is logged",
            url.host_str().unwrap_or_default()
        )));
    }
    if !query_allowed && (url.query().is_some() || url.fragment().is_some()) {
        return Err(error(format!(
            "{text:?}: an issuer URL has no query or fragment"
        )));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests;
