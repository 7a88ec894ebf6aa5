//! The configuration as streamgate runs it, with defaults filled in and
//! secrets left out: `GET /config_dump` on the admin listener (Envoy's idea)
//! answers "what is it actually running with", and the start-up summary is
//! its short form, one line per listener, upstream and route.
//!
//! Nothing here prints key material: the Stream API secret is `<redacted>`
//! (or its file's path), JWT keys are named by their source, and TLS
//! listeners show their files and certificate subject.

use serde_json::{json, Value};

use super::{Config, RouteAction, SecretSource, StreamCredentials};
use crate::net::cors::AllowedOrigins;
use crate::routing::Route;
use crate::token::MintKind;

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// One route: what it matches and what it does.
fn route(route: &Route<RouteAction>) -> Value {
    let action = match &route.action {
        RouteAction::Mint(settings) => json!({
            "mint": settings.kind.as_str(),
            "app": settings.app,
            "identity": settings.identity.describe(),
            "cors": settings.cors.as_ref().map(|cors| json!({
                "allowed_origins": match &cors.origins {
                    AllowedOrigins::Any => json!("*"),
                    AllowedOrigins::List(origins) => json!(origins),
                },
                "allow_credentials": cors.allow_credentials,
            })),
        }),
        RouteAction::Proxy(upstream) => json!({ "upstream": upstream }),
        RouteAction::Respond(response) => json!({ "direct_response": response.status }),
    };
    json!({ "match": route.describe(), "action": action })
}

/// An app's key and where its secret comes from, never the secret.
fn credentials(credentials: &StreamCredentials) -> Value {
    json!({
        "api_key": credentials.api_key,
        "api_secret": match &credentials.api_secret {
            SecretSource::Inline(_) => json!("<redacted>"),
            SecretSource::File(path) => json!({ "file": path }),
        },
    })
}

impl Config {
    fn apps_key(&self) -> &'static str {
        match self.apps.as_slice() {
            [only] if only.key == "stream" => "stream",
            _ => "stream_apps",
        }
    }

    fn apps_dump(&self) -> Value {
        match self.apps.as_slice() {
            [only] if only.key == "stream" => credentials(&only.credentials),
            apps => apps
                .iter()
                .map(|app| (app.name.clone(), credentials(&app.credentials)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// The `rate_limits` section; the Redis URL as displayed (password `***`).
    fn rate_limits_dump(&self) -> Value {
        json!({
            "backend": if self.rate_limits.redis.is_some() { "redis" } else { "local" },
            // The URL as displayed: its password is `***`.
            "redis": self.rate_limits.redis.as_ref().map(|r| json!({
                "url": r.url.to_string(),
                "ca_file": r.ca_file,
                "key_prefix": r.key_prefix,
                "timeout": duration(r.timeout),
                "on_error": r.on_error.as_str(),
            })),
            "per_identity": self.rate_limits.per_identity.map(|l| json!({
                "requests": l.requests, "window": duration(l.window),
            })),
            "per_client_ip": self.rate_limits.per_client_ip.map(|l| json!({
                "requests": l.requests, "window": duration(l.window),
            })),
        })
    }

    fn server_dump(&self) -> Value {
        json!({
            "threads": self.server.threads,
            "work_stealing": self.server.work_stealing,
            "drain_seconds": self.server.drain_seconds,
            "grace_period_seconds": self.server.grace_period_seconds,
            "graceful_shutdown_timeout_seconds": self.server.graceful_shutdown_timeout_seconds,
            "upstream_keepalive_pool_size": self.server.upstream_keepalive_pool_size,
            "ca_file": self.server.ca_file,
            "pid_file": self.server.pid_file,
            "upgrade_sock": self.server.upgrade_sock,
        })
    }

    /// The effective configuration as JSON (see the module doc).
    pub fn dump(&self) -> Value {
        json!({
            "listen": self.listen.iter().map(|listener| json!({
                "address": listener.address.to_string(),
                "tls": listener.tls.as_ref().map(|tls| json!({
                    "cert_file": tls.cert_file,
                    "key_file": tls.key_file,
                    "subject": tls.certificate.subject,
                    "client_certificates_required": tls.client_verifier.is_some(),
                })),
            })).collect::<Vec<_>>(),
            "admin": {
                "listen": self.admin.listen.to_string(),
                "readiness_probe": self.admin.readiness_probe.as_ref().map(|probe| json!({
                    "upstream": probe.upstream,
                    "path": probe.path,
                    "timeout": duration(probe.timeout),
                })),
            },
            "upstreams": self.upstreams.iter().map(|u| json!({
                "name": u.name,
                "address": u.address.to_string(),
                "tls": u.tls,
                "sni": u.sni,
                "verify_cert": u.verify_cert,
                "protocol": format!("{:?}", u.protocol).to_lowercase(),
                "connect_timeout": duration(u.connect_timeout),
                "read_timeout": duration(u.read_timeout),
                "write_timeout": duration(u.write_timeout),
                "idle_timeout": duration(u.idle_timeout),
            })).collect::<Vec<_>>(),
            // Under the key the file used: `stream` for the one-app form.
            self.apps_key(): self.apps_dump(),
            "tokens": {
                "default_validity_seconds": self.tokens.default_validity_seconds,
                "max_validity_seconds": self.tokens.max_validity_seconds,
                "max_body_bytes": self.tokens.max_body_bytes,
                "iat_leeway_seconds": self.tokens.iat_leeway_seconds,
                "anyone_roles": self.tokens.anyone_roles,
                "allowed_call_types": self.tokens.allowed_call_types,
            },
            "routes": self.routes.routes().iter().map(route).collect::<Vec<_>>(),
            "trusted_cidrs": self.trusted_cidrs.cidrs(),
            "rate_limits": self.rate_limits_dump(),
            "http": {
                "normalize_path": self.http.normalize_path,
                "merge_slashes": self.http.merge_slashes,
                "path_with_escaped_slashes_action": self.http.path_with_escaped_slashes_action,
                "headers_with_underscores_action": self.http.headers_with_underscores_action,
                "max_request_headers_kb": self.http.max_request_headers_bytes / 1024,
                "request_headers_timeout": duration(self.http.request_headers_timeout),
                "max_downstream_connections": self.http.max_downstream_connections,
            },
            "access_log": {
                "format": self.access_log.format,
                "include_query": self.access_log.include_query,
            },
            "tracing": {
                "otlp": self.tracing.otlp.as_ref().map(|otlp| json!({
                    "endpoint": otlp.endpoint.to_string(),
                    "timeout": duration(otlp.timeout),
                    "max_queue_size": otlp.max_queue_size,
                })),
                "sampling_ratio": self.tracing.sampling_ratio,
                "service_name": self.tracing.service_name,
            },
            "server": self.server_dump(),
        })
    }

    /// The start-up summary: what listens, where requests go, and how each
    /// token route identifies its caller, one line each.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for listener in &self.listen {
            let scheme = if listener.tls.is_some() {
                "https"
            } else {
                "http"
            };
            lines.push(format!("listener {scheme}://{}", listener.address));
        }
        lines.push(format!(
            "admin http://{} (/healthz, /readyz, /metrics, /config_dump, /openapi.json)",
            self.admin.listen
        ));
        for upstream in &self.upstreams {
            let tls = if upstream.tls { ", tls" } else { "" };
            lines.push(format!(
                "upstream {} {} ({}{tls})",
                upstream.name,
                upstream.address,
                format!("{:?}", upstream.protocol).to_lowercase()
            ));
        }
        for app in &self.apps {
            lines.push(format!(
                "{} api_key {}, api_secret {}",
                app.key,
                app.credentials.api_key,
                match &app.credentials.api_secret {
                    SecretSource::Inline(_) => "inline (redacted)".to_string(),
                    SecretSource::File(path) => format!("from {}", path.display()),
                }
            ));
        }
        if let Some(redis) = &self.rate_limits.redis {
            lines.push(format!(
                "rate limits shared through {} (key prefix {:?}, timeout {}, on_error {})",
                redis.url,
                redis.key_prefix,
                humantime::format_duration(redis.timeout),
                redis.on_error.as_str()
            ));
        }
        for route in self.routes.routes() {
            let action = match &route.action {
                RouteAction::Mint(settings) => {
                    let identity = settings.identity.describe();
                    let mode = identity["mode"].as_str().unwrap_or_default().to_string();
                    let keys = identity["jwt"]["keys"].clone();
                    let keys = match keys {
                        Value::Null => String::new(),
                        Value::String(text) => format!(", keys from {text}"),
                        other => format!(", keys from {other}"),
                    };
                    let kind = match settings.kind {
                        MintKind::UserToken => "user tokens",
                        MintKind::CallToken => "call tokens",
                    };
                    let app = match self.apps.as_slice() {
                        [_] => String::new(),
                        _ => format!(" for app {}", settings.app),
                    };
                    format!("mints {kind}{app}, identity {mode}{keys}")
                }
                RouteAction::Proxy(upstream) => format!("proxied to {upstream}"),
                RouteAction::Respond(response) => format!("answered {}", response.status),
            };
            lines.push(format!("route {} → {action}", route.describe()));
        }
        lines.push(match &self.tracing.otlp {
            Some(otlp) => format!(
                "tracing: W3C trace context propagated; spans sent to {} (sampling ratio {})",
                otlp.endpoint, self.tracing.sampling_ratio
            ),
            None => "tracing: W3C trace context propagated; no spans sent (tracing.otlp not set)"
                .to_string(),
        });
        lines
    }
}
