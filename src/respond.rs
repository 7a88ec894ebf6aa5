//! Every answer streamgate writes itself, in one place (as linkerd's
//! `errors/respond.rs`): token replies, direct responses, CORS preflights,
//! 404 for no route, 502/504 for a failed upstream, 408/414/431 for a request
//! head too slow or too large, and the admin listener's JSON. One error envelope (the token contract's `{"success":false,
//! "error":…}`) and one header set:
//!
//! - `Content-Length` always: a body without it plus keep-alive hangs clients
//!   (pingora #540, #766);
//! - `Content-Type` whenever there is a body;
//! - `Cache-Control: no-store` on JSON, which carries tokens and per-caller
//!   errors that no cache may keep;
//! - `X-Request-Id` on the proxy listener, the same id the access log has.
//!
//! A gRPC call gets the same answer in gRPC's form instead (see
//! [`crate::net::grpc`]): `grpc-status` and `grpc-message`, no body.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession as HttpSession;
use pingora::proxy::Session;
use pingora::{ErrorType, OrErr};

use crate::net::grpc;
use crate::net::request_id::X_REQUEST_ID;
use crate::routing::DirectResponse;
use crate::token::Reply;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// An answer streamgate makes itself, before it is written.
#[derive(Debug, Clone)]
pub struct Answer {
    status: u16,
    content_type: Option<HeaderValue>,
    no_store: bool,
    body: Bytes,
    /// `Retry-After`, `WWW-Authenticate`, CORS: sent after the common set.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// What went wrong, for a gRPC client (the envelope's `error`).
    message: Option<Box<str>>,
}

impl Answer {
    /// A JSON reply of the token contract (a token, or an error envelope).
    pub fn json(reply: Reply) -> Answer {
        Answer {
            status: reply.status,
            content_type: Some(APPLICATION_JSON),
            no_store: true,
            body: Bytes::from(reply.body),
            headers: Vec::new(),
            message: None,
        }
    }

    /// The error envelope with `status` and `message`.
    pub fn error(status: u16, message: &str) -> Answer {
        Answer {
            message: Some(message.into()),
            ..Answer::json(Reply::error(status, message))
        }
    }

    /// Any JSON document (the admin listener's probe answers).
    pub fn json_value(status: u16, body: &serde_json::Value) -> Answer {
        Answer::json(Reply {
            status,
            body: body.to_string().into_bytes(),
        })
    }

    /// A body of another type (Prometheus text); cacheable like any resource.
    pub fn content(status: u16, content_type: &'static str, body: Vec<u8>) -> Answer {
        Answer {
            status,
            content_type: Some(HeaderValue::from_static(content_type)),
            no_store: false,
            body: Bytes::from(body),
            headers: Vec::new(),
            message: None,
        }
    }

    /// A route's configured `direct_response`.
    pub fn direct(direct: &DirectResponse) -> Answer {
        Answer {
            status: direct.status,
            content_type: Some(direct.content_type.clone()),
            no_store: false,
            body: direct.body.clone(),
            headers: Vec::new(),
            message: None,
        }
    }

    /// `204 No Content` with only `headers` (a CORS preflight).
    pub fn no_content(headers: Vec<(HeaderName, HeaderValue)>) -> Answer {
        Answer {
            status: 204,
            content_type: None,
            no_store: false,
            body: Bytes::new(),
            headers,
            message: None,
        }
    }

    pub fn with_headers(
        mut self,
        headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
    ) -> Answer {
        self.headers.extend(headers);
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The header set, in the order it is written.
    fn header_set(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        let content_type = self
            .content_type
            .clone()
            .filter(|_| !self.body.is_empty())
            .map(|value| (header::CONTENT_TYPE, value));
        let length = (header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        let no_store = self
            .no_store
            .then(|| (header::CACHE_CONTROL, NO_STORE.clone()));
        content_type
            .into_iter()
            .chain(std::iter::once(length))
            .chain(no_store)
            .chain(self.headers.iter().cloned())
    }

    /// Writes the answer on a proxy-listener session, with its request id;
    /// in gRPC's form to a gRPC call.
    pub async fn write(
        self,
        session: &mut Session,
        request_id: &HeaderValue,
    ) -> pingora::Result<()> {
        if session.is_http2() && !session.is_body_done() {
            finish_h2_request(session).await;
        }
        if grpc::is_call(&session.req_header().headers) {
            let response = Box::new(self.to_grpc(request_id)?);
            // Trailers-Only is one HEADERS frame that ends the stream; Pingora's
            // `Session::write_response_header` leaves an HTTP/2 stream open
            // whatever it is told, so the frame is written on the stream itself.
            if let HttpSession::H2(h2) = session.as_downstream_mut() {
                return h2.write_response_header(response, true);
            }
            session.write_response_header(response, true).await?;
            return session.write_response_body(None, true).await;
        }
        let response = response_header(
            self.status,
            std::iter::once((X_REQUEST_ID, request_id.clone())).chain(self.header_set()),
        )?;
        if self.body.is_empty() {
            session
                .write_response_header(Box::new(response), true)
                .await?;
            // An HTTP/2 stream ends with a frame of its own (see above); an
            // HTTP/1.1 answer ends with its `Content-Length: 0`.
            if session.is_http2() {
                session.write_response_body(None, true).await?;
            }
            return Ok(());
        }
        session
            .write_response_header(Box::new(response), false)
            .await?;
        session.write_response_body(Some(self.body), true).await
    }

    /// The answer as a gRPC Trailers-Only response: HTTP 200, the outcome in
    /// `grpc-status` and `grpc-message`, and no body, which a gRPC client
    /// would read as a message.
    fn to_grpc(&self, request_id: &HeaderValue) -> pingora::Result<ResponseHeader> {
        let code = grpc::Code::for_http_status(self.status);
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|status| status.canonical_reason());
        let message = self.message.as_deref().or(reason).unwrap_or("");
        // Percent-encoded, the message is printable ASCII: a valid value.
        let message = HeaderValue::try_from(grpc::encode_message(message))
            .or_err(ErrorType::InvalidHTTPHeader, "grpc-message")?;
        response_header(
            200,
            [
                (header::CONTENT_TYPE, GRPC),
                (GRPC_STATUS, HeaderValue::from_static(code.as_str())),
                (GRPC_MESSAGE, message),
                (X_REQUEST_ID, request_id.clone()),
            ],
        )
    }

    /// The answer as HTTP/1.1 bytes ending the connection (`Connection:
    /// close`), for a client streamgate answers before Pingora has a session
    /// for it: a request head too large or too slow (`server::head`).
    pub fn to_http1_closing(&self, request_id: &HeaderValue) -> Vec<u8> {
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("");
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status).into_bytes();
        let fixed = [
            (X_REQUEST_ID, request_id.clone()),
            (header::CONNECTION, HeaderValue::from_static("close")),
        ];
        for (name, value) in fixed.into_iter().chain(self.header_set()) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The answer as an `http::Response`, for the admin listener.
    pub fn into_response(self) -> http::Response<Vec<u8>> {
        let mut builder = http::Response::builder().status(self.status);
        for (name, value) in self.header_set() {
            builder = builder.header(name, value);
        }
        builder.body(self.body.to_vec()).unwrap_or_default()
    }
}

/// How long an HTTP/2 request's unread body may take to end before an
/// answer is written anyway.
const H2_BODY_GRACE: Duration = Duration::from_millis(250);

/// A response head of `status` with `headers`, in that order. Written as a
/// plain `HeaderMap`, without the header-name case map a `ResponseHeader`
/// otherwise keeps (Pingora's `insert_header` parses and copies every name
/// twice to keep it): these names are streamgate's own, and on the wire they
/// read the same, well-known names in their usual case and others in lower
/// case.
fn response_header(
    status: u16,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> pingora::Result<ResponseHeader> {
    let mut head: http::response::Parts = ResponseHeader::build_no_case(status, None)?.into();
    for (name, value) in headers {
        head.headers.append(name, value);
    }
    Ok(ResponseHeader::from(head))
}

/// Reads what is left of an HTTP/2 request's body, briefly. An answer that
/// ends the stream while the client is still sending makes the h2 crate
/// reset the stream with `CANCEL` on drop, and clients (curl, gRPC) then
/// report the reset instead of the answer (RFC 9113 §8.1 allows an early
/// answer, but only with `NO_ERROR`, which Pingora 0.9 cannot send after a
/// complete response). A body still coming after the grace period is left,
/// and the client sees the reset.
async fn finish_h2_request(session: &mut Session) {
    // What the body held is not wanted, and a read error means the client
    // is gone: either way the answer is written next.
    let _ = tokio::time::timeout(H2_BODY_GRACE, session.drain_request_body()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(response: &http::Response<Vec<u8>>, name: HeaderName) -> Option<&str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn json_answers_carry_the_envelope_and_are_never_cached() {
        let response = Answer::error(404, "Not found").into_response();
        assert_eq!(response.status(), 404);
        assert_eq!(response.body(), br#"{"success":false,"error":"Not found"}"#);
        assert_eq!(
            header(&response, header::CONTENT_TYPE),
            Some("application/json")
        );
        assert_eq!(header(&response, header::CACHE_CONTROL), Some("no-store"));
        assert_eq!(
            header(&response, header::CONTENT_LENGTH),
            Some(response.body().len().to_string().as_str())
        );
    }

    #[test]
    fn empty_answers_have_a_length_and_no_type() {
        let response = Answer::no_content(vec![(header::VARY, HeaderValue::from_static("Origin"))])
            .into_response();
        assert_eq!(response.status(), 204);
        assert_eq!(header(&response, header::CONTENT_LENGTH), Some("0"));
        assert_eq!(header(&response, header::CONTENT_TYPE), None);
        assert_eq!(header(&response, header::VARY), Some("Origin"));
    }

    #[test]
    fn closing_answers_are_complete_http1_messages() {
        let id = HeaderValue::from_static("req-1");
        let bytes = Answer::error(431, "Too large").to_http1_closing(&id);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        assert_eq!(
            lines.next(),
            Some("HTTP/1.1 431 Request Header Fields Too Large")
        );
        let headers: Vec<&str> = lines.collect();
        for expected in [
            "x-request-id: req-1",
            "connection: close",
            "content-type: application/json",
            "cache-control: no-store",
        ] {
            assert!(headers.contains(&expected), "{expected} in {headers:?}");
        }
        assert!(headers.contains(&format!("content-length: {}", body.len()).as_str()));
        assert_eq!(body, r#"{"success":false,"error":"Too large"}"#);
    }

    #[test]
    fn direct_responses_keep_their_type_and_may_be_cached() {
        let direct = DirectResponse {
            status: 200,
            content_type: HeaderValue::from_static("text/plain"),
            body: Bytes::from_static(b"ok"),
        };
        let response = Answer::direct(&direct).into_response();
        assert_eq!(header(&response, header::CONTENT_TYPE), Some("text/plain"));
        assert_eq!(header(&response, header::CACHE_CONTROL), None);
        assert_eq!(response.body(), b"ok");
    }
}
