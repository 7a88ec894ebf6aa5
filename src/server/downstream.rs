//! The proxy listener's client connections before Pingora parses a request:
//! how many are served at once, and what each may send as a request head.
//!
//! Pingora serves every connection it accepts, each with its own buffers, and
//! reads request heads with limits meant for an edge proxy (see
//! [`head`](super::head)); 48 clients stuck midway through a large header took
//! a pod past its 64 MiB. So the proxy listener's `ServerApp` is this wrapper
//! around Pingora's HTTP proxy: a connection first takes one of
//! `http.max_downstream_connections` slots (waiting for one, as in a listen
//! queue, when all are busy), then each of its request heads is read here
//! within `http.max_request_headers_bytes` and `http.request_headers_timeout`
//! and handed to Pingora already read. A head too large or too slow is
//! answered here (431, 414, 408), counted and logged, and the connection
//! closed; Pingora never sees it.
//!
//! The loop over keep-alive requests is Pingora's own (`apps::ServerApp for
//! HttpServerApp`), with the head read first. With pipelining on (RFC 9112
//! §9.3.2, see `proxy::framing`), Pingora may have read the start of the next
//! request past the end of a body: those bytes are taken back and that head
//! is read here like any other, within the same limits.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{l4, Stream, ALPN};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::head::{read_head, Head, HeadLimits, Refusal, Start};
use crate::config::HttpSettings;
use crate::net::request_id;
use crate::respond::Answer;
use crate::telemetry::access_log::{AccessLogFormat, AccessRecord};
use crate::telemetry::metrics::Metrics;

/// How long a keep-alive connection may stay idle between requests. Pingora's
/// own wait is unbounded once a connection has served an HTTP/1.1 request; an
/// idle connection holds a slot, so it must end. 60 s is Pingora's keep-alive
/// for a connection's first request.
pub(super) const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// After a refusal, how long the client's remaining bytes are read and
/// dropped before the connection closes (nginx's lingering close): closing
/// with unread bytes sends a reset, which can destroy the answer before the
/// client reads it.
const LINGER: Duration = Duration::from_secs(2);

/// Pingora's proxy `A`, behind the connection slots and the head limits.
pub(super) struct Downstream<A> {
    app: Arc<A>,
    limits: HeadLimits,
    slots: Arc<Semaphore>,
    /// Places for connections waiting for a slot: as many as there are
    /// slots, so that what waiting connections hold is bounded too.
    queue: Arc<Semaphore>,
    /// Set when the service stops: waiting and idle connections are dropped,
    /// as Pingora drops connections waiting for a request at that point.
    closing: watch::Sender<bool>,
    metrics: ConnectionMetrics,
    access_log: AccessLogFormat,
}

struct ConnectionMetrics {
    open: IntGauge,
    waiting: IntGauge,
    queued: IntCounter,
    refused: IntCounter,
    too_large: IntCounter,
    uri_too_long: IntCounter,
    timed_out: IntCounter,
}

impl<A> Downstream<A> {
    pub(super) fn new(
        app: A,
        http: &HttpSettings,
        metrics: &Metrics,
        access_log: AccessLogFormat,
    ) -> Self {
        let refused = |reason: &str| metrics.request_heads_refused.with_label_values(&[reason]);
        Downstream {
            app: Arc::new(app),
            limits: HeadLimits {
                max_bytes: http.max_request_headers_bytes,
                timeout: http.request_headers_timeout,
            },
            slots: Arc::new(Semaphore::new(http.max_downstream_connections)),
            queue: Arc::new(Semaphore::new(http.max_downstream_connections)),
            closing: watch::Sender::new(false),
            metrics: ConnectionMetrics {
                open: metrics.downstream_connections.clone(),
                waiting: metrics.downstream_connections_waiting.clone(),
                queued: metrics.downstream_connections_queued.clone(),
                refused: metrics.downstream_connections_refused.clone(),
                too_large: refused("too_large"),
                uri_too_long: refused("uri_too_long"),
                timed_out: refused("timeout"),
            },
            access_log,
        }
    }
}

/// A connection slot, held while a connection is served.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _open: Counted,
}

/// One unit of a gauge, for as long as it lives.
struct Counted(IntGauge);

impl Counted {
    fn new(gauge: &IntGauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Downstream<A> {
    /// A slot for a new connection: at once, or after waiting for one;
    /// `None` when the queue is full too, or the service stops meanwhile.
    async fn admit(&self) -> Option<Slot> {
        let slot = |permit| Slot {
            _permit: permit,
            _open: Counted::new(&self.metrics.open),
        };
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(slot(permit));
        }
        let Ok(_place) = Arc::clone(&self.queue).try_acquire_owned() else {
            self.metrics.refused.inc();
            return None;
        };
        self.metrics.queued.inc();
        let _waiting = Counted::new(&self.metrics.waiting);
        let mut closing = self.closing.subscribe();
        tokio::select! {
            permit = Arc::clone(&self.slots).acquire_owned() => permit.ok().map(slot),
            _ = closing.wait_for(|closing| *closing) => None,
        }
    }

    /// Serves one connection: HTTP/2 as Pingora does, HTTP/1.x here.
    async fn serve(&self, stream: Stream, shutdown: &ShutdownWatch) {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // Negotiated by TLS: the HTTP/2 preface follows.
            self.serve_h2(stream, shutdown).await;
        } else {
            self.serve_h1(stream, shutdown).await;
        }
    }

    /// HTTP/2 is Pingora's own: its frames, not a head read here, carry each
    /// request. Header size is capped by the same limit through SETTINGS
    /// (`SETTINGS_MAX_HEADER_LIST_SIZE`, see `server::h2_options`); an idle
    /// connection ends after `h2_idle_timeout`.
    async fn serve_h2(&self, stream: Stream, shutdown: &ShutdownWatch) {
        ServerApp::process_new(&self.app, stream, shutdown).await;
    }

    /// Serves the HTTP/1.x requests of one connection, one head at a time.
    /// A plaintext connection whose first head is the HTTP/2 preface (RFC
    /// 9113 §3.3, prior knowledge, as gRPC clients send it) goes to HTTP/2.
    async fn serve_h1(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        let mut start = Start::WithinHeadTimeout;
        let mut first = true;
        let mut reuses_remaining = self
            .app
            .server_options()
            .and_then(|options| options.keepalive_request_limit);
        loop {
            let started = Instant::now();
            let mut closing = self.closing.subscribe();
            let head = tokio::select! {
                head = read_head(&mut stream, self.limits, start) => head,
                _ = closing.wait_for(|closing| *closing) => return,
            };
            let head = match head {
                Head::Complete(head) => head,
                Head::Silent | Head::Broken => return,
                Head::Refused(refusal) => return self.refuse(stream, refusal, started).await,
            };
            if std::mem::take(&mut first) && head.starts_with(H2_PREFACE_HEAD) {
                let preface = self.complete_preface(&mut stream, head).await;
                if let Some(stream) = preface.and_then(|bytes| unread(stream, &bytes)) {
                    self.serve_h2(stream, shutdown).await;
                }
                return;
            }
            let mut session = ServerSession::new_http1(stream);
            session.set_pipelined_prefix(BytesMut::from(Bytes::from(head)));
            // What Pingora sets on a connection's sessions, kept here rather
            // than in its carried-over settings, which would hand Pingora the
            // pipelined bytes to read the rest of that head itself.
            session.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE_IDLE.as_secs()));
            session.set_keepalive_reuses_remaining(reuses_remaining);
            let Some((next, settings)) = self
                .app
                .process_new_http(session, shutdown)
                .await
                .map(ReusedHttpStream::consume)
            else {
                return;
            };
            stream = next;
            reuses_remaining = reuses_remaining.map(|n| n.saturating_sub(1));
            start = match settings.as_ref().map(pipelined_prefix) {
                None | Some(Prefix::None) => Start::Idle(KEEPALIVE_IDLE),
                Some(Prefix::Bytes(bytes)) => Start::Begun(bytes),
                Some(Prefix::Unreadable) => return,
            };
        }
    }

    /// `bytes` with the rest of the HTTP/2 connection preface (RFC 9113
    /// §3.4), read within the header timeout; `None` if it does not come or
    /// is not the preface. Pingora's HTTP/2 handshake waits for it without a
    /// limit, so a client stopping midway would hold its slot for good.
    async fn complete_preface(&self, stream: &mut Stream, mut bytes: Vec<u8>) -> Option<Vec<u8>> {
        let read_rest = async {
            while bytes.len() < H2_PREFACE.len() {
                if stream.read_buf(&mut bytes).await.ok()? == 0 {
                    return None;
                }
            }
            Some(())
        };
        tokio::time::timeout(self.limits.timeout, read_rest)
            .await
            .ok()??;
        bytes.starts_with(H2_PREFACE).then_some(bytes)
    }

    /// Answers a head that was refused, counts and logs it, and closes.
    async fn refuse(&self, mut stream: Stream, refusal: Refusal, started: Instant) {
        let limit = self.limits.max_bytes;
        let (answer, route, counter) = match refusal {
            Refusal::UriTooLong => (
                Answer::error(
                    414,
                    &format!("URI too long: the request line exceeds {limit} bytes"),
                ),
                "request_uri_too_long",
                &self.metrics.uri_too_long,
            ),
            Refusal::TimedOut => (
                Answer::error(
                    408,
                    &format!(
                        "Request timeout: the request line and headers did not arrive within {}",
                        humantime::format_duration(self.limits.timeout)
                    ),
                ),
                "request_head_timeout",
                &self.metrics.timed_out,
            ),
            Refusal::TooLarge => (
                Answer::error(
                    431,
                    &format!(
                        "Request header fields too large: the request line and headers exceed {limit} bytes"
                    ),
                ),
                "request_head_too_large",
                &self.metrics.too_large,
            ),
        };
        counter.inc();
        let request_id = request_id::accept_or_generate(None);
        let bytes = answer.to_http1_closing(&request_id);
        let sent = tokio::time::timeout(LINGER, async {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
            stream.shutdown().await
        })
        .await;
        self.log_refusal(&stream, &request_id, &answer, route, started);
        if matches!(sent, Ok(Ok(()))) {
            let _ =
                tokio::time::timeout(LINGER, tokio::io::copy(&mut stream, &mut tokio::io::sink()))
                    .await;
        }
    }

    /// The access-log line of a refused head: no method or path, since the
    /// request line may be what was refused (and is not parsed here).
    fn log_refusal(
        &self,
        stream: &Stream,
        request_id: &http::HeaderValue,
        answer: &Answer,
        route: &str,
        started: Instant,
    ) {
        if self.access_log == AccessLogFormat::Off {
            return;
        }
        let client_ip = stream
            .get_socket_digest()
            .and_then(|digest| digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        AccessRecord {
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            request_id: request_id.to_str().unwrap_or("-"),
            trace_id: None,
            client_ip: client_ip.map(|ip| ip.to_string()),
            method: "-",
            path: "-",
            protocol: "-",
            query: None,
            status: answer.status(),
            bytes: answer.body_len(),
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            route,
            upstream: None,
            user_id: None,
            reason: None,
            grpc_status: None,
        }
        .emit(self.access_log);
    }
}

/// The HTTP/2 connection preface as an HTTP/1 head reads it: its request
/// line and the empty line after (`SM\r\n\r\n` follows).
const H2_PREFACE_HEAD: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";

/// The whole HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `stream` with `bytes` put back in front of what it reads next, for a
/// protocol found by reading them; `None` for a stream that cannot (only
/// plaintext TCP streams can, and only they carry HTTP/2 without ALPN).
fn unread(stream: Stream, bytes: &[u8]) -> Option<Stream> {
    let mut tcp = stream.into_any().downcast::<l4::stream::Stream>().ok()?;
    tcp.rewind(bytes);
    Some(tcp)
}

/// What Pingora read of the connection's next request past the end of the
/// last one's body (RFC 9112 §9.3.2 pipelining).
#[derive(Debug, PartialEq, Eq)]
enum Prefix {
    None,
    Bytes(Vec<u8>),
    /// Bytes whose form this build cannot read: the connection must close
    /// rather than lose them.
    Unreadable,
}

/// The pipelined bytes Pingora carries in `settings`. Pingora 0.9 has no
/// accessor for them, and handing the settings back would let Pingora read
/// the rest of that head itself, past `http.max_request_headers_bytes` and
/// `http.request_headers_timeout`. Their `Debug` form is the one view: the
/// `bytes` crate prints a byte string with Rust's byte escapes, which
/// [`unescape_byte_string`] reverses (the unit tests pin both formats).
///
/// This runs after every keep-alive request, so the form is read as it is
/// written ([`PrefixField`]): nothing is allocated for the common case of no
/// pipelined bytes, and formatting stops at that field.
fn pipelined_prefix(settings: &HttpPersistentSettings) -> Prefix {
    let mut field = PrefixField::default();
    // The error is the writer stopping the formatting early, once it has what it needs.
    let _ = fmt::write(&mut field, format_args!("{settings:?}"));
    match field {
        PrefixField::Absent | PrefixField::Named => Prefix::Unreadable,
        PrefixField::None => Prefix::None,
        PrefixField::Some(literal) => literal
            .strip_prefix("Some(b\"")
            .and_then(unescape_byte_string)
            .map_or(Prefix::Unreadable, Prefix::Bytes),
    }
}

/// The `pipelined_prefix` field of a `Debug` form, taken from the pieces the
/// formatter writes: `debug_struct` writes each field name as one piece.
#[derive(Default)]
enum PrefixField {
    /// The field's name has not been written yet.
    #[default]
    Absent,
    /// The name was written; its value comes next.
    Named,
    /// The value is `None`.
    None,
    /// The value's text (`Some(b"…")…`), up to the end of the form.
    Some(String),
}

impl fmt::Write for PrefixField {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        match self {
            PrefixField::Absent if piece == "pipelined_prefix" => *self = PrefixField::Named,
            PrefixField::Absent => {}
            PrefixField::Named if piece.trim_start_matches([':', ' ']).is_empty() => {}
            PrefixField::Named if piece == "None" => {
                *self = PrefixField::None;
                return Err(fmt::Error);
            }
            PrefixField::Named => *self = PrefixField::Some(piece.to_owned()),
            PrefixField::Some(text) => text.push_str(piece),
            PrefixField::None => return Err(fmt::Error),
        }
        Ok(())
    }
}

/// The bytes of a Rust byte-string literal's body (`\n \r \t \0 \\ \" \xNN`
/// escapes), up to its closing quote; `None` if it is not one.
fn unescape_byte_string(literal: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(literal.len());
    let mut rest = literal.as_bytes().iter();
    loop {
        let byte = match *rest.next()? {
            b'"' => return Some(bytes),
            b'\\' => match *rest.next()? {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'0' => 0,
                escaped @ (b'\\' | b'"') => escaped,
                b'x' => {
                    let digits = [*rest.next()?, *rest.next()?];
                    u8::from_str_radix(std::str::from_utf8(&digits).ok()?, 16).ok()?
                }
                _ => return None,
            },
            byte => byte,
        };
        bytes.push(byte);
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Downstream<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _slot = self.admit().await?;
        self.serve(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.closing.send_replace(true);
        self.app.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::protocols::http::ServerSession;

    fn settings_carrying(prefix: Option<&[u8]>) -> HttpPersistentSettings {
        let (stream, _client) = tokio::io::duplex(64);
        let session = ServerSession::new_http1(Box::new(stream));
        let mut settings = HttpPersistentSettings::for_session(&session);
        if let Some(prefix) = prefix {
            settings.set_pipelined_prefix(BytesMut::from(prefix));
        }
        settings
    }

    #[test]
    fn pipelined_bytes_are_read_back_exactly() {
        let every_byte: Vec<u8> = (0..=255).chain(b"\"\\x\"".iter().copied()).collect();
        assert_eq!(
            pipelined_prefix(&settings_carrying(Some(&every_byte))),
            Prefix::Bytes(every_byte)
        );
        let head = b"GET /next HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(
            pipelined_prefix(&settings_carrying(Some(head))),
            Prefix::Bytes(head.to_vec())
        );
        assert_eq!(pipelined_prefix(&settings_carrying(None)), Prefix::None);
    }

    #[test]
    fn a_literal_that_is_not_one_is_refused() {
        assert_eq!(unescape_byte_string("abc"), None);
        assert_eq!(unescape_byte_string("a\\q\""), None);
        assert_eq!(unescape_byte_string("\\x4\""), None);
        assert_eq!(unescape_byte_string("\\x41\"rest"), Some(b"A".to_vec()));
    }
}
