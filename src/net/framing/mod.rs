//! The shape of an HTTP/1.x request, decided before anything routes on it:
//! one authority, one body length, only transfer codings streamgate decodes,
//! only expectations it can meet (RFC 9112, RFC 9110 §10.1.1).
//!
//! A proxy that frames a message one way while the app behind it frames it
//! another is how requests are smuggled past the proxy's checks. So a request
//! streamgate cannot read in exactly one way is refused (and its connection
//! closed: where one message ends is no longer certain), and an accepted one
//! is forwarded in the form every reader agrees on: an origin-form target, one
//! Host, one Content-Length.
//!
//! Pingora 0.9 already refuses some of these shapes while it reads the head,
//! with its own empty 400 (two Host lines, a Host that differs from an
//! absolute-form authority, unparseable or differing Content-Length values, a
//! last coding other than chunked, Transfer-Encoding in HTTP/1.0). The rules
//! are complete here anyway, so that what streamgate accepts does not change
//! with the library underneath.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, Scheme, Uri};
use http::Version;

/// Why a request is refused before routing; its `Display` is the message of
/// the error envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Bad request: an HTTP/1.1 request needs a Host header")]
    MissingHost,
    #[error("Bad request: more than one Host header")]
    DuplicateHost,
    #[error("Bad request: the Host header is empty")]
    EmptyHost,
    #[error("Bad request: the Host header is not a valid host[:port]")]
    InvalidHost,
    #[error("Bad request: the Host header differs from the request target's host")]
    HostDiffersFromTarget,
    #[error("Bad request: an absolute request target must be an http or https URI")]
    UnsupportedScheme,
    #[error("Bad request: the request target is neither a path nor an absolute URI")]
    InvalidTarget,
    #[error("Bad request: Content-Length must be a whole number of bytes below 2^63")]
    InvalidContentLength,
    #[error("Bad request: Content-Length values differ")]
    ConflictingContentLength,
    #[error("Bad request: Content-Length and Transfer-Encoding together")]
    ContentLengthWithTransferEncoding,
    #[error("Bad request: Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    #[error("Bad request: Transfer-Encoding must end with chunked, applied once")]
    MalformedTransferEncoding,
    #[error("Not implemented: transfer coding {0:?} (streamgate decodes only chunked)")]
    UnsupportedTransferCoding(String),
    #[error("Expectation failed: streamgate meets only Expect: 100-continue")]
    UnsupportedExpectation,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::UnsupportedTransferCoding(_) => 501,
            Refusal::UnsupportedExpectation => 417,
            _ => 400,
        }
    }

    /// Whether the connection must close after the answer. After a malformed
    /// head, where the next request starts cannot be trusted (RFC 9112 §6.3,
    /// §11.2); an unmet expectation is a well-formed request, whose unread
    /// body (if any) closes the connection by itself.
    pub fn closes_connection(&self) -> bool {
        !matches!(self, Refusal::UnsupportedExpectation)
    }
}

/// What to change in an accepted request so that the app reads it the way
/// streamgate did. All `None`/`false` for the usual request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The origin-form target, for a request that came in absolute-form:
    /// routing and the app see the path, not the proxy form (RFC 9112 §3.2.2,
    /// §3.2.1: an empty path is sent as `/`).
    pub target: Option<Uri>,
    /// A Host to set: the absolute-form authority when the request had none,
    /// or, for HTTP/1.0 without Host, the address the client connected to
    /// (RFC 9112 §3.3: an empty authority is replaced with a default from the
    /// connection's context before the request is processed).
    pub host: Option<HeaderValue>,
    /// The one value to send for a Content-Length that came repeated
    /// (`5, 5`, or two lines): RFC 9110 §8.6 lets a recipient accept it as
    /// one value, and the app must not see the list.
    pub content_length: Option<u64>,
    /// `Expect: 100-continue` in HTTP/1.0 is ignored (RFC 9110 §10.1.1), so
    /// it is removed and nobody sends a 1xx to a 1.0 client.
    pub drop_expect: bool,
}

/// A request head as received.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// Method, version, headers and URI as parsed.
    pub head: &'a Parts,
    /// The request-target as sent: Pingora keeps only the path of an
    /// absolute-form target in the URI.
    pub target: &'a [u8],
    /// The whole head as sent: Pingora drops a Content-Length sent with
    /// Transfer-Encoding before any filter runs, and only the bytes still tell.
    pub raw_head: &'a [u8],
    /// The address the client connected to.
    pub local: Option<SocketAddr>,
}

/// Decides whether a request is admitted, and in what form. Other protocol
/// versions than HTTP/1.x have their own framing and are admitted unchanged.
pub fn admit(request: Received<'_>) -> Result<Admission, Refusal> {
    let head = request.head;
    if !matches!(head.version, Version::HTTP_10 | Version::HTTP_11) {
        return Ok(Admission::default());
    }
    let content_length = body_length(head, request.raw_head)?;
    let (target, host) = authority(head, request.target, request.local)?;
    let drop_expect = expectation(head)?;
    Ok(Admission {
        target,
        host,
        content_length,
        drop_expect,
    })
}

/// RFC 9112 §6: the body's length from exactly one unambiguous source, and
/// the single Content-Length to send when the client repeated it.
fn body_length(head: &Parts, raw_head: &[u8]) -> Result<Option<u64>, Refusal> {
    let headers = &head.headers;
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // §6.1: HTTP/1.0 has no Transfer-Encoding; its framing is faulty.
        if head.version == Version::HTTP_10 {
            return Err(Refusal::TransferEncodingInHttp10);
        }
        // §6.3 lets Transfer-Encoding win, but says such a message "ought to
        // be handled as an error": it is the classic smuggling shape, and
        // nginx and Envoy refuse it too.
        if headers.contains_key(header::CONTENT_LENGTH) || declares_content_length(raw_head) {
            return Err(Refusal::ContentLengthWithTransferEncoding);
        }
        transfer_codings(headers)?;
        return Ok(None);
    }
    content_length(headers)
}

/// RFC 9112 §6.1, §6.3, §7: the codings must end with chunked, applied once
/// (anything else leaves the length undetermined: 400); any other coding
/// before it is one streamgate cannot decode (501), and forwarding it with
/// only chunked removed would hand the app a body in a coding it was not told of.
fn transfer_codings(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let value = value
            .to_str()
            .map_err(|_| Refusal::MalformedTransferEncoding)?;
        // RFC 9110 §5.6.1: empty list elements are ignored.
        codings.extend(value.split(',').map(str::trim).filter(|c| !c.is_empty()));
    }
    let is_chunked = |coding: &str| coding.eq_ignore_ascii_case("chunked");
    let chunked_once = codings.iter().filter(|c| is_chunked(c)).count() == 1;
    // A coding with parameters is never chunked (§7.1 defines none for it),
    // so `chunked;x=1` last is malformed, and elsewhere it is unknown.
    if !(codings.last().is_some_and(|c| is_chunked(c)) && chunked_once) {
        return Err(Refusal::MalformedTransferEncoding);
    }
    match codings.iter().find(|c| !is_chunked(c)) {
        Some(other) => Err(Refusal::UnsupportedTransferCoding((*other).to_string())),
        None => Ok(()),
    }
}

/// The largest Content-Length accepted, nginx's: apps commonly hold the
/// length in a signed 64-bit integer and would read a larger one otherwise.
const MAX_CONTENT_LENGTH: u64 = i64::MAX.unsigned_abs();

/// The one Content-Length to send when the client repeated it. RFC 9110
/// §8.6: 1*DIGIT (Rust's parser alone would take a sign); a list of equal
/// values may be taken as one, differing values are invalid framing.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Refusal> {
    let mut length = None;
    let mut count = 0;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let value = value.to_str().map_err(|_| Refusal::InvalidContentLength)?;
        for element in value.split(',') {
            let element = element.trim();
            let parsed = element
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| element.parse::<u64>().ok())
                .flatten()
                .filter(|&n| n <= MAX_CONTENT_LENGTH)
                .ok_or(Refusal::InvalidContentLength)?;
            if length.is_some_and(|previous| previous != parsed) {
                return Err(Refusal::ConflictingContentLength);
            }
            length = Some(parsed);
            count += 1;
        }
    }
    Ok(length.filter(|_| count > 1))
}

/// Whether the head as received declared a Content-Length. The parser that
/// produced it allows no space before the colon, so the name is the whole
/// text before it.
fn declares_content_length(raw_head: &[u8]) -> bool {
    raw_head
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| line.iter().position(|&b| b == b':').map(|at| &line[..at]))
        .any(|name| name.eq_ignore_ascii_case(b"content-length"))
}

/// RFC 9112 §3.2: which host the request is for, and the target in the form
/// the app is sent. HTTP/1.1 needs exactly one valid Host; in absolute-form
/// it must name the target's authority (§3.2.2 has the authority win over a
/// differing Host; streamgate refuses the disagreement instead, as Pingora
/// does, since two readers may each pick a different one).
fn authority(
    head: &Parts,
    target: &[u8],
    local: Option<SocketAddr>,
) -> Result<(Option<Uri>, Option<HeaderValue>), Refusal> {
    let mut hosts = head.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::DuplicateHost);
    }
    if let Some(host) = host {
        check_host(host)?;
    }
    let Some(absolute) = absolute_form(target)? else {
        // Origin-form (or `*`): the Host says which host.
        return match (host, head.version) {
            (Some(_), _) => Ok((None, None)),
            (None, Version::HTTP_10) => Ok((None, local.and_then(host_for))),
            (None, _) => Err(Refusal::MissingHost),
        };
    };
    let target_authority = absolute.authority().ok_or(Refusal::InvalidTarget)?;
    let added_host = match host {
        Some(host) if host.as_bytes() == target_authority.as_str().as_bytes() => None,
        Some(_) => return Err(Refusal::HostDiffersFromTarget),
        None if head.version == Version::HTTP_10 => {
            let value = HeaderValue::from_str(target_authority.as_str())
                .map_err(|_| Refusal::InvalidTarget)?;
            check_host(&value)?;
            Some(value)
        }
        None => return Err(Refusal::MissingHost),
    };
    Ok((Some(origin_form(&absolute)?), added_host))
}

/// The target as a URI when it is in absolute-form (RFC 9112 §3.2.2), which
/// for a server means an http or https URI with a host.
fn absolute_form(target: &[u8]) -> Result<Option<Uri>, Refusal> {
    if target.first().is_none_or(|&b| b == b'/') || target == b"*" {
        return Ok(None);
    }
    let uri = Uri::try_from(target).map_err(|_| Refusal::InvalidTarget)?;
    match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS => Ok(Some(uri)),
        Some(_) => Err(Refusal::UnsupportedScheme),
        None => Err(Refusal::InvalidTarget),
    }
}

/// RFC 9112 §3.2 `Host = uri-host [ ":" port ]`: an authority without
/// userinfo, whose port (if any) is digits that fit a port number. Empty is
/// invalid for http(s) (RFC 9110 §4.2.1: an empty host is rejected).
fn check_host(value: &HeaderValue) -> Result<(), Refusal> {
    if value.is_empty() {
        return Err(Refusal::EmptyHost);
    }
    let authority = Authority::try_from(value.as_bytes()).map_err(|_| Refusal::InvalidHost)?;
    let text = authority.as_str();
    let host = authority.host();
    let after_host = text.strip_prefix(host).ok_or(Refusal::InvalidHost)?;
    let port_ok = match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(port) => {
            port.is_empty()
                || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok())
        }
    };
    if text.contains('@') || host.is_empty() || !port_ok {
        return Err(Refusal::InvalidHost);
    }
    Ok(())
}

/// The connection's local address as a Host value.
fn host_for(local: SocketAddr) -> Option<HeaderValue> {
    HeaderValue::from_str(&local.to_string()).ok()
}

/// `http://host/p?x=1` → `/p?x=1`; `http://host?x=1` → `/?x=1` (the path of
/// an absolute URI is `/` when empty).
fn origin_form(uri: &Uri) -> Result<Uri, Refusal> {
    let target = match uri.query() {
        Some(query) => format!("{}?{query}", uri.path()),
        None => uri.path().to_string(),
    };
    Uri::try_from(target).map_err(|_| Refusal::InvalidTarget)
}

/// RFC 9110 §10.1.1: `100-continue` is the only expectation defined, and the
/// only one streamgate can meet; any other is answered 417. Returns whether
/// the header is to be dropped (HTTP/1.0, where the expectation is ignored).
fn expectation(head: &Parts) -> Result<bool, Refusal> {
    let mut expects = false;
    for value in head.headers.get_all(header::EXPECT) {
        let value = value
            .to_str()
            .map_err(|_| Refusal::UnsupportedExpectation)?;
        for member in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            if !member.eq_ignore_ascii_case("100-continue") {
                return Err(Refusal::UnsupportedExpectation);
            }
            expects = true;
        }
    }
    Ok(expects && head.version == Version::HTTP_10)
}

#[cfg(test)]
mod tests;
