//! The signals a pod and an operator send, and the pause that lets requests
//! already accepted be served before Pingora drops idle connections.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::admin::Health;

/// SIGTERM: readiness off, keep serving for the drain time, then graceful
/// shutdown. SIGQUIT: graceful upgrade. SIGINT: fast shutdown.
pub(super) struct DrainingSignals {
    pub health: Arc<Health>,
    pub drain: Duration,
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
pub(super) struct SettleBeforeCleanup<A> {
    pub inner: Arc<A>,
    pub settle: Duration,
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
pub(super) const SETTLE: Duration = Duration::from_millis(500);
