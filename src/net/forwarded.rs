//! The `X-Forwarded-*` headers streamgate sends the app (the de facto
//! standard that RFC 7239 `Forwarded` formalized; apps read these).
//!
//! `X-Forwarded-For` gets the peer appended to whatever proxies before us
//! wrote. `X-Forwarded-Proto`/`-Host` are kept when an ingress in front already
//! set them (it saw the original scheme and host; we only see plain HTTP from
//! it), and otherwise say what streamgate saw.

use std::net::IpAddr;

use http::header::HeaderName;
use http::HeaderValue;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The scheme streamgate's listeners speak.
pub const PROTO: &str = "http";

/// The `X-Forwarded-For` value for the app: the values received, in order,
/// joined with `", "`, then `peer`.
pub fn forwarded_for<'a>(received: impl Iterator<Item = &'a HeaderValue>, peer: IpAddr) -> Vec<u8> {
    let ip = peer.to_string();
    let mut received = received.peekable();
    if received.peek().is_none() {
        return ip.into_bytes();
    }
    let mut joined = Vec::new();
    for value in received {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(ip.as_bytes());
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_is_appended_to_what_was_received() {
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(forwarded_for(std::iter::empty(), peer), b"192.0.2.7");
        let received = [
            HeaderValue::from_static("198.51.100.1"),
            HeaderValue::from_static("203.0.113.9, 10.0.0.1"),
        ];
        assert_eq!(
            forwarded_for(received.iter(), peer),
            b"198.51.100.1, 203.0.113.9, 10.0.0.1, 192.0.2.7"
        );
    }
}
