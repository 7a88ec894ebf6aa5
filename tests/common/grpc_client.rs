//! The gRPC client in front of streamgate: tonic's `Grpc` on one HTTP/2
//! connection (h2c or TLS) calling `test.Echo` (the app is in
//! [`grpc`](super::grpc)), and single calls read as raw HTTP/2 for what a gRPC
//! client hides (the HTTP status, headers and trailers as sent).

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream;
use http::uri::PathAndQuery;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use rustls::pki_types::ServerName;
use tonic::body::Body;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;
use tower::Service;

use super::grpc::{EchoReply, EchoRequest, MAX_MESSAGE};
use super::tls::ClientOptions;

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
