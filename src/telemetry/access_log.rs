//! The access log: one line per request on stdout, JSON or text, written in
//! one `write` so that lines from concurrent requests never interleave.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How access-log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// One JSON object per line: the default.
    Json,
    /// One line in the style of a common log format, then `key=value` pairs.
    Text,
    /// No access log.
    Off,
}

/// The `access_log:` section of the configuration: one line per request on
/// stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "AccessLog")]
pub struct AccessLogSettings {
    /// `json` (default), `text` or `off`.
    pub format: AccessLogFormat,
    /// Log query strings; off by default, since they often carry tokens and
    /// signed URLs.
    pub include_query: bool,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        AccessLogSettings {
            format: AccessLogFormat::Json,
            include_query: false,
        }
    }
}

/// One access-log line. Holds what an operator needs to follow a request and
/// nothing that authenticates anyone: no token, secret, `Authorization`,
/// `Cookie` or `Set-Cookie` value, and no query string unless configured.
#[derive(Debug, serde::Serialize)]
pub struct AccessRecord<'a> {
    pub timestamp: String,
    pub request_id: &'a str,
    /// The W3C trace id (32 hex digits) the app received in `traceparent`;
    /// absent for a request refused before its head was parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
    pub client_ip: Option<String>,
    pub method: &'a str,
    pub path: &'a str,
    /// `http/1.0`, `http/1.1`, `h2` (HTTP/2 over TLS) or `h2c` (over
    /// plaintext); `-` for a head refused before it was parsed.
    pub protocol: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<&'a str>,
    pub status: u16,
    pub bytes: usize,
    /// Milliseconds, to the microsecond: the clock's nanoseconds only add
    /// float noise (`1.2360710000000001`) to a line people read.
    #[serde(serialize_with = "to_microseconds")]
    pub duration_ms: f64,
    pub route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    /// Why a token request was refused (any 4xx or 5xx a token route
    /// answered itself): the same code as the refused-tokens metric's
    /// `reason`, from a fixed list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// A gRPC call's `grpc-status`, from the app or from streamgate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<&'a str>,
}

impl AccessRecord<'_> {
    /// The line for `format`, without a trailing newline; `None` when off.
    fn line(&self, format: AccessLogFormat) -> Option<Vec<u8>> {
        match format {
            AccessLogFormat::Off => None,
            AccessLogFormat::Json => serde_json::to_vec(self).ok(),
            AccessLogFormat::Text => Some(
                format!(
                    "{} {} {} \"{} {}{}{} {}\" {} {} {:.3}ms route={} upstream={} user={} grpc_status={} reason={} trace={}",
                    self.timestamp,
                    self.request_id,
                    self.client_ip.as_deref().unwrap_or("-"),
                    self.method,
                    self.path,
                    if self.query.is_some() { "?" } else { "" },
                    self.query.unwrap_or(""),
                    self.protocol,
                    self.status,
                    self.bytes,
                    self.duration_ms,
                    self.route,
                    self.upstream.unwrap_or("-"),
                    self.user_id.unwrap_or("-"),
                    self.grpc_status.unwrap_or("-"),
                    self.reason.unwrap_or("-"),
                    self.trace_id.unwrap_or("-"),
                )
                .into_bytes(),
            ),
        }
    }

    /// Writes the line to stdout in one `write` so that lines from concurrent
    /// requests never interleave.
    pub fn emit(&self, format: AccessLogFormat) {
        use std::io::Write;
        if let Some(mut line) = self.line(format) {
            line.push(b'\n');
            let _ = std::io::stdout().lock().write_all(&line);
        }
    }
}

fn to_microseconds<S: serde::Serializer>(ms: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((ms * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_is_written_to_the_microsecond() {
        let mut record = record();
        for (ms, written) in [
            (1.236_071_000_000_000_1, "1.236"),
            (0.000_4, "0.0"),
            (12.345_6, "12.346"),
        ] {
            record.duration_ms = ms;
            let line = String::from_utf8(record.line(AccessLogFormat::Json).unwrap()).unwrap();
            assert!(
                line.contains(&format!("\"duration_ms\":{written},")),
                "{line}"
            );
        }
    }

    fn record() -> AccessRecord<'static> {
        AccessRecord {
            timestamp: "2026-11-28T22:00:00.000Z".into(),
            request_id: "abc",
            trace_id: Some("0af7651916cd43dd8448eb211c80319c"),
            client_ip: Some("127.0.0.1".into()),
            method: "POST",
            path: "/api/tokens/user",
            protocol: "h2",
            query: None,
            status: 200,
            bytes: 312,
            duration_ms: 0.25,
            route: "POST /api/tokens/user",
            upstream: None,
            user_id: Some("alice"),
            reason: None,
            grpc_status: None,
        }
    }

    #[test]
    fn json_line_has_the_fields_and_omits_what_is_absent() {
        let record = record();
        let json: serde_json::Value =
            serde_json::from_slice(&record.line(AccessLogFormat::Json).unwrap()).unwrap();
        assert_eq!(json["status"], 200);
        assert_eq!(json["user_id"], "alice");
        assert_eq!(json["protocol"], "h2");
        assert_eq!(json["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert!(
            json.get("query").is_none()
                && json.get("upstream").is_none()
                && json.get("reason").is_none()
        );
        assert!(record.line(AccessLogFormat::Off).is_none());
        let text = String::from_utf8(record.line(AccessLogFormat::Text).unwrap()).unwrap();
        assert!(
            text.contains("\"POST /api/tokens/user h2\" 200 312"),
            "{text}"
        );
        assert!(
            text.ends_with(" reason=- trace=0af7651916cd43dd8448eb211c80319c"),
            "{text}"
        );
    }

    #[test]
    fn a_refusal_has_its_reason_in_both_formats() {
        let record = AccessRecord {
            status: 401,
            user_id: None,
            reason: Some("token_expired"),
            ..record()
        };
        let json: serde_json::Value =
            serde_json::from_slice(&record.line(AccessLogFormat::Json).unwrap()).unwrap();
        assert_eq!(json["reason"], "token_expired");
        let text = String::from_utf8(record.line(AccessLogFormat::Text).unwrap()).unwrap();
        assert!(text.contains(" reason=token_expired trace="), "{text}");
    }
}
