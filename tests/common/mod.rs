//! Shared harness for the integration tests: a real upstream application on a
//! loopback port, and the real `streamgate` binary started in front of it.
//!
//! One file per role; everything is re-exported here, so a test file says
//! `mod common;` and `use common::*;` and does not care where a helper lives.
//!
//! - [`app`]: the fake upstream application (echo, `/slow`, `/ws`, `/api/me`).
//! - [`config`]: the Stream credentials and the YAML configs tests start from.
//! - [`process`]: the `streamgate` process under test: start, ports, logs,
//!   signals, graceful upgrade, memory.
//! - [`client`]: the HTTP client and GET/POST helpers.
//! - [`tokens`]: asking streamgate for tokens, verifying the Stream tokens it
//!   mints, and signing identity-provider tokens for `identity: jwt`.
//! - [`metrics`]: scraping `/metrics` and waiting for a series to reach a value.
//! - [`mount`]: files laid out the way Kubernetes mounts Secrets and ConfigMaps.
//! - [`idp`]: an identity provider stand-in over HTTPS (OIDC discovery and a
//!   JWK set it can rotate, stop, and count requests for).
//! - [`grpc`]: the gRPC app (`test.Echo`, tonic, h2c) and its messages.
//! - [`grpc_client`]: its client (h2c or TLS), and single calls read as raw
//!   HTTP/2 (status, headers, trailers).
//! - [`raw`]: HTTP/1.1 as bytes: a raw-socket client, and an upstream that
//!   records the exact bytes it receives.
//! - [`redis_server`]: a real `redis-server` with a password, killed and restarted
//!   at will, for the shared rate limits.
//! - [`tls`]: a test CA issuing server and client certificates, and a TLS
//!   client that reports what was negotiated.
//! - [`wait`]: polling until a condition holds, with a deadline.
//!
//! Every test file is its own crate that compiles this whole module and uses a
//! different part of it, so unused items are expected: `dead_code` is off for
//! the harness (and only for the harness), and `unused_imports` for the
//! re-exports below; imports inside the harness files are still checked.
#![allow(dead_code)]

pub mod app;
pub mod client;
pub mod config;
pub mod grpc;
pub mod grpc_client;
pub mod idp;
pub mod metrics;
pub mod mount;
pub mod process;
pub mod raw;
pub mod redis_server;
pub mod tls;
pub mod tokens;
pub mod wait;

#[allow(unused_imports)] // a test file uses only some of them
pub use {
    app::*, client::*, config::*, grpc::*, grpc_client::*, idp::*, metrics::*, mount::*,
    process::*, raw::*, redis_server::*, tls::*, tokens::*, wait::*,
};

/// Keys, key sets and other files the tests read (`tests/fixtures`).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
