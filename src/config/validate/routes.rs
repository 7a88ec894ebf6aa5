//! `routes`: the ordered route table, or the default one when the key is
//! absent; each token route gets its app, its identity (its own or the
//! top-level one) and the CORS policy.

use http::Method;

use super::identity::identity;
use super::Followed;
use super::{method, upstream_name};
use crate::config::error::{ConfigError, Errors};
use crate::config::raw::{RawIdentity, RawMatch, RawRoute};
use crate::config::{RouteAction, StreamApp, TokenRouteSettings, UpstreamSettings};
use crate::net::cors::CorsPolicy;
use crate::net::path::PathRules;
use crate::routing::{DirectResponse, HostMatch, PathMatch, Route, RouteTable};
use crate::token::MintKind;

/// What token routes get unless they say otherwise.
pub(super) struct Defaults<'a> {
    pub identity: RawIdentity,
    pub cors: Option<CorsPolicy>,
    pub upstreams: &'a [UpstreamSettings],
    /// `None` when `stream`/`stream_apps` is itself broken, which its own
    /// error reports: a route's `app` is then not checked.
    pub apps: Option<&'a [StreamApp]>,
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
        app: Option<String>,
        route_key: &str,
        followed: &mut Followed,
    ) -> Result<TokenRouteSettings, ConfigError> {
        let app = self.app(app, route_key)?;
        let (raw, key) = match own_identity {
            Some(raw) => (raw, format!("{route_key}.identity")),
            None => (self.identity.clone(), "identity".to_string()),
        };
        Ok(TokenRouteSettings {
            kind,
            app,
            identity: identity(raw, &key, self.upstreams, followed)?,
            cors: self.cors.clone(),
        })
    }

    /// The app `name`, checked to exist; without a name, the only app.
    fn app(&self, name: Option<String>, route_key: &str) -> Result<String, ConfigError> {
        let Some(apps) = self.apps else {
            // Reported as the apps' own error; the route is not the problem.
            return Ok(name.unwrap_or_default());
        };
        let names = || {
            apps.iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (name, apps) {
            (Some(name), _) if apps.iter().any(|a| a.name == name) => Ok(name),
            (Some(name), _) => Err(ConfigError::new(
                format!("{route_key}.app"),
                format!("unknown app {name:?} (stream_apps: {})", names()),
            )),
            (None, [only]) => Ok(only.name.clone()),
            (None, _) => Err(ConfigError::new(
                format!("{route_key}.app"),
                format!(
                    "is required: stream_apps names several apps ({}), so each token route says which it signs for",
                    names()
                ),
            )),
        }
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
    if defaults.apps.is_some_and(|apps| apps.len() > 1) {
        errors.push(ConfigError::new(
            "routes",
            "is required when stream_apps names several apps, to say which route signs for which",
        ));
        return None;
    }
    let mut mint = |path: &str, kind| {
        let settings = errors.keep(defaults.token_route(kind, None, None, "routes", followed))?;
        Some(Route {
            method: Some(Method::POST),
            host: None,
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
            host: None,
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
    let (method, host, path) = matcher(&key, raw.matcher, defaults.paths.as_ref())?;
    if raw.mint.is_none() {
        for (set, field) in [
            (raw.identity.is_some(), "identity"),
            (raw.app.is_some(), "app"),
        ] {
            if set {
                return Err(ConfigError::new(
                    format!("{key}.{field}"),
                    format!("only token routes (mint) have an {field}"),
                ));
            }
        }
    }
    let action = match (raw.mint, raw.upstream, raw.direct_response) {
        (Some(kind), None, None) => RouteAction::Mint(Box::new(defaults.token_route(
            kind,
            raw.identity,
            raw.app,
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
        host,
        path,
        action,
    })
}

/// `routes[i].match`: the method, host and path a route takes.
fn matcher(
    key: &str,
    raw: RawMatch,
    paths: Option<&PathRules>,
) -> Result<(Option<Method>, Option<HostMatch>, PathMatch), ConfigError> {
    let method = raw
        .method
        .map(|m| method(&format!("{key}.match.method"), &m))
        .transpose()?;
    let host = raw
        .host
        .map(|h| HostMatch::parse(&h).map_err(|e| ConfigError::new(format!("{key}.match.host"), e)))
        .transpose()?;
    let path = match (raw.path, raw.path_prefix) {
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
    if let Some(rules) = paths {
        reachable(p, rules).map_err(|reason| ConfigError::new(format!("{key}.match"), reason))?;
    }
    Ok((method, host, path))
}

/// Requests are matched by their normalized path less its parameters
/// (`net::path`), so a route path in another spelling would never match:
/// refused, naming the spelling that would.
fn reachable(path: &str, rules: &PathRules) -> Result<(), String> {
    match rules.normalize(path) {
        Ok(normalized) if normalized == path => match rules.route_key(path) {
            key if key == path => Ok(()),
            key => Err(format!(
                "path {path:?} can never match: routes match paths without their \
                 parameters (';…'); write {key:?}"
            )),
        },
        Ok(normalized) => Err(format!(
            "path {path:?} can never match: requests are matched by their normalized \
             path (see http:); write {normalized:?}"
        )),
        Err(refusal) => Err(format!(
            "path {path:?} can never match: a request for it is refused ({refusal})"
        )),
    }
}
