//! The gRPC app of `make bench-h2` (bench/h2.sh), built as the example
//! `grpc-echo` so that it shares the test harness's dependencies and is
//! compiled and linted with every `make test`.
//!
//! - `grpc-echo serve 127.0.0.1:PORT`: serves `test.Echo/Unary` (the reply
//!   echoes the request's `message`) over h2c, prior knowledge, on one thread,
//!   like every server of the benchmarks. tonic's server-side codec on hyper's
//!   HTTP/2 server, as `tonic::transport::Server` is, minus its layers.
//! - `grpc-echo frame MESSAGE`: writes one length-prefixed gRPC request for
//!   `Unary` to stdout, the body h2load sends (`h2load -d`).
//!
//! The messages match `tests/common/grpc.rs` on the wire (field 1, `message`).

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::io::Write;
use std::process::ExitCode;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    message: String,
}

/// `test.Echo/Unary` as tonic's server codec calls it.
struct Unary;

impl tonic::server::UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = Ready<Result<Response<EchoReply>, Status>>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let message = request.into_inner().message;
        ready(Ok(Response::new(EchoReply { message })))
    }
}

async fn route(request: http::Request<Incoming>) -> http::Response<tonic::body::Body> {
    if request.uri().path() == "/test.Echo/Unary" {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
        grpc.unary(Unary, request).await
    } else {
        Status::unimplemented("this app has only test.Echo/Unary").into_http()
    }
}

async fn serve(address: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        // Loopback benchmark traffic: small replies must not wait for Nagle.
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request| async {
                Ok::<_, Infallible>(route(request).await)
            });
            // A load generator closing its connections ends them here.
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One gRPC message on the wire: uncompressed flag, 4-byte big-endian length,
/// the protobuf bytes.
fn frame(message: &str) -> Vec<u8> {
    let encoded = EchoRequest {
        message: message.to_string(),
    }
    .encode_to_vec();
    let length = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
    let mut framed = vec![0];
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&encoded);
    framed
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", address] => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .and_then(|runtime| runtime.block_on(serve(address))),
        ["frame", message] => std::io::stdout().write_all(&frame(message)),
        _ => {
            eprintln!("usage: grpc-echo serve IP:PORT | grpc-echo frame MESSAGE");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grpc-echo: {e}");
            ExitCode::FAILURE
        }
    }
}
