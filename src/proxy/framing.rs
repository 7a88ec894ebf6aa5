//! HTTP/1.1 connection handling on Pingora's sessions: the request-shape
//! decision of [`crate::net::framing`] applied before routing, pipelined
//! requests served in order, and keep-alive kept across a `100 Continue`.

use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::server::Session as HttpSession;
use pingora::proxy::Session;

use super::RequestCtx;
use crate::net::framing::{self, Admission, Received};
use crate::respond::Answer;

/// Admits a request on RFC 9112's terms: one whose shape streamgate cannot
/// read one unambiguous way is refused (`true`: answered), any other is
/// rewritten into the form the app is sent; and the connection is set to
/// serve requests the client pipelined after it.
pub(super) async fn admit(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    // RFC 9112 §9.3.2: a client may send its next request before the
    // previous answer; Pingora serves them in order once this is on, and
    // otherwise drops them and closes after a response that said keep-alive.
    // The setting is carried over to the connection's next requests.
    session.set_pipelining_enabled(true);
    let raw_head = match session.as_downstream() {
        HttpSession::H1(h1) => h1.get_headers_raw_bytes(),
        // Other protocols have no HTTP/1 head (and frame their own bodies).
        _ => Bytes::new(),
    };
    let request = session.req_header();
    let received = Received {
        head: request,
        target: request.raw_path(),
        raw_head: &raw_head,
        local: session.server_addr().and_then(|a| a.as_inet()).copied(),
    };
    match framing::admit(received) {
        Ok(admission) => {
            apply(session.req_header_mut(), admission)?;
            Ok(false)
        }
        Err(refusal) => {
            ctx.route = "refused";
            if refusal.closes_connection() {
                session.set_keepalive(None);
            }
            Answer::error(refusal.status(), &refusal.to_string())
                .write(session, &ctx.request_id)
                .await?;
            Ok(true)
        }
    }
}

fn apply(request: &mut RequestHeader, admission: Admission) -> Result<()> {
    if let Some(host) = admission.host {
        request.insert_header(header::HOST, host)?;
    }
    if let Some(target) = admission.target {
        request.set_uri(target);
    }
    if let Some(length) = admission.content_length {
        request.insert_header(header::CONTENT_LENGTH, length)?;
    }
    if admission.drop_expect {
        request.remove_header(&header::EXPECT);
    }
    Ok(())
}

/// Pingora closes the connection after a response written before the
/// request body was read (the client might never send it), and counts an
/// interim `100 Continue` as such a response, although it is what asks the
/// client to send the body: every final answer after it said
/// `Connection: close`. The rule is kept for final responses only.
pub(super) fn close_early_final_responses_only(session: &mut Session, response: &ResponseHeader) {
    session.set_close_on_response_before_downstream_finish(!response.status.is_informational());
}

/// Writes `100 Continue` without giving up keep-alive (see
/// [`close_early_final_responses_only`]).
pub(super) async fn write_continue(session: &mut Session) -> Result<()> {
    session.set_close_on_response_before_downstream_finish(false);
    let written = session.write_continue_response().await;
    session.set_close_on_response_before_downstream_finish(true);
    written
}
