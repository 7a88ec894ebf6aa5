//! streamgate: a Pingora sidecar that answers `POST /api/tokens/user` (and
//! `/api/tokens/call`) with a GetStream.io token and proxies every other
//! request to the application.
//!
//! The tree is the architecture. What a request *means* lives in modules that
//! import nothing from Pingora and are tested without sockets (a test in
//! `tests/layout.rs` keeps it so):
//!
//! - [`token`]: the token contract: body rules, refusals, claims, signing;
//! - [`identity`]: who is calling: header, forward-auth answer, JWT/JWKS;
//! - [`net`]: request-shape rules: trusted peers, client IP, forwarded
//!   headers, request ids, CORS;
//! - [`routing`]: the ordered route table.
//!
//! Around them: [`config`] (file → checked model; the file's JSON Schema and
//! the token routes' OpenAPI document), [`limits`] (rate limits),
//! [`reload`] (following mounted files), [`fetch`] (the identity provider's
//! keys over HTTPS), [`tls`] (listener certificates and
//! client CAs), [`telemetry`] (process log, access log, metrics), and
//! [`dev_jwt`] (the development identity provider of `streamgate dev-jwt`,
//! whose key the configuration warns about), [`cli`] (`streamgate token
//! decode|verify`) and [`version`] (commit and build date). The Pingora glue is [`proxy`]
//! (the one `ProxyHttp`), [`upstream`] (peers and sub-requests), [`respond`] (every answer
//! streamgate writes itself), [`admin`] (probes, metrics and configuration documents listener) and
//! [`server`] (process lifecycle). Dependencies point one way: the pure
//! modules never import the glue, and no two modules import each other.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod dev_jwt;
pub mod fetch;
pub mod identity;
pub mod limits;
pub mod net;
pub mod proxy;
pub mod reload;
pub mod respond;
pub mod routing;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod upstream;
pub mod version;
