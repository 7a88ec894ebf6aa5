//! The OpenAPI 3.1 document of the token routes as configured: `GET
//! /openapi.json` on the admin listener, for generating clients and for
//! fuzzing the contract (`make test` runs schemathesis with it).
//!
//! Built from the running [`Config`], not written by hand: each token route
//! the route table can reach is an operation at its path (a `path_prefix`
//! route at its prefix), with the body rules of the token contract filled in
//! from `tokens` ([`crate::token::schema`]), the route's identity mode as a
//! security requirement or header parameter, and every status the route can
//! answer with its envelope. Proxied routes are the app's API, not
//! streamgate's, and are left out.
//!
//! Like `/config_dump`, nothing here is secret: identity settings appear only
//! as what a caller must send (a header's name, a bearer token, a session
//! cookie), never as keys, upstreams or session endpoints.

use http::Method;
use serde_json::{json, Map, Value};

use super::{Config, RouteAction, TokenRouteSettings};
use crate::identity::IdentitySource;
use crate::routing::{HostMatch, PathMatch, Route};
use crate::token::schema::{error_schema, request_schema, success_schema};
use crate::token::MintKind;

/// The OpenAPI version written; JSON Schema 2020-12 is its schema dialect.
const OPENAPI_VERSION: &str = "3.1.0";

impl Config {
    /// The document (see the module doc).
    pub fn openapi(&self) -> Value {
        let mut paths = Map::new();
        let mut schemes = Map::new();
        for route in self.routes.routes() {
            let RouteAction::Mint(settings) = &route.action else {
                continue;
            };
            // A route without a method mints for any method; POST is the
            // contract's, and the one documented.
            let method = route.method.clone().unwrap_or(Method::POST);
            let path = match &route.path {
                PathMatch::Exact(path) | PathMatch::Prefix(path) => path,
            };
            // An earlier route that takes the same request shadows this one.
            let host = route.host.as_ref().map(HostMatch::sample);
            let reachable = self
                .routes
                .find(&method, host.as_deref(), path)
                .is_some_and(|first| std::ptr::eq(first, route));
            if !reachable {
                continue;
            }
            // Routes for other hosts on the same path and method (several
            // Stream apps): the document has one operation, the first one's.
            let item = paths.entry(path.clone()).or_insert_with(|| json!({}));
            let method_key = method.as_str().to_ascii_lowercase();
            if item.get(&method_key).is_none() {
                item[method_key] = self.operation(route, &method, settings, &mut schemes);
            }
        }
        json!({
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "streamgate token routes",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Stream (GetStream.io) tokens minted by streamgate, as the running \
                    configuration routes them (README, \"The token contract\"). Every answer is \
                    JSON with Cache-Control: no-store; every refusal is \
                    {\"success\":false,\"error\":\"<message>\"}. Other methods and paths go to \
                    the app.",
            },
            "servers": self.listen.iter().map(|listener| json!({
                "url": format!(
                    "{}://{}",
                    if listener.tls.is_some() { "https" } else { "http" },
                    listener.address
                ),
            })).collect::<Vec<_>>(),
            "paths": paths,
            "components": {
                "schemas": {
                    "TokenError": error_schema(),
                },
                "securitySchemes": schemes,
            },
        })
    }

    /// One token route as an operation; adds the security schemes it uses.
    fn operation(
        &self,
        route: &Route<RouteAction>,
        method: &Method,
        settings: &TokenRouteSettings,
        schemes: &mut Map<String, Value>,
    ) -> Value {
        let identity = &settings.identity;
        let identified = !matches!(identity, IdentitySource::None);
        let summary = match settings.kind {
            MintKind::UserToken => "Mint a Stream user token",
            MintKind::CallToken => "Mint a Stream token restricted to one call",
        };
        let mut description = format!(
            "Route {}; identity mode {}: {}",
            route.describe(),
            identity.mode_name(),
            identity_words(identity)
        );
        if matches!(route.path, PathMatch::Prefix(_)) {
            description.push_str(" Every path below this prefix is answered the same.");
        }
        let mut operation = json!({
            "operationId": operation_id(method, &route.path),
            "summary": summary,
            "description": description,
            "requestBody": {
                "required": true,
                "content": { "application/json": {
                    "schema": request_schema(settings.kind, &self.tokens, identified),
                } },
            },
            "responses": self.responses(settings),
        });
        add_identity(identity, &mut operation, schemes);
        operation
    }

    /// Every status the route can answer, each with its headers and body.
    fn responses(&self, settings: &TokenRouteSettings) -> Map<String, Value> {
        let success = match settings.kind {
            MintKind::UserToken => "The user token.",
            MintKind::CallToken => "The call token.",
        };
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({
                "description": success,
                "headers": self.common_headers(settings),
                "content": { "application/json": {
                    "schema": success_schema(settings.kind, self.api_key(settings), &self.tokens),
                } },
            }),
        );
        for (status, when) in self.refusals(settings) {
            let mut headers = self.common_headers(settings);
            if status == 401 && matches!(settings.identity, IdentitySource::Jwt(_)) {
                // Not on the one 401 that comes after the JWT held: it expired
                // before the token could be signed.
                headers["WWW-Authenticate"] = header(
                    "The Bearer challenge (RFC 6750) of a missing or refused JWT.",
                    false,
                );
            }
            if status == 429 {
                headers["Retry-After"] = json!({
                    "description": "Seconds until a request may succeed.",
                    "required": true,
                    "schema": { "type": "string", "pattern": "^[0-9]+$" },
                });
            }
            responses.insert(
                status.to_string(),
                json!({
                    "description": when,
                    "headers": headers,
                    "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/TokenError" },
                    } },
                }),
            );
        }
        responses
    }

    /// The statuses a token route can refuse with, and when.
    fn refusals(&self, settings: &TokenRouteSettings) -> Vec<(u16, &'static str)> {
        let identified = !matches!(settings.identity, IdentitySource::None);
        let mut refusals = vec![
            (
                400,
                "The body is not a JSON object, or the request could not be read.",
            ),
            (408, "The request head did not arrive in time."),
            (413, "The body is larger than tokens.max_body_bytes."),
            (
                414,
                "The request line is longer than http.max_request_headers_kb.",
            ),
            (415, "A Content-Type other than application/json."),
            (
                422,
                "A field breaks its rule; the message names the field and the rule.",
            ),
            (
                431,
                "The request head is larger than http.max_request_headers_kb.",
            ),
            (
                500,
                "Signing failed: a fault of streamgate's own, never of the request.",
            ),
            (
                503,
                "Not ready: the Stream API secret is not loaded, or the identity mode's \
                 session endpoint or key set is unavailable.",
            ),
        ];
        if identified {
            refusals.push((
                401,
                "No credentials, or credentials that do not hold; the message says which.",
            ));
        }
        // A call role or call type the policy does not grant, or another user.
        if identified
            || settings.kind == MintKind::CallToken
            || self.tokens.allowed_call_types.is_some()
        {
            refusals.push((
                403,
                "Not granted: another user's userId, a call role or call type the policy does \
                 not allow, or an identity that cannot be a Stream user id.",
            ));
        }
        let limits = &self.rate_limits;
        if limits.per_identity.is_some() || limits.per_client_ip.is_some() {
            refusals.push((429, "A rate limit is exceeded."));
        }
        refusals.sort_unstable_by_key(|(status, _)| *status);
        refusals
    }

    /// Headers on every answer of a token route.
    /// The API key of the app the route signs for (in the answer's `apiKey`).
    fn api_key(&self, settings: &TokenRouteSettings) -> &str {
        self.apps
            .iter()
            .find(|app| app.name == settings.app)
            .map_or("", |app| app.credentials.api_key.as_str())
    }

    fn common_headers(&self, settings: &TokenRouteSettings) -> Value {
        let mut headers = json!({
            "Cache-Control": {
                "description": "Tokens and per-caller errors are never cached.",
                "required": true,
                "schema": { "const": "no-store" },
            },
            "X-Request-Id": header("The request's id, as in the access log.", true),
        });
        if settings.cors.is_some() {
            headers["Access-Control-Allow-Origin"] = header(
                "Present when the request's Origin is allowed (cors).",
                false,
            );
        }
        headers
    }
}

/// What the route's identity mode asks of the caller: a header parameter
/// (`header`), or a security requirement whose scheme is added to `schemes`.
fn add_identity(
    identity: &IdentitySource,
    operation: &mut Value,
    schemes: &mut Map<String, Value>,
) {
    match identity {
        IdentitySource::None => {}
        IdentitySource::Header(mode) => {
            let mut parameters = vec![json!({
                "name": mode.user_header.as_str(),
                "in": "header",
                "required": true,
                "description": "The signed-in user, set by the auth proxy in front; \
                                believed only from trusted_cidrs.",
                "schema": { "type": "string" },
            })];
            if let Some(roles) = &mode.roles_header {
                parameters.push(json!({
                    "name": roles.as_str(),
                    "in": "header",
                    "required": false,
                    "description": "The user's roles, comma-separated.",
                    "schema": { "type": "string" },
                }));
            }
            operation["parameters"] = json!(parameters);
        }
        IdentitySource::Jwt(_) => {
            schemes.insert(
                "bearer_jwt".into(),
                json!({
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT from the identity provider, verified by streamgate.",
                }),
            );
            operation["security"] = json!([{ "bearer_jwt": [] }]);
        }
        IdentitySource::ForwardAuth(_) => {
            for (name, header) in [
                ("session_cookie", "Cookie"),
                ("session_authorization", "Authorization"),
            ] {
                schemes.insert(
                    name.into(),
                    json!({
                        "type": "apiKey",
                        "in": "header",
                        "name": header,
                        "description": "Passed to the app's session endpoint, which names \
                                        the signed-in user.",
                    }),
                );
            }
            operation["security"] =
                json!([{ "session_cookie": [] }, { "session_authorization": [] }]);
        }
    }
}

/// A response header of any string value.
fn header(description: &str, required: bool) -> Value {
    json!({ "description": description, "required": required, "schema": { "type": "string" } })
}

/// What the caller must send in each identity mode.
fn identity_words(identity: &IdentitySource) -> &'static str {
    match identity {
        IdentitySource::None => {
            "none: userId names the user, whoever asks (the configuration is warned about at \
             every start)."
        }
        IdentitySource::Header(_) => {
            "the auth proxy in front names the user in a header; userId, when sent, must be \
             that user."
        }
        IdentitySource::ForwardAuth(_) => {
            "the caller's Cookie or Authorization is passed to the app's session endpoint, \
             which names the user; userId, when sent, must be that user."
        }
        IdentitySource::Jwt(_) => {
            "Authorization: Bearer <JWT from the identity provider>, verified; userId, when \
             sent, must be the JWT's user."
        }
    }
}

/// `post_api_tokens_user`: the method and the path, in the characters every
/// client generator accepts.
fn operation_id(method: &Method, path: &PathMatch) -> String {
    let path = match path {
        PathMatch::Exact(path) => path.clone(),
        PathMatch::Prefix(path) => format!("{path}_prefix"),
    };
    let mut id = method.as_str().to_ascii_lowercase();
    for c in path.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if !(c == '_' && id.ends_with('_')) {
            id.push(c);
        }
    }
    id.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests;
