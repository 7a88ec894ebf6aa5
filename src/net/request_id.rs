//! Request ids: one `X-Request-Id` per request, sent to the app, returned to
//! the client and written in the access log, so that one id follows a request
//! through every hop.

use http::header::HeaderName;
use http::HeaderValue;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's id when it is 1 to 128 printable ASCII characters, so that a
/// trace started in front of streamgate continues through it and the app;
/// otherwise a new UUIDv4 (from a userspace RNG: no syscall per request).
pub fn accept_or_generate(received: Option<&HeaderValue>) -> HeaderValue {
    received
        .filter(|v| {
            (1..=128).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            let id = uuid::Uuid::new_v4();
            HeaderValue::from_str(
                id.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            )
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ids_are_kept_and_others_replaced() {
        let kept = HeaderValue::from_static("trace-123");
        assert_eq!(accept_or_generate(Some(&kept)), kept);
        let spaced = HeaderValue::from_static("has space");
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        for replaced in [None, Some(&spaced), Some(&long)] {
            let id = accept_or_generate(replaced);
            assert_eq!(id.len(), 36, "a UUID: {id:?}");
            assert_ne!(Some(&id), replaced);
        }
    }
}
