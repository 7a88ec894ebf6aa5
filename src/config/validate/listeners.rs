//! Where streamgate listens and what it connects to: `listen`, `upstreams`,
//! `admin` and `server`. A TLS listener's certificate is read and checked
//! here (through `resolve`), so that `-t` judges it as the server will.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{nonzero, upstream_name};
use crate::config::error::{ConfigError, Errors};
use crate::config::raw::{RawAdmin, RawHttp, RawListen, RawListenerTls, RawUpstream};
use crate::config::resolve;
use crate::config::{
    AdminSettings, HttpSettings, Listener, ListenerTls, ReadinessProbe, ServerSettings,
    UpstreamProtocol, UpstreamSettings,
};

const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9901";

/// `IP:port`, as listeners bind it (no host names: a listener binds an address).
fn listen_address(key: &str, text: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    text.parse::<SocketAddr>().map_err(|_| {
        ConfigError::new(
            key,
            format!("{text:?} is not an IP:port address (e.g. \"{example}\")"),
        )
    })
}

pub(super) fn listen(raw: Vec<RawListen>, errors: &mut Errors) -> Vec<Listener> {
    if raw.is_empty() {
        errors.push(ConfigError::new(
            "listen",
            "at least one address is required",
        ));
    }
    let mut listeners: Vec<Listener> = Vec::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let key = format!("listen[{i}]");
        let listener = match entry {
            RawListen::Plain(address) => errors
                .keep(listen_address(&key, &address, "0.0.0.0:3000"))
                .map(|address| Listener { address, tls: None }),
            RawListen::Listener(raw) => {
                let address =
                    listen_address(&format!("{key}.address"), &raw.address, "0.0.0.0:3443");
                let tls = raw
                    .tls
                    .map(|tls| listener_tls(&format!("{key}.tls"), tls, errors));
                match (errors.keep(address), tls) {
                    (Some(address), None) => Some(Listener { address, tls: None }),
                    (Some(address), Some(Some(tls))) => Some(Listener {
                        address,
                        tls: Some(tls),
                    }),
                    _ => None,
                }
            }
        };
        let Some(listener) = listener else { continue };
        // Two services cannot take one socket: said here, with both keys,
        // rather than as "address in use" at start.
        if let Some(first) = listeners.iter().position(|l| l.address == listener.address) {
            errors.push(ConfigError::new(
                key,
                format!("{} is already listen[{first}]", listener.address),
            ));
        }
        listeners.push(listener);
    }
    listeners
}

/// A TLS listener's files, read; `None` when any is unusable (each problem
/// is recorded, the pair's and the client CA's both).
fn listener_tls(key: &str, raw: RawListenerTls, errors: &mut Errors) -> Option<ListenerTls> {
    let certificate = errors.keep(resolve::certificate_pair(
        key,
        &raw.cert_file,
        &raw.key_file,
    ));
    let client_verifier = match &raw.client_ca_file {
        None => Some(None),
        Some(path) => errors
            .keep(resolve::client_verifier(
                &format!("{key}.client_ca_file"),
                path,
            ))
            .map(Some),
    };
    Some(ListenerTls {
        certificate: std::sync::Arc::new(certificate?),
        client_verifier: client_verifier?,
        cert_file: raw.cert_file,
        key_file: raw.key_file,
    })
}

/// Every upstream, or `None` when any is broken or there is none.
pub(super) fn upstreams(
    raw: BTreeMap<String, RawUpstream>,
    errors: &mut Errors,
) -> Option<Vec<UpstreamSettings>> {
    if raw.is_empty() {
        errors.push(ConfigError::new(
            "upstreams",
            "at least one upstream is required (the application streamgate sits in front of)",
        ));
        return None;
    }
    let count = raw.len();
    let upstreams: Vec<UpstreamSettings> = raw
        .into_iter()
        .filter_map(|(name, raw)| errors.keep(upstream(name, raw)))
        .collect();
    (upstreams.len() == count).then_some(upstreams)
}

fn upstream(name: String, raw: RawUpstream) -> Result<UpstreamSettings, ConfigError> {
    let key = |field: &str| format!("upstreams.{name}.{field}");
    if raw.address.trim().is_empty() {
        return Err(ConfigError::new(key("address"), "must not be empty"));
    }
    match (raw.protocol, raw.tls) {
        (UpstreamProtocol::H2c, true) => {
            return Err(ConfigError::new(
                key("protocol"),
                "h2c is HTTP/2 without TLS; with `tls: true` use `protocol: h2`",
            ))
        }
        (UpstreamProtocol::H2, false) => {
            return Err(ConfigError::new(
                key("protocol"),
                "h2 is HTTP/2 over TLS (negotiated by ALPN) and needs `tls: true`; without TLS use `protocol: h2c`",
            ))
        }
        _ => {}
    }
    let address = resolve::socket_address(&key("address"), &raw.address)?;
    let host = raw
        .address
        .rsplit_once(':')
        .map_or(raw.address.as_str(), |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok(UpstreamSettings {
        sni: raw.sni.unwrap_or_else(|| host.to_string()),
        connect_timeout: nonzero(&key("connect_timeout"), raw.connect_timeout)?,
        read_timeout: nonzero(&key("read_timeout"), raw.read_timeout)?,
        write_timeout: nonzero(&key("write_timeout"), raw.write_timeout)?,
        idle_timeout: nonzero(&key("idle_timeout"), raw.idle_timeout)?,
        name,
        address,
        tls: raw.tls,
        verify_cert: raw.verify_cert,
        protocol: raw.protocol,
    })
}

pub(super) fn admin(
    raw: RawAdmin,
    upstreams: &[UpstreamSettings],
) -> Result<AdminSettings, ConfigError> {
    let text = raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    let listen = listen_address("admin.listen", text, "0.0.0.0:9901")?;
    let readiness_probe = match raw.readiness_probe {
        None => None,
        Some(probe) => {
            let upstream = upstream_name(
                "admin.readiness_probe.upstream",
                probe.upstream.as_deref(),
                upstreams,
            )?;
            if !probe.path.starts_with('/') {
                return Err(ConfigError::new(
                    "admin.readiness_probe.path",
                    "must start with '/'",
                ));
            }
            Some(ReadinessProbe {
                upstream,
                path: probe.path,
                timeout: nonzero("admin.readiness_probe.timeout", probe.timeout)?,
            })
        }
    };
    Ok(AdminSettings {
        listen,
        readiness_probe,
    })
}

pub(super) fn http(raw: RawHttp) -> Result<HttpSettings, ConfigError> {
    if !(1..=1024).contains(&raw.max_request_headers_kb) {
        return Err(ConfigError::new(
            "http.max_request_headers_kb",
            "must be between 1 and 1024",
        ));
    }
    if raw.max_downstream_connections == 0 {
        return Err(ConfigError::new(
            "http.max_downstream_connections",
            "must be at least 1",
        ));
    }
    Ok(HttpSettings {
        normalize_path: raw.normalize_path,
        merge_slashes: raw.merge_slashes,
        path_with_escaped_slashes_action: raw.path_with_escaped_slashes_action,
        headers_with_underscores_action: raw.headers_with_underscores_action,
        max_request_headers_bytes: raw.max_request_headers_kb * 1024,
        request_headers_timeout: nonzero(
            "http.request_headers_timeout",
            raw.request_headers_timeout,
        )?,
        max_downstream_connections: raw.max_downstream_connections,
    })
}

pub(super) fn server(server: ServerSettings) -> Result<ServerSettings, ConfigError> {
    if server.threads == 0 {
        return Err(ConfigError::new("server.threads", "must be at least 1"));
    }
    Ok(server)
}
