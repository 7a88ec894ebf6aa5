//! `routes`: the ordered route table, or the default one when the key is
//! absent; each token route gets its identity (its own or the top-level one)
//! and the CORS policy.

use http::Method;

use super::identity::identity;
use super::Followed;
use super::{method, upstream_name};
use crate::config::error::{ConfigError, Errors};
use crate::config::raw::{RawIdentity, RawRoute};
use crate::config::{RouteAction, TokenRouteSettings, UpstreamSettings};
use crate::net::cors::CorsPolicy;
use crate::net::path::PathRules;
use crate::routing::{DirectResponse, PathMatch, Route, RouteTable};
use crate::token::MintKind;

/// What token routes get unless they say otherwise.
pub(super) struct Defaults<'a> {
    pub identity: RawIdentity,
    pub cors: Option<CorsPolicy>,
    pub upstreams: &'a [UpstreamSettings],
    /// Route paths are checked against them; `None` when the `http` section
    /// is itself broken, which its own error reports.
    pub paths: Option<PathRules>,
}

impl Defaults<'_> {
    /// A token route's settings; a route's own `identity` replaces the
    /// top-level one (and errors then name the route's key).
    fn token_route(
        &self,
        kind: MintKind,
        own_identity: Option<RawIdentity>,
        route_key: &str,
        followed: &mut Followed,
    ) -> Result<TokenRouteSettings, ConfigError> {
        let (raw, key) = match own_identity {
            Some(raw) => (raw, format!("{route_key}.identity")),
            None => (self.identity.clone(), "identity".to_string()),
        };
        Ok(TokenRouteSettings {
            kind,
            identity: identity(raw, &key, self.upstreams, followed)?,
            cors: self.cors.clone(),
        })
    }
}

/// The route table; each broken route is recorded in `errors`.
pub(super) fn table(
    raw: Option<Vec<RawRoute>>,
    defaults: &Defaults,
    followed: &mut Followed,
    errors: &mut Errors,
) -> Option<RouteTable<RouteAction>> {
    let Some(raw) = raw else {
        return default_table(defaults, followed, errors);
    };
    if raw.is_empty() {
        errors.push(ConfigError::new(
            "routes",
            "must list at least one route (omit the key to use the default routes)",
        ));
        return None;
    }
    let count = raw.len();
    let routes: Vec<Route<RouteAction>> = raw
        .into_iter()
        .enumerate()
        .filter_map(|(i, raw)| errors.keep(route(i, raw, defaults, followed)))
        .collect();
    (routes.len() == count).then(|| RouteTable::new(routes))
}

/// Without `routes`: user tokens at `POST /api/tokens/user`, call tokens at
/// `POST /api/tokens/call`, everything else to the only upstream.
fn default_table(
    defaults: &Defaults,
    followed: &mut Followed,
    errors: &mut Errors,
) -> Option<RouteTable<RouteAction>> {
    let [upstream] = defaults.upstreams else {
        errors.push(ConfigError::new(
            "routes",
            "is required when more than one upstream is defined, to say which one gets which paths",
        ));
        return None;
    };
    let mut mint = |path: &str, kind| {
        let settings = errors.keep(defaults.token_route(kind, None, "routes", followed))?;
        Some(Route {
            method: Some(Method::POST),
            path: PathMatch::Exact(path.into()),
            action: RouteAction::Mint(Box::new(settings)),
        })
    };
    let user = mint("/api/tokens/user", MintKind::UserToken);
    let call = mint("/api/tokens/call", MintKind::CallToken);
    Some(RouteTable::new(vec![
        user?,
        call?,
        Route {
            method: None,
            path: PathMatch::Prefix("/".into()),
            action: RouteAction::Proxy(upstream.name.clone()),
        },
    ]))
}

fn route(
    index: usize,
    raw: RawRoute,
    defaults: &Defaults,
    followed: &mut Followed,
) -> Result<Route<RouteAction>, ConfigError> {
    let key = format!("routes[{index}]");
    let method = raw
        .matcher
        .method
        .map(|m| method(&format!("{key}.match.method"), &m))
        .transpose()?;
    let path = match (raw.matcher.path, raw.matcher.path_prefix) {
        (Some(p), None) => PathMatch::Exact(p),
        (None, Some(p)) => PathMatch::Prefix(p),
        _ => {
            return Err(ConfigError::new(
                format!("{key}.match"),
                "needs exactly one of path or path_prefix",
            ))
        }
    };
    let (PathMatch::Exact(p) | PathMatch::Prefix(p)) = &path;
    if !p.starts_with('/') {
        return Err(ConfigError::new(
            format!("{key}.match"),
            format!("path {p:?} must start with '/'"),
        ));
    }
    if let Some(rules) = &defaults.paths {
        reachable(p, rules).map_err(|reason| ConfigError::new(format!("{key}.match"), reason))?;
    }
    if raw.identity.is_some() && raw.mint.is_none() {
        return Err(ConfigError::new(
            format!("{key}.identity"),
            "only token routes (mint) have an identity",
        ));
    }
    let action = match (raw.mint, raw.upstream, raw.direct_response) {
        (Some(kind), None, None) => RouteAction::Mint(Box::new(defaults.token_route(
            kind,
            raw.identity,
            &key,
            followed,
        )?)),
        (None, Some(name), None) => RouteAction::Proxy(upstream_name(
            &format!("{key}.upstream"),
            Some(&name),
            defaults.upstreams,
        )?),
        (None, None, Some(direct)) => {
            if !(200..=599).contains(&direct.status) {
                return Err(ConfigError::new(
                    format!("{key}.direct_response.status"),
                    "must be an HTTP status from 200 to 599",
                ));
            }
            let content_type = http::HeaderValue::from_str(&direct.content_type).map_err(|_| {
                ConfigError::new(
                    format!("{key}.direct_response.content_type"),
                    format!("{:?} is not a valid header value", direct.content_type),
                )
            })?;
            RouteAction::Respond(DirectResponse {
                status: direct.status,
                content_type,
                body: direct.body.into(),
            })
        }
        _ => {
            return Err(ConfigError::new(
                key,
                "needs exactly one of mint (a token kind), upstream (a name from upstreams) \
                 or direct_response",
            ))
        }
    };
    Ok(Route {
        method,
        path,
        action,
    })
}

/// Requests are matched by their normalized path (`net::path`), so a route
/// path in another spelling would never match: refused, naming the spelling
/// that would.
fn reachable(path: &str, rules: &PathRules) -> Result<(), String> {
    match rules.normalize(path) {
        Ok(normalized) if normalized == path => Ok(()),
        Ok(normalized) => Err(format!(
            "path {path:?} can never match: requests are matched by their normalized \
             path (see http:); write {normalized:?}"
        )),
        Err(refusal) => Err(format!(
            "path {path:?} can never match: a request for it is refused ({refusal})"
        )),
    }
}
