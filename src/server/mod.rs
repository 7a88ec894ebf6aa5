//! Process lifecycle: assembling the Pingora server from the configuration,
//! and the signals a pod and an operator send it.
//!
//! Kubernetes sends SIGTERM and, at the same moment, starts removing the pod
//! from the Service's endpoints; that removal takes a few seconds to reach every
//! node. Pingora on its own stops accepting at SIGTERM, so connections still
//! routed to the pod in those seconds would be refused. streamgate therefore
//! first *drains*: `/readyz` turns 503 at once while everything keeps serving
//! for `server.drain_seconds`; only then is Pingora told to shut down, which
//! stops accepting, lets in-flight requests finish for `grace_period_seconds`
//! and gives the runtimes `graceful_shutdown_timeout_seconds` to exit.
//!
//! SIGQUIT is Pingora's graceful upgrade: the listening sockets go to a new
//! streamgate started with `--upgrade`, so a new binary or configuration takes
//! over without a refused connection (see README, "Reloading").
//!
//! Before any of it, every listening address is bound ([`listeners`]), so
//! that a busy port ends the process at once instead of leaving it half up.
//! The proxy listener's connections then pass through [`downstream`]
//! (connection slots, request-head limits of the `http:` section) on their
//! way to Pingora's proxy; on a TLS listener, after the handshake, with the
//! certificate its files hold now ([`tls`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::proxy::{http_proxy, HttpProxy};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::RunArgs;
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use sha2::{Digest, Sha256};

mod downstream;
mod head;
mod listeners;
mod signals;
mod tls;

use crate::admin::{AdminService, Health};
use crate::config::{
    Config, HttpSettings, ReadinessProbe, SecretSource, ServerSettings, StreamApp,
};
use crate::fetch::KeySetFetchers;
use crate::identity::JwksKeys;
use crate::proxy::Gateway;
use crate::reload::{self, Applied, Reload, WatchedFile};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::Tracing;
use crate::token::SignerSlot;
use crate::upstream::{Upstream, Upstreams};
use downstream::Downstream;
use listeners::{exit_cannot_listen, Bound, OnBoundSockets, Role};
use signals::{DrainingSignals, SettleBeforeCleanup, SETTLE};

/// No read buffer in front of client sockets: Pingora's default gives every
/// accepted connection 64 KiB up front, meant for TLS records, which a
/// plaintext listener does not need (request heads and bodies are read into
/// buffers of their own). It was most of what an idle or slow client cost.
const L4_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(0),
    write: None,
};

/// The readiness probe's settings and the upstream it asks, when configured.
fn readiness_probe(
    config: &Config,
    upstreams: &Upstreams,
) -> Option<(ReadinessProbe, Arc<Upstream>)> {
    config
        .admin
        .readiness_probe
        .clone()
        .map(|probe| {
            upstreams
                .get(&probe.upstream)
                .map(|upstream| (probe, upstream))
        })
        .transpose()
        .unwrap_or_else(|e| fail_to_start(&e))
}

/// Builds the Pingora server for `config` and runs it until a signal stops it.
/// With `upgrade`, the listening sockets are taken over from a running
/// streamgate (which must then be sent SIGQUIT) instead of bound anew.
pub fn run(mut config: Config, upgrade: bool) -> ! {
    let settings = config.server.clone();
    let (proxy_sockets, admin_socket) = bind_listeners(&config, upgrade);
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&settings));
    server.bootstrap();

    let metrics = Arc::new(Metrics::new());
    let mut watched_files = std::mem::take(&mut config.watched_files);
    let signers = app_signers(&config.apps, &metrics, &mut watched_files);
    let tls = tls::settings(&config.listen, &metrics, &mut watched_files)
        .unwrap_or_else(|e| fail_to_start(&e));
    // Kept alive for the life of the process: dropping it stops the watch.
    let _file_watch = reload::watch(watched_files);

    let (dump, openapi) = (Arc::new(config.dump()), Arc::new(config.openapi()));
    let summary = config.summary();
    let key_sets = key_set_fetchers(&mut server, &config, &metrics);

    let health = Arc::new(Health::default());
    let connector = || {
        Connector::new(Some(ConnectorOptions::from_server_conf(
            &server.configuration,
        )))
    };
    let upstreams = Upstreams::new(&config.upstreams, &metrics);
    let probe = readiness_probe(&config, &upstreams);
    let mut admin = Service::new(
        "streamgate admin".to_string(),
        AdminService {
            health: Arc::clone(&health),
            signers: signers.clone(),
            metrics: Arc::clone(&metrics),
            probe,
            connector: connector(),
            key_sets,
            config_dump: dump,
            openapi,
        },
    );
    admin.add_tcp(&admin_socket.key());

    let listen: Vec<String> = proxy_sockets.iter().map(Bound::key).collect();
    let admin_listen = config.admin.listen;
    let (http, access_log) = (config.http, config.access_log.format);
    let tracing = Tracing::new(&config.tracing, &metrics).unwrap_or_else(|e| fail_to_start(&e));
    let tracing = Arc::new(tracing);
    let gateway = Gateway::new(
        config,
        &upstreams,
        &signers,
        Arc::clone(&metrics),
        connector(),
        Arc::clone(&tracing),
    );
    let gateway = gateway.unwrap_or_else(|e| fail_to_start(&e));
    let proxy = proxy_app(&server.configuration, gateway, &http);
    let downstream = Downstream::new(proxy, &http, &metrics, access_log);
    let proxy = server.add_service(proxy_service(downstream, proxy_sockets, tls));
    let admin = server.add_service(OnBoundSockets::new(admin, vec![admin_socket]));
    // Probes are answered only once the proxy port listens.
    admin.add_dependency(&proxy);
    write_pid_file(&settings.pid_file);
    log::info!(
        "streamgate listening on {}; admin on {admin_listen}",
        listen.join(", ")
    );
    log::info!("configuration in effect:\n  {}", summary.join("\n  "));
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingSignals {
            health,
            drain: Duration::from_secs(settings.drain_seconds),
        }),
    });
    remove_own_pid_file(&settings.pid_file);
    tracing.shutdown();
    log::info!("streamgate stopped");
    std::process::exit(0)
}

/// Fetches the identity providers' key sets in the background; the sets, for
/// readiness.
fn key_set_fetchers(server: &mut Server, config: &Config, metrics: &Metrics) -> Vec<Arc<JwksKeys>> {
    if let Some(fetchers) = KeySetFetchers::new(config.key_sets.clone(), metrics) {
        server.add_service(background_service("jwks fetch", fetchers));
    }
    config.key_sets.clone()
}

/// Written once every listener is bound, so that a process that fails to
/// start leaves the running one's pid file alone.
fn write_pid_file(path: &str) {
    if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
        log::warn!("cannot write pid file {path}: {e}");
    }
}

/// Removes the pid file at a normal exit, only while it still names this
/// process: after a `-u` upgrade the new process has written its own pid
/// there, and the old one, exiting after the hand-over, must leave it.
fn remove_own_pid_file(path: &str) {
    let ours = std::fs::read_to_string(path)
        .is_ok_and(|content| content.trim() == std::process::id().to_string());
    if ours {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("cannot remove pid file {path}: {e}");
        }
    }
}

/// Every listening address, bound before anything else starts; the process
/// ends naming the first that cannot be (see [`listeners`]).
fn bind_listeners(config: &Config, upgrade: bool) -> (Vec<Bound>, Bound) {
    let bind = |address, role| {
        Bound::bind(address, role, upgrade).unwrap_or_else(|e| exit_cannot_listen(&e))
    };
    let proxy = config
        .listen
        .iter()
        .map(|listener| bind(listener.address, Role::Proxy))
        .collect();
    (proxy, bind(config.admin.listen, Role::Admin))
}

/// The proxy listener's service on `sockets`, each with its TLS settings
/// (`tls`, in the same order) when it is a TLS listener.
fn proxy_service(
    downstream: Downstream<HttpProxy<Gateway>>,
    sockets: Vec<Bound>,
    tls: Vec<Option<TlsSettings>>,
) -> OnBoundSockets<SettleBeforeCleanup<Downstream<HttpProxy<Gateway>>>> {
    let mut proxy = Service::new(
        "streamgate".to_string(),
        SettleBeforeCleanup {
            inner: Arc::new(downstream),
            settle: SETTLE,
        },
    );
    for (bound, tls) in sockets.iter().zip(tls) {
        let listener = ListenerConfig::tcp(bound.key());
        proxy.add_listener(match tls {
            None => listener.l4_buffer(L4_BUFFERS),
            Some(tls) => listener.tls(tls),
        });
    }
    OnBoundSockets::new(proxy, sockets)
}

/// Pingora's HTTP proxy around `gateway`, speaking HTTP/1.1 and HTTP/2.
fn proxy_app(conf: &Arc<ServerConf>, gateway: Gateway, http: &HttpSettings) -> HttpProxy<Gateway> {
    let mut proxy = http_proxy(conf, gateway);
    proxy.server_options = Some(server_options());
    proxy.h2_options = Some(h2_options(http));
    proxy
}

/// Pingora's HTTP server options: HTTP/2 with prior knowledge beside
/// HTTP/1.1 on plaintext listeners (`downstream` finds the preface), and an
/// end to idle HTTP/2 connections, which otherwise hold a slot forever.
fn server_options() -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.h2_idle_timeout = Some(downstream::KEEPALIVE_IDLE);
    options
}

/// HTTP/2 settings advertised to clients: Pingora's bounded defaults (100
/// concurrent streams), with the request header list capped like an
/// HTTP/1 head (`http.max_request_headers_kb`).
fn h2_options(http: &HttpSettings) -> H2Options {
    let mut options = default_h2_options();
    options.max_header_list_size(u32::try_from(http.max_request_headers_bytes).unwrap_or(u32::MAX));
    options
}

/// A fault of ours found while assembling the server: said, and exit 2 as
/// for a configuration that cannot be used.
fn fail_to_start(error: &dyn std::fmt::Display) -> ! {
    log::error!("cannot start: {error}");
    std::process::exit(2)
}

/// Pingora's server settings from the `server:` section.
fn server_conf(settings: &ServerSettings) -> ServerConf {
    ServerConf {
        threads: settings.threads,
        work_stealing: settings.work_stealing.unwrap_or(settings.threads > 1),
        grace_period_seconds: Some(settings.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(settings.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: settings.upstream_keepalive_pool_size,
        ca_file: settings.ca_file.clone(),
        pid_file: settings.pid_file.clone(),
        upgrade_sock: settings.upgrade_sock.clone(),
        // Pingora counts attempts here (`while retries < max_retries`): two is
        // one retry, which `proxy/errors.rs` allows only where it is safe. Not
        // Pingora's 16: a sidecar's app is on loopback, and a client must get
        // its 502 promptly.
        max_retries: 2,
        ..ServerConf::default()
    }
}

/// A signer for each Stream app: each signs on its own, and a secret file
/// is followed on its own (added to `watched_files`).
fn app_signers(
    apps: &[StreamApp],
    metrics: &Arc<Metrics>,
    watched_files: &mut Vec<Arc<WatchedFile>>,
) -> Vec<(StreamApp, Arc<SignerSlot>)> {
    let signers: Vec<(StreamApp, Arc<SignerSlot>)> = apps
        .iter()
        .map(|app| (app.clone(), Arc::new(SignerSlot::default())))
        .collect();
    for (app, signer) in &signers {
        watched_files.extend(api_secret(app, signer, metrics).map(Arc::new));
    }
    signers
}

/// A Stream app's API secret: an inline one signs from now on; a file is
/// returned, to be followed.
fn api_secret(
    app: &StreamApp,
    signer: &Arc<SignerSlot>,
    metrics: &Arc<Metrics>,
) -> Option<WatchedFile> {
    match &app.credentials.api_secret {
        SecretSource::Inline(secret) => {
            signer.replace(secret.as_bytes());
            metrics.secret_loaded.with_label_values(&[&app.name]).set(1);
            None
        }
        SecretSource::File(path) => Some(api_secret_file(app, path, signer, metrics)),
    }
}

/// The Stream API secret file, followed: a good new secret replaces the
/// signer in one swap; the metrics say whether one is loaded and count reloads.
fn api_secret_file(
    app: &StreamApp,
    path: &std::path::Path,
    signer: &Arc<SignerSlot>,
    metrics: &Arc<Metrics>,
) -> WatchedFile {
    let slot = Arc::clone(signer);
    // The secret, not the file's bytes: a rewrite that only adds a newline is
    // not a rotation.
    let in_use = Mutex::new(None::<[u8; 32]>);
    let apply = Box::new(move |content: &[u8]| {
        let secret = reload::secret_from_file_content(content)?;
        let fingerprint: [u8; 32] = Sha256::digest(secret).into();
        let mut in_use = in_use.lock().map_err(|_| "an earlier reload panicked")?;
        if *in_use == Some(fingerprint) {
            return Ok(Applied::Same);
        }
        slot.replace(secret);
        *in_use = Some(fingerprint);
        Ok(Applied::Changed)
    });
    let (reloads, failures, loaded) = (
        metrics.secret_reloads.with_label_values(&[&app.name]),
        metrics
            .secret_reload_failures
            .with_label_values(&[&app.name]),
        metrics.secret_loaded.with_label_values(&[&app.name]),
    );
    // Shown before at zero, so that an app whose file is missing is visible.
    loaded.set(0);
    let what = match app.key.as_str() {
        "stream" => "Stream API secret".to_string(),
        key => format!("Stream API secret of {key}"),
    };
    WatchedFile::new(path, what, apply)
        .while_unloaded("its token routes answer 503 until it holds a secret")
        .observe(move |outcome| match outcome {
            Reload::Loaded => {
                reloads.inc();
                loaded.set(1);
            }
            Reload::Failed(_) => failures.inc(),
            Reload::Unchanged => {}
        })
}
