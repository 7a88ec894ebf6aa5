//! The gRPC app behind streamgate: the service `test.Echo` with tonic's
//! server-side codec and method handling (its client is in
//! [`grpc_client`](super::grpc_client)). The messages are written by hand with
//! prost's derive, so there is no `.proto` file, no protoc and no build
//! script; the handlers are what tonic-build would generate, minus the traits.
//!
//! The app is served by hyper's HTTP/2 server (h2c, prior knowledge), not by
//! `tonic::transport::Server`: tonic's server enforces `grpc-timeout` itself,
//! and then a deadline test would pass whether or not streamgate honours the
//! deadline. This app, like many real ones, ignores it: only the proxy can
//! end a `Slow` call early.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::body::Body;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;
use tower::service_fn;

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
