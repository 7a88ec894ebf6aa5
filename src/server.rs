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

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::prelude::*;
use pingora::protocols::Stream;
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::listening::Service;
use tokio::signal::unix::{signal, SignalKind};

use crate::admin::{AdminService, Health};
use crate::config::{Config, SecretSource};
use crate::metrics::Metrics;
use crate::proxy::{Gateway, UpstreamPeer};
use crate::secret::SecretFile;
use crate::signing::SignerSlot;

/// SIGTERM: readiness off, keep serving for the drain time, then graceful
/// shutdown. SIGQUIT: graceful upgrade. SIGINT: fast shutdown.
struct DrainingSignals {
    health: Arc<Health>,
    drain: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = interrupt.recv() => ShutdownSignal::FastShutdown,
            _ = terminate.recv() => {
                self.health.start_shutdown();
                log::info!("SIGTERM: not ready; draining for {}s before refusing connections", self.drain.as_secs());
                tokio::select! {
                    _ = tokio::time::sleep(self.drain) => ShutdownSignal::GracefulTerminate,
                    _ = interrupt.recv() => ShutdownSignal::FastShutdown,
                }
            }
        }
    }
}

/// Pingora drops every connection still waiting for its request header the
/// moment a service stops accepting, meaning to close idle keep-alives. But a
/// connection accepted an instant earlier is in that state too, its request
/// still on the wire: under steady load a few requests per reload were dropped
/// unanswered that way (seen in tests/operations.rs). Waiting a moment before
/// that clean-up lets those requests be read and served first.
struct SettleBeforeCleanup<A> {
    inner: Arc<A>,
    settle: Duration,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for SettleBeforeCleanup<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.settle).await;
        self.inner.cleanup().await;
    }
}

/// How long accepted connections get to deliver their request at shutdown.
const SETTLE: Duration = Duration::from_millis(500);

/// Builds the Pingora server for `config` and runs it until a signal stops it.
/// With `upgrade`, the listening sockets are taken over from a running
/// streamgate (which must then be sent SIGQUIT) instead of bound anew.
pub fn run(config: Config, upgrade: bool) -> ! {
    let settings = config.server.clone();
    let server_conf = ServerConf {
        threads: settings.threads,
        work_stealing: settings.work_stealing.unwrap_or(settings.threads > 1),
        grace_period_seconds: Some(settings.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(settings.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: settings.upstream_keepalive_pool_size,
        ca_file: settings.ca_file.clone(),
        pid_file: settings.pid_file.clone(),
        upgrade_sock: settings.upgrade_sock.clone(),
        // A refused or timed-out connect is retried once, not Pingora's 16 times:
        // a sidecar's app is on loopback, and a client must get its 502 promptly.
        max_retries: 1,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();

    let metrics = Arc::new(Metrics::new());
    let signer = Arc::new(SignerSlot::default());
    // Kept alive for the life of the process: dropping it stops the watch.
    let _secret_watch = match &config.stream.api_secret {
        SecretSource::Inline(secret) => {
            signer.replace(secret.as_bytes());
            metrics.secret_loaded.set(1);
            None
        }
        SecretSource::File(path) => {
            let file = SecretFile::new(path.clone(), Arc::clone(&signer), Arc::clone(&metrics));
            match file.watch() {
                Ok(watcher) => Some(watcher),
                Err(e) => {
                    log::error!(
                        "cannot watch {} for changes ({e}); the secret is read once",
                        path.display()
                    );
                    file.reload();
                    None
                }
            }
        }
    };

    let health = Arc::new(Health::default());
    let probe = config.admin.readiness_probe.clone().map(|probe| {
        let upstream = UpstreamPeer::new(&config.upstreams[probe.upstream]);
        (probe, upstream)
    });
    let mut admin = Service::new(
        "streamgate admin".to_string(),
        AdminService {
            health: Arc::clone(&health),
            signer: Arc::clone(&signer),
            metrics: Arc::clone(&metrics),
            probe,
            connector: Connector::new(Some(ConnectorOptions::from_server_conf(
                &server.configuration,
            ))),
        },
    );
    admin.add_tcp(&config.admin.listen.to_string());

    let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
    let admin_listen = config.admin.listen;
    let connector = Connector::new(Some(ConnectorOptions::from_server_conf(
        &server.configuration,
    )));
    let gateway = Gateway::new(config, signer, metrics, connector);
    let mut proxy = Service::new(
        "streamgate".to_string(),
        SettleBeforeCleanup {
            inner: Arc::new(http_proxy(&server.configuration, gateway)),
            settle: SETTLE,
        },
    );
    for address in &listen {
        proxy.add_tcp(address);
    }
    server.add_service(proxy);
    server.add_service(admin);
    if let Err(e) = std::fs::write(&settings.pid_file, format!("{}\n", std::process::id())) {
        log::warn!("cannot write pid file {}: {e}", settings.pid_file);
    }
    log::info!(
        "streamgate listening on {}; admin on {admin_listen}",
        listen.join(", ")
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingSignals {
            health,
            drain: Duration::from_secs(settings.drain_seconds),
        }),
    });
    log::info!("streamgate stopped");
    std::process::exit(0)
}
