//! Request-shape rules: what streamgate believes about a request before any
//! route sees it, and what it adds for the app. Trusted peers and the client
//! address ([`trusted`]), the `X-Forwarded-*` headers ([`forwarded`]), the
//! HTTP/1.1 message's length, host and expectations ([`framing`]), header
//! names ([`headers`]), paths ([`path`]), request ids ([`request_id`]), the
//! CORS policy of token routes ([`cors`]), gRPC calls ([`grpc`]) and the
//! protocol a request came over ([`Protocol`]).
//!
//! Pure: `http` types in, decisions out. The proxy applies them to Pingora's
//! request and response headers.

pub mod cors;
pub mod forwarded;
pub mod framing;
pub mod grpc;
pub mod headers;
pub mod path;
pub mod request_id;
pub mod trusted;

pub use trusted::TrustedNetworks;

/// The HTTP version and transport a client's request came over, as the
/// access log and metrics name it (ALPN protocol ids, RFC 7301 §6, with
/// `h2c` for HTTP/2 over plaintext, RFC 9113 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http10,
    Http11,
    H2,
    H2c,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::Http10,
        Protocol::Http11,
        Protocol::H2,
        Protocol::H2c,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http10 => "http/1.0",
            Protocol::Http11 => "http/1.1",
            Protocol::H2 => "h2",
            Protocol::H2c => "h2c",
        }
    }

    /// OpenTelemetry's `network.protocol.version`.
    pub fn version(self) -> &'static str {
        match self {
            Protocol::Http10 => "1.0",
            Protocol::Http11 => "1.1",
            Protocol::H2 | Protocol::H2c => "2",
        }
    }
}
