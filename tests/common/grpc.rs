//! gRPC on both sides of streamgate: a real gRPC app (tonic's server-side
//! codec and method handling) and a real gRPC client (tonic's `Grpc` on one
//! HTTP/2 connection, h2c or TLS), for the service `test.Echo`. The messages
//! are written by hand with prost's derive, so there is no `.proto` file, no
//! protoc and no build script; the handlers are what tonic-build would
//! generate, minus the traits.
//!
//! The app is served by hyper's HTTP/2 server (h2c, prior knowledge), not by
//! `tonic::transport::Server`: tonic's server enforces `grpc-timeout` itself,
//! and then a deadline test would pass whether or not streamgate honours the
//! deadline. This app, like many real ones, ignores it: only the proxy can
//! end a `Slow` call early.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use http::uri::PathAndQuery;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use rustls::pki_types::ServerName;
use tonic::body::Body;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use super::tls::ClientOptions;
use tower::{service_fn, Service};

/// The largest message either side accepts. tonic's default is 4 MiB; the
/// large-message test sends 5 MiB each way.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The metadata key of the failure details the app attaches to a `Fail`
/// status (trailers-only) and to the status ending a `ServerStream` (trailers
/// after messages).
pub const DETAIL_KEY: &str = "x-error-detail";

/// What the client sends; which fields a method reads is said on each.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// Echoed by every method that answers.
    #[prost(string, tag = "1")]
    pub message: String,
    /// Echoed by `Unary` (the large-message test).
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    /// `ServerStream`: how many replies to send.
    #[prost(uint32, tag = "3")]
    pub count: u32,
    /// `Fail`: the status code to answer with; `ServerStream`: the code to end
    /// the stream with after its replies (0: end with OK).
    #[prost(int32, tag = "4")]
    pub code: i32,
    /// `Slow`: how long to wait before answering.
    #[prost(uint64, tag = "5")]
    pub delay_ms: u64,
    /// `ClientStream`: summed over the stream.
    #[prost(int64, tag = "6")]
    pub value: i64,
}

/// What the app answers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    /// The reply's position in a stream; for `ClientStream`, how many
    /// messages the app received.
    #[prost(uint32, tag = "3")]
    pub index: u32,
    /// `ClientStream`: the sum of the `value`s received.
    #[prost(int64, tag = "4")]
    pub sum: i64,
    /// `Unary`: the request's `x-client-meta` metadata, as the app saw it.
    #[prost(string, tag = "5")]
    pub client_meta: String,
    /// `Unary`: the `grpc-timeout` header the app received, empty if none.
    #[prost(string, tag = "6")]
    pub grpc_timeout: String,
}

// ---------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------

/// A running gRPC app on a loopback port; it lives as long as the test's
/// runtime.
pub struct GrpcApp {
    pub addr: SocketAddr,
}

/// Starts the `test.Echo` app on 127.0.0.1:0 (h2c, prior knowledge).
pub async fn start_grpc_app() -> GrpcApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gRPC app");
    let addr = listener.local_addr().expect("gRPC app address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // As tonic's own server does: without it, Nagle's algorithm and
            // delayed ACKs hold each small WINDOW_UPDATE ~40 ms, and a large
            // upload crawls one flow-control window at a time.
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request| async {
                    Ok::<_, Infallible>(route(request).await)
                });
                // A connection the client resets ends here; nothing to report.
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    GrpcApp { addr }
}

/// One request, routed by path as generated tonic servers do.
async fn route(request: http::Request<Incoming>) -> http::Response<Body> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    match request.uri().path() {
        "/test.Echo/Unary" => grpc.unary(service_fn(unary), request).await,
        "/test.Echo/Fail" => grpc.unary(service_fn(fail), request).await,
        "/test.Echo/Slow" => grpc.unary(service_fn(slow), request).await,
        "/test.Echo/ServerStream" => {
            grpc.server_streaming(service_fn(server_stream), request)
                .await
        }
        "/test.Echo/ClientStream" => {
            grpc.client_streaming(service_fn(client_stream), request)
                .await
        }
        "/test.Echo/Bidi" => grpc.streaming(service_fn(bidi), request).await,
        path => Status::unimplemented(format!("the app has no method {path}")).into_http(),
    }
}

/// Echoes the message and payload, reports the request metadata it saw, and
/// answers with a metadata header of its own (`x-server-meta: unary`).
async fn unary(request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
    let text = |key: &str| {
        request
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (client_meta, grpc_timeout) = (text("x-client-meta"), text("grpc-timeout"));
    let message = request.into_inner();
    let mut response = Response::new(EchoReply {
        message: message.message,
        payload: message.payload,
        client_meta,
        grpc_timeout,
        ..EchoReply::default()
    });
    response
        .metadata_mut()
        .insert("x-server-meta", MetadataValue::from_static("unary"));
    Ok(response)
}

/// Answers with the status `code` and the request's message as its message,
/// plus [`DETAIL_KEY`] metadata: a trailers-only response.
async fn fail(request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
    let message = request.into_inner();
    Err(with_detail(Code::from(message.code), message.message))
}

/// Answers after `delay_ms`, whatever the request's deadline.
async fn slow(request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
    let message = request.into_inner();
    tokio::time::sleep(Duration::from_millis(message.delay_ms)).await;
    Ok(Response::new(EchoReply {
        message: message.message,
        ..EchoReply::default()
    }))
}

type ReplyStream = BoxStream<'static, Result<EchoReply, Status>>;

/// `count` replies `"{message} {i}"` in order, then OK, or the status `code`
/// with [`DETAIL_KEY`] metadata, which then travels in the trailers.
async fn server_stream(request: Request<EchoRequest>) -> Result<Response<ReplyStream>, Status> {
    let message = request.into_inner();
    let replies = (0..message.count).map(move |index| {
        Ok(EchoReply {
            message: format!("{} {index}", message.message),
            index,
            ..EchoReply::default()
        })
    });
    let end = (message.code != 0).then(|| {
        Err(with_detail(
            Code::from(message.code),
            "the stream ends in failure",
        ))
    });
    let stream = stream::iter(replies.chain(end));
    Ok(Response::new(stream.boxed()))
}

/// The sum of the `value`s of every message, and how many there were.
async fn client_stream(
    request: Request<Streaming<EchoRequest>>,
) -> Result<Response<EchoReply>, Status> {
    let mut incoming = request.into_inner();
    let (mut index, mut sum) = (0, 0);
    while let Some(message) = incoming.message().await? {
        index += 1;
        sum += message.value;
    }
    Ok(Response::new(EchoReply {
        index,
        sum,
        ..EchoReply::default()
    }))
}

/// One reply per message, sent as soon as that message arrives (a map over
/// the incoming stream), so that a client waiting for each reply before it
/// sends the next shows that nothing on the way buffers a whole stream.
async fn bidi(request: Request<Streaming<EchoRequest>>) -> Result<Response<ReplyStream>, Status> {
    let replies = request.into_inner().enumerate().map(|(index, message)| {
        message.map(|message| EchoReply {
            message: format!("echo: {}", message.message),
            index: u32::try_from(index).expect("fewer than 2^32 messages"),
            ..EchoReply::default()
        })
    });
    Ok(Response::new(replies.boxed()))
}

fn with_detail(code: Code, message: impl Into<String>) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(DETAIL_KEY, MetadataValue::from_static("from the app"));
    Status::with_metadata(code, message, metadata)
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// One HTTP/2 connection to 127.0.0.1:`port`, with prior knowledge (h2c) or
/// over TLS with ALPN `h2`, as the tower service tonic's client runs on; raw
/// calls use it too.
///
/// Not `tonic::transport::Channel`: a Channel enforces `grpc-timeout` itself
/// and reports CANCELLED when it elapses, which would race streamgate's
/// DEADLINE_EXCEEDED; on a bare hyper connection the deadline is only a header.
#[derive(Clone)]
pub struct H2Connection {
    sender: hyper::client::conn::http2::SendRequest<Body>,
    origin: http::Uri,
}

impl H2Connection {
    /// h2c: HTTP/2 from the first byte.
    pub async fn connect(port: u16) -> H2Connection {
        let stream = tcp_to(port).await;
        H2Connection::handshake(stream, format!("http://127.0.0.1:{port}")).await
    }

    /// HTTP/2 over TLS to `localhost`, trusting the PEM CA `trust`; panics
    /// unless the server picks `h2` by ALPN.
    pub async fn connect_tls(port: u16, trust: &str) -> H2Connection {
        let options = ClientOptions {
            alpn: &["h2"],
            ..ClientOptions::trusting(trust)
        };
        let name = ServerName::try_from("localhost").expect("server name");
        let stream = tokio_rustls::TlsConnector::from(options.config())
            .connect(name, tcp_to(port).await)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with localhost:{port}: {e}"));
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "ALPN picked h2");
        H2Connection::handshake(stream, format!("https://localhost:{port}")).await
    }

    async fn handshake<T>(io: T, origin: String) -> H2Connection
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap_or_else(|e| panic!("HTTP/2 handshake with {origin}: {e}"));
        // Ends when either side closes; calls in flight then fail on their own.
        tokio::spawn(connection);
        H2Connection {
            sender,
            origin: origin.parse().expect("origin URI"),
        }
    }
}

async fn tcp_to(port: u16) -> tokio::net::TcpStream {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    // As tonic's Channel and curl do (see the app's accept loop).
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
}

impl Service<http::Request<Body>> for H2Connection {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.sender.send_request(request))
    }
}

/// A gRPC client of `test.Echo` on one [`H2Connection`]; clones share the
/// connection, each call its own HTTP/2 stream.
#[derive(Clone)]
pub struct GrpcClient {
    grpc: tonic::client::Grpc<H2Connection>,
    timeout: Option<Duration>,
}

/// How a server stream went: the replies received, then either the trailers
/// of an OK end or the status it ended with (also when the call failed before
/// any reply).
pub struct StreamOutcome {
    pub replies: Vec<EchoReply>,
    pub end: Result<MetadataMap, Status>,
}

/// An open bidirectional call: [`Bidi::exchange`] sends one message and
/// waits for its reply.
pub struct Bidi {
    outbound: tokio::sync::mpsc::Sender<EchoRequest>,
    inbound: Streaming<EchoReply>,
}

impl Bidi {
    pub async fn exchange(&mut self, message: EchoRequest) -> EchoReply {
        self.outbound.send(message).await.expect("the call is open");
        self.inbound
            .message()
            .await
            .expect("a reply, not a status")
            .expect("a reply before the stream ends")
    }

    /// Ends the client's side and returns how the server ended its own.
    pub async fn finish(self) -> Result<Option<MetadataMap>, Status> {
        let Bidi {
            outbound,
            mut inbound,
        } = self;
        drop(outbound);
        match inbound.message().await? {
            Some(extra) => panic!("a reply nobody asked for: {extra:?}"),
            None => inbound.trailers().await,
        }
    }
}

fn codec() -> ProstCodec<EchoRequest, EchoReply> {
    ProstCodec::default()
}

fn method_path(method: &str) -> PathAndQuery {
    format!("/test.Echo/{method}")
        .parse()
        .expect("a valid method path")
}

impl GrpcClient {
    /// h2c, as to streamgate's plain port.
    pub async fn connect(port: u16) -> GrpcClient {
        GrpcClient::on(H2Connection::connect(port).await)
    }

    /// HTTP/2 over TLS, as to streamgate's TLS listeners (see
    /// [`H2Connection::connect_tls`]).
    pub async fn connect_tls(port: u16, trust: &str) -> GrpcClient {
        GrpcClient::on(H2Connection::connect_tls(port, trust).await)
    }

    fn on(connection: H2Connection) -> GrpcClient {
        let origin = connection.origin.clone();
        GrpcClient {
            grpc: tonic::client::Grpc::with_origin(connection, origin)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            timeout: None,
        }
    }

    /// Every later call carries `grpc-timeout: timeout`. Only the header: the
    /// client does not enforce it, so a deadline the test sees met or missed
    /// is the server side's doing.
    pub fn with_timeout(mut self, timeout: Duration) -> GrpcClient {
        self.timeout = Some(timeout);
        self
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        request
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection closed: {e}")))
    }

    /// A unary call of `test.Echo/{method}`.
    pub async fn unary(
        &mut self,
        method: &str,
        message: EchoRequest,
    ) -> Result<Response<EchoReply>, Status> {
        self.unary_with(method, message, &[]).await
    }

    /// A unary call with extra request metadata.
    pub async fn unary_with(
        &mut self,
        method: &str,
        message: EchoRequest,
        metadata: &[(&'static str, &'static str)],
    ) -> Result<Response<EchoReply>, Status> {
        self.ready().await?;
        let mut request = self.request(message);
        for (key, value) in metadata {
            request
                .metadata_mut()
                .insert(*key, MetadataValue::from_static(value));
        }
        self.grpc.unary(request, method_path(method), codec()).await
    }

    /// A unary call to any path, for services the app does not have.
    pub async fn unary_at(
        &mut self,
        path: &str,
        message: EchoRequest,
    ) -> Result<Response<EchoReply>, Status> {
        self.ready().await?;
        let path = path.parse().expect("a valid method path");
        self.grpc.unary(self.request(message), path, codec()).await
    }

    /// `ServerStream`, read to its end.
    pub async fn server_stream(&mut self, message: EchoRequest) -> StreamOutcome {
        let call = async {
            self.ready().await?;
            let request = self.request(message);
            self.grpc
                .server_streaming(request, method_path("ServerStream"), codec())
                .await
        };
        let mut inbound = match call.await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                return StreamOutcome {
                    replies: Vec::new(),
                    end: Err(status),
                }
            }
        };
        let mut replies = Vec::new();
        loop {
            match inbound.message().await {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => {
                    let end = inbound.trailers().await.map(Option::unwrap_or_default);
                    return StreamOutcome { replies, end };
                }
                Err(status) => {
                    return StreamOutcome {
                        replies,
                        end: Err(status),
                    }
                }
            }
        }
    }

    /// `ClientStream` with `messages`.
    pub async fn client_stream(
        &mut self,
        messages: Vec<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.ready().await?;
        let request = self.request(stream::iter(messages));
        self.grpc
            .client_streaming(request, method_path("ClientStream"), codec())
            .await
    }

    /// Opens `Bidi`.
    pub async fn bidi(&mut self) -> Result<Bidi, Status> {
        self.ready().await?;
        let (outbound, receiver) = tokio::sync::mpsc::channel(1);
        let messages = stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|message| (message, receiver))
        });
        let response = self
            .grpc
            .streaming(self.request(messages), method_path("Bidi"), codec())
            .await?;
        Ok(Bidi {
            outbound,
            inbound: response.into_inner(),
        })
    }
}

// ---------------------------------------------------------------------------
// gRPC as HTTP/2 messages, for what a gRPC client hides
// ---------------------------------------------------------------------------

/// A gRPC answer as HTTP/2 carried it.
#[derive(Debug)]
pub struct RawGrpcAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl RawGrpcAnswer {
    /// `name` from the trailers, or from the headers of a trailers-only
    /// response.
    pub fn grpc_field(&self, name: &str) -> Option<String> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| self.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn grpc_status(&self) -> Option<i32> {
        self.grpc_field("grpc-status").and_then(|v| v.parse().ok())
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

/// One length-prefixed gRPC message: no compression flag, a 4-byte big-endian
/// length, the protobuf bytes.
pub fn grpc_frame(message: &EchoRequest) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + encoded.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(encoded.len()).expect("a message under 4 GiB"));
    frame.put_slice(&encoded);
    frame.freeze()
}

/// POSTs one gRPC message to `path` on 127.0.0.1:`port` over h2c, with the
/// headers a gRPC client sends, and reads the whole answer.
pub async fn raw_grpc_call(port: u16, path: &str, message: &EchoRequest) -> RawGrpcAnswer {
    let mut connection = H2Connection::connect(port).await;
    let request = http::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(Body::new(http_body_util::Full::new(grpc_frame(message))))
        .expect("a valid request");
    let response = connection.call(request).await.expect("an HTTP/2 answer");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("the whole answer body");
    let trailers = collected.trailers().cloned();
    RawGrpcAnswer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        trailers,
        body: collected.to_bytes(),
    }
}
