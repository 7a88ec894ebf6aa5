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
