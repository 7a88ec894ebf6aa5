//! gRPC as a proxy sees it: which requests are gRPC calls, the deadline a
//! call carries, and how an answer streamgate makes itself reads to a gRPC
//! client.
//!
//! A gRPC client reads the call's outcome from `grpc-status` and
//! `grpc-message`, never from the HTTP status or a body; a JSON error with a
//! 502 is a protocol error to it ("Received http2 header with status: 502").
//! So when streamgate answers a gRPC call itself (no route, upstream down,
//! timeout, limits, refusals), the answer is a *Trailers-Only* response: HTTP
//! 200, `content-type: application/grpc`, the status and message as headers,
//! no body ([gRPC over HTTP/2], "Responses").
//!
//! [gRPC over HTTP/2]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::HeaderMap;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// The request header carrying a call's deadline.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Whether a request is a gRPC call: `content-type` is `application/grpc`,
/// optionally with a `+format` suffix or parameters. gRPC-Web
/// (`application/grpc-web…`) is another protocol, framed for browsers, and
/// is not one.
pub fn is_call(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let bytes = content_type.as_bytes();
    let (prefix, rest) = bytes.split_at(bytes.len().min(16));
    prefix.eq_ignore_ascii_case(b"application/grpc")
        && matches!(rest.first(), None | Some(b'+' | b';' | b' '))
}

/// A gRPC status code ([statuscodes.md]), as sent in `grpc-status`.
///
/// [statuscodes.md]: https://github.com/grpc/grpc/blob/master/doc/statuscodes.md
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl Code {
    /// The code for an answer streamgate would give with HTTP `status`.
    ///
    /// gRPC's own table ([http-grpc-status-mapping.md]) is for a client that
    /// received a non-gRPC response; streamgate knows why it answers and says
    /// so more precisely where that table lumps causes together: a request
    /// it refused is `INVALID_ARGUMENT` (the table's `INTERNAL` would blame
    /// the server), a timeout is `DEADLINE_EXCEEDED`, a limit (size, rate) is
    /// `RESOURCE_EXHAUSTED`. The rest follows the table.
    ///
    /// [http-grpc-status-mapping.md]: https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md
    pub fn for_http_status(status: u16) -> Code {
        match status {
            400 | 411 | 415 | 417 | 422 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 | 405 | 501 => Code::Unimplemented,
            408 | 504 => Code::DeadlineExceeded,
            413 | 414 | 429 | 431 => Code::ResourceExhausted,
            502 | 503 => Code::Unavailable,
            500 => Code::Internal,
            _ => Code::Unknown,
        }
    }

    /// The value of `grpc-status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unknown => "2",
            Code::InvalidArgument => "3",
            Code::DeadlineExceeded => "4",
            Code::PermissionDenied => "7",
            Code::ResourceExhausted => "8",
            Code::Unimplemented => "12",
            Code::Internal => "13",
            Code::Unavailable => "14",
            Code::Unauthenticated => "16",
        }
    }
}

/// The label for a `grpc-status` value: its code for the 17 that gRPC
/// defines (0 to 16), `invalid` for anything else an app may send, so that a
/// metric's series stay bounded.
pub fn status_label(value: &[u8]) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    CODES
        .iter()
        .find(|code| code.as_bytes() == value)
        .copied()
        .unwrap_or("invalid")
}

/// What `grpc-message` leaves as it is: printable ASCII but `%`; the rest is
/// percent-encoded as UTF-8 (gRPC over HTTP/2, "Status-Message").
const MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// `message` as the value of `grpc-message`.
pub fn encode_message(message: &str) -> String {
    utf8_percent_encode(message, MESSAGE_ESCAPES).to_string()
}

/// Why a `grpc-timeout` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Bad request: grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u or n), e.g. 300m"
)]
pub struct InvalidTimeout;

/// A call's deadline from its `grpc-timeout` value: `TimeoutValue
/// TimeoutUnit`, at most 8 digits, units hours to nanoseconds (gRPC over
/// HTTP/2, "Requests").
pub fn parse_timeout(value: &[u8]) -> Result<Duration, InvalidTimeout> {
    let (unit, digits) = value.split_last().ok_or(InvalidTimeout)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(InvalidTimeout);
    }
    let amount = digits
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return Err(InvalidTimeout),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_content_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn grpc_calls_are_known_by_their_content_type() {
        for call in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_call(&with_content_type(call)), "{call}");
        }
        for other in [
            "application/json",
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/grp",
        ] {
            assert!(!is_call(&with_content_type(other)), "{other}");
        }
        assert!(!is_call(&HeaderMap::new()));
    }

    #[test]
    fn answers_map_to_the_status_a_client_can_act_on() {
        assert_eq!(Code::for_http_status(502), Code::Unavailable);
        assert_eq!(Code::for_http_status(503), Code::Unavailable);
        assert_eq!(Code::for_http_status(504), Code::DeadlineExceeded);
        assert_eq!(Code::for_http_status(404), Code::Unimplemented);
        assert_eq!(Code::for_http_status(429), Code::ResourceExhausted);
        assert_eq!(Code::for_http_status(431), Code::ResourceExhausted);
        assert_eq!(Code::for_http_status(401), Code::Unauthenticated);
        assert_eq!(Code::for_http_status(403), Code::PermissionDenied);
        assert_eq!(Code::for_http_status(400), Code::InvalidArgument);
        assert_eq!(Code::for_http_status(418), Code::Unknown);
        assert_eq!(Code::DeadlineExceeded.as_str(), "4");
        assert_eq!(Code::Unauthenticated.as_str(), "16");
    }

    #[test]
    fn status_labels_are_the_defined_codes_only() {
        assert_eq!(status_label(b"0"), "0");
        assert_eq!(status_label(b"16"), "16");
        for other in [&b"17"[..], b"00", b"-1", b"", b"ok"] {
            assert_eq!(status_label(other), "invalid", "{other:?}");
        }
    }

    #[test]
    fn messages_are_percent_encoded_beyond_printable_ascii() {
        assert_eq!(
            encode_message("Bad gateway: upstream 'grpc' is unavailable"),
            "Bad gateway: upstream 'grpc' is unavailable"
        );
        assert_eq!(encode_message("100% \n café"), "100%25 %0A caf%C3%A9");
    }

    #[test]
    fn timeouts_parse_in_every_unit() {
        let ok = |text: &str| parse_timeout(text.as_bytes()).unwrap();
        assert_eq!(ok("1H"), Duration::from_secs(3600));
        assert_eq!(ok("2M"), Duration::from_secs(120));
        assert_eq!(ok("3S"), Duration::from_secs(3));
        assert_eq!(ok("300m"), Duration::from_millis(300));
        assert_eq!(ok("99999999u"), Duration::from_micros(99_999_999));
        assert_eq!(ok("5n"), Duration::from_nanos(5));
        for bad in [
            "",
            "m",
            "300",
            "123456789m",
            "-1S",
            "1s",
            "1.5S",
            " 1S",
            "1S ",
        ] {
            assert_eq!(
                parse_timeout(bad.as_bytes()),
                Err(InvalidTimeout),
                "{bad:?}"
            );
        }
    }
}
