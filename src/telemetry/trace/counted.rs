//! What becomes of the spans streamgate ends, in its own metrics: the SDK's
//! batch processor drops a span when its queue is full and counts that only
//! in a private field, so a collector too slow for the traffic would lose
//! spans unseen. Counting the spans handed to the processor and those the
//! exporter sent makes the loss visible: ended − exported − queued.

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;

/// A span processor that counts the sampled spans it passes on.
#[derive(Debug)]
pub(super) struct CountedProcessor<P> {
    pub inner: P,
    pub ended: IntCounter,
}

impl<P: SpanProcessor> SpanProcessor for CountedProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // The batch processor queues only sampled spans.
        if span.span_context.is_sampled() {
            self.ended.inc();
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A span exporter that counts the spans of each batch by its result.
#[derive(Debug)]
pub(super) struct CountedExporter<E> {
    pub inner: E,
    pub ok: IntCounter,
    pub error: IntCounter,
}

impl<E: SpanExporter> SpanExporter for CountedExporter<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let spans = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let (ok, error) = (self.ok.clone(), self.error.clone());
        let sent = self.inner.export(batch);
        async move {
            let result = sent.await;
            match result {
                Ok(()) => ok.inc_by(spans),
                Err(_) => error.inc_by(spans),
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
