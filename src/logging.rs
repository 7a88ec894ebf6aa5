//! Process logging: `env_logger` configured by `RUST_LOG` (default `info`),
//! with one guarantee on top: Pingora's own records are never more verbose than
//! `info`, whatever `RUST_LOG` asks for.
//!
//! Pingora's debug and trace records dump request headers, query strings and
//! socket buffers, which carry `Authorization`, cookies and the tokens we issue.
//! "Secrets and tokens never appear in logs" has to hold at every log level an
//! operator might turn on while debugging, so the cap is not configurable.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct CappedDependencyLogger {
    inner: env_logger::Logger,
}

/// Targets whose records can contain request data at debug/trace level.
fn is_capped(target: &str) -> bool {
    target.starts_with("pingora")
}

impl Log for CappedDependencyLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        (metadata.level() <= Level::Info || !is_capped(metadata.target()))
            && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger; call once, first thing in `main`.
pub fn init() {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max_level: LevelFilter = inner.filter();
    if log::set_boxed_logger(Box::new(CappedDependencyLogger { inner })).is_ok() {
        log::set_max_level(max_level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingora_targets_are_capped_and_ours_are_not() {
        assert!(is_capped("pingora_proxy"));
        assert!(is_capped("pingora_core::protocols::http::v1::server"));
        assert!(!is_capped("streamgate::proxy"));
    }
}

/// One access-log line. Holds what an operator needs to follow a request and
/// nothing that authenticates anyone: no token, secret, `Authorization`,
/// `Cookie` or `Set-Cookie` value, and no query string unless configured.
#[derive(Debug, serde::Serialize)]
pub struct AccessRecord<'a> {
    pub timestamp: String,
    pub request_id: &'a str,
    pub client_ip: Option<String>,
    pub method: &'a str,
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<&'a str>,
    pub status: u16,
    pub bytes: usize,
    pub duration_ms: f64,
    pub route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
}

impl AccessRecord<'_> {
    /// The line for `format`, without a trailing newline; `None` when off.
    pub fn line(&self, format: crate::config::AccessLogFormat) -> Option<Vec<u8>> {
        use crate::config::AccessLogFormat;
        match format {
            AccessLogFormat::Off => None,
            AccessLogFormat::Json => serde_json::to_vec(self).ok(),
            AccessLogFormat::Text => Some(
                format!(
                    "{} {} {} \"{} {}{}{}\" {} {} {:.3}ms route={} upstream={} user={}",
                    self.timestamp,
                    self.request_id,
                    self.client_ip.as_deref().unwrap_or("-"),
                    self.method,
                    self.path,
                    if self.query.is_some() { "?" } else { "" },
                    self.query.unwrap_or(""),
                    self.status,
                    self.bytes,
                    self.duration_ms,
                    self.route,
                    self.upstream.unwrap_or("-"),
                    self.user_id.unwrap_or("-"),
                )
                .into_bytes(),
            ),
        }
    }

    /// Writes the line to stdout in one `write` so that lines from concurrent
    /// requests never interleave.
    pub fn emit(&self, format: crate::config::AccessLogFormat) {
        use std::io::Write;
        if let Some(mut line) = self.line(format) {
            line.push(b'\n');
            let _ = std::io::stdout().lock().write_all(&line);
        }
    }
}

#[cfg(test)]
mod access_tests {
    use super::*;
    use crate::config::AccessLogFormat;

    #[test]
    fn json_line_has_the_fields_and_omits_what_is_absent() {
        let record = AccessRecord {
            timestamp: "2026-11-28T22:00:00.000Z".into(),
            request_id: "abc",
            client_ip: Some("127.0.0.1".into()),
            method: "POST",
            path: "/api/tokens/user",
            query: None,
            status: 200,
            bytes: 312,
            duration_ms: 0.25,
            route: "POST /api/tokens/user",
            upstream: None,
            user_id: Some("alice"),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&record.line(AccessLogFormat::Json).unwrap()).unwrap();
        assert_eq!(json["status"], 200);
        assert_eq!(json["user_id"], "alice");
        assert!(json.get("query").is_none() && json.get("upstream").is_none());
        assert!(record.line(AccessLogFormat::Off).is_none());
        let text = String::from_utf8(record.line(AccessLogFormat::Text).unwrap()).unwrap();
        assert!(text.contains("\"POST /api/tokens/user\" 200 312"), "{text}");
    }
}
