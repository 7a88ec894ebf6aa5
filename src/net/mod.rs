//! Request-shape rules: what streamgate believes about a request before any
//! route sees it, and what it adds for the app. Trusted peers and the client
//! address ([`trusted`]), the `X-Forwarded-*` headers ([`forwarded`]), the
//! HTTP/1.1 message's length, host and expectations ([`framing`]), header
//! names ([`headers`]), paths ([`path`]), request ids ([`request_id`]) and the
//! CORS policy of token routes ([`cors`]).
//!
//! Pure: `http` types in, decisions out. The proxy applies them to Pingora's
//! request and response headers.

pub mod cors;
pub mod forwarded;
pub mod framing;
pub mod headers;
pub mod path;
pub mod request_id;
pub mod trusted;

pub use trusted::TrustedNetworks;
